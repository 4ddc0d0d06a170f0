"""The lock that makes one gateway the active one: a PostgreSQL session-level advisory
lock, held on a connection of its own that stays open as long as the gateway is active.

A session lock lives exactly as long as its connection: the server releases it when
the gateway's process dies (its socket closes), when the connection is cut, or when
the server stops hearing from the gateway's host. That last case is the one a crashed
machine or a cut cable gives, and the server notices it only through TCP: the session
asks for short keepalives and a ``tcp_user_timeout`` (about 5 s), so the lock is not
held for the kernel default of two hours by a gateway that is gone.

Every method blocks (a driver call): ``Failover`` runs them in a thread of its own
with a deadline.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from ..store.db import timeout_connect_args

__all__ = ["ActiveLock", "lock_key"]

log = logging.getLogger("kernel_gateway.ha")

# the server's side: a silent peer is dead after about 2 + 3 * 1 s (keepalives), or
# when data it was sent is not acknowledged within 5 s (tcp_user_timeout)
SERVER_KEEPALIVE = (
    "-c tcp_keepalives_idle=2 -c tcp_keepalives_interval=1 "
    "-c tcp_keepalives_count=3 -c tcp_user_timeout=5000"
)
# the client's side (libpq parameters): the gateway notices a dead server the same way
CLIENT_KEEPALIVE = {
    "keepalives": 1,
    "keepalives_idle": 2,
    "keepalives_interval": 1,
    "keepalives_count": 3,
    "tcp_user_timeout": 5000,
}


def lock_key(database: str, schema: str) -> int:
    """The advisory lock's key: one per database and schema, so gateways of two sites
    that share a PostgreSQL server (a schema each) do not exclude each other. A signed
    64-bit number, as ``pg_try_advisory_lock(bigint)`` takes it."""
    digest = hashlib.sha256(f"vwed-gateway-active:{database}:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class ActiveLock:
    """The advisory lock of the database ``url`` names (with its ``search_path``)."""

    def __init__(self, url: str, timeout: float) -> None:
        args: dict[str, Any] = timeout_connect_args(url, timeout)
        args["options"] = f"{args.get('options', '')} {SERVER_KEEPALIVE}".strip()
        args.update(CLIENT_KEEPALIVE)
        self._connect_timeout = args.get("connect_timeout", timeout)
        self._engine = create_engine(
            url, poolclass=NullPool, connect_args=args, isolation_level="AUTOCOMMIT"
        )
        self._conn: Connection | None = None
        self.key: int | None = None
        self.where = ""  # database.schema, for the log

    def take(self) -> bool:
        """Try once, without waiting: True if this session holds the lock now."""
        if self._conn is None:
            self._conn = self._engine.connect()
            database, schema = self._conn.execute(
                text("SELECT current_database(), current_schema()")
            ).one()
            self.key = lock_key(database, schema or "")
            self.where = f"{database}.{schema}"
        got = self._conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key})
        return bool(got.scalar())

    def check(self) -> None:
        """The keepalive of the active gateway: raises unless the lock's connection is
        alive and its session still holds an advisory lock."""
        if self._conn is None:
            raise ConnectionError("the lock's connection is closed")
        held = self._conn.execute(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                "AND pid = pg_backend_pid() AND granted"
            )
        ).scalar()
        if not held:
            raise ConnectionError("the lock's session no longer holds the lock")

    def forget(self) -> None:
        """Leave the connection to the thread stuck on it (a silent server): the
        driver's deadlines end it; the next ``take`` opens a new one."""
        self._conn = None

    @property
    def connect_timeout(self) -> float:
        return float(self._connect_timeout)

    def drop(self) -> None:
        """Forget the connection (broken, or given up on): the next ``take`` opens a new one."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.invalidate()
                conn.close()
            except Exception as exc:  # broken already: nothing left to close
                log.debug("closing the lock's connection: %s", exc)

    def release(self) -> None:
        """Give the lock up (a clean stop): the standby takes it at its next try."""
        if self._conn is not None and self.key is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
            except Exception as exc:  # the connection's end releases it anyway
                log.debug("unlocking: %s", exc)
        self.drop()
        self._engine.dispose()
