"""OpenAPI paths of secrets: set, list (never values), delete; admin token only."""

from __future__ import annotations

from typing import Any

from .schema import STR, body, err, ok

__all__ = ["secrets_paths"]

SCOPE = {
    "type": ["array", "null"],
    "items": STR,
    "description": "script paths and folders (ending '/') that may read it; null: every script",
}
NAME = [
    {
        "name": "name",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,128}$"},
    }
]
SECRET_PROPS: dict[str, Any] = {
    "name": STR,
    "scripts": SCOPE,
    "set_by": {"type": "string", "description": "'<X-VWED-Author> (admin)' or 'admin'"},
    "set_at": {"type": "number", "description": "epoch seconds"},
    "readable": {
        "type": "boolean",
        "description": "false: the gateway's key does not decrypt it (set with another key)",
    },
}
SECRET = {"type": "object", "properties": SECRET_PROPS}


def secrets_paths() -> dict[str, Any]:
    """/script-engine/secrets and /script-engine/secrets/{name}."""
    return {
        "/script-engine/secrets": {
            "get": {
                "summary": "Every secret: name, scope, who set it and when; never a value",
                "responses": {
                    "200": ok("the secrets", {"secrets": {"type": "array", "items": SECRET}})
                },
            }
        },
        "/script-engine/secrets/{name}": {
            "put": {
                "summary": "Set or replace a secret (encrypted at rest); scripts read it with "
                "VWED.secrets.get(name); X-VWED-Author names who sets it",
                "parameters": NAME,
                "requestBody": body(
                    {
                        "value": {"type": "string", "description": "at most 64 KiB (UTF-8)"},
                        "scripts": SCOPE,
                    },
                    ["value"],
                ),
                "responses": {
                    "200": ok("replaced", {**SECRET_PROPS, "created": {"const": False}}),
                    "201": ok("created", {**SECRET_PROPS, "created": {"const": True}}),
                    "400": err("BAD_SECRET_NAME", "BAD_REQUEST", "MISSING_FIELD", "INVALID_JSON"),
                    "413": err("SECRET_TOO_LARGE"),
                },
            },
            "delete": {
                "summary": "Delete a secret",
                "parameters": NAME,
                "responses": {
                    "200": ok("deleted", {"name": STR, "deleted": {"const": True}}),
                    "400": err("BAD_SECRET_NAME"),
                    "404": err("SECRET_NOT_FOUND"),
                },
            },
        },
    }
