"""``/script-engine/files[/{path}]``: the script file store over HTTP."""

from __future__ import annotations

from ..errors import BadRequest, Conflict
from ..scripts import ScriptStore
from .base import JSONHandler

__all__ = ["FilesHandler", "FilesTreeHandler", "FilesExportHandler"]


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
        self.send_json(self.store.read(path))

    def put(self, path: str) -> None:
        body = self.json_body()
        self.send_json(self.store.write(path, body.get("content")))

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
