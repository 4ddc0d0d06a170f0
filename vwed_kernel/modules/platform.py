"""``VWED.storage``, ``VWED.task``, ``VWED.robot``: the VWED platform's data, reached
through the gateway (its embedded backend, or the VWED server it forwards to).
Scripts never open the database themselves."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..vwed import VWED

__all__ = ["StorageModule", "TaskModule", "RobotModule"]


class _Platform:
    module = ""

    def __init__(self, vwed: VWED) -> None:
        self._vwed = vwed

    def _call(self, method: str, **args: Any) -> Any:
        args = {k: v for k, v in args.items() if v is not None}
        return self._vwed._link.request("platform", {"module": self.module, "method": method,
                                                     "args": args})


class StorageModule(_Platform):
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


class TaskModule(_Platform):
    """Platform tasks: ``create(task_label, input_params=None)``, ``get_status(task_id)``,
    ``stop(task_id)``."""

    module = "task"

    def create(self, task_label: str, input_params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Create a task; returns it (``task_id``, ``status``)."""
        return dict(self._call("create", task_label=task_label, input_params=input_params))

    def get_status(self, task_id: Any) -> dict[str, Any]:
        """A task's status."""
        return dict(self._call("get_status", task_id=task_id))

    def stop(self, task_id: Any) -> dict[str, Any]:
        """Stop a task."""
        return dict(self._call("stop", task_id=task_id))


class RobotModule(_Platform):
    """Robots: ``get_status(robot_id)``, ``get_all()``, ``dispatch(robot_id, task_id)``
    (returns ``{"dispatched": bool, ...}``: false when the robot is busy)."""

    module = "robot"

    def get_status(self, robot_id: str) -> dict[str, Any]:
        """One robot's status."""
        return dict(self._call("get_status", robot_id=robot_id))

    def get_all(self) -> list[dict[str, Any]]:
        """Every robot."""
        return list(self._call("get_all"))

    def dispatch(self, robot_id: str, task_id: Any) -> dict[str, Any]:
        """Give a task to an idle robot."""
        return dict(self._call("dispatch", robot_id=robot_id, task_id=task_id))
