"""The database's threads seen from the event loop: one writer thread (writes keep
their order), a few reader threads, and a deadline on every call.

Past its deadline (``--db-timeout``) a call is ``StoreTimeout`` (503
``STORE_TIMEOUT``) for the caller, whatever the database does; a driver call stuck in
its thread is left there, and shutdown does not wait for it (``busy_threads``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy.exc import InterfaceError, OperationalError

from ..errors import ServiceUnavailable, StoreTimeout

__all__ = ["DbThreads", "busy_threads"]

T = TypeVar("T")

# set on a worker thread while it runs a driver call: the thread's own state, so
# counting the busy ones needs no module-level counter
_BUSY = "vwed_db_busy"


def busy_threads() -> int:
    """How many database calls are running in worker threads right now, in all
    services: a process that ends with some still running (stuck on a stalled
    connection) must not wait for them (see ``app.main``)."""
    return sum(1 for t in threading.enumerate() if getattr(t, _BUSY, False))


def _tracked(fn: Callable[..., Any], started: threading.Event) -> Callable[..., Any]:
    def run(*args: Any) -> Any:
        started.set()
        me = threading.current_thread()
        setattr(me, _BUSY, True)
        try:
            return fn(*args)
        finally:
            setattr(me, _BUSY, False)

    return run


def _expire(fut: asyncio.Future[Any], expired: list[bool]) -> None:
    if not fut.done():
        expired.append(True)
        fut.cancel()


class DbThreads:
    """Runs blocking database calls off the event loop, each within a deadline."""

    def __init__(self, timeout: float, readers: int = 4) -> None:
        self.timeout = timeout
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="vwed-db-writer")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="vwed-db-reader")

    async def write(self, fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        """Run ``fn`` on the writer thread (writes keep their order), within
        ``timeout`` seconds (default ``self.timeout``) or ``StoreTimeout``."""
        return await self._run(self._writer, fn, args, timeout)

    async def read(self, fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        """Run a query on a reader thread within the deadline; a database that does
        not answer is a 503 (``STORE_TIMEOUT``) or, when it refuses connections, 503
        ``STORE_UNAVAILABLE``."""
        try:
            return await self._run(self._readers, fn, args, timeout)
        except (OperationalError, InterfaceError) as exc:
            raise ServiceUnavailable(
                "the database is not reachable",
                "STORE_UNAVAILABLE",
                log_message=f"database read failed: {exc}",
            ) from exc

    async def _run(
        self,
        pool: ThreadPoolExecutor,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        timeout: float | None,
    ) -> Any:
        limit = self.timeout if timeout is None else timeout
        started = threading.Event()
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(pool, _tracked(fn, started), *args)
        # a timer, not asyncio.wait_for: its waiter future costs a loop turn per call
        # (a start awaits a write before it answers)
        expired: list[bool] = []
        timer = loop.call_later(limit, _expire, fut, expired)
        try:
            return await fut
        except asyncio.CancelledError:
            if not expired:
                raise  # the caller was cancelled (the call is cancelled with it)
            # Not started: cancelled, it never runs. Started: it may still commit.
            raise StoreTimeout(
                f"the database did not answer within {limit:g} s",
                details={"may_still_complete": started.is_set()},
            ) from None
        finally:
            timer.cancel()

    def shutdown(self) -> None:
        """Stop taking calls. wait=False: a thread stuck in a driver call (a stalled
        connection) would block the shutdown for as long as the stall; the process
        does not wait for it."""
        self._writer.shutdown(wait=False, cancel_futures=True)
        self._readers.shutdown(wait=False, cancel_futures=True)
