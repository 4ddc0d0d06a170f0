"""OpenAPI paths of calls into running scripts: functions, events, and the HTTP and
WebSocket routes scripts register."""

from __future__ import annotations

from typing import Any

from .schema import OBJ, PATH_PARAM, STR, body, err, ok, path_param

__all__ = ["function_and_event_paths", "script_route_paths", "script_websocket_paths"]


def function_and_event_paths() -> dict[str, Any]:
    """/script-engine/functions, functions/{name}/call and events/{name}."""
    return {
        "/script-engine/functions": {
            "get": {
                "summary": "Functions registered by running scripts",
                "responses": {"200": ok("the list", {"functions": {"type": "array"}})},
            }
        },
        "/script-engine/functions/{name}/call": {
            "post": {
                "summary": "Call a registered function",
                "parameters": path_param("name"),
                "requestBody": body(
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
                    "200": ok(
                        "the result",
                        {"result": {}, "script_id": STR, "duration_ms": {"type": "number"}},
                    ),
                    "400": err("INVALID_JSON", "BAD_ARGUMENTS"),
                    "404": err("FUNCTION_NOT_FOUND"),
                    "429": err("RATE_LIMITED"),
                    "500": err("HANDLER_ERROR", "RESULT_NOT_SERIALIZABLE"),
                    "502": err("KERNEL_DIED"),
                    "503": err("SCRIPT_STOPPING"),
                    "504": err("CALL_TIMEOUT"),
                },
            }
        },
        "/script-engine/events/{name}": {
            "post": {
                "summary": "Emit an event to every listener of every running script, higher priority first",
                "parameters": path_param("name"),
                "requestBody": body({"data": {}, "task_id": STR}),
                "responses": {
                    "200": ok(
                        "the delivery report",
                        {
                            "event": STR,
                            "listeners": {"type": "integer"},
                            "delivered": {"type": "integer"},
                            "failed": {"type": "array", "items": OBJ},
                        },
                    ),
                    "400": err("INVALID_JSON"),
                },
            }
        },
    }


def script_route_paths() -> dict[str, Any]:
    """/script-api/{path}: every method of a route a script registered."""
    return {
        "/script-api/{path}": {
            m: {
                "summary": "A route a running script registered",
                "parameters": PATH_PARAM,
                "responses": {
                    "200": {"description": "the handler's return value as JSON, or its Response"},
                    "404": err("ROUTE_NOT_FOUND"),
                    "405": err("METHOD_NOT_ALLOWED"),
                    "429": err("RATE_LIMITED"),
                    "500": err("HANDLER_ERROR", "RESULT_NOT_SERIALIZABLE"),
                    "502": err("KERNEL_DIED"),
                    "503": err("SCRIPT_STOPPING"),
                    "504": err("CALL_TIMEOUT"),
                },
            }
            for m in ("get", "post", "put", "delete", "patch", "head", "options")
        },
    }


def script_websocket_paths() -> dict[str, Any]:
    """/script-ws/{path}: a WebSocket route a script registered."""
    return {
        "/script-ws/{path}": {
            "get": {
                "summary": "WebSocket: a route a running script registered with VWED.api.register_websocket",
                "parameters": PATH_PARAM,
                "responses": {
                    "101": {"description": "switching protocols"},
                    "404": err("ROUTE_NOT_FOUND"),
                    "401": err("UNAUTHORIZED"),
                },
            }
        },
    }
