"""OpenAPI paths of a script's lifecycle: start, stop, restart, reload, and what is running."""

from __future__ import annotations

from typing import Any

from .schema import REGS, STR, TARGET, body, err, ok, path_param

__all__ = ["lifecycle_paths"]

_DEPS = ("DEPENDENCY_INVALID", "DEPENDENCY_CONFLICT", "DEPENDENCY_FAILED")
_REVISION = {
    "type": "string",
    "pattern": "^[0-9a-fA-F]{4,40}$",
    "description": "a commit of the scripts repository (short or full) whose source runs; "
    "default: the latest (a change on disk is committed first). Rollback: an older one.",
}
_REV = {"type": ["string", "null"], "description": "the revision (40 hex) the kernels run"}
_RATE_LIMIT = {
    "type": "object",
    "description": "calls per minute into the script (routes, function calls, WebSocket "
    "messages, steps of its file), shared by its replicas; past it 429 RATE_LIMITED with "
    "Retry-After. calls_per_minute 0: no limit (not even the gateway's --rate-limit). "
    "docs/security.md, Quotas",
    "properties": {
        "calls_per_minute": {"type": "integer", "minimum": 0},
        "burst": {
            "type": "integer",
            "minimum": 1,
            "description": "calls at once (default: calls_per_minute)",
        },
    },
    "required": ["calls_per_minute"],
    "additionalProperties": False,
}
_CPU_QUOTA = {
    "type": "number",
    "minimum": 0,
    "description": "cores each kernel of the script may use (0.5: half a core; 0: none); "
    "held by a cgroup per kernel where the machine allows it (the answer's cpu_quota says "
    "whether it was applied, and why not). Default: the gateway's --cpu-quota",
}
_QUOTAS_OUT = {
    "rate_limit": {"type": ["object", "null"], "description": "calls_per_minute, burst"},
    "cpu_quota": {
        "type": ["object", "null"],
        "description": "cores, applied; mechanism (applied) or reason (not applied)",
    },
}
_TARGET_REV = body({"script_id": STR, "script_path": STR, "revision": _REVISION})


def lifecycle_paths() -> dict[str, Any]:
    """/script-engine/start, stop, restart, reload, running and scripts/{script_id}."""
    return {
        "/script-engine/start": {
            "post": {
                "summary": "Start a script in its own kernel and run its boot()",
                "requestBody": body(
                    {
                        "script_path": STR,
                        "replicas": {"type": "integer"},
                        "restart": {"enum": ["never", "on-failure", "always"]},
                        "memory_limit_mb": {"type": "integer"},
                        "rate_limit": _RATE_LIMIT,
                        "cpu_quota": _CPU_QUOTA,
                        "revision": _REVISION,
                        "kernel_name": {
                            "type": "string",
                            "description": "the kernelspec its kernels start from (default: "
                            "the gateway's --kernel-name); one whose provisioner runs kernels "
                            "on another host (vwed-kernel install --remote-host) makes a "
                            "remote script: docs/scaling.md",
                        },
                        "policy": {
                            "type": "object",
                            "description": "docs/security.md",
                            "properties": {
                                "network": {"type": "array", "items": STR},
                                "subprocess": {"type": "boolean"},
                                "write": {"type": "array", "items": STR},
                            },
                        },
                    },
                    ["script_path"],
                ),
                "responses": {
                    "200": ok(
                        "started",
                        {
                            "script_id": STR,
                            "script_path": STR,
                            "kernel_id": STR,
                            "revision": _REV,
                            "registrations": REGS,
                            **_QUOTAS_OUT,
                        },
                    ),
                    "400": err(
                        "INVALID_JSON",
                        "MISSING_FIELD",
                        "PATH_INVALID",
                        "BAD_POLICY",
                        "BAD_RATE_LIMIT",
                        "BAD_CPU_QUOTA",
                        "BAD_PARAMETER",
                        "UNKNOWN_KERNEL",
                    ),
                    "404": err("SCRIPT_NOT_FOUND", "REVISION_NOT_FOUND", "FILE_NOT_FOUND"),
                    "409": err("ALREADY_RUNNING", "REGISTRATION_CONFLICT"),
                    "422": err(
                        "SYNTAX_ERROR",
                        "BOOT_MISSING",
                        "BOOT_FAILED",
                        *_DEPS,
                    ),
                    "503": err("KERNEL_START_FAILED", "SCRIPT_STOPPING"),
                    "504": err("BOOT_TIMEOUT"),
                },
            }
        },
        "/script-engine/stop": {
            "post": {
                "summary": "Unregister a script, fail its calls in flight, shut its kernel down",
                "requestBody": TARGET,
                "responses": {
                    "200": ok("stopped", {"script_id": STR, "status": STR}),
                    "400": err("MISSING_FIELD"),
                    "404": err("NOT_RUNNING"),
                },
            }
        },
        "/script-engine/restart": {
            "post": {
                "summary": "Stop a script and start it again at a revision (default: the "
                "latest commit of its file; a new script_id)",
                "requestBody": _TARGET_REV,
                "responses": {
                    "200": ok(
                        "restarted",
                        {
                            "previous_script_id": STR,
                            "script_id": STR,
                            "revision": _REV,
                            "registrations": REGS,
                        },
                    ),
                    "400": err("MISSING_FIELD", "BAD_PARAMETER"),
                    "404": err("NOT_RUNNING", "REVISION_NOT_FOUND", "FILE_NOT_FOUND"),
                    "422": err("SYNTAX_ERROR", "BOOT_FAILED", "BOOT_MISSING", *_DEPS),
                },
            }
        },
        "/script-engine/reload": {
            "post": {
                "summary": "Reload a running script at a revision (default: the latest commit "
                "of its file; an older one is a rollback) without downtime (new kernels, atomic "
                "swap, old kernels drained); if the new version fails to boot, the old keeps serving",
                "requestBody": _TARGET_REV,
                "responses": {
                    "200": ok(
                        "reloaded", {"script_id": STR, "revision": _REV, "registrations": REGS}
                    ),
                    "400": err("MISSING_FIELD", "BAD_PARAMETER"),
                    "404": err("NOT_RUNNING", "REVISION_NOT_FOUND", "FILE_NOT_FOUND"),
                    "409": err("REGISTRATION_CONFLICT"),
                    "422": err("SYNTAX_ERROR", "BOOT_FAILED", "BOOT_MISSING", *_DEPS),
                },
            }
        },
        "/script-engine/running": {
            "get": {
                "summary": "Running scripts",
                "responses": {
                    "200": ok(
                        "the list",
                        {
                            "count": {"type": "integer"},
                            "scripts": {
                                "type": "array",
                                "items": {"$ref": "#/components/schemas/ScriptSummary"},
                            },
                        },
                    )
                },
            }
        },
        "/script-engine/scripts/{script_id}": {
            "get": {
                "summary": "One running script with its registrations",
                "parameters": path_param("script_id"),
                "responses": {"200": ok("the script"), "404": err("NOT_RUNNING")},
            }
        },
    }
