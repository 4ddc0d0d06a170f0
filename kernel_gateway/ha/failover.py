"""Which gateway is active, and the change of role.

A gateway started with ``--ha`` is a ``standby``: it listens (health, and 503
``STANDBY`` for everything else), keeps its pool of kernels warm, and tries the lock
every ``every`` seconds. When it gets it (the active one died or stopped), it waits
``settle`` seconds, so that an active one that lost its connection without dying has
noticed (it checks every ``check_every`` seconds) and stopped its scripts, then it is
``activating``: ``activate`` (from the gateway) ends the dead gateway's runs, takes
over its asynchronous executions and restores the desired scripts; then it is
``active`` and serves.

The active one checks its lock's connection every ``check_every`` seconds, each check
within ``deadline`` seconds. A failed or late check means another gateway may hold
the lock now: the role becomes ``fenced`` at once (503 ``STANDBY`` again, before any
other call reaches a script) and ``lost`` is set; the gateway then stops (its scripts
with it) and starts again as a standby (``app._serve``). ``deadline`` is shorter than
the server's own detection of a silent peer (lock.py), so a gateway cut off from the
database stops serving before the server lets another take the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from .lock import ActiveLock

__all__ = ["Failover"]

log = logging.getLogger("kernel_gateway.ha")
T = TypeVar("T")


class Failover:
    """The role of one gateway (``role``) and the loop that changes it."""

    def __init__(
        self,
        lock: ActiveLock,
        *,
        every: float = 1.0,
        check_every: float = 0.5,
        deadline: float = 2.0,
        settle: float = 1.0,
    ) -> None:
        self.lock = lock
        self.every = every
        self.check_every = check_every
        self.deadline = deadline
        self.settle = settle
        self.role = "standby"
        self.since = time.time()  # when the role last changed
        self.lost = asyncio.Event()  # set when an active gateway lost its lock
        # seconds before the first try: a gateway that has just lost the lock lets the
        # standby (trying every ``every`` s) take it, rather than taking it back at once
        self.holdoff = 0.0
        self._task: asyncio.Task[None] | None = None
        self._thread = self._new_thread()

    @property
    def serving(self) -> bool:
        return self.role == "active"

    def status(self) -> dict[str, Any]:
        return {"role": self.role, "since": self.since, "lock": self.lock.where or None}

    def start(self, activate: Callable[[], Awaitable[None]]) -> None:
        """Run the loop in the background; ``activate`` is awaited once the lock is held."""
        self._task = asyncio.ensure_future(self._loop(activate))

    async def close(self) -> None:
        """Stop the loop and give the lock up (after the gateway stopped its scripts)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self._call(self.lock.release)
        self._thread.shutdown(wait=False)

    # -- the loop ----------------------------------------------------------------------
    async def _loop(self, activate: Callable[[], Awaitable[None]]) -> None:
        if self.holdoff:
            await asyncio.sleep(self.holdoff)
        await self._wait_for_lock()
        log.warning("took the active lock (%s): taking over in %g s", self.lock.where, self.settle)
        await asyncio.sleep(self.settle)
        self._become("activating")
        try:
            await activate()
        except Exception:  # serve what could be taken over rather than nothing
            log.exception("the takeover failed in part; serving anyway")
        self._become("active")
        log.warning("this gateway is the active one now")
        await self._keep()

    async def _wait_for_lock(self) -> None:
        said = False
        while True:
            try:
                # a connect may take the driver's connect timeout: not a stuck thread
                if await self._call(self.lock.take, self.lock.connect_timeout + 1):
                    return
                if not said:
                    log.info(
                        "standby: another gateway holds the lock; trying every %g s", self.every
                    )
                    said = True
            except Exception as exc:  # the database away: try again, quietly after the first
                log.log(logging.DEBUG if said else logging.WARNING, "standby: %s", exc)
                said = True
                await self._drop()
            await asyncio.sleep(self.every)

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(self.check_every)
            try:
                await self._call(self.lock.check)
            except Exception as exc:
                self._become("fenced")  # before anything else: no call reaches a script
                log.error(
                    "lost the active lock (%s): stopping the scripts; this gateway starts "
                    "again as a standby",
                    (str(exc).strip().splitlines() or [type(exc).__name__])[0],
                )
                self.lost.set()
                await self._drop()
                return

    def _become(self, role: str) -> None:
        self.role, self.since = role, time.time()

    # -- the lock's thread ---------------------------------------------------------------
    @staticmethod
    def _new_thread() -> ThreadPoolExecutor:
        return ThreadPoolExecutor(1, thread_name_prefix="vwed-ha")

    async def _call(self, fn: Callable[[], T], deadline: float | None = None) -> T:
        """``fn`` in the lock's thread within ``deadline``. Past it the thread is left to
        the driver (stuck on a silent connection) and a new one serves the next call."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._thread, fn)
        deadline = self.deadline if deadline is None else deadline
        try:
            return await asyncio.wait_for(future, deadline)
        except asyncio.TimeoutError:
            stuck, self._thread = self._thread, self._new_thread()
            stuck.shutdown(wait=False)
            self.lock.forget()
            raise TimeoutError(f"no answer from the database within {deadline:g} s") from None

    async def _drop(self) -> None:
        with contextlib.suppress(Exception):
            await self._call(self.lock.drop)
