"""Worker kernels per script environment: the steps of a file that declares packages
run in workers that have that environment's site dir (``site.addsitedir`` after their
own paths, before any step runs: the engine's packages win), one
:class:`~kernel_gateway.workers.WorkerPool` per lock.

A pool is started at the first step of its environment, kept warm while steps use it,
and retired (its workers shut down) after ``idle`` seconds without a step. The plain
pool of files without a declaration is not here; it is unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .kernels import KernelEvents, ScriptKernel
from .workers import WorkerPool

__all__ = ["EnvWorkerPools"]

log = logging.getLogger("kernel_gateway.envworkers")

StartWorker = Callable[[list[str]], Awaitable[ScriptKernel]]


@dataclass
class _EnvPool:
    lock: str
    site: str
    pool: WorkerPool
    last_used: float = field(default_factory=time.monotonic)
    in_use: int = 0


class EnvWorkerPools:
    def __init__(
        self,
        start: StartWorker,
        size: int,
        queue_max: int,
        events: KernelEvents,
        *,
        idle: float = 300.0,
    ) -> None:
        self._start = start
        self.size = max(1, size)
        self.queue_max = queue_max
        self.idle = idle
        self._events = events
        self._pools: dict[str, _EnvPool] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False

    def pool(self, lock: str, site: str) -> WorkerPool:
        """The warm pool of the environment ``lock`` (started now if it has none)."""
        entry = self._pools.get(lock)
        if entry is None:  # (a lock's site dir is always the same folder: envs/<lock>/site)

            def start() -> Awaitable[ScriptKernel]:
                return self._start([site])

            entry = _EnvPool(lock, site, WorkerPool(start, self.size, self.queue_max, self._events))
            self._pools[lock] = entry
            entry.pool.start()
            log.info("worker pool of environment %s started", lock[:12])
            self._ensure_sweeper()
        entry.last_used = time.monotonic()
        return entry.pool

    async def acquire(self, lock: str, site: str) -> tuple[WorkerPool, ScriptKernel]:
        """A worker of that environment, and the pool to give it back to."""
        pool = self.pool(lock, site)
        entry = self._pools[lock]
        entry.in_use += 1
        try:
            return pool, await pool.acquire()
        except BaseException:
            entry.in_use -= 1
            raise

    def done(self, pool: WorkerPool, worker: ScriptKernel, *, keep: bool) -> None:
        """Give a worker back (``keep``: healthy) and note the environment as used now."""
        entry = next((e for e in self._pools.values() if e.pool is pool), None)
        if entry is not None:
            entry.in_use -= 1
            entry.last_used = time.monotonic()
        if keep:
            pool.release(worker)
        else:
            pool.discard(worker)

    # -- retiring idle pools ---------------------------------------------------------------
    def sweep(self, now: float | None = None) -> list[str]:
        """Retire the pools no step used for ``idle`` seconds; their locks."""
        now = time.monotonic() if now is None else now
        gone = [
            e
            for e in self._pools.values()
            if e.in_use == 0 and e.pool.waiting == 0 and now - e.last_used >= self.idle
        ]
        for entry in gone:
            del self._pools[entry.lock]
            self._retire(entry)
            log.info(
                "worker pool of environment %s retired (idle %.0f s)",
                entry.lock[:12],
                now - entry.last_used,
            )
        return [e.lock for e in gone]

    def _retire(self, entry: _EnvPool) -> None:
        if self._pools.get(entry.lock) is entry:
            del self._pools[entry.lock]
        task = asyncio.ensure_future(entry.pool.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _ensure_sweeper(self) -> None:
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.ensure_future(self._sweep_loop())

    async def _sweep_loop(self) -> None:
        every = max(0.05, min(30.0, self.idle / 4))
        while self._pools and not self._closed:
            await asyncio.sleep(every)
            try:
                self.sweep()
            except Exception:  # never let one bad sweep end the retiring
                log.exception("sweeping idle environment workers failed")

    async def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(BaseException):
                await self._sweeper
        pools, self._pools = list(self._pools.values()), {}
        await asyncio.gather(*(e.pool.close() for e in pools), return_exceptions=True)
        await asyncio.gather(*self._closing, return_exceptions=True)

    # -- what the gateway shows ------------------------------------------------------------
    @property
    def workers(self) -> int:
        return sum(e.pool.workers for e in self._pools.values())

    def counts(self) -> dict[str, int]:
        """How many environments have warm workers, and how many workers (for health)."""
        return {"environments": len(self._pools), "workers": self.workers}

    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "idle_timeout": self.idle,
            "environments": [
                {
                    "lock": e.lock,
                    **e.pool.status(),
                    "in_use": e.in_use,
                    "idle_for": round(now - e.last_used, 1),
                }
                for e in self._pools.values()
            ],
        }
