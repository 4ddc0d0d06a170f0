"""OpenAPI path of the VWED modules a kernel gets (issue 20): built-ins and module
plugins, and the gateway's service plugins; admin token only."""

from __future__ import annotations

from typing import Any

from .schema import STR, err, ok

__all__ = ["modules_paths"]

NULL_STR = {"type": ["string", "null"]}
MODULE = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "VWED.<name>"},
        "kind": {"enum": ["builtin", "plugin"]},
        "distribution": STR,
        "version": STR,
        "entry_point": {**NULL_STR, "description": "'package.module:Class' (null: built in)"},
        "loads": {"type": "boolean"},
        "error": {**NULL_STR, "description": "why it does not load (null: it loads)"},
    },
}
SERVICE = {
    "type": "object",
    "properties": {
        "name": STR,
        "distribution": STR,
        "version": STR,
        "entry_point": STR,
        "loads": {"type": "boolean"},
        "services": {
            "type": "array",
            "items": STR,
            "description": "'<plugin>:<service>' names kernels ask for",
        },
        "error": NULL_STR,
    },
}


def modules_paths() -> dict[str, Any]:
    """/script-engine/modules."""
    return {
        "/script-engine/modules": {
            "get": {
                "summary": "The VWED modules a kernel gets (built-ins and plugins of the "
                "entry-point group vwed.modules, asked of the kernel's own interpreter), "
                "and the gateway's service plugins (vwed.services)",
                "parameters": [
                    {
                        "name": "script_path",
                        "in": "query",
                        "required": False,
                        "schema": STR,
                        "description": "with that script's own package environment",
                    }
                ],
                "responses": {
                    "200": ok(
                        "the modules",
                        {
                            "kernel_name": STR,
                            "python": STR,
                            "python_version": NULL_STR,
                            "note": {"type": "string", "description": "what the list reflects"},
                            "script_path": STR,
                            "count": {"type": "integer"},
                            "modules": {"type": "array", "items": MODULE},
                            "services": {"type": "array", "items": SERVICE},
                        },
                    ),
                    "400": err("BAD_PARAMETER"),
                    "404": err("SCRIPT_NOT_FOUND"),
                    "422": err("DEPENDENCY_INVALID"),
                    "503": err("MODULES_UNAVAILABLE"),
                    "504": err("MODULES_TIMEOUT"),
                },
            }
        }
    }
