"""The followers of one asynchronous execution (``/script-engine/executions/{id}/ws``,
``/script-engine/execute/ws``): each gets the execution's events in a bounded queue of
its own, so a slow follower loses output lines (counted) and never slows the step."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["Feed", "FEED_MAX"]

FEED_MAX = 1000
_ALWAYS = frozenset({"state", "status", "end"})  # kept even when the queue is full


class Feed:
    def __init__(self, execution_id: str, maximum: int = FEED_MAX) -> None:
        self.execution_id = execution_id
        self.maximum = maximum
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.dropped = 0

    def put(self, event: dict[str, Any]) -> None:
        if self.queue.qsize() >= self.maximum and event.get("type") not in _ALWAYS:
            self.dropped += 1
            return
        if self.dropped and event.get("type") != "output":
            self.queue.put_nowait({"type": "dropped", "count": self.dropped})
            self.dropped = 0
        self.queue.put_nowait(event)

    async def get(self) -> dict[str, Any]:
        return await self.queue.get()
