"""OpenAPI paths of the scripts' package environments (issue 16): the list, prefetch,
and a script's declared dependencies."""

from __future__ import annotations

from typing import Any

from .schema import OBJ, STR, body, err, ok

__all__ = ["environments_paths", "ENVIRONMENT"]

PACKAGES = {
    "type": "array",
    "items": {"type": "array", "items": STR, "description": "[name, version]"},
}
ENVIRONMENT = {
    "type": ["object", "null"],
    "description": "the packages the script adds to the engine's (null: none)",
    "properties": {"lock": STR, "packages": PACKAGES},
}
DECLARATION = {
    "type": ["object", "null"],
    "properties": {
        "requirements": {"type": "array", "items": STR},
        "origin": {"enum": ["pep723", "requirements.txt", "notebook"]},
        "file": {"type": ["string", "null"]},
    },
}
DEP_ERRORS = ("DEPENDENCY_INVALID", "DEPENDENCY_CONFLICT", "DEPENDENCY_FAILED")


def environments_paths() -> dict[str, Any]:
    """/script-engine/environments, environments/prefetch and dependencies."""
    return {
        "/script-engine/environments": {
            "get": {
                "summary": "The scripts' package environments: lock, packages, size, the "
                "scripts that used them, last use, status, and the running scripts using each",
                "responses": {
                    "200": ok(
                        "the list",
                        {
                            "count": {"type": "integer"},
                            "environments": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "lock": STR,
                                        "packages": PACKAGES,
                                        "size_bytes": {"type": "integer"},
                                        "scripts": {"type": "array", "items": STR},
                                        "last_used": {"type": ["number", "null"]},
                                        "created": {"type": ["number", "null"]},
                                        "status": {"enum": ["ready", "broken"]},
                                        "running": {"type": "array", "items": STR},
                                    },
                                },
                            },
                        },
                    )
                },
            }
        },
        "/script-engine/environments/prefetch": {
            "post": {
                "summary": "Resolve and install the packages of scripts ahead of their start "
                "(e.g. before a line goes offline); 422 with every path's result if one failed",
                "requestBody": body(
                    {"script_paths": {"type": "array", "items": STR}}, ["script_paths"]
                ),
                "responses": {
                    "200": ok(
                        "all ready",
                        {
                            "results": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "script_path": STR,
                                        "ok": {"type": "boolean"},
                                        "declaration": DECLARATION,
                                        "environment": ENVIRONMENT,
                                        "error": STR,
                                        "code": STR,
                                        "details": OBJ,
                                    },
                                },
                            }
                        },
                    ),
                    "400": err("INVALID_JSON", "BAD_REQUEST"),
                    "422": err(*DEP_ERRORS, "SCRIPT_NOT_FOUND"),
                },
            }
        },
        "/script-engine/dependencies": {
            "get": {
                "summary": "What a script declares (PEP 723 block, requirements.txt beside it, "
                "a notebook's first cell), whether it is installed, and its packages if known",
                "parameters": [
                    {"name": "script_path", "in": "query", "required": True, "schema": STR}
                ],
                "responses": {
                    "200": ok(
                        "the declaration",
                        {
                            "script_path": STR,
                            "declaration": DECLARATION,
                            "ready": {"type": "boolean"},
                            "environment": ENVIRONMENT,
                        },
                    ),
                    "400": err("BAD_PARAMETER", "PATH_INVALID"),
                    "404": err("SCRIPT_NOT_FOUND"),
                    "422": err("DEPENDENCY_INVALID"),
                },
            }
        },
    }
