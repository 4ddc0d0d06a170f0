"""Live subscribers of the log stream, each with a filter and a bounded queue.

A subscriber that does not keep up (its queue is full) is marked overflowed:
it gets a notice and is disconnected; the gateway never buffers without bound.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from .records import LEVELS

__all__ = ["LogFilter", "Subscriber"]


@dataclass(frozen=True)
class LogFilter:
    script_id: str | None = None
    min_level: int = 0
    tag: str | None = None

    def matches(self, record: dict[str, Any]) -> bool:
        if self.script_id is not None and record["script_id"] != self.script_id:
            return False
        if self.min_level and LEVELS.get(record["level"], 0) < self.min_level:
            return False
        return self.tag is None or record["tag"] == self.tag


class Subscriber:
    def __init__(self, flt: LogFilter, capacity: int = 1000) -> None:
        self.filter = flt
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(capacity)
        self.overflowed = asyncio.Event()
        self.after_id = 0  # live records with an id <= this were sent as the tail

    def offer(self, record: dict[str, Any]) -> None:
        if self.overflowed.is_set() or not self.filter.matches(record):
            return
        try:
            self.queue.put_nowait(record)
        except asyncio.QueueFull:
            self.overflowed.set()
