"""``/script-engine/files[/{path}]``: the script file store over HTTP. Every write is
a commit of the scripts repository (``repo/``), with the writer as its author and the
body's ``message`` (or ``X-VWED-Message``) as its message."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import BadRequest, Conflict
from ..repo import CommitFailed, ScriptRepo, check_revision
from ..scripts import ScriptStore, etag_of
from .base import JSONHandler

__all__ = [
    "FilesHandler",
    "FilesTreeHandler",
    "FilesExportHandler",
    "VersionedHandler",
    "if_match",
    "mark_uncommitted",
]


def if_match(header: str | None) -> str | None:
    """The etag of an ``If-Match`` header, unquoted (``*`` kept); ``None`` if absent."""
    if header is None or not header.strip():
        return None
    value = header.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"')


def mark_uncommitted(node: dict[str, Any], changed: set[str]) -> dict[str, Any]:
    """Tree nodes of files changed on disk since the last commit get ``uncommitted``."""
    if node.get("type") == "file" and node.get("path") in changed:
        node["uncommitted"] = True
    for child in node.get("children", ()):
        mark_uncommitted(child, changed)
    return node


class VersionedHandler(JSONHandler):
    """A files endpoint whose writes are commits of the scripts repository."""

    store: ScriptStore
    repo: ScriptRepo

    def message(self, body: dict[str, Any], default: str) -> str:
        given = body.get("message", self.request.headers.get("X-VWED-Message"))
        if given is not None and not isinstance(given, str):
            raise BadRequest("'message' must be a string", "BAD_REQUEST")
        return given.strip() if given and given.strip() else default

    async def committed(
        self,
        action: Callable[[], dict[str, Any]],
        paths: Callable[[dict[str, Any]], list[str]],
        message: str,
    ) -> dict[str, Any]:
        """Run the write and commit it (one lock): its answer with ``revision`` (the
        new commit; the current one when the content did not change)."""
        try:
            result, revision = await self.repo.change(action, paths, self.author(), message)
        except CommitFailed as exc:  # the write stands: say so, and that it is not a commit
            return {**exc.result, "revision": None, "committed": False, "commit_error": exc.error}
        current = revision or await self.repo.head() or None
        return {**result, "revision": current, "committed": revision is not None}


class FilesExportHandler(VersionedHandler):
    """POST: a notebook as a ``.py`` script, or a script as a notebook (``{"overwrite"}``)."""

    async def post(self, path: str) -> None:
        body = self.json_body(required=False)
        overwrite = bool(body.get("overwrite"))
        result = await self.committed(
            lambda: self.store.export(path, overwrite),
            lambda done: [str(done["path"])],
            self.message(body, f"export {path}"),
        )
        self.send_json(result, status=201)


class FilesTreeHandler(VersionedHandler):
    """GET the whole tree of script files (``uncommitted`` on files changed on disk)."""

    async def get(self) -> None:
        tree = self.store.tree()
        self.send_json({"tree": mark_uncommitted(tree, await self.repo.uncommitted())})


class FilesHandler(VersionedHandler):
    """GET tree or file (``?revision=R``: the file at that revision); PUT write; POST
    create (file from template, or directory); PATCH rename/move; DELETE
    (``?recursive=true`` for a non-empty directory)."""

    async def get(self, path: str) -> None:
        revision = self.get_query_argument("revision", None)
        if revision is not None:
            found = await self._at_revision(path, check_revision(revision))
        else:
            found = self.store.read(path)
            if found.get("type") == "directory":
                found = mark_uncommitted(found, await self.repo.uncommitted())
        if "etag" in found:
            self.set_header("ETag", f'"{found["etag"]}"')
        self.send_json(found)

    async def _at_revision(self, path: str, revision: str) -> dict[str, Any]:
        rel = self.store.script_rel(path)
        full = await self.repo.resolve(revision)
        data = (await self.repo.source_at(rel, full)).encode("utf-8")
        return {
            "path": rel,
            "type": "file",
            "content": data.decode("utf-8"),
            "size": len(data),
            "etag": etag_of(data),
            "revision": full,
        }

    async def put(self, path: str) -> None:
        body = self.json_body()
        expected = if_match(self.request.headers.get("If-Match"))
        written = await self.committed(
            lambda: self.store.write(path, body.get("content"), expected),
            lambda _: self.store.versioned(path),
            self.message(body, f"update {path}"),
        )
        self.set_header("ETag", f'"{written["etag"]}"')
        self.send_json(written)

    async def post(self, path: str) -> None:
        body = self.json_body(required=False)
        kind = body.get("type", "file")
        message = self.message(body, f"create {path}")
        if "content" in body:
            if kind != "file":
                raise BadRequest("'content' is only for files", "BAD_REQUEST")

            def create_with_content() -> dict[str, Any]:
                if self.store.resolve(path).exists():
                    raise Conflict(f"{path!r} already exists", "EXISTS")
                return self.store.write(path, body["content"])

            action = create_with_content
        else:
            template = bool(body.get("template", True))

            def action() -> dict[str, Any]:
                return self.store.create(path, kind, template)

        result = await self.committed(action, lambda _: self.store.versioned(path), message)
        self.send_json(result, status=201)

    async def patch(self, path: str) -> None:
        body = self.json_body()
        new_path = body.get("new_path")
        if not isinstance(new_path, str):
            raise BadRequest("'new_path' is required", "MISSING_FIELD")
        old = self.store.versioned(path)[:1]
        result = await self.committed(
            lambda: self.store.rename(path, new_path),
            lambda _: old + self.store.versioned(new_path)[:1],
            self.message(body, f"rename {path} to {new_path}"),
        )
        self.send_json(result)

    async def delete(self, path: str) -> None:
        recursive = self.get_query_argument("recursive", "false").lower() in ("1", "true", "yes")
        gone = self.store.versioned(path)[:1]
        result = await self.committed(
            lambda: self.store.delete(path, recursive),
            lambda _: gone,
            self.message(self.json_body(required=False), f"delete {path}"),
        )
        self.send_json(result)
