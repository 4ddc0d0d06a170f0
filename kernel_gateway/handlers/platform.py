"""``/script-engine/platform/...``: inspect and seed the embedded platform data
(storage locations, robots, tasks) that ``VWED.storage/robot/task`` use."""

from __future__ import annotations

from ..errors import BadRequest
from ..platform import EmbeddedBackend
from .base import JSONHandler

__all__ = ["LocationsHandler", "RobotsHandler", "PlatformTasksHandler"]


def _text(body: dict[str, object], name: str, required: bool = True) -> str:
    value = body.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value:
        raise BadRequest(f"'{name}' must be a non-empty string", "MISSING_FIELD")
    return value


class LocationsHandler(JSONHandler):
    embedded: EmbeddedBackend

    async def get(self) -> None:
        zone = self.get_query_argument("zone", None)
        rows = await self.embedded.call(
            "storage", "list_locations", {} if zone is None else {"zone": zone}
        )
        self.send_json({"count": len(rows), "locations": rows})

    async def post(self) -> None:
        """Create or update a location: ``{"location_code", "zone"?, "goods"?, "data"?}``."""
        body = self.json_body()
        code = _text(body, "location_code")
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        row = await self.embedded.seed_location(
            code, str(body.get("zone") or ""), body.get("goods"), data
        )
        self.send_json({"location": row}, status=201)


class RobotsHandler(JSONHandler):
    embedded: EmbeddedBackend

    async def get(self) -> None:
        rows = await self.embedded.call("robot", "get_all", {})
        self.send_json({"count": len(rows), "robots": rows})

    async def post(self) -> None:
        """Register (or update) a robot: ``{"robot_id", "status"?, "data"?}``."""
        body = self.json_body()
        robot_id = _text(body, "robot_id")
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        row = await self.embedded.register_robot(robot_id, str(body.get("status") or "idle"), data)
        self.send_json({"robot": row}, status=201)


class PlatformTasksHandler(JSONHandler):
    embedded: EmbeddedBackend

    async def post(self) -> None:
        """Create a task: ``{"task_label", "input_params"?}``."""
        body = self.json_body()
        task = await self.embedded.call(
            "task",
            "create",
            {"task_label": _text(body, "task_label"), "input_params": body.get("input_params")},
        )
        self.send_json({"task": task}, status=201)

    async def get(self) -> None:
        task_id = self.get_query_argument("task_id", None)
        if task_id is None:
            raise BadRequest("give ?task_id=", "MISSING_FIELD")
        self.send_json(
            {"task": await self.embedded.call("task", "get_status", {"task_id": task_id})}
        )
