"""Live subscribers of the log stream.

Subscribers do not get queues of their own: every record is kept in the hub's
ring (bounded in bytes, shared by all), and each subscriber has a cursor, the
id of the last record it has been through. A subscriber's pump sends what is
after its cursor and matches its filter. One whose cursor falls behind the
oldest record still in the ring (it read too slowly while the ring went round)
is marked overflowed: it gets a notice and is disconnected. Memory is bounded
by the ring, however many subscribers there are and however slow they are.
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
    def __init__(self, flt: LogFilter, cursor: int) -> None:
        self.filter = flt
        self.cursor = cursor  # id of the last record this subscriber has been through
        self.wake = asyncio.Event()
        self.overflowed = asyncio.Event()
