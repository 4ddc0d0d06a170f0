"""One sink's queue and thread: records handed over on the event loop, sent off it.

Threads: :meth:`SinkRunner.add` runs on the event loop and only appends to a deque
(never blocks, never waits for the sink); everything else (``open``, ``send``,
``close`` of the sink, the counting of a failed batch) runs in the runner's own daemon
thread, which wakes every ``INTERVAL`` seconds or as soon as a batch is full. The
queue holds at most ``sink.queue_size`` records: past that, new records are dropped
and counted (``dropped_total``); once the queue has room again, ``on_drop`` is called
on the event loop with the count and the time span, as the database's drops are.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .base import LogSink, SinkError

__all__ = ["SinkRunner", "OnSinkDrop"]

log = logging.getLogger("kernel_gateway.logs.sinks")
OnSinkDrop = Callable[[str, int, float, float], None]  # (sink name, count, first, last)
INTERVAL = 0.25  # seconds between two looks at a queue that is not full (batches)
OPEN_SECONDS = 10.0  # a sink's open() may take this long at start
WARN_EVERY = 30.0  # seconds between two warnings of one sink's failures in the server log


class SinkRunner:
    def __init__(self, sink: LogSink, name: str, on_drop: OnSinkDrop | None = None) -> None:
        self.sink = sink
        self.name = name  # unique among the gateway's sinks (metrics label)
        self.on_drop = on_drop
        self.queue: deque[dict[str, Any]] = deque()
        self.max_queue = sink.queue_size
        self.batch_size = sink.batch_size
        self.sent = 0
        self.dropped_total = 0
        self.failures = 0  # batches send() raised on
        self._dropped = 0  # not reported yet
        self._span = (0.0, 0.0)
        self._count_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._opened = threading.Event()
        self._open_error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_warning = 0.0
        self._thread = threading.Thread(target=self._run, name=f"log-sink {name}", daemon=True)

    # -- on the event loop ---------------------------------------------------------------
    def add(self, record: dict[str, Any]) -> None:
        queue = self.queue
        if len(queue) >= self.max_queue:
            self._count_drops(1, record["ts"], record["ts"])
            return
        queue.append(record)
        if len(queue) == self.batch_size:
            self._wake.set()

    @property
    def queued(self) -> int:
        return len(self.queue)

    async def start(self) -> None:
        """Start the thread and wait for the sink's ``open`` (its error is raised)."""
        self._loop = asyncio.get_running_loop()
        self._thread.start()
        deadline = time.monotonic() + OPEN_SECONDS
        while not self._opened.is_set():
            if time.monotonic() > deadline:
                self.abandon()
                raise SinkError(f"log sink {self.name} did not open within {OPEN_SECONDS:g} s")
            await asyncio.sleep(0.01)
        if self._open_error is not None:
            error = self._open_error
            if isinstance(error, SinkError):
                raise error
            raise SinkError(f"log sink {self.name} cannot be opened: {error}") from error

    def stop(self) -> None:
        """Ask the thread to send what is queued and close the sink."""
        self._stopping.set()
        self._wake.set()

    def abandon(self) -> None:
        """The flush time is over: what is still queued is dropped, retries end."""
        self.sink.abandoned.set()
        self._wake.set()

    @property
    def started(self) -> bool:
        return self._thread.ident is not None

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    # -- in the thread -------------------------------------------------------------------
    def _count_drops(self, count: int, first: float, last: float) -> None:
        with self._count_lock:
            if not self._dropped:
                self._span = (first, last)
            else:
                self._span = (min(self._span[0], first), max(self._span[1], last))
            self._dropped += count
            self.dropped_total += count

    def _run(self) -> None:
        try:
            self.sink.open()
        except BaseException as exc:  # said by start() on the loop
            self._open_error = exc
            self._opened.set()
            return
        self._opened.set()
        try:
            self._loop_until_stopped()
        finally:
            left = len(self.queue)
            if left:
                records = list(self.queue)
                self.queue.clear()
                self._count_drops(left, records[0]["ts"], records[-1]["ts"])
                log.warning(
                    "log sink %s: %d records were not sent (its flush time at stop was over)",
                    self.name,
                    left,
                )
            try:
                self.sink.close()
            except Exception:
                log.exception("log sink %s failed to close", self.name)

    def _loop_until_stopped(self) -> None:
        queue = self.queue
        abandoned = self.sink.abandoned
        while True:
            self._wake.wait(INTERVAL)
            self._wake.clear()
            stopping = self._stopping.is_set()
            while queue and not abandoned.is_set():
                batch = [queue.popleft() for _ in range(min(self.batch_size, len(queue)))]
                self._send(batch)
                self._report()
            if abandoned.is_set() or (stopping and not queue):
                return

    def _send(self, batch: list[dict[str, Any]]) -> None:
        try:
            self.sink.send(batch)
        except Exception as exc:
            self.failures += 1
            self._count_drops(len(batch), batch[0]["ts"], batch[-1]["ts"])
            now = time.monotonic()
            if now - self._last_warning >= WARN_EVERY:
                self._last_warning = now
                log.warning(
                    "log sink %s: a batch of %d records could not be sent: %s",
                    self.name,
                    len(batch),
                    exc,
                )
        else:
            self.sent += len(batch)

    def _report(self) -> None:
        """Say how many records were dropped, once the queue has room again."""
        if not self._dropped or len(self.queue) >= self.max_queue // 2 or self.on_drop is None:
            return
        with self._count_lock:
            count, (first, last) = self._dropped, self._span
            self._dropped = 0
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self.on_drop, self.name, count, first, last)
        except RuntimeError:  # the loop is closed: the gateway is gone
            pass
