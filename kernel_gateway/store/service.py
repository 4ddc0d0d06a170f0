"""The database seen from the event loop: batched writes in one writer thread,
queries in reader threads, retention in the background.

Writes are queued and stored in batches (every ``interval`` seconds, so a record
is stored well within a second); the queue of log records is bounded: past
``max_queue`` records, new ones are dropped and counted, and once the queue has
room again an ``engine`` record says how many were dropped and when (via
``on_drop``). If the database is down, batches are retried and the bound holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError

from .db import Database, LogQuery
from .models import LEVELS

__all__ = ["StoreService"]

log = logging.getLogger("kernel_gateway.store")
OnDrop = Callable[[int, float, float], None]


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
    ) -> None:
        self.db = db
        self.interval = interval
        self.batch_size = batch_size
        self.max_queue = max_queue
        self.retention_days = retention_days
        self.retention_records = retention_records
        self.prune_every = prune_every
        self.on_drop: OnDrop | None = None
        self._logs: deque[dict[str, Any]] = deque()
        self._calls: deque[dict[str, Any]] = deque(maxlen=max_queue)
        self._executions: deque[dict[str, Any]] = deque(maxlen=max_queue)
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
    async def open(self) -> int:
        """Migrate, then start the writer; returns the newest log record id stored."""
        await self.write(self.db.migrate)
        top = await self.write(self.db.max_log_id)
        self._tasks = [
            asyncio.ensure_future(self._write_loop()),
            asyncio.ensure_future(self._prune_loop()),
        ]
        return int(top)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.flush(), 10)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        self.db.close()

    async def write(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn`` on the writer thread (writes keep their order)."""
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)

    async def read(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._readers, fn, *args)

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

    def add_call(self, row: dict[str, Any]) -> None:
        self._calls.append(row)

    def add_execution(self, row: dict[str, Any]) -> None:
        self._executions.append(row)

    async def merge_task_variables(self, task_id: str, variables: dict[str, Any]) -> dict[str, Any]:
        """Merge a step's variables into its task's row; answers once committed.

        Group commit: merges that arrive while one transaction runs are stored
        together in the next one, so concurrent steps share transactions.
        """
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._merges.append((task_id, variables, fut))
        if not self._merging:
            self._merging = True
            asyncio.ensure_future(self._merge_loop())
        return await fut

    async def _merge_loop(self) -> None:
        try:
            while self._merges:
                batch, self._merges = self._merges, []
                try:
                    results = await self.write(
                        self.db.merge_many, [(t, v) for t, v, _ in batch], time.time()
                    )
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
        while True:
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
        except (OperationalError, InterfaceError, TimeoutError, asyncio.CancelledError):
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

    async def _prune_loop(self) -> None:
        while True:
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
