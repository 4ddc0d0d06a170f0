"""OpenAPI path of the code check: findings for a script file or a text."""

from __future__ import annotations

from typing import Any

from .schema import STR, body, err, ok

__all__ = ["check_paths", "FINDING"]

INT = {"type": "integer"}
FINDING = {
    "type": "object",
    "required": ["line", "column", "severity", "code", "message"],
    "properties": {
        "line": INT,
        "column": INT,
        "end_line": INT,
        "end_column": INT,
        "cell": {**INT, "description": "a notebook's cell: its index in the notebook's cells"},
        "severity": {"enum": ["error", "warning"]},
        "code": {
            **STR,
            "description": "SYNTAX_ERROR, UNDEFINED_NAME, UNUSED_IMPORT, NO_BOOT, "
            "ROUTE_TAKEN, FUNCTION_TAKEN, PYFLAKES_<MESSAGE>",
        },
        "message": STR,
    },
}


def check_paths() -> dict[str, Any]:
    """/script-engine/check."""
    return {
        "/script-engine/check": {
            "post": {
                "summary": "Check a script's code: syntax, pyflakes, boot(), routes and "
                "functions another running script owns",
                "requestBody": body(
                    {
                        "script_path": STR,
                        "content": STR,
                        "notebook": {"type": "boolean"},
                    }
                ),
                "responses": {
                    "200": ok(
                        "the findings (ok: no finding of severity error)",
                        {
                            "ok": {"type": "boolean"},
                            "findings": {"type": "array", "items": FINDING},
                            "duration_ms": {"type": "number"},
                        },
                    ),
                    "400": err("MISSING_FIELD", "BAD_REQUEST", "PATH_INVALID", "NOTEBOOK_INVALID"),
                    "404": err("SCRIPT_NOT_FOUND"),
                    "413": err("FILE_TOO_LARGE"),
                },
            }
        }
    }
