"""OpenAPI paths of task-flow steps: execute a function of a script file in a worker
kernel, the recorded executions, cancelling one, and a task's variables."""

from __future__ import annotations

from typing import Any

from .schema import OBJ, STR, body, err, ok, path_param

__all__ = ["steps_paths"]


def steps_paths() -> dict[str, Any]:
    """/script-engine/execute, executions, executions/{id}/cancel, tasks/{id}/variables."""
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
                    },
                    ["script_path"],
                ),
                "responses": {
                    "200": ok(
                        "done",
                        {
                            "result": {},
                            "variables": OBJ,
                            "stdout": STR,
                            "stderr": STR,
                            "duration_ms": {"type": "number"},
                            "execution_id": STR,
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
                    ),
                    "404": err("SCRIPT_NOT_FOUND", "FUNCTION_NOT_FOUND"),
                    "409": err("CANCELLED", "DEPENDENCIES_NOT_READY"),
                    "422": err(
                        "STEP_FAILED",
                        "DEPENDENCY_INVALID",
                        "DEPENDENCY_CONFLICT",
                        "DEPENDENCY_FAILED",
                    ),
                    "500": err("RESULT_NOT_SERIALIZABLE"),
                    "502": err("KERNEL_DIED"),
                    "503": err("BUSY", "STORE_FAILED", "STORE_TIMEOUT", "KERNEL_START_FAILED"),
                    "504": err("CALL_TIMEOUT"),
                },
            }
        },
        "/script-engine/executions": {
            "get": {
                "summary": "Recorded executions (newest first) and the ids of running ones",
                "parameters": [{"name": "task_id", "in": "query", "schema": STR}],
                "responses": {
                    "200": ok(
                        "executions",
                        {"executions": {"type": "array"}, "running": {"type": "array"}},
                    )
                },
            }
        },
        "/script-engine/executions/{execution_id}/cancel": {
            "post": {
                "summary": "Interrupt a running step (it answers 409 CANCELLED)",
                "parameters": path_param("execution_id"),
                "responses": {"200": ok("cancelled"), "404": err("EXECUTION_NOT_FOUND")},
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
