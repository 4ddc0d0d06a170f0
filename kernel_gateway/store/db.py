"""The database behind the gateway: the connection, the driver's own deadlines, and
the migrations; its queries are grouped by tables in the modules ``Database`` is made of.

All methods are synchronous and run in worker threads (``StoreService`` hands them to
its threads, ``threads.DbThreads``): one writer thread, so writes are serialized
(SQLite-friendly), and a few reader threads for history queries.

::

    Database
    ├── records.RecordTables     log records, calls, executions: batches, log ids, retention
    ├── logquery.LogQueries      the log history query
    ├── callquery.CallQueries    the calls history query
    ├── runs.RunTables           script runs and the scripts to restore
    ├── tasks.TaskTables         task variables and the executions of steps
    ├── asyncexec.AsyncExecutionTables  asynchronous executions (stored before accepted)
    ├── secrets.SecretTables     secrets (encrypted values, scopes)
    └── platform.PlatformTables  the embedded platform: locations, tasks, robots
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from .asyncexec import AsyncExecutionTables
from .callquery import CallQueries
from .logquery import LogQueries, LogQuery
from .platform import PlatformTables
from .records import RecordTables
from .runs import RunTables
from .secrets import SecretTables
from .tasks import TaskTables

__all__ = ["Database", "DatabaseError", "LogQuery", "timeout_connect_args"]

log = logging.getLogger("kernel_gateway.store")
MIGRATIONS = Path(__file__).with_name("migrations")


class DatabaseError(RuntimeError):
    """The database could not be reached or refused an operation."""


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


class Database(
    RecordTables,
    LogQueries,
    CallQueries,
    RunTables,
    TaskTables,
    AsyncExecutionTables,
    PlatformTables,
    SecretTables,
):
    """One SQLAlchemy engine and every query the gateway runs (blocking: call them
    from a worker thread)."""

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
