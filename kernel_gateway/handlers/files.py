"""``/script-engine/files[/{path}]``: the script file store over HTTP."""

from __future__ import annotations

from ..errors import BadRequest, Conflict
from ..scripts import ScriptStore
from .base import JSONHandler

__all__ = ["FilesHandler", "FilesTreeHandler", "FilesExportHandler", "if_match"]


def if_match(header: str | None) -> str | None:
    """The etag of an ``If-Match`` header, unquoted (``*`` kept); ``None`` if absent."""
    if header is None or not header.strip():
        return None
    value = header.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"')


class FilesExportHandler(JSONHandler):
    """POST: a notebook as a ``.py`` script, or a script as a notebook (``{"overwrite"}``)."""

    store: ScriptStore

    def post(self, path: str) -> None:
        body = self.json_body(required=False)
        self.send_json(self.store.export(path, bool(body.get("overwrite"))), status=201)


class FilesTreeHandler(JSONHandler):
    """GET the whole tree of script files."""

    store: ScriptStore

    def get(self) -> None:
        self.send_json({"tree": self.store.tree()})


class FilesHandler(JSONHandler):
    """GET tree or file; PUT write; POST create (file from template, or directory);
    PATCH rename/move; DELETE (``?recursive=true`` for a non-empty directory)."""

    store: ScriptStore

    def get(self, path: str) -> None:
        found = self.store.read(path)
        if "etag" in found:
            self.set_header("ETag", f'"{found["etag"]}"')
        self.send_json(found)

    def put(self, path: str) -> None:
        body = self.json_body()
        expected = if_match(self.request.headers.get("If-Match"))
        written = self.store.write(path, body.get("content"), expected)
        self.set_header("ETag", f'"{written["etag"]}"')
        self.send_json(written)

    def post(self, path: str) -> None:
        body = self.json_body(required=False)
        kind = body.get("type", "file")
        if "content" in body:
            if kind != "file":
                raise BadRequest("'content' is only for files", "BAD_REQUEST")
            if self.store.resolve(path).exists():
                raise Conflict(f"{path!r} already exists", "EXISTS")
            self.send_json(self.store.write(path, body["content"]), status=201)
            return
        self.send_json(self.store.create(path, kind, bool(body.get("template", True))), status=201)

    def patch(self, path: str) -> None:
        body = self.json_body()
        new_path = body.get("new_path")
        if not isinstance(new_path, str):
            raise BadRequest("'new_path' is required", "MISSING_FIELD")
        self.send_json(self.store.rename(path, new_path))

    def delete(self, path: str) -> None:
        recursive = self.get_query_argument("recursive", "false").lower() in ("1", "true", "yes")
        self.send_json(self.store.delete(path, recursive))
