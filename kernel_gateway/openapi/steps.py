"""OpenAPI paths of task-flow steps: execute a function of a script file in a worker
kernel (synchronously or asynchronously), and a task's variables."""

from __future__ import annotations

from typing import Any

from .schema import OBJ, STR, body, err, ok, path_param

__all__ = ["steps_paths"]


def steps_paths() -> dict[str, Any]:
    """/script-engine/execute, execute/ws, tasks/{id}/variables (executions: executions.py)."""
    return {**_steps_http_paths(), **execute_ws_paths()}


def _steps_http_paths() -> dict[str, Any]:
    return {
        "/script-engine/execute": {
            "post": {
                "summary": "A task-flow step: run a function of a script file (or the file) in a worker kernel",
                "requestBody": body(
                    {
                        "script_path": STR,
                        "function_name": STR,
                        "args": {"description": "bound like function calls"},
                        "mode": {"enum": ["SCRIPT", "SET_TASK_VARIABLES", "RUN"]},
                        "task_id": STR,
                        "timeout": {"type": "number"},
                        "retry": {
                            "type": "object",
                            "description": "attempts (1-20), backoff (constant|exponential), "
                            "initial_s, max_s, on (exception type names)",
                        },
                        "async": {
                            "type": "boolean",
                            "description": "answer 202 once stored and queued",
                        },
                        "idempotency_key": {
                            "type": "string",
                            "description": "async: a key used before answers its execution",
                        },
                        "at_most_once": {
                            "type": "boolean",
                            "description": "async: not run again after a gateway died",
                        },
                    },
                    ["script_path"],
                ),
                "responses": {
                    "202": ok(
                        "async: stored and queued (Location: its record)",
                        {
                            "execution_id": STR,
                            "status_url": STR,
                            "status": STR,
                            "duplicate": {"type": "boolean"},
                        },
                    ),
                    "200": ok(
                        "done",
                        {
                            "result": {},
                            "variables": OBJ,
                            "stdout": STR,
                            "stderr": STR,
                            "duration_ms": {"type": "number"},
                            "execution_id": STR,
                            "worker": STR,
                            "usage": OBJ,
                            "attempts": {"type": "array", "description": "with retry"},
                            "environment": {
                                "type": ["string", "null"],
                                "description": "the lock of the environment the step ran in "
                                "(the file declares packages), else null (the plain workers)",
                            },
                        },
                    ),
                    "400": err(
                        "INVALID_JSON",
                        "MISSING_FIELD",
                        "BAD_REQUEST",
                        "BAD_ARGUMENTS",
                        "PATH_INVALID",
                        "BAD_PARAMETER",
                        "UNKNOWN_FIELD",
                    ),
                    "404": err("SCRIPT_NOT_FOUND", "FUNCTION_NOT_FOUND"),
                    "409": err("CANCELLED", "DEPENDENCIES_NOT_READY", "IDEMPOTENCY_KEY_REUSED"),
                    "429": err("RATE_LIMITED"),
                    "422": err(
                        "STEP_FAILED",
                        "DEPENDENCY_INVALID",
                        "DEPENDENCY_CONFLICT",
                        "DEPENDENCY_FAILED",
                    ),
                    "500": err("RESULT_NOT_SERIALIZABLE"),
                    "502": err("KERNEL_DIED"),
                    "503": err(
                        "BUSY",
                        "STORE_FAILED",
                        "STORE_TIMEOUT",
                        "KERNEL_START_FAILED",
                        "NO_DATABASE",
                        "STOPPING",
                    ),
                    "504": err("CALL_TIMEOUT"),
                },
            }
        },
        "/script-engine/tasks/{task_id}/variables": {
            "get": {
                "summary": "A task's variables, as merged by its steps",
                "parameters": path_param("task_id"),
                "responses": {
                    "200": ok("variables", {"variables": OBJ}),
                    "404": err("TASK_NOT_FOUND"),
                    "503": err("STORE_TIMEOUT", "STORE_UNAVAILABLE"),
                },
            }
        },
    }


# -- /script-engine/execute/ws (steps over one WebSocket; docs/executions.md) ---------------
def execute_ws_paths() -> dict[str, Any]:
    """Both protocols of the endpoint, described in its summary and description (OpenAPI
    has no schema for WebSocket messages)."""
    return {
        "/script-engine/execute/ws": {
            "get": {
                "summary": "WebSocket: task-flow steps over one connection, several in flight "
                "(caller token), and the protocol of the WebSocket script server it replaces",
                "description": (
                    "Multiplexed: send the body of POST /script-engine/execute with an "
                    '"id" (string or number, at most 128 characters); at most 64 in flight '
                    "per connection (more: BUSY). Everything sent for it carries the id: "
                    'synchronous: {"type": "started", "execution_id", "worker"}, "progress" '
                    'and "output" events, then {"type": "result", ...the 200 answer} or '
                    '{"type": "error", "status", "code", "error", ...details}; with "async": '
                    'true: {"type": "accepted", ...the 202 answer}, the execution events '
                    '("state", "status", "attempt", "progress", "output", "retry"), then '
                    '{"type": "end", "execution"}. {"id", "cancel": true} cancels a step in '
                    'flight (answered {"type": "cancelling"}). Closing the connection cancels '
                    "its synchronous steps; asynchronous ones go on. Legacy: a message "
                    'without "id", {"script_path": "job.py"} (relative to the scripts root, '
                    "or an absolute path inside it), runs the file in RUN mode, one request "
                    'at a time, answered {"status": "success", "result"} or {"status": '
                    '"error", "message"}.'
                ),
                "parameters": [
                    {
                        "name": "token",
                        "in": "query",
                        "schema": STR,
                        "description": "the token, for clients that cannot send headers",
                    }
                ],
                "responses": {
                    "101": {"description": "switching protocols"},
                    "400": err("WEBSOCKET_REQUIRED"),
                    "401": err("UNAUTHORIZED"),
                },
            }
        },
    }
