"""OpenAPI paths of the history: script runs, log records (paged, exported, live)."""

from __future__ import annotations

from typing import Any

from .schema import OBJ, STR, err, ok

__all__ = ["logs_paths"]

_LOG_PARAMS = [
    {"name": n, "in": "query", "schema": STR, "description": d}
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


def logs_paths() -> dict[str, Any]:
    """/script-engine/runs, logs, logs/export and logs/ws."""
    return {
        "/script-engine/runs": {
            "get": {
                "summary": "Script runs, newest first (start, stop, status, exit reason)",
                "parameters": [
                    {"name": "script_path", "in": "query", "schema": STR},
                    {"name": "limit", "in": "query", "schema": {"type": "integer"}},
                ],
                "responses": {"200": ok("runs", {"runs": {"type": "array", "items": OBJ}})},
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
                    "200": ok(
                        "a page",
                        {
                            "records": {
                                "type": "array",
                                "items": {"$ref": "#/components/schemas/LogRecord"},
                            },
                            "next_cursor": {"type": ["integer", "null"]},
                        },
                    ),
                    "400": err("BAD_PARAMETER"),
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
                    "400": err("BAD_PARAMETER"),
                },
            }
        },
        "/script-engine/logs/ws": {
            "get": {
                "summary": 'WebSocket: live records as JSON ({"type": "record", ...}) after a replay '
                "of the last `tail`; a slow reader gets a SLOW_CONSUMER notice and close 4008",
                "parameters": [
                    {"name": n, "in": "query", "schema": STR} for n in ("script_id", "level", "tag")
                ]
                + [
                    {
                        "name": "tail",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 0, "maximum": 1000},
                    },
                    {"name": "token", "in": "query", "schema": STR},
                ],
                "responses": {
                    "101": {"description": "switching protocols"},
                    "400": err("BAD_PARAMETER"),
                    "401": err("UNAUTHORIZED"),
                },
            }
        },
    }
