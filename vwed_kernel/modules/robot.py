"""``VWED.robot``: robots, through the gateway's platform backend."""

from __future__ import annotations

from typing import Any

from .platform import PlatformModule

__all__ = ["RobotModule"]


class RobotModule(PlatformModule):
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
