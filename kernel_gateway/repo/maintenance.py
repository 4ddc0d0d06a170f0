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
import time

from .git import Git, GitFailed

__all__ = ["Maintenance", "MAINTENANCE_DELAY"]

log = logging.getLogger("kernel_gateway.repo")

MAINTENANCE_DELAY = 30.0  # seconds after a commit (later commits do not push it back)
CLOSE_WAIT = 10.0  # how long close() lets a run under way finish
# git's lock of a maintenance run; one this old was left by a run that was killed (git
# then skips every later run, with status 0): it is removed
STALE_LOCK = 3600.0


class Maintenance:
    """Runs ``git maintenance run --auto`` ``delay`` seconds after a commit asked for it
    (one run for any number of commits meanwhile)."""

    def __init__(self, git: Git, delay: float = MAINTENANCE_DELAY) -> None:
        self.git = git
        self.delay = delay
        self.runs = 0  # maintenance checks done (tests, diagnostics)
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def soon(self) -> None:
        """A commit was made (or the gateway started): check in ``delay`` seconds,
        unless a check is already due."""
        if self._timer is None and self._task is None and not self._closed:
            self._timer = asyncio.get_running_loop().call_later(self.delay, self._start)

    def _start(self) -> None:
        self._timer = None
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        try:
            self._clear_stale_lock()
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
        except Exception:
            log.exception("git maintenance of the scripts repository failed")
        finally:
            self._task = None

    def _clear_stale_lock(self) -> None:
        lock = self.git.git_dir / "objects" / "maintenance.lock"
        try:
            age = time.time() - lock.stat().st_mtime
        except OSError:
            return
        if age > STALE_LOCK:
            log.warning("removing %s, left %.0f s ago by a git maintenance that ended", lock, age)
            lock.unlink(missing_ok=True)

    async def close(self) -> None:
        """No new run; one under way may finish (CLOSE_WAIT): killed, git would leave its
        lock behind (removed by a later run once it is STALE_LOCK old)."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task = self._task
        if task is not None:
            await asyncio.wait([task], timeout=CLOSE_WAIT)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
