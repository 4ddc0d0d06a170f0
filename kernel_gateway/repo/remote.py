"""``--scripts-remote``: push after each commit, pull (fetch and fast-forward only).

A push runs in the background after a commit; a failed one is a WARNING and is
retried at the next commit (it pushes the branch as it then is), never a failed save.
Pushes never overlap: a commit during a push asks for one more after it.

A pull fetches the remote's branch of the same name and fast-forwards to it under the
repository's lock (the files on disk change: running scripts keep the revision they
run until they are reloaded). When the two lines have diverged (each has commits the
other lacks) nothing changes: 409 ``DIVERGED``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from ..errors import Conflict, RemoteFailed
from .git import GitFailed, redact

if TYPE_CHECKING:
    from .repo import ScriptRepo

__all__ = ["Remote"]

log = logging.getLogger("kernel_gateway.repo")
PUSH_TIMEOUT = 120.0


class Remote:
    def __init__(self, repo: ScriptRepo, url: str) -> None:
        self.repo = repo
        self.url = url
        self.pushed: str | None = None  # the last revision the remote took
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._again = False

    def push_soon(self) -> None:
        """Push the branch in the background (once more after a push under way)."""
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.ensure_future(self._push_loop())

    async def _push_loop(self) -> None:
        while True:
            self._again = False
            await self.push()
            if not self._again:
                return

    async def push(self) -> bool:
        """Push HEAD to the remote's branch of the same name; ``False`` (and a WARNING)
        when it failed."""
        head = await self.repo.head()
        if not head:
            return True
        ref = f"HEAD:refs/heads/{self.repo.branch}"
        try:
            await self.repo.git.run("push", "-q", "--", self.url, ref, timeout=PUSH_TIMEOUT)
        except GitFailed as exc:
            self.last_error = exc.stderr or str(exc)
            log.warning(
                "push of the scripts repository to %s failed (retried at the next commit): %s",
                redact(self.url),
                self.last_error,
            )
            return False
        except OSError as exc:
            self.last_error = str(exc)
            log.warning("push to %s failed: %s", redact(self.url), exc)
            return False
        self.pushed, self.last_error = head, None
        return True

    async def pull(self) -> dict[str, Any]:
        """Fetch the remote's branch and fast-forward to it (409 ``DIVERGED`` if the
        lines diverged; 502 ``REMOTE_FAILED`` if the remote cannot be read)."""
        repo = self.repo
        branch = repo.branch
        async with repo.lock:
            await repo.git.run("add", "-A", "--", ".")
            await repo._commit_staged("disk", "changed on disk")
            try:
                await repo.git.run(
                    "fetch",
                    "-q",
                    "--no-tags",
                    "--no-write-fetch-head",
                    "--",
                    self.url,
                    f"+refs/heads/{branch}:refs/vwed-remote/{branch}",
                    timeout=PUSH_TIMEOUT,
                )
            except GitFailed as exc:
                raise RemoteFailed(
                    f"cannot fetch branch {branch!r} from {redact(self.url)}: {exc.stderr}",
                    details={"branch": branch},
                ) from None
            theirs = (await repo.git.run("rev-parse", f"refs/vwed-remote/{branch}")).text.strip()
            ours = await repo.head()
            if ours == theirs:
                return {"revision": ours, "previous": ours, "changed": [], "action": "up to date"}
            if ours and await self._is_ancestor(theirs, ours):
                return {"revision": ours, "previous": ours, "changed": [], "action": "ahead"}
            if ours and not await self._is_ancestor(ours, theirs):
                raise Conflict(
                    f"the scripts repository and {redact(self.url)} have diverged on branch "
                    f"{branch!r} (each has commits the other lacks): nothing was pulled. "
                    "Merge them with git, outside the gateway",
                    "DIVERGED",
                    details={"revision": ours, "remote_revision": theirs},
                )
            if ours:
                incoming = await repo.git.run("diff", "--name-only", "-z", ours, theirs)
            else:
                incoming = await repo.git.run("ls-tree", "-r", "--name-only", "-z", theirs)
            forbidden = repo.touches_excluded([n for n in incoming.text.split("\x00") if n])
            if forbidden:
                # Security: a pull must not write the gateway's own files (tokens, the
                # secrets key, the database, environments' code) when they live in the root.
                raise Conflict(
                    f"{redact(self.url)} holds files where the gateway keeps its own data "
                    f"({', '.join(forbidden[:5])}): nothing was pulled",
                    "PULL_REFUSED",
                    details={"paths": forbidden[:20]},
                )
            if ours:
                await repo.git.run("merge", "--ff-only", "-q", theirs)
                names = await repo.git.run("diff", "--name-only", "-z", ours, theirs)
                changed = [n for n in names.text.split("\x00") if n]
            else:  # an empty repository: take the remote's branch as it is
                await repo.git.run("reset", "-q", "--hard", theirs)
                names = await repo.git.run("ls-tree", "-r", "--name-only", "-z", theirs)
                changed = [n for n in names.text.split("\x00") if n]
            repo._head = None
            revision = await repo.head()
            repo.maintenance.soon()  # a fetch brings objects in: git's housekeeping later
        log.info(
            "pulled %s from %s: %d file(s) changed", revision[:12], redact(self.url), len(changed)
        )
        return {
            "revision": revision,
            "previous": ours or None,
            "changed": changed,
            "action": "pulled",
        }

    async def _is_ancestor(self, a: str, b: str) -> bool:
        found = await self.repo.git.run("merge-base", "--is-ancestor", a, b, ok=(0, 1))
        return found.code == 0

    async def close(self) -> None:
        """Let a push under way finish (it has its own deadline)."""
        if self._task is not None and not self._task.done():
            await asyncio.wait([self._task], timeout=PUSH_TIMEOUT)
