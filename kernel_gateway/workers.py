"""Worker kernels for task-flow steps: a pool of warm VWED kernels, separate from
the script kernels, reused from step to step (each keeps its module cache).

A step waits for a free worker in a bounded queue (full: 503 ``BUSY`` with
``Retry-After``). A worker that died, or did not come back after an interrupt
within the grace period, is killed and replaced in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .errors import ServiceUnavailable
from .kernels import KernelEvents, ScriptKernel

__all__ = ["WorkerPool"]

log = logging.getLogger("kernel_gateway.workers")


class WorkerPool:
    def __init__(
        self,
        start: Callable[[], Awaitable[ScriptKernel]],
        size: int,
        queue_max: int,
        events: KernelEvents,
    ) -> None:
        self._start = start
        self.size = max(1, size)
        self.queue_max = queue_max
        self._events = events
        self._idle: asyncio.Queue[ScriptKernel] = asyncio.Queue()
        self._all: set[ScriptKernel] = set()
        self._waiting = 0
        self._closed = False
        self._starting: set[asyncio.Task[None]] = set()

    @property
    def idle(self) -> int:
        return self._idle.qsize()

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def workers(self) -> int:
        return len(self._all)

    def start(self) -> None:
        for _ in range(self.size):
            self._spawn()

    def _spawn(self) -> None:
        if self._closed:
            return
        task = asyncio.ensure_future(self._add_worker())
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)

    async def _add_worker(self) -> None:
        failures = 0
        while not self._closed:
            try:
                worker = await self._start()
            except Exception:
                failures += 1
                log.exception("a worker kernel failed to start (attempt %d)", failures)
                await asyncio.sleep(min(30.0, 0.5 * 2**failures))
                continue
            if self._closed:
                await worker.shutdown(now=True)
                return
            worker.wire(self._events, on_death=self._died)
            self._all.add(worker)
            self._idle.put_nowait(worker)
            return

    async def acquire(self) -> ScriptKernel:
        """A free worker; waits in the bounded queue if all are busy."""
        while True:
            if self._idle.empty() and self._waiting >= self.queue_max:
                raise ServiceUnavailable(
                    f"all {self.size} workers are busy and {self._waiting} steps are waiting",
                    "BUSY",
                    headers={"Retry-After": "1"},
                    details={"workers": self.size, "waiting": self._waiting},
                )
            self._waiting += 1
            try:
                worker = await self._idle.get()
            finally:
                self._waiting -= 1
            if worker.alive:
                return worker
            self._all.discard(worker)  # died while idle; its replacement is on its way

    def release(self, worker: ScriptKernel) -> None:
        if worker.alive and not self._closed:
            self._idle.put_nowait(worker)
        else:
            self.discard(worker)

    def discard(self, worker: ScriptKernel) -> None:
        """Kill a worker (stuck or dead) and start a replacement."""
        if worker in self._all:
            self._all.discard(worker)
            worker.on_death = None
            task = asyncio.ensure_future(worker.shutdown(now=True))
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)
            self._spawn()

    def _died(self, worker: ScriptKernel) -> None:
        log.warning("worker kernel %s died; replacing it", worker.kernel_id)
        if worker in self._all:
            self._all.discard(worker)
            self._spawn()

    async def close(self) -> None:
        self._closed = True
        for task in list(self._starting):
            task.cancel()
        for task in list(self._starting):
            with contextlib.suppress(BaseException):
                await task
        workers, self._all = list(self._all), set()
        await asyncio.gather(*(w.shutdown(now=True) for w in workers), return_exceptions=True)

    def status(self) -> dict[str, Any]:
        return {
            "workers": self.workers,
            "target": self.size,
            "idle": self.idle,
            "waiting": self.waiting,
            "queue_max": self.queue_max,
        }
