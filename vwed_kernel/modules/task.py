"""``VWED.task``: platform tasks, through the gateway's platform backend."""

from __future__ import annotations

from typing import Any

from .platform import PlatformModule

__all__ = ["TaskModule"]


class TaskModule(PlatformModule):
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
