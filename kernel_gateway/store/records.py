"""Writing the history: log records, calls and executions in batches (idempotent),
the blocks of log record ids, and retention."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from .models import CallRow, CounterRow, ExecutionRow, LogRow

__all__ = ["RecordTables"]

Rows = list[dict[str, Any]]


class RecordTables:
    """``vwed_log_records``, ``vwed_calls``, ``vwed_executions`` (writes) and
    ``vwed_counters`` (part of ``Database``)."""

    engine: Engine

    def insert_logs(self, rows: Rows) -> None:
        if rows:
            with self.engine.begin() as conn:
                conn.execute(insert(LogRow), rows)

    def insert_batch(self, logs: Rows, calls: Rows, executions: Rows | None = None) -> None:
        """Log records, calls and executions in one transaction (all stored, or none).

        Idempotent for log records and executions (they carry their ids): a batch that
        timed out on our side may have been committed all the same, and is then sent
        again (or comes back from the spill file); rows already stored are skipped.
        """
        if not logs and not calls and not executions:
            return
        try:
            self._insert(logs, calls, executions or [])
        except IntegrityError:
            with self.engine.connect() as conn:
                have_logs = self._existing(conn, LogRow.id, [r["id"] for r in logs])
                have_execs = self._existing(
                    conn, ExecutionRow.id, [r["id"] for r in executions or []]
                )
            self._insert(
                [r for r in logs if r["id"] not in have_logs],
                calls,
                [r for r in executions or [] if r["id"] not in have_execs],
            )

    def _insert(self, logs: Rows, calls: Rows, executions: Rows) -> None:
        with self.engine.begin() as conn:
            if logs:
                conn.execute(insert(LogRow), logs)
            if calls:
                conn.execute(insert(CallRow), [_call_row(r) for r in calls])
            if executions:
                conn.execute(insert(ExecutionRow), [_execution_row(r) for r in executions])

    @staticmethod
    def _existing(conn: Any, column: Any, ids: list[Any]) -> set[Any]:
        found: set[Any] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            found.update(conn.execute(select(column).where(column.in_(chunk))).scalars())
        return found

    def reserve_log_ids(self, count: int, at_least: int = 0) -> tuple[int, int]:
        """Reserve the next ``count`` log record ids: returns ``(first, last)``.

        The highest reserved id is kept in ``vwed_counters``, so a gateway killed
        with ids handed out (seen by live clients) but not stored never gives them
        again: the next start reserves above it. Safe between gateways sharing the
        database (the row is locked where the database can).
        """
        with self.engine.begin() as conn:
            top = conn.execute(
                select(CounterRow.value).where(CounterRow.name == "log_id").with_for_update()
            ).scalar()
            stored = int(conn.execute(select(func.max(LogRow.id))).scalar() or 0)
            first = max(int(top or 0), stored, at_least) + 1
            last = first + count - 1
            if top is None:
                conn.execute(insert(CounterRow).values(name="log_id", value=last))
            else:
                conn.execute(
                    update(CounterRow).where(CounterRow.name == "log_id").values(value=last)
                )
        return first, last

    def release_log_ids(self, reserved_top: int, used_top: int) -> None:
        """Give back the unused rest of a block at a clean stop (only if no one has
        reserved after it), so ids have gaps only after a crash."""
        with self.engine.begin() as conn:
            conn.execute(
                update(CounterRow)
                .where(CounterRow.name == "log_id", CounterRow.value == reserved_top)
                .values(value=used_top)
            )

    def prune(self, older_than: float | None, keep_records: int | None) -> int:
        """Delete log records older than a timestamp and beyond the newest ``keep``; calls
        and executions of steps older than the timestamp."""
        removed = 0
        with self.engine.begin() as conn:
            if older_than is not None:
                removed += conn.execute(delete(LogRow).where(LogRow.ts < older_than)).rowcount or 0
                conn.execute(delete(CallRow).where(CallRow.ts < older_than))
                conn.execute(delete(ExecutionRow).where(ExecutionRow.ts < older_than))
            if keep_records is not None:
                top = conn.execute(select(func.max(LogRow.id))).scalar()
                if top is not None and top > keep_records:
                    removed += (
                        conn.execute(delete(LogRow).where(LogRow.id <= top - keep_records)).rowcount
                        or 0
                    )
        return removed


_CALL_COLUMNS_0007 = ("script_path", "error_message", "task_id")
_EXECUTION_COLUMNS_0010 = ("status", "worker", "cpu_ms", "peak_rss", "async_id", "attempt")


def _execution_row(row: dict[str, Any]) -> dict[str, Any]:
    """An execution row with every column (one batch must name the same columns; a spill
    file of an older gateway, and a step that did not report its usage, lack some)."""
    if all(k in row for k in _EXECUTION_COLUMNS_0010):
        return row
    return {**dict.fromkeys(_EXECUTION_COLUMNS_0010), **row}


def _call_row(row: dict[str, Any]) -> dict[str, Any]:
    """A call row with every column: a spill file of an older gateway has calls
    without the columns of migration 0007 (one batch must name the same columns)."""
    if all(k in row for k in _CALL_COLUMNS_0007):
        return row
    return {**dict.fromkeys(_CALL_COLUMNS_0007), **row}
