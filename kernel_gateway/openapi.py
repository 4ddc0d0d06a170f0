"""The OpenAPI 3.1 document of the gateway, served at /script-engine/openapi.json.

A test checks that every route of the application appears here, and that
docs/openapi.json is this document.
"""

from __future__ import annotations

import json
from typing import Any

from . import __version__

__all__ = ["build_openapi"]


def _err(*codes: str) -> dict[str, Any]:
    return {
        "description": "error: " + ", ".join(codes),
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _ok(description: str, props: dict[str, Any] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": {"success": {"const": True}}}
    if props:
        schema["properties"].update(props)
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _body(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = required
    return {"required": bool(required), "content": {"application/json": {"schema": schema}}}


_STR = {"type": "string"}
_OBJ = {"type": "object"}
_TARGET = _body({"script_id": _STR, "script_path": _STR})
_REGS = {"$ref": "#/components/schemas/Registrations"}
_LOG_PARAMS = [
    {"name": n, "in": "query", "schema": _STR, "description": d}
    for n, d in (
        ("script_id", "one run (the id start returned)"),
        ("script_path", "every run of a script"),
        ("run_id", "one run, by its number"),
        ("level", "this level and above: DEBUG, INFO, WARNING, ERROR"),
        ("tag", "exact tag"),
        ("source", "stdout, stderr, error, vwed, engine"),
        ("call_id", "one call"),
        ("task_id", "one task"),
        ("since", "ISO 8601 or epoch seconds (inclusive)"),
        ("until", "ISO 8601 or epoch seconds (exclusive)"),
        ("q", "substring of the message"),
    )
]
_PATH_PARAM = [
    {
        "name": "path",
        "in": "path",
        "required": True,
        "schema": _STR,
        "description": "path under the scripts root",
    }
]


def build_openapi() -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/script-engine/start": {
            "post": {
                "summary": "Start a script in its own kernel and run its boot()",
                "requestBody": _body(
                    {
                        "script_path": _STR,
                        "replicas": {"type": "integer"},
                        "restart": {"enum": ["never", "on-failure", "always"]},
                        "memory_limit_mb": {"type": "integer"},
                        "policy": {
                            "type": "object",
                            "description": "docs/security.md",
                            "properties": {
                                "network": {"type": "array", "items": _STR},
                                "subprocess": {"type": "boolean"},
                                "write": {"type": "array", "items": _STR},
                            },
                        },
                    },
                    ["script_path"],
                ),
                "responses": {
                    "200": _ok(
                        "started",
                        {
                            "script_id": _STR,
                            "script_path": _STR,
                            "kernel_id": _STR,
                            "registrations": _REGS,
                        },
                    ),
                    "400": _err("INVALID_JSON", "MISSING_FIELD", "PATH_INVALID", "BAD_POLICY"),
                    "404": _err("SCRIPT_NOT_FOUND"),
                    "409": _err("ALREADY_RUNNING", "REGISTRATION_CONFLICT"),
                    "422": _err("BOOT_MISSING", "BOOT_FAILED"),
                    "503": _err("KERNEL_START_FAILED"),
                    "504": _err("BOOT_TIMEOUT"),
                },
            }
        },
        "/script-engine/stop": {
            "post": {
                "summary": "Unregister a script, fail its calls in flight, shut its kernel down",
                "requestBody": _TARGET,
                "responses": {
                    "200": _ok("stopped", {"script_id": _STR, "status": _STR}),
                    "400": _err("MISSING_FIELD"),
                    "404": _err("NOT_RUNNING"),
                },
            }
        },
        "/script-engine/restart": {
            "post": {
                "summary": "Stop a script and start it again from its file (a new script_id)",
                "requestBody": _TARGET,
                "responses": {
                    "200": _ok(
                        "restarted",
                        {"previous_script_id": _STR, "script_id": _STR, "registrations": _REGS},
                    ),
                    "404": _err("NOT_RUNNING"),
                    "422": _err("BOOT_FAILED", "BOOT_MISSING"),
                },
            }
        },
        "/script-engine/reload": {
            "post": {
                "summary": "Reload a running script from its file without downtime (new kernels, atomic swap, "
                "old kernels drained); if the new version fails to boot, the old keeps serving",
                "requestBody": _TARGET,
                "responses": {
                    "200": _ok("reloaded", {"script_id": _STR, "registrations": _REGS}),
                    "404": _err("NOT_RUNNING"),
                    "409": _err("REGISTRATION_CONFLICT"),
                    "422": _err("BOOT_FAILED", "BOOT_MISSING"),
                },
            }
        },
        "/script-engine/running": {
            "get": {
                "summary": "Running scripts",
                "responses": {
                    "200": _ok(
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
                "parameters": [
                    {"name": "script_id", "in": "path", "required": True, "schema": _STR}
                ],
                "responses": {"200": _ok("the script"), "404": _err("NOT_RUNNING")},
            }
        },
        "/script-engine/functions": {
            "get": {
                "summary": "Functions registered by running scripts",
                "responses": {"200": _ok("the list", {"functions": {"type": "array"}})},
            }
        },
        "/script-engine/functions/{name}/call": {
            "post": {
                "summary": "Call a registered function",
                "parameters": [{"name": "name", "in": "path", "required": True, "schema": _STR}],
                "requestBody": _body(
                    {
                        "args": {
                            "description": "dict (keyword arguments; a one-parameter "
                            "function gets the dict), list (positional) or string "
                            "(JSON or Python literal)"
                        },
                        "timeout": {"type": "number"},
                        "task_id": {
                            "type": "string",
                            "description": "the task flow's task; the call's log records carry it",
                        },
                    }
                ),
                "responses": {
                    "200": _ok(
                        "the result",
                        {"result": {}, "script_id": _STR, "duration_ms": {"type": "number"}},
                    ),
                    "400": _err("INVALID_JSON", "BAD_ARGUMENTS"),
                    "404": _err("FUNCTION_NOT_FOUND"),
                    "500": _err("HANDLER_ERROR", "RESULT_NOT_SERIALIZABLE"),
                    "502": _err("KERNEL_DIED"),
                    "503": _err("SCRIPT_STOPPING"),
                    "504": _err("CALL_TIMEOUT"),
                },
            }
        },
        "/script-engine/events/{name}": {
            "post": {
                "summary": "Emit an event to every listener of every running script, higher priority first",
                "parameters": [{"name": "name", "in": "path", "required": True, "schema": _STR}],
                "requestBody": _body({"data": {}, "task_id": _STR}),
                "responses": {
                    "200": _ok(
                        "the delivery report",
                        {
                            "event": _STR,
                            "listeners": {"type": "integer"},
                            "delivered": {"type": "integer"},
                            "failed": {"type": "array", "items": _OBJ},
                        },
                    ),
                    "400": _err("INVALID_JSON"),
                },
            }
        },
        "/script-engine/files": {
            "get": {
                "summary": "The tree of script files",
                "responses": {"200": _ok("the tree", {"tree": _OBJ})},
            }
        },
        "/script-engine/files/{path}/export": {
            "post": {
                "summary": "A notebook as a .py script (skip-tagged cells left out), or a .py as a notebook",
                "parameters": _PATH_PARAM,
                "requestBody": _body({"overwrite": {"type": "boolean"}}),
                "responses": {
                    "201": _ok("written", {"path": _STR, "from": _STR}),
                    "404": _err("FILE_NOT_FOUND"),
                    "409": _err("EXISTS"),
                },
            }
        },
        "/script-engine/files/{path}": {
            "parameters": _PATH_PARAM,
            "get": {
                "summary": "Read a file (or list a directory)",
                "responses": {
                    "200": _ok("content", {"content": _STR}),
                    "400": _err("PATH_INVALID", "FILE_TYPE_NOT_ALLOWED"),
                    "404": _err("FILE_NOT_FOUND"),
                },
            },
            "put": {
                "summary": "Write a file (create or overwrite)",
                "requestBody": _body({"content": _STR}, ["content"]),
                "responses": {
                    "200": _ok("written"),
                    "400": _err("PATH_INVALID", "NOTEBOOK_INVALID"),
                    "413": _err("FILE_TOO_LARGE"),
                },
            },
            "post": {
                "summary": "Create a file from the template (or with content), or a directory",
                "requestBody": _body(
                    {
                        "type": {"enum": ["file", "directory"]},
                        "template": {"type": "boolean"},
                        "content": _STR,
                    }
                ),
                "responses": {"201": _ok("created"), "409": _err("EXISTS")},
            },
            "patch": {
                "summary": "Rename or move",
                "requestBody": _body({"new_path": _STR}, ["new_path"]),
                "responses": {
                    "200": _ok("moved"),
                    "404": _err("PATH_NOT_FOUND"),
                    "409": _err("EXISTS"),
                },
            },
            "delete": {
                "summary": "Delete a file, or a directory (recursive=true if not empty)",
                "parameters": [{"name": "recursive", "in": "query", "schema": {"type": "boolean"}}],
                "responses": {"200": _ok("deleted"), "409": _err("DIRECTORY_NOT_EMPTY")},
            },
        },
        "/script-engine/execute": {
            "post": {
                "summary": "A task-flow step: run a function of a script file (or the file) in a worker kernel",
                "requestBody": _body(
                    {
                        "script_path": _STR,
                        "function_name": _STR,
                        "args": {"description": "bound like function calls"},
                        "mode": {"enum": ["SCRIPT", "SET_TASK_VARIABLES", "RUN"]},
                        "task_id": _STR,
                        "timeout": {"type": "number"},
                    },
                    ["script_path"],
                ),
                "responses": {
                    "200": _ok(
                        "done",
                        {
                            "result": {},
                            "variables": _OBJ,
                            "stdout": _STR,
                            "stderr": _STR,
                            "duration_ms": {"type": "number"},
                            "execution_id": _STR,
                        },
                    ),
                    "400": _err(
                        "INVALID_JSON",
                        "MISSING_FIELD",
                        "BAD_REQUEST",
                        "BAD_ARGUMENTS",
                        "PATH_INVALID",
                    ),
                    "404": _err("SCRIPT_NOT_FOUND", "FUNCTION_NOT_FOUND"),
                    "409": _err("CANCELLED"),
                    "422": _err("STEP_FAILED"),
                    "500": _err("RESULT_NOT_SERIALIZABLE"),
                    "502": _err("KERNEL_DIED"),
                    "503": _err("BUSY", "STORE_FAILED", "STORE_TIMEOUT"),
                    "504": _err("CALL_TIMEOUT"),
                },
            }
        },
        "/script-engine/executions": {
            "get": {
                "summary": "Recorded executions (newest first) and the ids of running ones",
                "parameters": [{"name": "task_id", "in": "query", "schema": _STR}],
                "responses": {
                    "200": _ok(
                        "executions",
                        {"executions": {"type": "array"}, "running": {"type": "array"}},
                    )
                },
            }
        },
        "/script-engine/executions/{execution_id}/cancel": {
            "post": {
                "summary": "Interrupt a running step (it answers 409 CANCELLED)",
                "parameters": [
                    {"name": "execution_id", "in": "path", "required": True, "schema": _STR}
                ],
                "responses": {"200": _ok("cancelled"), "404": _err("EXECUTION_NOT_FOUND")},
            }
        },
        "/script-engine/tasks/{task_id}/variables": {
            "get": {
                "summary": "A task's variables, as merged by its steps",
                "parameters": [{"name": "task_id", "in": "path", "required": True, "schema": _STR}],
                "responses": {
                    "200": _ok("variables", {"variables": _OBJ}),
                    "404": _err("TASK_NOT_FOUND"),
                    "503": _err("STORE_TIMEOUT", "STORE_UNAVAILABLE"),
                },
            }
        },
        "/script-engine/platform/locations": {
            "get": {
                "summary": "Storage locations of the embedded platform backend",
                "parameters": [{"name": "zone", "in": "query", "schema": _STR}],
                "responses": {"200": _ok("locations", {"locations": {"type": "array"}})},
            },
            "post": {
                "summary": "Create or update a storage location",
                "requestBody": _body(
                    {"location_code": _STR, "zone": _STR, "goods": _STR, "data": _OBJ},
                    ["location_code"],
                ),
                "responses": {"201": _ok("the location"), "400": _err("MISSING_FIELD")},
            },
        },
        "/script-engine/platform/robots": {
            "get": {
                "summary": "Robots of the embedded platform backend",
                "responses": {"200": _ok("robots", {"robots": {"type": "array"}})},
            },
            "post": {
                "summary": "Register or update a robot",
                "requestBody": _body(
                    {"robot_id": _STR, "status": _STR, "data": _OBJ}, ["robot_id"]
                ),
                "responses": {"201": _ok("the robot"), "400": _err("MISSING_FIELD")},
            },
        },
        "/script-engine/platform/tasks": {
            "get": {
                "summary": "A task of the embedded platform backend",
                "parameters": [
                    {"name": "task_id", "in": "query", "required": True, "schema": _STR}
                ],
                "responses": {"200": _ok("the task"), "404": _err("TASK_NOT_FOUND")},
            },
            "post": {
                "summary": "Create a task",
                "requestBody": _body({"task_label": _STR, "input_params": _OBJ}, ["task_label"]),
                "responses": {"201": _ok("the task"), "400": _err("MISSING_FIELD")},
            },
        },
        "/script-engine/runs": {
            "get": {
                "summary": "Script runs, newest first (start, stop, status, exit reason)",
                "parameters": [
                    {"name": "script_path", "in": "query", "schema": _STR},
                    {"name": "limit", "in": "query", "schema": {"type": "integer"}},
                ],
                "responses": {"200": _ok("runs", {"runs": {"type": "array", "items": _OBJ}})},
            }
        },
        "/script-engine/logs": {
            "get": {
                "summary": "Log history (newest first by default), cursor paging",
                "parameters": _LOG_PARAMS
                + [
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": 1000,
                            "default": 100,
                        },
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "schema": {"type": "integer"},
                        "description": "next_cursor of the previous page",
                    },
                    {"name": "order", "in": "query", "schema": {"enum": ["desc", "asc"]}},
                ],
                "responses": {
                    "200": _ok(
                        "a page",
                        {
                            "records": {
                                "type": "array",
                                "items": {"$ref": "#/components/schemas/LogRecord"},
                            },
                            "next_cursor": {"type": ["integer", "null"]},
                        },
                    ),
                    "400": _err("BAD_PARAMETER"),
                },
            }
        },
        "/script-engine/logs/export": {
            "get": {
                "summary": "The same records streamed as a download (NDJSON or CSV)",
                "parameters": _LOG_PARAMS
                + [
                    {"name": "format", "in": "query", "schema": {"enum": ["ndjson", "csv"]}},
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer"},
                        "description": "at most this many records (default: all)",
                    },
                    {"name": "order", "in": "query", "schema": {"enum": ["desc", "asc"]}},
                ],
                "responses": {
                    "200": {"description": "application/x-ndjson or text/csv"},
                    "400": _err("BAD_PARAMETER"),
                },
            }
        },
        "/script-engine/logs/ws": {
            "get": {
                "summary": 'WebSocket: live records as JSON ({"type": "record", ...}) after a replay '
                "of the last `tail`; a slow reader gets a SLOW_CONSUMER notice and close 4008",
                "parameters": [
                    {"name": n, "in": "query", "schema": _STR}
                    for n in ("script_id", "level", "tag")
                ]
                + [
                    {
                        "name": "tail",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 0, "maximum": 1000},
                    },
                    {"name": "token", "in": "query", "schema": _STR},
                ],
                "responses": {
                    "101": {"description": "switching protocols"},
                    "400": _err("BAD_PARAMETER"),
                    "401": _err("UNAUTHORIZED"),
                },
            }
        },
        "/script-engine/health": {
            "get": {
                "summary": "Liveness and readiness (pool warm, database reachable); no token needed",
                "responses": {"200": _ok("healthy")},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics: calls by script, kind and outcome with latency histograms, "
                "kernels alive, scripts by status, restarts, log records stored/dropped, queue depths",
                "responses": {"200": {"description": "text/plain; version=0.0.4"}},
            }
        },
        "/script-engine/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": {"description": "OpenAPI document"}},
            }
        },
        "/script-api/{path}": {
            m: {
                "summary": "A route a running script registered",
                "parameters": _PATH_PARAM,
                "responses": {
                    "200": {"description": "the handler's return value as JSON, or its Response"},
                    "404": _err("ROUTE_NOT_FOUND"),
                    "405": _err("METHOD_NOT_ALLOWED"),
                    "500": _err("HANDLER_ERROR", "RESULT_NOT_SERIALIZABLE"),
                    "502": _err("KERNEL_DIED"),
                    "503": _err("SCRIPT_STOPPING"),
                    "504": _err("CALL_TIMEOUT"),
                },
            }
            for m in ("get", "post", "put", "delete", "patch", "head", "options")
        },
    }
    kid = [{"name": "kernel_id", "in": "path", "required": True, "schema": _STR}]
    paths["/api"] = {
        "get": {
            "summary": "Jupyter API version (for Jupyter Server's gateway client)",
            "responses": {"200": {"description": "{version}"}},
        }
    }
    paths["/api/kernelspecs"] = {
        "get": {
            "summary": "Kernelspecs (Jupyter kernels API)",
            "responses": {"200": {"description": "{default, kernelspecs}"}},
        }
    }
    paths["/api/kernelspecs/{name}"] = {
        "get": {
            "summary": "One kernelspec",
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": _STR}],
            "responses": {
                "200": {"description": "{name, spec, resources}"},
                "404": _err("KERNELSPEC_NOT_FOUND"),
            },
        }
    }
    paths["/api/kernels"] = {
        "get": {
            "summary": "Running kernels: every script kernel (with vwed.script_id/script_path) and "
            "scratch kernels",
            "responses": {"200": {"description": "a list of kernel models"}},
        },
        "post": {
            "summary": "Start a scratch VWED kernel",
            "requestBody": _body({"name": _STR}),
            "responses": {"201": {"description": "the kernel model"}},
        },
    }
    paths["/api/kernels/{kernel_id}"] = {
        "get": {
            "summary": "One kernel",
            "parameters": kid,
            "responses": {
                "200": {"description": "the kernel model"},
                "404": _err("KERNEL_NOT_FOUND"),
            },
        },
        "delete": {
            "summary": "Shut a kernel down (a script kernel: the script is stopped)",
            "parameters": kid,
            "responses": {"204": {"description": "gone"}, "404": _err("KERNEL_NOT_FOUND")},
        },
    }
    paths["/api/kernels/{kernel_id}/interrupt"] = {
        "post": {
            "summary": "Interrupt a kernel",
            "parameters": kid,
            "responses": {"204": {"description": "interrupted"}, "404": _err("KERNEL_NOT_FOUND")},
        }
    }
    paths["/api/kernels/{kernel_id}/restart"] = {
        "post": {
            "summary": "Restart a kernel (a script kernel: the script is restarted from its file)",
            "parameters": kid,
            "responses": {
                "200": {"description": "the new kernel model"},
                "404": _err("KERNEL_NOT_FOUND"),
            },
        }
    }
    paths["/api/kernels/{kernel_id}/channels"] = {
        "get": {
            "summary": "WebSocket: the kernel's Jupyter messages (JSON, one per frame, with 'channel')",
            "parameters": kid,
            "responses": {
                "101": {"description": "switching protocols"},
                "404": _err("KERNEL_NOT_FOUND"),
            },
        }
    }
    paths["/script-engine/kernels/{kernel_id}/connection"] = {
        "get": {
            "summary": "A kernel's connection info (holds its key), for jupyter console --existing",
            "parameters": kid,
            "responses": {
                "200": {"description": "ip, ports, key, transport"},
                "404": _err("KERNEL_NOT_FOUND"),
            },
        }
    }
    paths["/script-ws/{path}"] = {
        "get": {
            "summary": "WebSocket: a route a running script registered with VWED.api.register_websocket",
            "parameters": _PATH_PARAM,
            "responses": {
                "101": {"description": "switching protocols"},
                "404": _err("ROUTE_NOT_FOUND"),
                "401": _err("UNAUTHORIZED"),
            },
        }
    }
    _common_responses(paths)
    paths["/script-engine/health"]["get"]["security"] = []
    return {
        "openapi": "3.1.0",
        "info": {"title": "VWED script engine gateway", "version": __version__},
        "components": {
            "securitySchemes": {
                "token": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "'token <T>' or 'Bearer <T>'",
                }
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["success", "error", "code"],
                    "properties": {"success": {"const": False}, "error": _STR, "code": _STR},
                },
                "Registrations": {
                    "type": "object",
                    "properties": {
                        k: {"type": "array", "items": _OBJ}
                        for k in ("apis", "functions", "events", "timers")
                    },
                },
                "LogRecord": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "integer"},
                        "ts": {"type": "number"},
                        "script_id": _STR,
                        "run_id": {"type": ["integer", "null"]},
                        "level": _STR,
                        "source": _STR,
                        "tag": _STR,
                        "message": _STR,
                        "call_id": {"type": ["string", "null"]},
                        "task_id": {"type": ["string", "null"]},
                    },
                },
                "ScriptSummary": {
                    "type": "object",
                    "properties": {
                        "script_id": _STR,
                        "script_path": _STR,
                        "status": _STR,
                        "started_at": {"type": "number"},
                        "kernel_id": _STR,
                        "pid": {"type": ["integer", "null"]},
                        "registrations": _OBJ,
                    },
                },
            },
        },
        "security": [{"token": []}],
        "paths": paths,
    }


_METHODS = ("get", "put", "post", "patch", "delete", "head", "options")


def _common_responses(paths: dict[str, Any]) -> None:
    """What every endpoint may answer besides its own codes: 401/403 (tokens), 413 (a
    body over --max-body-size) and, as a range, any other client error; all carry the
    Error body with a machine code (docs/api.md, "Errors")."""
    for item in paths.values():
        for method in _METHODS:
            op = item.get(method)
            if op is None:
                continue
            responses = op["responses"]
            responses.setdefault("401", _err("UNAUTHORIZED"))
            responses.setdefault("403", _err("FORBIDDEN"))
            if method in ("put", "post", "patch"):
                responses.setdefault("413", _err("BODY_TOO_LARGE"))
            responses.setdefault(
                "4XX",
                _err(
                    "see docs/api.md, Errors (e.g. INVALID_JSON, BAD_PARAMETER, "
                    "PATH_INVALID, WEBSOCKET_REQUIRED)"
                ),
            )


if __name__ == "__main__":
    print(json.dumps(build_openapi(), indent=2))
