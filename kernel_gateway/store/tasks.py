"""Task-flow data: the variables of each task (merged by its steps) and the executions
of steps."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from .models import ExecutionRow, TaskVariablesRow

__all__ = ["TaskTables"]


class TaskTables:
    """``vwed_task_variables``, and ``vwed_executions`` read (they are written in
    batches by ``records.RecordTables``); part of ``Database``."""

    engine: Engine

    def merge_many(
        self, merges: list[tuple[str, dict[str, Any]]], now: float
    ) -> list[dict[str, Any]]:
        """Merge each ``(task_id, variables)`` into its task's row (in order, possibly
        of the same task) in one transaction, rows locked where the database can, so
        concurrent steps of a task keep each other's keys; returns each merge's result.
        Used for group commit by ``StoreService``."""
        for attempt in range(3):
            try:
                with self.engine.begin() as conn:
                    current: dict[str, dict[str, Any] | None] = {}
                    results = []
                    for task_id, variables in merges:
                        if task_id not in current:
                            row = conn.execute(
                                select(TaskVariablesRow.variables)
                                .where(TaskVariablesRow.task_id == task_id)
                                .with_for_update()
                            ).scalar()
                            current[task_id] = json.loads(row) if row is not None else None
                        base = current[task_id]
                        merged = {**(base or {}), **variables}
                        text = json.dumps(merged, ensure_ascii=False)
                        if base is None:
                            conn.execute(
                                insert(TaskVariablesRow).values(
                                    task_id=task_id, variables=text, updated_at=now
                                )
                            )
                        else:
                            conn.execute(
                                update(TaskVariablesRow)
                                .where(TaskVariablesRow.task_id == task_id)
                                .values(variables=text, updated_at=now)
                            )
                        current[task_id] = merged
                        results.append(merged)
                    return results
            except IntegrityError:
                if attempt == 2:  # another gateway inserted the row first: merge again
                    raise
        raise AssertionError("unreachable")

    def task_variables(self, task_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(TaskVariablesRow.variables, TaskVariablesRow.updated_at).where(
                    TaskVariablesRow.task_id == task_id
                )
            ).first()
        if row is None:
            return None
        return {"task_id": task_id, "variables": json.loads(row[0]), "updated_at": row[1]}

    def executions(self, task_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        stmt = select(ExecutionRow.__table__).order_by(ExecutionRow.ts.desc()).limit(limit)
        if task_id:
            stmt = stmt.where(ExecutionRow.task_id == task_id)
        with self.engine.connect() as conn:
            return [dict(m) for m in conn.execute(stmt).mappings()]
