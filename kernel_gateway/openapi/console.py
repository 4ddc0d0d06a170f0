"""OpenAPI paths of the operator's web console: its page and its static files."""

from __future__ import annotations

from typing import Any

__all__ = ["console_paths"]


def console_paths() -> dict[str, Any]:
    """``/`` and ``/console/{file}``: static files, no token (they hold no data)."""
    return {
        "/": {
            "get": {
                "summary": "The operator's web console (docs/console.md): an HTML page; "
                "no token needed (the page asks for one and sends it to the API)",
                "responses": {"200": {"description": "text/html"}},
                "security": [],
            },
            "head": {
                "summary": "The page's headers (ETag for revalidation)",
                "responses": {"200": {"description": "headers only"}},
                "security": [],
            },
        },
        "/console/{file}": {
            "get": {
                "summary": "A static file of the console (scripts, styles, vendored libraries); "
                "Cache-Control: no-cache with an ETag; 404 FILE_NOT_FOUND outside the folder",
                "parameters": [
                    {"name": "file", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {"200": {"description": "the file"}},
                "security": [],
            },
            "head": {
                "summary": "A console file's headers (ETag for revalidation)",
                "parameters": [
                    {"name": "file", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {"200": {"description": "headers only"}},
                "security": [],
            },
        },
    }
