"""The embedded backend: storage locations, tasks and robots in the gateway's own
database, each ``VWED.<module>.<method>`` answered by a named operation of
``StoreService`` (the queries are in ``store/platform.py``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..store.service import StoreService
from .base import PlatformBackend, check_call

__all__ = ["EmbeddedBackend"]


class EmbeddedBackend(PlatformBackend):
    def __init__(self, db: StoreService) -> None:
        self.db = db
        # (module, method) of ``METHODS`` -> the operation that answers it
        self._handlers: dict[tuple[str, str], Callable[..., Awaitable[Any]]] = {
            ("storage", "get_location"): db.location,
            ("storage", "list_locations"): db.locations,
            ("storage", "lock_location"): db.lock_location,
            ("storage", "unlock_location"): db.unlock_location,
            ("task", "create"): db.create_task,
            ("task", "get_status"): db.platform_task,
            ("task", "stop"): db.stop_task,
            ("robot", "get_status"): db.robot,
            ("robot", "get_all"): db.robots,
            ("robot", "dispatch"): db.dispatch_robot,
        }

    async def call(self, module: str, method: str, args: dict[str, Any]) -> Any:
        check_call(module, method, args)
        return await self._handlers[(module, method)](**args)

    async def seed_location(
        self,
        code: str,
        zone: str = "",
        goods: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create or update a storage location (operators seed them over HTTP)."""
        return await self.db.seed_location(code, zone, goods, data or {})

    async def register_robot(
        self, robot_id: str, status: str = "idle", data: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Register (or update) a robot."""
        return await self.db.register_robot(robot_id, status, data or {})
