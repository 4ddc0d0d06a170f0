"""OpenAPI paths of the script files: the tree, read, write, create, move, delete, export
(every write a commit: ``versions.py``)."""

from __future__ import annotations

from typing import Any

from .schema import OBJ, PATH_PARAM, STR, body, err, ok
from .versions import COMMITTED, REVISION, WRITE_HEADERS

__all__ = ["files_paths"]

ETAG = {**STR, "description": "sha256 of the file's bytes, first 16 hex characters"}


def files_paths() -> dict[str, Any]:
    """/script-engine/files, files/{path}/export and files/{path}."""
    return {
        "/script-engine/files": {
            "get": {
                "summary": "The tree of script files ('uncommitted': changed on disk since "
                "the last commit)",
                "responses": {"200": ok("the tree", {"tree": OBJ})},
            }
        },
        "/script-engine/files/{path}/export": {
            "post": {
                "summary": "A notebook as a .py script (skip-tagged cells left out), or a .py as a notebook",
                "parameters": [*PATH_PARAM, *WRITE_HEADERS],
                "requestBody": body({"overwrite": {"type": "boolean"}, "message": STR}),
                "responses": {
                    "201": ok("written", {"path": STR, "from": STR, **COMMITTED}),
                    "404": err("FILE_NOT_FOUND"),
                    "409": err("EXISTS"),
                },
            }
        },
        "/script-engine/files/{path}": {
            "parameters": PATH_PARAM,
            "get": {
                "summary": "Read a file (or list a directory); a file's etag also in ETag; "
                "?revision=R: the file as it was at that revision",
                "parameters": [{"name": "revision", "in": "query", "schema": STR}],
                "responses": {
                    "200": ok("content", {"content": STR, "etag": ETAG, "revision": REVISION}),
                    "400": err("PATH_INVALID", "FILE_TYPE_NOT_ALLOWED", "BAD_PARAMETER"),
                    "404": err("FILE_NOT_FOUND", "REVISION_NOT_FOUND"),
                },
            },
            "put": {
                "summary": "Write a file (create or overwrite); with If-Match, only if "
                "the file still has that etag",
                "parameters": [
                    {
                        "name": "If-Match",
                        "in": "header",
                        "schema": STR,
                        "description": 'the etag the file was read with, quoted ("<etag>")',
                    },
                    *WRITE_HEADERS,
                ],
                "requestBody": body({"content": STR, "message": STR}, ["content"]),
                "responses": {
                    "200": ok("written", {"etag": ETAG, **COMMITTED}),
                    "400": err("PATH_INVALID", "NOTEBOOK_INVALID"),
                    "409": err("FILE_CHANGED (details: etag, the current one or null)"),
                    "413": err("FILE_TOO_LARGE"),
                },
            },
            "post": {
                "summary": "Create a file from the template (or with content), or a directory",
                "parameters": WRITE_HEADERS,
                "requestBody": body(
                    {
                        "type": {"enum": ["file", "directory"]},
                        "template": {"type": "boolean"},
                        "content": STR,
                        "message": STR,
                    }
                ),
                "responses": {
                    "201": ok("created", {"etag": ETAG, **COMMITTED}),
                    "409": err("EXISTS"),
                },
            },
            "patch": {
                "summary": "Rename or move",
                "parameters": WRITE_HEADERS,
                "requestBody": body({"new_path": STR, "message": STR}, ["new_path"]),
                "responses": {
                    "200": ok("moved", COMMITTED),
                    "404": err("PATH_NOT_FOUND"),
                    "409": err("EXISTS"),
                },
            },
            "delete": {
                "summary": "Delete a file, or a directory (recursive=true if not empty)",
                "parameters": [
                    {"name": "recursive", "in": "query", "schema": {"type": "boolean"}},
                    *WRITE_HEADERS,
                ],
                "responses": {"200": ok("deleted", COMMITTED), "409": err("DIRECTORY_NOT_EMPTY")},
            },
        },
    }
