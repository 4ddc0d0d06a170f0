"""The gateway half (entry point ``vwed.services``: ``counter``): the counters,
in the gateway's memory, served to kernels as ``counter:add``, ``counter:get``,
``counter:list`` and ``counter:reset``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from kernel_gateway.plugins import GatewayPlugin, PluginContext, ServiceError, ServiceRequest

__all__ = ["CounterService"]

_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
MAX_COUNTERS = 10_000


class CounterService(GatewayPlugin):
    def __init__(self, context: PluginContext, name: str) -> None:
        super().__init__(context, name)
        # the event loop serves every request: no lock needed
        self.counters: dict[str, int] = {}

    def services(self) -> Mapping[str, Any]:
        return {"add": self.add, "get": self.get, "list": self.list, "reset": self.reset}

    async def add(self, request: ServiceRequest) -> int:
        name = _counter(request)
        by = request.payload.get("by", 1)
        if not isinstance(by, int) or isinstance(by, bool):
            raise ServiceError("'by' must be an integer", "BAD_COUNTER")
        if name not in self.counters and len(self.counters) >= MAX_COUNTERS:
            raise ServiceError(f"at most {MAX_COUNTERS} counters", "TOO_MANY_COUNTERS")
        self.counters[name] = self.counters.get(name, 0) + by
        return self.counters[name]

    async def get(self, request: ServiceRequest) -> int:
        return self.counters.get(_counter(request), 0)

    async def list(self, request: ServiceRequest) -> dict[str, int]:
        return dict(self.counters)

    async def reset(self, request: ServiceRequest) -> None:
        name = _counter(request)
        if self.counters.pop(name, None) is not None:
            self.context.log("INFO", f"counter {name!r} reset", request.script_id)


def _counter(request: ServiceRequest) -> str:
    name = request.payload.get("counter")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ServiceError("'counter' must be 1 to 100 letters, digits or '_.:-'", "BAD_COUNTER")
    return name
