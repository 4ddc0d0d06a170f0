"""The database behind the gateway: connection, migrations, writes and queries.

All methods are synchronous and run in worker threads (``AsyncDatabase`` in
``kernel_gateway.store.aio`` hands them to executors): one writer thread, so writes are
serialized (SQLite-friendly), and a few reader threads for history queries.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, delete, event, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from .models import (
    LEVEL_NAMES,
    CallRow,
    CounterRow,
    DesiredScriptRow,
    ExecutionRow,
    LogRow,
    RunRow,
    TaskVariablesRow,
)

__all__ = ["Database", "DatabaseError", "LogQuery"]

log = logging.getLogger("kernel_gateway.store")
MIGRATIONS = Path(__file__).with_name("migrations")


class DatabaseError(RuntimeError):
    """The database could not be reached or refused an operation."""


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


def _sqlite_pragmas(timeout: float) -> Any:
    def pragmas(dbapi_connection: Any, _record: Any) -> None:
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        cur.close()

    return pragmas


def timeout_connect_args(url: str, timeout: float) -> dict[str, Any]:
    """The driver's own deadlines for ``timeout`` seconds: connecting, and a statement.

    They bound what a driver can bound by itself (a server that is down, a slow or
    locked statement), and are a second longer than ``timeout``: the caller is answered
    by the ``asyncio`` deadline (503 ``STORE_TIMEOUT``), the driver's own then frees
    the thread. A connection that stalls mid-answer (a proxy that accepts and
    forwards nothing) is not bounded by psycopg: the ``asyncio`` deadline of
    ``StoreService`` answers the caller then, and shutdown does not wait for the thread.
    """
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    timeout += 1.0
    seconds = max(1, math.ceil(timeout))
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return {"check_same_thread": False, "timeout": timeout}
    if backend == "postgresql":
        options = str(parsed.query.get("options", "") or "")
        statement = f"-c statement_timeout={int(timeout * 1000)}"
        return {
            "connect_timeout": seconds,
            "options": f"{options} {statement}".strip(),
        }
    if backend in ("mysql", "mariadb"):
        return {"connect_timeout": seconds, "read_timeout": seconds, "write_timeout": seconds}
    return {}


class Database:
    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url
        self.timeout = timeout
        kwargs: dict[str, Any] = {"pool_pre_ping": True, "future": True}
        try:
            kwargs["connect_args"] = timeout_connect_args(url, timeout)
            self.engine: Engine = create_engine(url, **kwargs)
        except Exception as exc:  # bad URL, missing driver
            raise DatabaseError(f"cannot use database {self.safe_url}: {exc}") from exc
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas(timeout + 1.0))

    @property
    def safe_url(self) -> str:
        try:
            return self.engine.url.render_as_string(hide_password=True)
        except AttributeError:
            return self.url.split("@")[-1]

    def migrate(self) -> None:
        """Bring the schema to the newest migration (creates it on an empty database)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        try:
            with self.engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except SQLAlchemyError as exc:
            raise DatabaseError(f"migrating {self.safe_url} failed: {exc}") from exc

    def close(self) -> None:
        self.engine.dispose()

    # -- writes ----------------------------------------------------------------------
    def insert_logs(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            with self.engine.begin() as conn:
                conn.execute(insert(LogRow), rows)

    def insert_calls(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            with self.engine.begin() as conn:
                conn.execute(insert(CallRow), rows)

    def insert_batch(
        self,
        logs: list[dict[str, Any]],
        calls: list[dict[str, Any]],
        executions: list[dict[str, Any]] | None = None,
    ) -> None:
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

    def _insert(
        self,
        logs: list[dict[str, Any]],
        calls: list[dict[str, Any]],
        executions: list[dict[str, Any]],
    ) -> None:
        with self.engine.begin() as conn:
            if logs:
                conn.execute(insert(LogRow), logs)
            if calls:
                conn.execute(insert(CallRow), calls)
            if executions:
                conn.execute(insert(ExecutionRow), executions)

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

    def end_orphan_runs(self, now: float) -> int:
        """Runs a previous gateway process left open (it was killed): ended now with
        ``exit_reason = 'gateway died'``. Called at start, before restore."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(RunRow)
                .where(RunRow.stopped_at.is_(None))
                .values(status="died", exit_reason="gateway died", stopped_at=now)
            )
        return int(result.rowcount or 0)

    def run_started(
        self, script_id: str, script_path: str, replicas: int, started_at: float
    ) -> int:
        with self.engine.begin() as conn:
            result = conn.execute(
                insert(RunRow).values(
                    script_id=script_id,
                    script_path=script_path,
                    replicas=replicas,
                    started_at=started_at,
                    status="starting",
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    def run_ended(
        self, run_id: int, status: str, reason: str | None, stopped_at: float | None
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(RunRow)
                .where(RunRow.id == run_id)
                .values(status=status, exit_reason=reason, stopped_at=stopped_at)
            )

    def prune(self, older_than: float | None, keep_records: int | None) -> int:
        """Delete log records older than a timestamp and beyond the newest ``keep``."""
        removed = 0
        with self.engine.begin() as conn:
            if older_than is not None:
                removed += conn.execute(delete(LogRow).where(LogRow.ts < older_than)).rowcount or 0
                conn.execute(delete(CallRow).where(CallRow.ts < older_than))
            if keep_records is not None:
                top = conn.execute(select(func.max(LogRow.id))).scalar()
                if top is not None and top > keep_records:
                    removed += (
                        conn.execute(delete(LogRow).where(LogRow.id <= top - keep_records)).rowcount
                        or 0
                    )
        return removed

    def merge_task_variables(
        self, task_id: str, variables: dict[str, Any], now: float
    ) -> dict[str, Any]:
        """Merge ``variables`` into the task's row in one transaction (row locked where
        the database can), so concurrent steps of a task keep each other's keys."""
        return self.merge_many([(task_id, variables)], now)[0]

    def merge_many(
        self, merges: list[tuple[str, dict[str, Any]]], now: float
    ) -> list[dict[str, Any]]:
        """Several merges (in order, possibly of the same task) in one transaction;
        returns each merge's result. Used for group commit by ``StoreService``."""
        import json

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
        import json

        with self.engine.connect() as conn:
            row = conn.execute(
                select(TaskVariablesRow.variables, TaskVariablesRow.updated_at).where(
                    TaskVariablesRow.task_id == task_id
                )
            ).first()
        if row is None:
            return None
        return {"task_id": task_id, "variables": json.loads(row[0]), "updated_at": row[1]}

    def insert_execution(self, row: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(ExecutionRow), [row])

    def executions(self, task_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        stmt = select(ExecutionRow.__table__).order_by(ExecutionRow.ts.desc()).limit(limit)
        if task_id:
            stmt = stmt.where(ExecutionRow.task_id == task_id)
        with self.engine.connect() as conn:
            return [dict(m) for m in conn.execute(stmt).mappings()]

    def desire(
        self,
        script_path: str,
        replicas: int,
        restart: str,
        now: float,
        options: dict[str, Any] | None = None,
    ) -> None:
        """Remember that a script should run (replacing its options)."""
        with self.engine.begin() as conn:
            conn.execute(
                delete(DesiredScriptRow).where(DesiredScriptRow.script_path == script_path)
            )
            conn.execute(
                insert(DesiredScriptRow).values(
                    script_path=script_path,
                    replicas=replicas,
                    restart=restart,
                    started_at=now,
                    options=json.dumps(options) if options else None,
                )
            )

    def undesire(self, script_path: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                delete(DesiredScriptRow).where(DesiredScriptRow.script_path == script_path)
            )

    def desired(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = [
                dict(m)
                for m in conn.execute(
                    select(DesiredScriptRow.__table__).order_by(DesiredScriptRow.started_at)
                ).mappings()
            ]
        for row in rows:
            row["options"] = json.loads(row["options"]) if row.get("options") else {}
        return rows

    # -- reads -----------------------------------------------------------------------
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

    def runs(self, script_path: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        stmt = select(RunRow.__table__).order_by(RunRow.id.desc()).limit(limit)
        if script_path:
            stmt = stmt.where(RunRow.script_path == script_path)
        with self.engine.connect() as conn:
            return [dict(m) for m in conn.execute(stmt).mappings()]


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
