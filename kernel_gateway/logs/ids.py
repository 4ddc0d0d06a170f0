"""Log record ids, handed out from blocks reserved in the database.

An id is given to a record (and shown to live subscribers) before the record is
stored. Continuing from the highest *stored* id after a crash would give ids that
clients already saw to other records; so the database keeps the highest reserved
id (``vwed_counters``), the hub takes ids from a reserved block, and reserves the
next block when half of the current one is used. After a crash the next start
reserves above the old block: the unused rest is skipped, never reused.

Without a database, ids simply count from 1 (nothing survives a restart anyway).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

__all__ = ["IdBlocks"]

log = logging.getLogger("kernel_gateway.logs")
Reserve = Callable[[int], Awaitable[tuple[int, int]]]


class IdBlocks:
    def __init__(self, reserve: Reserve | None = None, block: int = 10_000) -> None:
        self.reserve = reserve
        self.block = block
        self.next = 1
        self.last: int | None = None  # highest reserved id (None: unbounded)
        self.overrun = 0  # ids given past the reservation (the database was away)
        self._ready: tuple[int, int] | None = None
        self._task: asyncio.Task[None] | None = None
        self._retry_at = 0.0

    def start(self, first: int, last: int) -> None:
        self.next, self.last = first, last

    @property
    def reserved_top(self) -> int | None:
        """The highest id reserved by this hub (a block reserved ahead included)."""
        return self._ready[1] if self._ready is not None else self.last

    def take(self) -> int:
        if self.last is not None and self.next > self.last:
            self._switch()
        value = self.next
        self.next += 1
        if self.last is not None and value > self.last:
            self.overrun += 1
            if self.overrun == 1:
                log.warning("log ids past the reserved block (the database does not answer)")
        self._reserve_ahead()
        return value

    def _switch(self) -> None:
        if self._ready is None:
            return
        first, last = self._ready
        self._ready = None
        # ids used past the old block while the reservation was under way are skipped
        if max(self.next, first) <= last:
            self.next, self.last = max(self.next, first), last
            self.overrun = 0

    def _reserve_ahead(self) -> None:
        if (
            self.reserve is None
            or self.last is None
            or self._ready is not None
            or self._task is not None
            or self.last - self.next > self.block // 2
            or time.monotonic() < self._retry_at
        ):
            return
        try:
            self._task = asyncio.get_running_loop().create_task(self._fetch())
        except RuntimeError:  # no loop (a test making records by hand)
            pass

    async def _fetch(self) -> None:
        assert self.reserve is not None
        try:
            self._ready = await self.reserve(self.next)
        except Exception as exc:
            self._retry_at = time.monotonic() + 1.0
            log.warning("could not reserve log ids: %s", getattr(exc, "message", exc))
        finally:
            self._task = None
        if self.last is not None and self.next > self.last:
            self._switch()
