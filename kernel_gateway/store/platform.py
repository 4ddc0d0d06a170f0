"""The embedded platform's data (``VWED.storage``, ``VWED.task``, ``VWED.robot`` when
no VWED server is configured): storage locations and their locks, tasks, robots.

``lock_location`` is one conditional ``UPDATE ... WHERE locked_by IS NULL``: of two
scripts racing for a location, exactly one sees its row updated.
"""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine

from ..errors import NotFound
from .models import LocationRow, PlatformTaskRow, RobotRow

__all__ = ["PlatformTables"]


def _loads(text: str | None) -> Any:
    return json.loads(text) if text else {}


def _location(row: Any) -> dict[str, Any]:
    return {
        "location_code": row.code,
        "zone": row.zone,
        "goods": row.goods,
        "locked": row.locked_by is not None,
        "locked_by": row.locked_by,
        "locked_at": row.locked_at,
        "data": _loads(row.data),
    }


def _task(row: Any) -> dict[str, Any]:
    return {
        "task_id": row.id,
        "task_label": row.label,
        "input_params": _loads(row.input_params),
        "status": row.status,
        "robot_id": row.robot_id,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def _robot(row: Any) -> dict[str, Any]:
    return {
        "robot_id": row.id,
        "status": row.status,
        "task_id": row.task_id,
        "data": _loads(row.data),
        "updated_at": row.updated_at,
    }


class PlatformTables:
    """``vwed_storage_locations``, ``vwed_platform_tasks``, ``vwed_robots`` (part of
    ``Database``). Unknown locations, tasks and robots are ``NotFound``."""

    engine: Engine

    # -- storage locations -----------------------------------------------------------
    def location(self, location_code: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(LocationRow).where(LocationRow.code == str(location_code))
            ).first()
        if row is None:
            raise NotFound(f"no storage location {location_code!r}", "LOCATION_NOT_FOUND")
        return _location(row)

    def locations(self, zone: str | None = None) -> list[dict[str, Any]]:
        stmt = select(LocationRow).order_by(LocationRow.code)
        if zone is not None:
            stmt = stmt.where(LocationRow.zone == zone)
        with self.engine.connect() as conn:
            return [_location(r) for r in conn.execute(stmt)]

    def lock_location(self, location_code: str, task_id: Any) -> dict[str, Any]:
        code, task = str(location_code), str(task_id)
        with self.engine.begin() as conn:
            won = (
                conn.execute(
                    update(LocationRow)
                    .where(LocationRow.code == code, LocationRow.locked_by.is_(None))
                    .values(locked_by=task, locked_at=time.time())
                ).rowcount
                == 1
            )
            row = conn.execute(select(LocationRow).where(LocationRow.code == code)).first()
        if row is None:
            raise NotFound(f"no storage location {code!r}", "LOCATION_NOT_FOUND")
        return {
            "locked": won or row.locked_by == task,
            "location_code": code,
            "locked_by": row.locked_by,
        }

    def unlock_location(self, location_code: str, task_id: Any = None) -> dict[str, Any]:
        code = str(location_code)
        stmt = update(LocationRow).where(LocationRow.code == code)
        if task_id is not None:
            stmt = stmt.where(LocationRow.locked_by == str(task_id))
        with self.engine.begin() as conn:
            done = conn.execute(stmt.values(locked_by=None, locked_at=None)).rowcount == 1
            exists = conn.execute(select(LocationRow.code).where(LocationRow.code == code)).first()
        if exists is None:
            raise NotFound(f"no storage location {code!r}", "LOCATION_NOT_FOUND")
        return {"unlocked": done, "location_code": code}

    def seed_location(
        self,
        code: str,
        zone: str = "",
        goods: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create or update a location (``/script-engine/platform/locations``)."""
        with self.engine.begin() as conn:
            exists = conn.execute(select(LocationRow.code).where(LocationRow.code == code)).first()
            values = {"zone": zone, "goods": goods, "data": json.dumps(data or {})}
            if exists:
                conn.execute(update(LocationRow).where(LocationRow.code == code).values(**values))
            else:
                conn.execute(insert(LocationRow).values(code=code, **values))
        return self.location(code)

    # -- tasks -----------------------------------------------------------------------
    def create_task(self, task_label: str, input_params: Any = None) -> dict[str, Any]:
        now = time.time()
        with self.engine.begin() as conn:
            result = conn.execute(
                insert(PlatformTaskRow).values(
                    label=str(task_label),
                    input_params=json.dumps(input_params or {}),
                    status="created",
                    created_at=now,
                    updated_at=now,
                )
            )
            key = result.inserted_primary_key
        assert key is not None
        return self.platform_task(int(key[0]))

    def _task_row(self, task_id: Any) -> Any:
        try:
            tid = int(task_id)
        except (TypeError, ValueError):
            raise NotFound(f"no task {task_id!r}", "TASK_NOT_FOUND") from None
        with self.engine.connect() as conn:
            row = conn.execute(select(PlatformTaskRow).where(PlatformTaskRow.id == tid)).first()
        if row is None:
            raise NotFound(f"no task {task_id!r}", "TASK_NOT_FOUND")
        return row

    def platform_task(self, task_id: Any) -> dict[str, Any]:
        return _task(self._task_row(task_id))

    def stop_task(self, task_id: Any) -> dict[str, Any]:
        row = self._task_row(task_id)
        with self.engine.begin() as conn:
            conn.execute(
                update(PlatformTaskRow)
                .where(PlatformTaskRow.id == row.id)
                .values(status="stopped", updated_at=time.time())
            )
            if row.robot_id:
                conn.execute(
                    update(RobotRow)
                    .where(RobotRow.id == row.robot_id, RobotRow.task_id == str(row.id))
                    .values(status="idle", task_id=None, updated_at=time.time())
                )
        return self.platform_task(row.id)

    # -- robots ----------------------------------------------------------------------
    def robot(self, robot_id: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(select(RobotRow).where(RobotRow.id == str(robot_id))).first()
        if row is None:
            raise NotFound(f"no robot {robot_id!r}", "ROBOT_NOT_FOUND")
        return _robot(row)

    def robots(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [_robot(r) for r in conn.execute(select(RobotRow).order_by(RobotRow.id))]

    def dispatch_robot(self, robot_id: str, task_id: Any) -> dict[str, Any]:
        task = self._task_row(task_id)
        rid = str(robot_id)
        with self.engine.begin() as conn:
            won = (
                conn.execute(
                    update(RobotRow)
                    .where(RobotRow.id == rid, RobotRow.task_id.is_(None))
                    .values(status="busy", task_id=str(task.id), updated_at=time.time())
                ).rowcount
                == 1
            )
            if won:
                conn.execute(
                    update(PlatformTaskRow)
                    .where(PlatformTaskRow.id == task.id)
                    .values(status="running", robot_id=rid, updated_at=time.time())
                )
        return {"dispatched": won, **self.robot(rid)}

    def register_robot(
        self, robot_id: str, status: str = "idle", data: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Register (or update) a robot (``/script-engine/platform/robots``)."""
        with self.engine.begin() as conn:
            exists = conn.execute(select(RobotRow.id).where(RobotRow.id == robot_id)).first()
            values = {"status": status, "data": json.dumps(data or {}), "updated_at": time.time()}
            if exists:
                conn.execute(update(RobotRow).where(RobotRow.id == robot_id).values(**values))
            else:
                conn.execute(insert(RobotRow).values(id=robot_id, task_id=None, **values))
        return self.robot(robot_id)
