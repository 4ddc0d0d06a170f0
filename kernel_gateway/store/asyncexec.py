"""``vwed_async_executions``: asynchronous executions of steps, one row each, written
as they go (queued, running, each attempt, progress, the end); and the one-row reads
of ``vwed_executions`` (the history of every step run) that the executions API needs.

Rows are plain dicts of column values here; the JSON columns are encoded and decoded
by ``executions/record.py``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from .models import AsyncExecutionRow, ExecutionRow

__all__ = ["AsyncExecutionTables", "UNFINISHED"]

UNFINISHED = ("queued", "running")
Row = dict[str, Any]


class AsyncExecutionTables:
    """The asynchronous executions table (part of ``Database``)."""

    engine: Engine

    def insert_async(self, row: Row) -> tuple[Row, bool]:
        """Store a new execution; ``(row, True)``. With an idempotency key that is
        taken already: ``(the stored row, False)``, nothing written."""
        key = row.get("idempotency_key")
        if key is not None:
            found = self.async_by_key(key)
            if found is not None:
                return found, False
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(AsyncExecutionRow).values(**row))
        except IntegrityError:
            found = self.async_by_key(key) if key is not None else None
            if found is None:  # not the key that collided: a real error
                raise
            return found, False  # another request with the same key won the race
        return row, True

    def update_async(self, execution_id: str, values: Row, unfinished_only: bool = False) -> None:
        """Write ``values``; ``unfinished_only``: only while the row is queued or running
        (a progress update that comes late must not touch an execution that ended)."""
        stmt = update(AsyncExecutionRow).where(AsyncExecutionRow.id == execution_id)
        if unfinished_only:
            stmt = stmt.where(AsyncExecutionRow.status.in_(UNFINISHED))
        with self.engine.begin() as conn:
            conn.execute(stmt.values(**values))

    def async_execution(self, execution_id: str) -> Row | None:
        return self._one(
            select(AsyncExecutionRow.__table__).where(AsyncExecutionRow.id == execution_id)
        )

    def async_by_key(self, key: str) -> Row | None:
        return self._one(
            select(AsyncExecutionRow.__table__).where(AsyncExecutionRow.idempotency_key == key)
        )

    def unfinished_async(self) -> list[Row]:
        """Executions a gateway left queued or running, oldest submission first."""
        stmt = (
            select(AsyncExecutionRow.__table__)
            .where(AsyncExecutionRow.status.in_(UNFINISHED))
            .order_by(AsyncExecutionRow.submitted_at)
        )
        with self.engine.connect() as conn:
            return [dict(m) for m in conn.execute(stmt).mappings()]

    def list_async(
        self,
        status: str | None = None,
        task_id: str | None = None,
        script_path: str | None = None,
        limit: int = 100,
    ) -> list[Row]:
        stmt = select(AsyncExecutionRow.__table__).order_by(AsyncExecutionRow.submitted_at.desc())
        if status:
            stmt = stmt.where(AsyncExecutionRow.status == status)
        if task_id:
            stmt = stmt.where(AsyncExecutionRow.task_id == task_id)
        if script_path:
            stmt = stmt.where(AsyncExecutionRow.script_path == script_path)
        with self.engine.connect() as conn:
            return [dict(m) for m in conn.execute(stmt.limit(limit)).mappings()]

    def prune_async(self, finished_before: float) -> int:
        """Forget executions that ended before ``finished_before`` (their attempts stay in
        ``vwed_executions``, pruned with the rest of the history)."""
        with self.engine.begin() as conn:
            done = AsyncExecutionRow.status.notin_(UNFINISHED)
            stmt = delete(AsyncExecutionRow).where(
                done, AsyncExecutionRow.finished_at < finished_before
            )
            return conn.execute(stmt).rowcount or 0

    def execution(self, execution_id: str) -> Row | None:
        """One row of the steps history (a synchronous step, or an attempt)."""
        return self._one(select(ExecutionRow.__table__).where(ExecutionRow.id == execution_id))

    def _one(self, stmt: Any) -> Row | None:
        with self.engine.connect() as conn:
            first = conn.execute(stmt).mappings().first()
        return None if first is None else dict(first)
