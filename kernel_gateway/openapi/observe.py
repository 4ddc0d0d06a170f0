"""OpenAPI paths of what the console shows of a running gateway: the calls history,
the sampled series, and which role a token has."""

from __future__ import annotations

from typing import Any

from .schema import STR, err, ok

__all__ = ["observe_paths"]

NUMS = {"type": "array", "items": {"type": "number"}}
NUMS_OR_NULL = {"type": "array", "items": {"type": ["number", "null"]}}
NULLABLE_STR = {"type": ["string", "null"]}

CALL = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "ts": {"type": "number", "description": "when it ended, epoch seconds"},
        "script_id": STR,
        "script_path": NULLABLE_STR,
        "kind": {"enum": ["api", "function", "ws"]},
        "name": {
            "type": "string",
            "description": "route key (METHOD path), function name or ws path",
        },
        "ok": {"type": "boolean"},
        "duration_ms": {"type": "number"},
        "error_type": {"type": ["string", "null"], "description": "the error's machine code"},
        "error_message": {"type": ["string", "null"], "description": "at most 500 characters"},
        "call_id": NULLABLE_STR,
        "task_id": NULLABLE_STR,
    },
}

_CALL_FILTERS = [
    {"name": n, "in": "query", "schema": s, "description": d}
    for n, s, d in (
        ("script_path", STR, "every run of a script"),
        ("script_id", STR, "one run (the id start returned)"),
        ("kind", {"enum": ["api", "function", "ws"]}, "route, function or WebSocket message"),
        ("name", STR, "exact name: 'GET /orders/{id}', a function name, a ws path"),
        ("ok", {"enum": ["true", "false"]}, "only calls that succeeded, or failed"),
        ("error_type", STR, "the error's machine code, e.g. HANDLER_ERROR"),
        ("call_id", STR, "one call"),
        ("task_id", STR, "the calls of one task"),
        ("since", STR, "ISO 8601 or epoch seconds (inclusive)"),
        ("until", STR, "ISO 8601 or epoch seconds (exclusive)"),
    )
] + [
    {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
    },
    {
        "name": "cursor",
        "in": "query",
        "schema": {"type": "integer"},
        "description": "next_cursor of the previous page: calls with a smaller id",
    },
]


def observe_paths() -> dict[str, Any]:
    """/script-engine/calls, /stats and /whoami."""
    return {
        "/script-engine/calls": {
            "get": {
                "summary": "Calls served by scripts (routes, functions, WebSocket messages), "
                "newest first, cursor paging; admin token only",
                "parameters": _CALL_FILTERS,
                "responses": {
                    "200": ok(
                        "a page",
                        {
                            "calls": {"type": "array", "items": CALL},
                            "next_cursor": {"type": ["integer", "null"]},
                        },
                    ),
                    "400": err("BAD_PARAMETER"),
                    "503": err("NO_DATABASE", "STORE_TIMEOUT", "STORE_UNAVAILABLE"),
                },
            }
        },
        "/script-engine/stats": {
            "get": {
                "summary": "Series sampled every --stats-interval seconds, the last hour at most: "
                "per script calls per second, errors and p50/p99 latency (null without calls); "
                "per kernel ('<script_path>#<replica>') CPU % and RSS",
                "parameters": [
                    {"name": "script_path", "in": "query", "schema": STR},
                    {
                        "name": "minutes",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 60, "default": 60},
                    },
                ],
                "responses": {
                    "200": ok(
                        "the series",
                        {
                            "interval_s": {"type": "number"},
                            "scripts": {
                                "type": "object",
                                "additionalProperties": {
                                    "type": "object",
                                    "properties": {
                                        "t": NUMS,
                                        "calls_per_s": NUMS,
                                        "errors": {"type": "array", "items": {"type": "integer"}},
                                        "p50_ms": NUMS_OR_NULL,
                                        "p99_ms": NUMS_OR_NULL,
                                    },
                                },
                            },
                            "kernels": {
                                "type": "object",
                                "additionalProperties": {
                                    "type": "object",
                                    "properties": {
                                        "t": NUMS,
                                        "cpu_percent": NUMS_OR_NULL,
                                        "rss_mb": NUMS_OR_NULL,
                                    },
                                },
                            },
                        },
                    ),
                    "400": err("BAD_PARAMETER"),
                },
            }
        },
        "/script-engine/whoami": {
            "get": {
                "summary": "The role of the token sent (admin or caller; both accepted), "
                "the gateway's version and JupyterLab's URL (--jupyter-url)",
                "responses": {
                    "200": ok(
                        "who",
                        {
                            "role": {"enum": ["admin", "caller"]},
                            "version": STR,
                            "jupyter_url": NULLABLE_STR,
                        },
                    )
                },
            }
        },
    }
