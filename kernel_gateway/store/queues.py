"""The history on its way to the database: bounded queues of log records, calls and
executions, stored in batches by a write loop.

Records are stored every ``interval`` seconds (so a record is stored well within a
second). Each queue holds at most ``max_queue`` rows: past that, new ones are dropped
and counted, and once the queue has room again a record says how many were dropped
(``on_drop`` for log records, with when; ``on_notice`` for calls and executions). If
the database is down, batches are put back and retried, and the bound holds.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError

from ..errors import StoreTimeout
from .db import Database
from .models import LEVELS
from .threads import DbThreads

__all__ = ["HistoryQueues", "OnDrop", "OnNotice", "level_numbers"]

log = logging.getLogger("kernel_gateway.store")
OnDrop = Callable[[int, float, float], None]
OnNotice = Callable[[str, str], None]
Rows = list[dict[str, Any]]


def level_numbers(records: Rows) -> Rows:
    """Log records as rows: the level as its number."""
    return [{**r, "level": LEVELS.get(r["level"], 20)} for r in records]


class HistoryQueues:
    def __init__(
        self,
        db: Database,
        threads: DbThreads,
        *,
        interval: float = 0.2,
        batch_size: int = 2000,
        max_queue: int = 50_000,
    ) -> None:
        self.db = db
        self.threads = threads
        self.interval = interval
        self.batch_size = batch_size
        self.max_queue = max_queue
        self.on_drop: OnDrop | None = None
        self.on_notice: OnNotice | None = None
        self.logs: deque[dict[str, Any]] = deque()
        self.calls: deque[dict[str, Any]] = deque()
        self.executions: deque[dict[str, Any]] = deque()
        self._dropped = 0
        self.dropped_total = 0
        self._drop_span: tuple[float, float] = (0.0, 0.0)
        self._history_dropped = 0
        self.history_dropped_total = 0
        self.stored = 0
        self.failures = 0
        self.in_flight = 0  # rows of the batch being stored now

    def __bool__(self) -> bool:
        """Whether anything waits to be stored."""
        return bool(self.logs or self.calls or self.executions)

    def counts(self) -> tuple[int, int, int]:
        return len(self.logs), len(self.calls), len(self.executions)

    def take_all(self) -> tuple[Rows, Rows, Rows]:
        """Empty the queues, returning what was in them."""
        rows = list(self.logs), list(self.calls), list(self.executions)
        self.logs.clear()
        self.calls.clear()
        self.executions.clear()
        return rows

    # -- adding --------------------------------------------------------------------
    def add_log(self, record: dict[str, Any]) -> bool:
        if len(self.logs) >= self.max_queue:
            self._count_drop(record["ts"])
            return False
        self.logs.append(record)
        return True

    def _count_drop(self, ts: float) -> None:
        first = self._drop_span[0] if self._dropped else ts
        self._dropped += 1
        self.dropped_total += 1
        self._drop_span = (first, ts)

    def add_call(self, row: dict[str, Any]) -> bool:
        return self._add_history(self.calls, row)

    def add_execution(self, row: dict[str, Any]) -> bool:
        return self._add_history(self.executions, row)

    def _add_history(self, queue: deque[dict[str, Any]], row: dict[str, Any]) -> bool:
        if len(queue) >= self.max_queue:
            self._history_dropped += 1
            self.history_dropped_total += 1
            return False
        queue.append(row)
        return True

    # -- storing -------------------------------------------------------------------
    async def flush(self) -> None:
        """Wait until everything queued so far is stored."""
        while self:
            await self._write_batch()

    async def write_loop(self, closing: Callable[[], bool]) -> None:
        """Store batches until ``closing()``; a failure is logged and retried with
        a backoff (the rows stay queued)."""
        while not closing():
            await asyncio.sleep(self.interval)
            try:
                while self:
                    await self._write_batch()
                    if len(self.logs) < self.batch_size:
                        break
            except asyncio.CancelledError:
                raise
            except Exception:  # the database is away (or refuses): logged, retried
                self.failures += 1
                log.exception("storing log records failed (will retry)")
                await asyncio.sleep(min(5.0, self.interval * 2 ** min(self.failures, 5)))
            else:
                self.failures = 0
            self._report_drops()

    async def _write_batch(self) -> None:
        size = self.batch_size
        logs = [self.logs.popleft() for _ in range(min(size, len(self.logs)))]
        calls = [self.calls.popleft() for _ in range(min(size, len(self.calls)))]
        execs = [self.executions.popleft() for _ in range(min(size, len(self.executions)))]
        rows = level_numbers(logs)
        self.in_flight = len(logs) + len(calls) + len(execs)
        try:
            await self.threads.write(self.db.insert_batch, rows, calls, execs)
        except (
            OperationalError,
            InterfaceError,
            TimeoutError,
            StoreTimeout,
            asyncio.CancelledError,
        ):
            # The database is away (or we are stopping): put them back, in order, so
            # nothing is lost; the bound on the queue still holds.
            self.logs.extendleft(reversed(logs))
            self.calls.extendleft(reversed(calls))
            self.executions.extendleft(reversed(execs))
            raise
        except SQLAlchemyError:
            # The batch itself is refused (a constraint, a value): retrying would fail
            # forever. Count it as dropped and say so.
            log.exception("a batch of %d log records was refused by the database", len(rows))
            for record in logs:
                self._count_drop(record["ts"])
            return
        finally:
            self.in_flight = 0
        self.stored += len(rows)

    def _report_drops(self) -> None:
        if self._dropped and len(self.logs) < self.max_queue // 2 and self.on_drop is not None:
            count, (first, last) = self._dropped, self._drop_span
            self._dropped = 0
            self.on_drop(count, first, last)
        room = max(len(self.calls), len(self.executions)) < self.max_queue // 2
        if self._history_dropped and room and self.on_notice is not None:
            count, self._history_dropped = self._history_dropped, 0
            self.on_notice(
                "WARNING",
                f"{count} call/execution history rows were not stored "
                "(the database queue was full)",
            )
