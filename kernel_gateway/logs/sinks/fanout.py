"""The gateway's sinks together: one :class:`~.runner.SinkRunner` each, fed by the
log hub, started with it and stopped with it (each with its own flush time)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from .registry import make_sink
from .runner import OnSinkDrop, SinkRunner

__all__ = ["SinkSet"]

log = logging.getLogger("kernel_gateway.logs.sinks")
CLOSE_GRACE = 1.0  # seconds a sink given up on has to close, past its flush time


class SinkSet:
    def __init__(self, urls: Iterable[str], on_drop: OnSinkDrop | None = None) -> None:
        """Build every sink of ``urls`` (a :class:`~.base.SinkError` for a bad one)."""
        self.runners: list[SinkRunner] = []
        names: set[str] = set()
        for url in urls:
            sink = make_sink(url)
            name, n = sink.name, 1
            while name in names:  # two sinks to one place (other options): both counted
                n += 1
                name = f"{sink.name} ({n})"
            names.add(name)
            self.runners.append(SinkRunner(sink, name, on_drop))

    def __bool__(self) -> bool:
        return bool(self.runners)

    def add(self, record: dict[str, Any]) -> None:
        for runner in self.runners:
            runner.add(record)

    async def start(self) -> None:
        started: list[SinkRunner] = []
        try:
            for runner in self.runners:
                await runner.start()
                started.append(runner)
                log.info("log sink %s: open", runner.name)
        except BaseException:
            for runner in started:
                runner.stop()
            raise

    async def close(self) -> None:
        """Let each sink send what is queued within its ``flush_timeout``, then close;
        a sink past it is given up on (what it still holds is counted as dropped)."""
        now = time.monotonic()
        ends = {r: now + r.sink.flush_timeout for r in self.runners if r.started}
        given_up: set[SinkRunner] = set()
        for runner in self.runners:
            runner.stop()
        while True:
            now = time.monotonic()
            live = [r for r in ends if not r.done]
            for runner in live:
                if now > ends[runner] and runner not in given_up:
                    runner.abandon()
                    given_up.add(runner)
                    ends[runner] = now + CLOSE_GRACE
            live = [r for r in live if not (r in given_up and now > ends[r])]
            if not live:
                break
            await asyncio.sleep(0.02)
        for runner in ends:
            if not runner.done:
                log.warning("log sink %s did not close in time: left behind", runner.name)
