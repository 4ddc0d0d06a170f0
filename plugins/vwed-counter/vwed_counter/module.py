"""``VWED.counter``: the kernel half (entry point ``vwed.modules``: ``counter``).

Every method asks the gateway's ``counter:*`` services (vwed_counter/service.py),
so all scripts, and every replica of one, see the same counters::

    n = VWED.counter.add("parts")          # 1, 2, 3, ... across all scripts
    VWED.counter.get("parts")              # the current value (0 if never counted)
    VWED.counter.list()                    # {"parts": 3, ...}
    VWED.counter.reset("parts")
    await VWED.counter.aadd("parts", 5)    # the async form, in a coroutine handler

``VWED.counter.mine()`` is what this script added since it started: kept in the
kernel, forgotten when the script stops or reloads (:meth:`stop`).
"""

from __future__ import annotations

import threading
from typing import Any

from vwed_kernel.plugin import VwedModule

__all__ = ["CounterModule"]


class CounterModule(VwedModule):
    def __init__(self, context: Any, name: str) -> None:
        super().__init__(context, name)
        self._lock = threading.Lock()
        self._mine: dict[str, int] = {}

    def _service(self, what: str) -> str:
        return f"{self.name}:{what}"  # the gateway half has the same entry-point name

    def add(self, counter: str, by: int = 1) -> int:
        """Add ``by`` to ``counter`` (shared by all scripts); its new value."""
        value = int(self.request(self._service("add"), {"counter": counter, "by": by}))
        self._count(counter, by)
        return value

    async def aadd(self, counter: str, by: int = 1) -> int:
        value = int(await self.arequest(self._service("add"), {"counter": counter, "by": by}))
        self._count(counter, by)
        return value

    def get(self, counter: str) -> int:
        return int(self.request(self._service("get"), {"counter": counter}))

    async def aget(self, counter: str) -> int:
        return int(await self.arequest(self._service("get"), {"counter": counter}))

    def list(self) -> dict[str, int]:
        return dict(self.request(self._service("list"), {}))

    def reset(self, counter: str) -> None:
        self.request(self._service("reset"), {"counter": counter})

    def mine(self) -> dict[str, int]:
        """What this script added since it started (this kernel only)."""
        with self._lock:
            return dict(self._mine)

    def _count(self, counter: str, by: int) -> None:
        with self._lock:
            self._mine[counter] = self._mine.get(counter, 0) + by

    def stop(self) -> None:
        """The script stops or reloads: its own tally starts again (the shared
        counters stay, kept by the gateway)."""
        with self._lock:
            self._mine.clear()
