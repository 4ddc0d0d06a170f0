"""OpenAPI paths of a script file's versions: history, diff, restore; pulling the
scripts repository's remote (docs/versions.md)."""

from __future__ import annotations

from typing import Any

from .schema import PATH_PARAM, STR, body, err, ok

__all__ = ["versions_paths", "WRITE_HEADERS", "REVISION"]

REVISION = {**STR, "description": "a commit of the scripts repository, 40 hex digits"}
WRITE_HEADERS = [
    {
        "name": "X-VWED-Author",
        "in": "header",
        "schema": STR,
        "description": "the writer's name; the commit's author is '<name> (admin)'",
    },
    {
        "name": "X-VWED-Message",
        "in": "header",
        "schema": STR,
        "description": "the commit's message (the body's 'message' wins; else generated)",
    },
]
COMMITTED = {
    "revision": REVISION,
    "committed": {"type": "boolean", "description": "false: the content did not change"},
}
ENTRY = {
    "type": "object",
    "properties": {
        "revision": REVISION,
        "time": {"type": "integer", "description": "epoch seconds"},
        "author": STR,
        "message": STR,
    },
}


def versions_paths() -> dict[str, Any]:
    """files/pull, files/{path}/history, files/{path}/diff, files/{path}/restore."""
    return {
        "/script-engine/files/pull": {
            "post": {
                "summary": "Fetch --scripts-remote and fast-forward the scripts repository",
                "responses": {
                    "200": ok(
                        "pulled, up to date, or ahead",
                        {
                            "revision": REVISION,
                            "previous": REVISION,
                            "changed": {"type": "array", "items": STR},
                            "action": {"enum": ["pulled", "up to date", "ahead"]},
                        },
                    ),
                    "409": err("DIVERGED", "NO_REMOTE"),
                    "502": err("REMOTE_FAILED"),
                },
            }
        },
        "/script-engine/files/{path}/history": {
            "get": {
                "summary": "The commits that touched a file, newest first",
                "parameters": [
                    *PATH_PARAM,
                    {"name": "limit", "in": "query", "schema": {"type": "integer"}},
                ],
                "responses": {
                    "200": ok(
                        "history", {"path": STR, "history": {"type": "array", "items": ENTRY}}
                    ),
                    "400": err("PATH_INVALID", "FILE_TYPE_NOT_ALLOWED", "BAD_PARAMETER"),
                },
            }
        },
        "/script-engine/files/{path}/diff": {
            "get": {
                "summary": "The unified diff of a file between two revisions",
                "parameters": [
                    *PATH_PARAM,
                    {"name": "from", "in": "query", "required": True, "schema": STR},
                    {
                        "name": "to",
                        "in": "query",
                        "schema": STR,
                        "description": "default: the latest revision",
                    },
                ],
                "responses": {
                    "200": ok("diff", {"from": REVISION, "to": REVISION, "diff": STR}),
                    "400": err("BAD_PARAMETER", "PATH_INVALID"),
                    "404": err("REVISION_NOT_FOUND"),
                },
            }
        },
        "/script-engine/files/{path}/restore": {
            "post": {
                "summary": "Write a file's content at a revision back, as a new commit",
                "parameters": [*PATH_PARAM, *WRITE_HEADERS],
                "requestBody": body({"revision": STR, "message": STR}, ["revision"]),
                "responses": {
                    "200": ok("restored", {**COMMITTED, "restored_from": REVISION}),
                    "400": err("BAD_PARAMETER", "MISSING_FIELD"),
                    "404": err("REVISION_NOT_FOUND", "FILE_NOT_FOUND"),
                    "409": err("FILE_CHANGED"),
                },
            }
        },
    }
