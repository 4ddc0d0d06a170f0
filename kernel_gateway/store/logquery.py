"""Reading the log history: the filters of a query (``LogQuery``), the query, and a
stored row as the record clients get."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from .models import LEVEL_NAMES, LogRow, RunRow

__all__ = ["LogQuery", "LogQueries", "row_to_record"]


@dataclass
class LogQuery:
    """Filters of the log history (all optional)."""

    script_id: str | None = None
    script_path: str | None = None
    run_id: int | None = None
    min_level: int | None = None
    tag: str | None = None
    source: str | None = None
    call_id: str | None = None
    task_id: str | None = None
    since: float | None = None
    until: float | None = None
    q: str | None = None
    limit: int = 100
    cursor: int | None = None
    newest_first: bool = True


class LogQueries:
    """Queries of ``vwed_log_records`` (part of ``Database``)."""

    engine: Engine

    def max_log_id(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.max(LogRow.id))).scalar() or 0)

    def query_logs(self, query: LogQuery) -> list[dict[str, Any]]:
        stmt = select(LogRow.__table__)
        if query.script_id is not None:
            stmt = stmt.where(LogRow.script_id == query.script_id)
        if query.script_path is not None:
            runs = select(RunRow.id).where(RunRow.script_path == query.script_path)
            stmt = stmt.where(LogRow.run_id.in_(runs))
        if query.run_id is not None:
            stmt = stmt.where(LogRow.run_id == query.run_id)
        if query.min_level is not None:
            stmt = stmt.where(LogRow.level >= query.min_level)
        for column, value in (
            (LogRow.tag, query.tag),
            (LogRow.source, query.source),
            (LogRow.call_id, query.call_id),
            (LogRow.task_id, query.task_id),
        ):
            if value is not None:
                stmt = stmt.where(column == value)
        if query.since is not None:
            stmt = stmt.where(LogRow.ts >= query.since)
        if query.until is not None:
            stmt = stmt.where(LogRow.ts < query.until)
        if query.q:
            escaped = query.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            stmt = stmt.where(LogRow.message.ilike(f"%{escaped}%", escape="\\"))
        if query.cursor is not None:
            stmt = stmt.where(
                LogRow.id < query.cursor if query.newest_first else LogRow.id > query.cursor
            )
        stmt = stmt.order_by(LogRow.id.desc() if query.newest_first else LogRow.id.asc())
        stmt = stmt.limit(query.limit)
        with self.engine.connect() as conn:
            return [row_to_record(m) for m in conn.execute(stmt).mappings()]


def row_to_record(row: Any) -> dict[str, Any]:
    """A log row (a mapping of its columns) as the record clients get."""
    record = {
        k: row[k]
        for k in (
            "id",
            "ts",
            "script_id",
            "run_id",
            "level",
            "source",
            "tag",
            "message",
            "call_id",
            "task_id",
        )
    }
    record["level"] = LEVEL_NAMES.get(record["level"], str(record["level"]))
    return record
