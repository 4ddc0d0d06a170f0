"""The versions of a script file (issue 17, docs/versions.md): its history, a diff
between two revisions, restoring an old revision (a new commit), and pulling the
scripts repository's remote (``--scripts-remote``)."""

from __future__ import annotations

from ..errors import BadParameter, BadRequest, Conflict
from ..repo import check_revision
from ..scripts import etag_of
from .files import VersionedHandler, if_match
from .params import MAX_LIMIT, int_param, query_args

__all__ = ["FileHistoryHandler", "FileDiffHandler", "FileRestoreHandler", "FilesPullHandler"]


class FileHistoryHandler(VersionedHandler):
    """GET the commits that touched a file, newest first (``?limit``, 100 by default)."""

    async def get(self, path: str) -> None:
        args = query_args(self, {"limit"})
        limit = int_param("limit", args["limit"], 1, MAX_LIMIT) if "limit" in args else 100
        rel = self.store.script_rel(path)
        self.send_json({"path": rel, "history": await self.repo.history(rel, limit)})


class FileDiffHandler(VersionedHandler):
    """GET the unified diff of a file from revision ``from`` to revision ``to`` (``to``:
    the latest revision when left out)."""

    async def get(self, path: str) -> None:
        args = query_args(self, {"from", "to"})
        if "from" not in args:
            raise BadParameter("from", "is required (a revision)")
        rel = self.store.script_rel(path)
        old = await self.repo.resolve(check_revision(args["from"], "from"))
        if "to" in args:
            new = await self.repo.resolve(check_revision(args["to"], "to"))
        else:
            new = await self.repo.latest(rel)
        diff = await self.repo.diff(rel, old, new)
        self.send_json({"path": rel, "from": old, "to": new, "diff": diff})


class FileRestoreHandler(VersionedHandler):
    """POST ``{"revision", "message"?}``: the file's content at that revision written
    back as a new commit (a file deleted since is recreated). Restoring the content the
    file has already is a 200 with ``"committed": false`` and no new commit."""

    async def post(self, path: str) -> None:
        body = self.json_body()
        if "revision" not in body:
            raise BadRequest("'revision' is required", "MISSING_FIELD")
        rel = self.store.script_rel(path)
        full = await self.repo.resolve(check_revision(body["revision"]))
        text = await self.repo.source_at(rel, full)
        expected = if_match(self.request.headers.get("If-Match"))
        result = await self.committed(
            lambda: self.store.write(rel, text, expected),
            lambda _: [rel],
            self.message(body, f"restore {rel} to {full[:12]}"),
        )
        self.set_header("ETag", f'"{etag_of(text.encode("utf-8"))}"')
        self.send_json({**result, "restored_from": full})


class FilesPullHandler(VersionedHandler):
    """POST: fetch ``--scripts-remote`` and fast-forward to it (409 ``DIVERGED``)."""

    async def post(self) -> None:
        self.json_body(required=False)
        if self.repo.remote is None:
            raise Conflict(
                "the gateway has no remote for its scripts repository (--scripts-remote)",
                "NO_REMOTE",
            )
        self.send_json(await self.repo.remote.pull())
