"""OpenAPI paths of executions: the list (admin), and one execution's record, long poll,
cancel and event stream (the caller token is enough)."""

from __future__ import annotations

from typing import Any

from .schema import OBJ, STR, err, ok, path_param

__all__ = ["executions_paths", "EXECUTION"]

NUM = {"type": ["number", "null"]}
EXECUTION: dict[str, Any] = {
    "execution_id": STR,
    "async": {"type": "boolean", "description": "submitted with async: true"},
    "status": {"enum": ["queued", "running", "succeeded", "failed", "cancelled", "timed_out"]},
    "status_url": STR,
    "script_path": STR,
    "function_name": {"type": ["string", "null"]},
    "mode": STR,
    "task_id": {"type": ["string", "null"]},
    "submitted_at": NUM,
    "started_at": NUM,
    "finished_at": NUM,
    "duration_ms": NUM,
    "progress": {
        "type": ["object", "null"],
        "description": "the last VWED.progress: fraction, done, total, message, updated_at",
    },
    "result": {},
    "variables": {"type": ["object", "null"]},
    "error": {"type": ["object", "null"], "description": "code, message, details"},
    "reason": {
        "type": ["string", "null"],
        "description": "why it ended as it did when the step did not say: 'gateway died', "
        "'gateway stopped', 'cancelled'",
    },
    "stdout_tail": STR,
    "stderr_tail": STR,
    "attempts": {"type": "array", "items": OBJ},
    "worker": {"type": ["string", "null"], "description": "the worker kernel's id"},
    "usage": {
        "type": "object",
        "description": "cpu_ms and peak_rss_bytes of the worker during the step (null where "
        "they cannot be measured)",
    },
    "retry": {"type": ["object", "null"]},
    "at_most_once": {"type": "boolean"},
    "idempotency_key": {"type": ["string", "null"]},
}


def executions_paths() -> dict[str, Any]:
    """/script-engine/executions, executions/{id}, /wait, /cancel, /ws."""
    one = path_param("execution_id")
    return {
        "/script-engine/executions": {
            "get": {
                "summary": "Recent executions (admin): the steps history (every step and attempt, "
                "with worker, CPU time and peak memory), the running synchronous steps, and the "
                "asynchronous executions",
                "parameters": [
                    {"name": n, "in": "query", "schema": STR}
                    for n in ("task_id", "status", "script_path")
                ]
                + [{"name": "limit", "in": "query", "schema": {"type": "integer"}}],
                "responses": {
                    "200": ok(
                        "executions",
                        {
                            "executions": {"type": "array"},
                            "running": {"type": "array"},
                            "async": {"type": "array"},
                            "queue": OBJ,
                        },
                    ),
                    "400": err("BAD_PARAMETER"),
                },
            }
        },
        "/script-engine/executions/{execution_id}": {
            "get": {
                "summary": "An execution's record: an asynchronous one, or a synchronous step "
                "(running, or from the history)",
                "parameters": one,
                "responses": {
                    "200": ok("the record", EXECUTION),
                    "404": err("EXECUTION_NOT_FOUND"),
                },
            }
        },
        "/script-engine/executions/{execution_id}/wait": {
            "get": {
                "summary": "Long poll: the record once the execution ended, or after `timeout` "
                "seconds (default 30, at most 300) with the status it has then",
                "parameters": one
                + [{"name": "timeout", "in": "query", "schema": {"type": "number"}}],
                "responses": {
                    "200": ok("the record", EXECUTION),
                    "400": err("BAD_PARAMETER"),
                    "404": err("EXECUTION_NOT_FOUND"),
                },
            }
        },
        "/script-engine/executions/{execution_id}/cancel": {
            "post": {
                "summary": "Cancel: a queued execution leaves the queue, a running one's worker is "
                "interrupted, one waiting between attempts stops; a synchronous step answers 409 "
                "CANCELLED",
                "parameters": one,
                "responses": {
                    "200": ok("cancelled (the record, with cancelled: true)"),
                    "404": err("EXECUTION_NOT_FOUND"),
                    "409": err("EXECUTION_FINISHED"),
                },
            }
        },
        "/script-engine/executions/{execution_id}/ws": {
            "get": {
                "summary": "WebSocket: the execution's events as JSON: state first, then status, "
                "attempt, progress, output, retry, and end (the whole record; then close 1000)",
                "parameters": one + [{"name": "token", "in": "query", "schema": STR}],
                "responses": {
                    "101": {"description": "switching protocols"},
                    "401": err("UNAUTHORIZED"),
                    "404": err("EXECUTION_NOT_FOUND"),
                    "409": err("NOT_ASYNC"),
                },
            }
        },
    }
