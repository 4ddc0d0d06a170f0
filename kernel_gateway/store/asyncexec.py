"""``vwed_async_executions``: asynchronous executions of steps, one row each, written
as they go (queued, running, each attempt, progress, the end); and the one-row reads
of ``vwed_executions`` (the history of every step run) that the executions API needs.

Rows are plain dicts of column values here; the JSON columns are encoded and decoded
by ``executions/record.py``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from .models import AsyncExecutionRow, ExecutionRow

__all__ = ["AsyncExecutionTables", "UNFINISHED", "AsyncOp"]

UNFINISHED = ("queued", "running")
Row = dict[str, Any]
# ("insert", row) or ("update", id, values, unfinished_only): one write of a batch
AsyncOp = tuple[Any, ...]

# Built once, the values bound at execution: SQLAlchemy then reuses the compiled form
# (a statement made per row with ``.values(**row)`` costs more than SQLite's own work).
_T = AsyncExecutionRow
_INSERT = insert(_T)
_UPDATE = update(_T).where(_T.id == bindparam("b_id"))
_UPDATE_UNFINISHED = _UPDATE.where(_T.status.in_(UNFINISHED))
_BY_KEY = select(_T.__table__).where(_T.idempotency_key == bindparam("b_key"))


class AsyncExecutionTables:
    """The asynchronous executions table (part of ``Database``)."""

    engine: Engine

    def async_writes(self, ops: list[AsyncOp]) -> list[Any]:
        """Several writes in one transaction (group commit, ``StoreService.async_insert``
        and ``async_update``): each ``("insert", row)`` answers ``(row, created)`` (see
        ``insert_async``), each ``("update", id, values, unfinished_only)`` None. When the
        transaction fails (a key taken by a racing insert, a row the database refuses),
        they are written one by one, so one bad row fails only itself (its result is then
        the exception)."""
        try:
            with self.engine.begin() as conn:
                return [self._async_op(conn, op) for op in ops]
        except SQLAlchemyError:
            if len(ops) == 1:
                return [self._async_alone(ops[0])]
            return [self._async_alone(op) for op in ops]

    def _async_alone(self, op: AsyncOp) -> Any:
        try:
            with self.engine.begin() as conn:
                return self._async_op(conn, op)
        except IntegrityError as exc:
            key = op[1].get("idempotency_key") if op[0] == "insert" else None
            found = self.async_by_key(key) if key else None
            if found is None:  # not the key that collided: a real error
                return exc
            return found, False  # another request with the same key won the race
        except SQLAlchemyError as exc:
            return exc

    @staticmethod
    def _async_op(conn: Connection, op: AsyncOp) -> Any:
        if op[0] == "insert":
            row = op[1]
            key = row.get("idempotency_key")
            if key is not None:
                found = conn.execute(_BY_KEY, {"b_key": key}).mappings().first()
                if found is not None:
                    return dict(found), False
            conn.execute(_INSERT, [row])
            return row, True
        _, execution_id, values, unfinished_only = op
        stmt = _UPDATE_UNFINISHED if unfinished_only else _UPDATE
        conn.execute(stmt, [{**values, "b_id": execution_id}])
        return None

    def insert_async(self, row: Row) -> tuple[Row, bool]:
        """Store a new execution; ``(row, True)``. With an idempotency key that is
        taken already: ``(the stored row, False)``, nothing written."""
        result = self.async_writes([("insert", row)])[0]
        if isinstance(result, BaseException):
            raise result
        return result  # type: ignore[no-any-return]

    def update_async(self, execution_id: str, values: Row, unfinished_only: bool = False) -> None:
        """Write ``values``; ``unfinished_only``: only while the row is queued or running
        (a progress update that comes late must not touch an execution that ended)."""
        result = self.async_writes([("update", execution_id, values, unfinished_only)])[0]
        if isinstance(result, BaseException):
            raise result

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
