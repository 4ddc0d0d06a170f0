"""The database seen from the event loop: batched writes in one writer thread,
queries in reader threads, retention in the background.

Writes are queued and stored in batches (every ``interval`` seconds, so a record
is stored well within a second); the queue of log records is bounded: past
``max_queue`` records, new ones are dropped and counted, and once the queue has
room again an ``engine`` record says how many were dropped and when (via
``on_drop``). If the database is down, batches are retried and the bound holds.
Calls and executions (the history) have the same bound, and their drops are counted
and reported the same way (``on_notice``).

Every awaited database operation has a deadline (``timeout``, ``--db-timeout``):
past it the caller gets ``StoreTimeout`` (503 ``STORE_TIMEOUT``), whatever the
database does. A driver call stuck in its thread is left there: shutdown does not
wait for it. What is still queued at shutdown and cannot be stored within a bounded
flush goes to a spill file (``spill.py``), stored at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError

from ..errors import ServiceUnavailable, StoreTimeout
from .db import Database, LogQuery
from .models import LEVELS
from .spill import read_spill, write_spill

__all__ = ["StoreService", "busy_threads"]

log = logging.getLogger("kernel_gateway.store")
OnDrop = Callable[[int, float, float], None]
OnNotice = Callable[[str, str], None]

# Driver calls running now, in all services: a process that ends with some still
# running (stuck on a stalled connection) must not wait for them (see app.main).
_busy = 0
_busy_lock = threading.Lock()


def busy_threads() -> int:
    """How many database calls are running in worker threads right now."""
    return _busy


def _tracked(fn: Callable[..., Any], started: threading.Event) -> Callable[..., Any]:
    def run(*args: Any) -> Any:
        global _busy
        started.set()
        with _busy_lock:
            _busy += 1
        try:
            return fn(*args)
        finally:
            with _busy_lock:
                _busy -= 1

    return run


class StoreService:
    def __init__(
        self,
        db: Database,
        *,
        interval: float = 0.2,
        batch_size: int = 2000,
        max_queue: int = 50_000,
        retention_days: float = 30.0,
        retention_records: int = 5_000_000,
        prune_every: float = 600.0,
        timeout: float = 5.0,
        spill_path: Path | None = None,
        id_block: int = 10_000,
    ) -> None:
        self.db = db
        self.timeout = timeout
        # migrations and the spill file at start may take longer than one statement
        self.open_timeout = max(30.0, timeout * 6)
        self.spill_path = spill_path
        self.id_block = id_block
        self.on_notice: OnNotice | None = None
        self.notices: list[tuple[str, str]] = []  # said at start, once ids are known
        self.history_dropped_total = 0
        self._history_dropped = 0
        self._closing = False
        self.spilled = 0
        self.interval = interval
        self.batch_size = batch_size
        self.max_queue = max_queue
        self.retention_days = retention_days
        self.retention_records = retention_records
        self.prune_every = prune_every
        self.on_drop: OnDrop | None = None
        self._logs: deque[dict[str, Any]] = deque()
        self._calls: deque[dict[str, Any]] = deque()
        self._executions: deque[dict[str, Any]] = deque()
        self._merges: list[tuple[str, dict[str, Any], asyncio.Future[dict[str, Any]]]] = []
        self._merging = False
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="vwed-db-writer")
        self._readers = ThreadPoolExecutor(4, thread_name_prefix="vwed-db-reader")
        self._tasks: list[asyncio.Task[None]] = []
        self._dropped = 0
        self.dropped_total = 0
        self._drop_span: tuple[float, float] = (0.0, 0.0)
        self.stored = 0
        self.failures = 0

    # -- lifecycle ---------------------------------------------------------------------
    async def open(self) -> tuple[int, int]:
        """Migrate, end the runs a killed gateway left open, store what the last
        gateway spilled, reserve the first block of log ids; then start the writer.
        Returns the reserved block ``(first, last)``."""
        t = self.open_timeout
        await self.write(self.db.migrate, timeout=t)
        orphans = await self.write(self.db.end_orphan_runs, time.time(), timeout=t)
        if orphans:
            self.notices.append(
                ("WARNING", f"{orphans} run(s) of a gateway that died were marked ended")
            )
        spilled_top = await self._load_spill()
        first, last = await self.write(
            self.db.reserve_log_ids, self.id_block, spilled_top, timeout=t
        )
        self._tasks = [
            asyncio.ensure_future(self._write_loop()),
            asyncio.ensure_future(self._prune_loop()),
        ]
        return int(first), int(last)

    async def reserve_ids(self, at_least: int = 0) -> tuple[int, int]:
        """The next block of log record ids (above ``at_least``)."""
        first, last = await self.write(self.db.reserve_log_ids, self.id_block, at_least)
        return int(first), int(last)

    async def close(self, ids: tuple[int, int] | None = None) -> None:
        """Stop the writer, flush for at most ``timeout`` seconds, spill the rest, and
        leave threads stuck in the driver behind. ``ids``: (highest reserved, highest
        used) log id, to give the unused rest of the block back after a full flush."""
        # The loops also stop on ``_closing``, and they are not awaited without a bound:
        # before Python 3.12, ``asyncio.wait_for`` (under every store call) can swallow a
        # cancellation that lands as its future completes (gh-86296), and the loop would
        # go on, and this close with it, forever.
        self._closing = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=self.timeout + 1)
            for task in pending:
                task.cancel()
        flushed = False
        try:
            await asyncio.wait_for(self.flush(), self.timeout)
            flushed = True
        except Exception as exc:  # StoreTimeout, TimeoutError, a database error
            log.warning("the last log records could not be stored: %s", exc)
        if flushed and ids is not None and ids[0] > ids[1]:
            with contextlib.suppress(Exception):
                await self.write(self.db.release_log_ids, ids[0], ids[1], timeout=1.0)
        if self._logs or self._calls or self._executions:
            self._spill()
        # wait=False: a thread stuck in a driver call (a stalled connection) would
        # block the shutdown for as long as the stall; the process does not wait for it.
        self._writer.shutdown(wait=False, cancel_futures=True)
        self._readers.shutdown(wait=False, cancel_futures=True)
        closer = threading.Thread(target=self.db.close, name="vwed-db-close", daemon=True)
        closer.start()
        await asyncio.get_running_loop().run_in_executor(None, closer.join, 2.0)

    async def write(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None) -> Any:
        """Run ``fn`` on the writer thread (writes keep their order), within
        ``timeout`` seconds (default ``self.timeout``) or ``StoreTimeout``."""
        return await self._run(self._writer, fn, args, timeout)

    async def read(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None) -> Any:
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
        fut = asyncio.get_running_loop().run_in_executor(pool, _tracked(fn, started), *args)
        try:
            return await asyncio.wait_for(fut, limit)
        except TimeoutError:
            # Not started: cancelled, it never runs. Started: it may still commit.
            raise StoreTimeout(
                f"the database did not answer within {limit:g} s",
                details={"may_still_complete": started.is_set()},
            ) from None

    # -- queues ------------------------------------------------------------------------
    @property
    def queued(self) -> int:
        return len(self._logs)

    @property
    def dropped(self) -> int:
        return self._dropped

    def add_log(self, record: dict[str, Any]) -> bool:
        if len(self._logs) >= self.max_queue:
            self._count_drop(record["ts"])
            return False
        self._logs.append(record)
        return True

    def _count_drop(self, ts: float) -> None:
        first = self._drop_span[0] if self._dropped else ts
        self._dropped += 1
        self.dropped_total += 1
        self._drop_span = (first, ts)

    def add_call(self, row: dict[str, Any]) -> bool:
        return self._add_history(self._calls, row)

    def add_execution(self, row: dict[str, Any]) -> bool:
        return self._add_history(self._executions, row)

    def _add_history(self, queue: deque[dict[str, Any]], row: dict[str, Any]) -> bool:
        if len(queue) >= self.max_queue:
            self._history_dropped += 1
            self.history_dropped_total += 1
            return False
        queue.append(row)
        return True

    async def merge_task_variables(
        self, task_id: str, variables: dict[str, Any], timeout: float | None = None
    ) -> dict[str, Any]:
        """Merge a step's variables into its task's row; answers once committed, or
        raises ``StoreTimeout`` after ``timeout`` seconds (default ``self.timeout``)
        with ``details["may_still_be_written"]``: False if the merge never left the
        queue (it is withdrawn), True if its transaction was under way.

        Group commit: merges that arrive while one transaction runs are stored
        together in the next one, so concurrent steps share transactions.
        """
        limit = self.timeout if timeout is None else timeout
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        entry = (task_id, variables, fut)
        self._merges.append(entry)
        if not self._merging:
            self._merging = True
            asyncio.ensure_future(self._merge_loop())
        try:
            return await asyncio.wait_for(asyncio.shield(fut), limit)
        except TimeoutError:
            queued = entry in self._merges
            if queued:
                self._merges.remove(entry)
            fut.cancel()
            raise StoreTimeout(
                f"the database did not store the task variables within {limit:g} s",
                details={"may_still_be_written": not queued},
            ) from None

    async def _merge_loop(self) -> None:
        try:
            while self._merges:
                batch, self._merges = self._merges, []
                try:
                    results = await self.write(
                        self.db.merge_many, [(t, v) for t, v, _ in batch], time.time()
                    )
                except StoreTimeout as exc:
                    for _, _, fut in batch:
                        if not fut.done():
                            fut.set_exception(
                                StoreTimeout(
                                    exc.message,
                                    details={
                                        "may_still_be_written": exc.details["may_still_complete"]
                                    },
                                )
                            )
                    continue
                except Exception as exc:
                    for _, _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                for (_, _, fut), merged in zip(batch, results, strict=True):
                    if not fut.done():
                        fut.set_result(merged)
        finally:
            self._merging = False

    async def flush(self) -> None:
        """Wait until everything queued so far is stored."""
        while self._logs or self._calls or self._executions:
            await self._write_batch()

    async def _write_loop(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.interval)
            try:
                while self._logs or self._calls or self._executions:
                    await self._write_batch()
                    if len(self._logs) < self.batch_size:
                        break
            except asyncio.CancelledError:
                raise
            except Exception:
                self.failures += 1
                log.exception("storing log records failed (will retry)")
                await asyncio.sleep(min(5.0, self.interval * 2 ** min(self.failures, 5)))
            else:
                self.failures = 0
            self._report_drops()

    async def _write_batch(self) -> None:
        logs = [self._logs.popleft() for _ in range(min(self.batch_size, len(self._logs)))]
        calls = [self._calls.popleft() for _ in range(min(self.batch_size, len(self._calls)))]
        execs = [
            self._executions.popleft() for _ in range(min(self.batch_size, len(self._executions)))
        ]
        rows = [{**r, "level": LEVELS.get(r["level"], 20)} for r in logs]
        try:
            await self.write(self.db.insert_batch, rows, calls, execs)
        except (
            OperationalError,
            InterfaceError,
            TimeoutError,
            StoreTimeout,
            asyncio.CancelledError,
        ):
            # The database is away (or we are stopping): put them back, in order, so
            # nothing is lost; the bound on the queue still holds.
            self._logs.extendleft(reversed(logs))
            self._calls.extendleft(reversed(calls))
            self._executions.extendleft(reversed(execs))
            raise
        except SQLAlchemyError:
            # The batch itself is refused (a constraint, a value): retrying would fail
            # forever. Count it as dropped and say so.
            log.exception("a batch of %d log records was refused by the database", len(rows))
            for record in logs:
                self._count_drop(record["ts"])
            return
        self.stored += len(rows)

    def _report_drops(self) -> None:
        if self._dropped and len(self._logs) < self.max_queue // 2 and self.on_drop is not None:
            count, (first, last) = self._dropped, self._drop_span
            self._dropped = 0
            self.on_drop(count, first, last)
        room = max(len(self._calls), len(self._executions)) < self.max_queue // 2
        if self._history_dropped and room and self.on_notice is not None:
            count, self._history_dropped = self._history_dropped, 0
            self.on_notice(
                "WARNING",
                f"{count} call/execution history rows were not stored "
                "(the database queue was full)",
            )

    # -- spill file --------------------------------------------------------------------
    def _spill(self) -> None:
        """What the database did not take at shutdown, to the spill file."""
        counts = (len(self._logs), len(self._calls), len(self._executions))
        if self.spill_path is None:
            log.error(
                "%d log records, %d calls, %d executions were not stored (no spill file)",
                *counts,
            )
            return
        try:
            write_spill(
                self.spill_path, list(self._logs), list(self._calls), list(self._executions)
            )
        except OSError as exc:
            log.error(
                "%d log records, %d calls, %d executions were lost: the spill file %s "
                "could not be written: %s",
                *counts,
                self.spill_path,
                exc,
            )
            return
        self.spilled = sum(counts)
        self._logs.clear()
        self._calls.clear()
        self._executions.clear()
        log.warning(
            "the database did not take %d log records, %d calls, %d executions in time: "
            "kept in %s, stored at the next start",
            *counts,
            self.spill_path,
        )

    async def _load_spill(self) -> int:
        """Store what the last gateway spilled (ids kept), then remove the file;
        returns the highest log id in it (0 without one)."""
        path = self.spill_path
        if path is None or not path.exists():
            return 0
        try:
            logs, calls, execs, bad = read_spill(path)
        except OSError as exc:
            self.notices.append(("ERROR", f"the spill file {path} cannot be read: {exc}"))
            return 0
        top = max((int(r["id"]) for r in logs), default=0)
        total = len(logs) + len(calls) + len(execs)
        try:
            size = self.batch_size
            for start in range(0, max(len(logs), len(calls), len(execs)), size):
                rows = [
                    {**r, "level": LEVELS.get(r["level"], 20)} for r in logs[start : start + size]
                ]
                await self.write(
                    self.db.insert_batch,
                    rows,
                    calls[start : start + size],
                    execs[start : start + size],
                    timeout=self.open_timeout,
                )
        except Exception as exc:
            self.notices.append(
                (
                    "ERROR",
                    f"{total} records of the spill file {path} (left by the last gateway) "
                    f"could not be stored: {getattr(exc, 'message', exc)}; kept for the next start",
                )
            )
            return top
        path.unlink()
        message = f"stored {total} records the last gateway could not store before it stopped"
        if bad:
            message += f"; {bad} unreadable line(s) of the spill file were lost"
        self.notices.append(("WARNING" if bad else "INFO", message))
        return top

    async def _prune_loop(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.prune_every)
            try:
                await self.prune()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("pruning old log records failed")

    async def prune(self) -> int:
        older = time.time() - self.retention_days * 86400 if self.retention_days > 0 else None
        keep = self.retention_records if self.retention_records > 0 else None
        removed = int(await self.write(self.db.prune, older, keep))
        if removed:
            log.info("retention: %d old log records removed", removed)
        return removed

    # -- reads -------------------------------------------------------------------------
    async def ping(self, timeout: float = 2.0) -> bool:
        """Whether the database answers (for readiness)."""

        def check() -> bool:
            from sqlalchemy import text

            with self.db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True

        try:
            return bool(await asyncio.wait_for(self.read(check), timeout))
        except Exception:
            return False

    async def query_logs(self, query: LogQuery) -> list[dict[str, Any]]:
        return list(await self.read(self.db.query_logs, query))
