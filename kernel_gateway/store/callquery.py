"""Reading the calls history (``vwed_calls``): the filters of a query (``CallQuery``)
and the query, newest first with cursor paging."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from .models import CallRow

__all__ = ["CallQuery", "CallQueries", "CALL_FIELDS"]

# The fields of a call as clients get them (the columns of ``vwed_calls``).
CALL_FIELDS = (
    "id",
    "ts",
    "script_id",
    "script_path",
    "kind",
    "name",
    "ok",
    "duration_ms",
    "error_type",
    "error_message",
    "call_id",
    "task_id",
)


@dataclass
class CallQuery:
    """Filters of the calls history (all optional); ``cursor``: rows with ``id < cursor``."""

    script_path: str | None = None
    script_id: str | None = None
    kind: str | None = None
    name: str | None = None
    ok: bool | None = None
    error_type: str | None = None
    call_id: str | None = None
    task_id: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int = 100
    cursor: int | None = None


class CallQueries:
    """Queries of ``vwed_calls`` (part of ``Database``)."""

    engine: Engine

    def query_calls(self, query: CallQuery) -> list[dict[str, Any]]:
        columns = [getattr(CallRow, name) for name in CALL_FIELDS]
        stmt = select(*columns)
        for column, value in (
            (CallRow.script_path, query.script_path),
            (CallRow.script_id, query.script_id),
            (CallRow.kind, query.kind),
            (CallRow.name, query.name),
            (CallRow.ok, query.ok),
            (CallRow.error_type, query.error_type),
            (CallRow.call_id, query.call_id),
            (CallRow.task_id, query.task_id),
        ):
            if value is not None:
                stmt = stmt.where(column == value)
        if query.since is not None:
            stmt = stmt.where(CallRow.ts >= query.since)
        if query.until is not None:
            stmt = stmt.where(CallRow.ts < query.until)
        if query.cursor is not None:
            stmt = stmt.where(CallRow.id < query.cursor)
        stmt = stmt.order_by(CallRow.id.desc()).limit(query.limit)
        with self.engine.connect() as conn:
            return [{**row, "ok": bool(row["ok"])} for row in conn.execute(stmt).mappings()]
