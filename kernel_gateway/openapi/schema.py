"""The building blocks of the OpenAPI document: response and body helpers, shared
parameters, the component schemas, and the responses every endpoint may give.

The area modules (lifecycle, calls, files, ...) describe their paths with these.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "METHODS",
    "OBJ",
    "PATH_PARAM",
    "REGS",
    "STR",
    "TARGET",
    "body",
    "common_responses",
    "components",
    "err",
    "ok",
    "path_param",
]


def err(*codes: str) -> dict[str, Any]:
    """An error response carrying the Error body, described by its machine codes."""
    return {
        "description": "error: " + ", ".join(codes),
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def ok(description: str, props: dict[str, Any] | None = None) -> dict[str, Any]:
    """A success response: `{"success": true}` plus `props`."""
    schema: dict[str, Any] = {"type": "object", "properties": {"success": {"const": True}}}
    if props:
        schema["properties"].update(props)
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def body(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    """A JSON request body; required if any of its properties is."""
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = required
    return {"required": bool(required), "content": {"application/json": {"schema": schema}}}


def path_param(name: str) -> list[dict[str, Any]]:
    """One required string parameter in the path."""
    return [{"name": name, "in": "path", "required": True, "schema": STR}]


STR = {"type": "string"}
OBJ = {"type": "object"}
TARGET = body({"script_id": STR, "script_path": STR})
REGS = {"$ref": "#/components/schemas/Registrations"}
PATH_PARAM = [
    {
        "name": "path",
        "in": "path",
        "required": True,
        "schema": STR,
        "description": "path under the scripts root",
    }
]

METHODS = ("get", "put", "post", "patch", "delete", "head", "options")


def components() -> dict[str, Any]:
    """The security scheme (tokens) and the schemas the paths refer to."""
    return {
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
                "properties": {"success": {"const": False}, "error": STR, "code": STR},
            },
            "Registrations": {
                "type": "object",
                "properties": {
                    k: {"type": "array", "items": OBJ}
                    for k in ("apis", "functions", "events", "timers")
                },
            },
            "LogRecord": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "ts": {"type": "number"},
                    "script_id": STR,
                    "run_id": {"type": ["integer", "null"]},
                    "level": STR,
                    "source": STR,
                    "tag": STR,
                    "message": STR,
                    "call_id": {"type": ["string", "null"]},
                    "task_id": {"type": ["string", "null"]},
                },
            },
            "ScriptSummary": {
                "type": "object",
                "properties": {
                    "script_id": STR,
                    "script_path": STR,
                    "status": STR,
                    "started_at": {"type": "number"},
                    "kernel_id": STR,
                    "pid": {"type": ["integer", "null"]},
                    "calls_per_s": {
                        "type": "number",
                        "description": "calls per second over the last minute",
                    },
                    "error_rate": {
                        "type": "number",
                        "description": "the share of the last minute's calls that failed (0-1)",
                    },
                    "registrations": OBJ,
                    "revision": {
                        "type": ["string", "null"],
                        "description": "the commit of the scripts repository its kernels run "
                        "(40 hex digits; null: a gateway without a repository)",
                    },
                    "environment": {
                        "type": ["object", "null"],
                        "description": "the script's packages (issue 16): its lock and the "
                        "[name, version] pairs it adds; null: the engine's packages only",
                        "properties": {
                            "lock": STR,
                            "packages": {"type": "array", "items": {"type": "array"}},
                        },
                    },
                },
            },
        },
    }


def common_responses(paths: dict[str, Any]) -> None:
    """What every endpoint may answer besides its own codes: 401/403 (tokens), 413 (a
    body over --max-body-size) and, as a range, any other client error; all carry the
    Error body with a machine code (docs/api.md, "Errors")."""
    for item in paths.values():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            responses = op["responses"]
            responses.setdefault("401", err("UNAUTHORIZED"))
            responses.setdefault("403", err("FORBIDDEN"))
            if method in ("put", "post", "patch"):
                responses.setdefault("413", err("BODY_TOO_LARGE"))
            responses.setdefault(
                "4XX",
                err(
                    "see docs/api.md, Errors (e.g. INVALID_JSON, BAD_PARAMETER, "
                    "PATH_INVALID, WEBSOCKET_REQUIRED)"
                ),
            )
