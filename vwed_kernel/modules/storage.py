"""``VWED.storage``: storage locations, through the gateway's platform backend."""

from __future__ import annotations

from typing import Any

from .platform import PlatformModule

__all__ = ["StorageModule"]


class StorageModule(PlatformModule):
    """Storage locations: ``get_location(location_code)``, ``lock_location(location_code,
    task_id)`` (atomic: of two scripts racing for a location, one wins; returns
    ``{"locked": bool, "locked_by"}``), ``unlock_location(location_code, task_id=None)``,
    ``list_locations(zone=None)``."""

    module = "storage"

    def get_location(self, location_code: str) -> dict[str, Any]:
        """One location: code, zone, goods, locked, locked_by."""
        return dict(self._call("get_location", location_code=location_code))

    def lock_location(self, location_code: str, task_id: Any) -> dict[str, Any]:
        """Lock a location for a task, if nobody holds it."""
        return dict(self._call("lock_location", location_code=location_code, task_id=task_id))

    def unlock_location(self, location_code: str, task_id: Any = None) -> dict[str, Any]:
        """Release a location (only if ``task_id`` holds it, when given)."""
        return dict(self._call("unlock_location", location_code=location_code, task_id=task_id))

    def list_locations(self, zone: str | None = None) -> list[dict[str, Any]]:
        """Every location (of a zone)."""
        return list(self._call("list_locations", zone=zone))
