"""Git's housekeeping for the scripts repository, off the path of a commit.

By itself, every ``git commit`` ends by starting ``git maintenance run --auto``: one
more process (about 4 ms here) that a start of a file changed on disk waits for,
although it almost never has anything to do. The gateway's git commands turn that off
(``maintenance.auto=false`` in ``git.py``) and run the same check here instead, once,
a while after the last commit of a burst, in the background: git then packs loose
objects and refs by its own thresholds (``gc.auto``, ``gc.autoPackLimit``, the
repository's own settings), exactly as it would have after a commit.
"""

from __future__ import annotations

import asyncio
import logging

from .git import Git, GitFailed

__all__ = ["Maintenance", "MAINTENANCE_DELAY"]

log = logging.getLogger("kernel_gateway.repo")

MAINTENANCE_DELAY = 30.0  # seconds after a commit (later commits do not push it back)


class Maintenance:
    """Runs ``git maintenance run --auto`` ``delay`` seconds after a commit asked for it
    (one run for any number of commits meanwhile)."""

    def __init__(self, git: Git, delay: float = MAINTENANCE_DELAY) -> None:
        self.git = git
        self.delay = delay
        self.runs = 0  # maintenance checks done (tests, diagnostics)
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    def soon(self) -> None:
        """A commit was made: check in ``delay`` seconds, unless a check is already due."""
        if self._timer is None and self._task is None:
            self._timer = asyncio.get_running_loop().call_later(self.delay, self._start)

    def _start(self) -> None:
        self._timer = None
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        try:
            # on again for this command only (a later -c wins); in the foreground, so
            # the gateway knows when it ended and can stop it at close
            await self.git.run(
                "-c", "maintenance.auto=true", "-c", "gc.autoDetach=false",
                "maintenance", "run", "--auto", "--quiet",
                timeout=600,
            )  # fmt: skip
            self.runs += 1
        except (GitFailed, OSError) as exc:  # e.g. a lock held by a git run by hand
            log.warning("git maintenance of the scripts repository failed: %s", exc)
        finally:
            self._task = None

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task = self._task
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
