"""The database seen from the event loop: every operation the gateway runs on it, by
name, each within a deadline; the history queued and written in batches; retention.

Every awaited database operation has a deadline (``timeout``, ``--db-timeout``):
past it the caller gets ``StoreTimeout`` (503 ``STORE_TIMEOUT``), whatever the
database does (``threads.py``); a read refused by the database is 503
``STORE_UNAVAILABLE``. Log records, calls and executions are queued, bounded, and
stored in batches (``queues.py``); task variables with group commit (``merge.py``).
What is still queued at shutdown and cannot be stored within a bounded flush goes to
a spill file (``spill.py``), stored at the next start.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from ..errors import GatewayError
from .asyncexec import AsyncOp
from .callquery import CallQuery
from .db import Database
from .group import GroupCommit
from .logquery import LogQuery
from .merge import VariableMerges
from .queues import HistoryQueues, OnDrop, OnNotice
from .spill import load_spill, spill_queues
from .threads import DbThreads, busy_threads

__all__ = ["StoreService", "busy_threads"]

log = logging.getLogger("kernel_gateway.store")
T = TypeVar("T")
Rows = list[dict[str, Any]]


class StoreService:
    """The gateway's one handle on its database (``app.Gateway.db``): ``open`` at start,
    ``close`` at stop, and a named async operation for each query (``runs``,
    ``desire``, ``task_variables``, ``lock_location``, ...). ``db`` is the blocking
    ``Database`` behind them: not to be called from the event loop."""

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
        end_orphans: bool = True,
    ) -> None:
        self.db = db
        # False with --ha: a standby must not end the active gateway's runs at its start
        self.end_orphans = end_orphans
        self.timeout = timeout
        # migrations and the spill file at start may take longer than one statement
        self.open_timeout = max(30.0, timeout * 6)
        self.spill_path = spill_path
        self.id_block = id_block
        self.notices: list[tuple[str, str]] = []  # said at start, once ids are known
        self.spilled = 0
        self.retention_days = retention_days
        self.retention_records = retention_records
        self.prune_every = prune_every
        self._threads = DbThreads(timeout)
        self._queues = HistoryQueues(
            db, self._threads, interval=interval, batch_size=batch_size, max_queue=max_queue
        )
        self._merges = VariableMerges(db, self._threads)
        self._async_writes: GroupCommit[AsyncOp] = GroupCommit(
            self._threads, db.async_writes, "the execution"
        )
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle ---------------------------------------------------------------------
    async def open(
        self, on_drop: OnDrop | None = None, on_notice: OnNotice | None = None
    ) -> tuple[int, int]:
        """Migrate, end the runs a killed gateway left open, store what the last
        gateway spilled, reserve the first block of log ids; then start the writer.
        Returns the reserved block ``(first, last)``. ``on_drop(count, first, last)``
        and ``on_notice(level, message)`` are told of history rows that were dropped
        (the queue was full), once it has room again."""
        t = self.open_timeout
        await self.write(self.db.migrate, timeout=t)
        if self.end_orphans:
            await self.end_orphan_runs()

        async def store(logs: Rows, calls: Rows, executions: Rows) -> None:
            await self.write(self.db.insert_batch, logs, calls, executions, timeout=t)

        spilled_top, notice = await load_spill(self.spill_path, store, self._queues.batch_size)
        if notice is not None:
            self.notices.append(notice)
        first, last = await self.write(
            self.db.reserve_log_ids, self.id_block, spilled_top, timeout=t
        )
        self._queues.on_drop, self._queues.on_notice = on_drop, on_notice
        self._tasks = [
            asyncio.ensure_future(self._queues.write_loop(lambda: self._closing)),
            asyncio.ensure_future(self._prune_loop()),
        ]
        return int(first), int(last)

    async def end_orphan_runs(self) -> int:
        """End the runs a killed gateway left open (at open; with ``--ha``, at takeover)."""
        orphans = int(
            await self.write(self.db.end_orphan_runs, time.time(), timeout=self.open_timeout)
        )
        if orphans:
            self.notices.append(
                ("WARNING", f"{orphans} run(s) of a gateway that died were marked ended")
            )
        return orphans

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
            await asyncio.wait_for(self._queues.flush(), self.timeout)
            flushed = True
        except TimeoutError:  # what is left is spilled below, and said there
            log.warning(
                "the last log records could not be stored: no answer within %g s", self.timeout
            )
        except (GatewayError, SQLAlchemyError) as exc:  # StoreTimeout, the database away
            log.warning("the last log records could not be stored: %s", exc)
        except Exception:  # not expected: said with its traceback, and the rest spilled
            log.exception("the last log records could not be stored")
        if flushed and ids is not None and ids[0] > ids[1]:
            try:
                await self.write(self.db.release_log_ids, ids[0], ids[1], timeout=1.0)
            except (GatewayError, SQLAlchemyError) as exc:
                # a gap in the ids, no more: the next start reserves above the block
                log.info("the unused log ids up to %d were not given back: %s", ids[0], exc)
        if self._queues:
            self.spilled = spill_queues(self.spill_path, self._queues)
        if self._queues.in_flight:
            # a write loop that did not stop (see above) holds a batch still under way
            log.warning(
                "%d history rows were still being stored as the gateway stopped: "
                "they may not be stored",
                self._queues.in_flight,
            )
        self._threads.shutdown()
        closer = threading.Thread(target=self.db.close, name="vwed-db-close", daemon=True)
        closer.start()
        await asyncio.get_running_loop().run_in_executor(None, closer.join, 2.0)

    # -- running any operation (prefer the named ones below) ---------------------------
    async def write(self, fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        """Run ``fn`` on the writer thread (writes keep their order), within
        ``timeout`` seconds (default ``self.timeout``) or ``StoreTimeout``."""
        return await self._threads.write(fn, *args, timeout=timeout)

    async def read(self, fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        """Run a query on a reader thread within the deadline: 503 ``STORE_TIMEOUT``
        past it, 503 ``STORE_UNAVAILABLE`` when the database refuses connections."""
        return await self._threads.read(fn, *args, timeout=timeout)

    @property
    def safe_url(self) -> str:
        """The database's URL without its password."""
        return self.db.safe_url

    # -- the history: queued, stored in batches ----------------------------------------
    @property
    def queued(self) -> int:
        """Log records waiting for the database."""
        return len(self._queues.logs)

    @property
    def stored(self) -> int:
        return self._queues.stored

    @property
    def dropped_total(self) -> int:
        """Log records dropped (the queue was full) since the start."""
        return self._queues.dropped_total

    @property
    def history_dropped_total(self) -> int:
        """Calls and executions dropped (their queue was full) since the start."""
        return self._queues.history_dropped_total

    def add_log(self, record: dict[str, Any]) -> bool:
        return self._queues.add_log(record)

    def add_call(self, row: dict[str, Any]) -> bool:
        return self._queues.add_call(row)

    def add_execution(self, row: dict[str, Any]) -> bool:
        return self._queues.add_execution(row)

    async def _prune_loop(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.prune_every)
            try:
                await self.prune()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database is away or refuses: logged, tried again later
                log.exception("pruning old log records failed")

    async def prune(self) -> int:
        older = time.time() - self.retention_days * 86400 if self.retention_days > 0 else None
        keep = self.retention_records if self.retention_records > 0 else None
        removed = int(await self.write(self.db.prune, older, keep))
        if removed:
            log.info("retention: %d old log records removed", removed)
        return removed

    # -- runs and the scripts to restore -----------------------------------------------
    async def run_started(
        self,
        script_id: str,
        script_path: str,
        replicas: int,
        started_at: float,
        lock_hash: str | None = None,
        revision: str | None = None,
    ) -> int:
        """Record a start (with the lock of its environment, if any, and the revision it
        runs); returns the run's id."""
        return await self.write(
            self.db.run_started, script_id, script_path, replicas, started_at, lock_hash, revision
        )

    async def run_lock(self, run_id: int, lock_hash: str | None) -> None:
        await self.write(self.db.run_lock, run_id, lock_hash)

    async def run_revision(self, run_id: int, revision: str | None) -> None:
        await self.write(self.db.run_revision, run_id, revision)

    async def run_ended(
        self, run_id: int, status: str, reason: str | None, stopped_at: float | None
    ) -> None:
        await self.write(self.db.run_ended, run_id, status, reason, stopped_at)

    async def runs(self, script_path: str | None = None, limit: int = 100) -> Rows:
        """Runs, newest first (of one script, or all)."""
        return await self.read(self.db.runs, script_path, limit)

    async def desire(
        self,
        script_path: str,
        replicas: int,
        restart: str,
        now: float,
        options: dict[str, Any] | None = None,
        lock_hash: str | None = None,
        revision: str | None = None,
    ) -> None:
        """Remember that a script should run (a restarted gateway starts it again, with
        the environment of ``lock_hash``, at ``revision``)."""
        await self.write(
            self.db.desire, script_path, replicas, restart, now, options, lock_hash, revision
        )

    async def run_serving(
        self,
        run_id: int | None,
        script_path: str,
        replicas: int,
        restart: str,
        now: float,
        options: dict[str, Any] | None = None,
        lock_hash: str | None = None,
        revision: str | None = None,
    ) -> None:
        """A start booted: the run (if recorded) is ``running`` and the script desired,
        in one transaction."""
        await self.write(
            self.db.run_serving,
            run_id,
            script_path,
            replicas,
            restart,
            now,
            options,
            lock_hash,
            revision,
        )

    async def undesire(self, script_path: str) -> None:
        await self.write(self.db.undesire, script_path)

    async def desired(self) -> Rows:
        """The scripts to start again, oldest start first."""
        return await self.read(self.db.desired)

    # -- task-flow data ----------------------------------------------------------------
    async def merge_task_variables(
        self, task_id: str, variables: dict[str, Any], timeout: float | None = None
    ) -> dict[str, Any]:
        """Merge a step's variables into its task's (group commit, ``merge.py``);
        ``StoreTimeout`` with ``details["may_still_be_written"]`` past ``timeout``."""
        return await self._merges.merge(task_id, variables, timeout)

    async def async_insert(self, row: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Store a new asynchronous execution (group commit with the other writes of
        executions); ``(the stored row, False)`` when its idempotency key was taken."""
        result: tuple[dict[str, Any], bool] = await self._async_writes.submit(("insert", row))
        return result

    async def async_update(
        self, execution_id: str, values: dict[str, Any], unfinished_only: bool = False
    ) -> None:
        """Write an asynchronous execution's changes (group commit)."""
        await self._async_writes.submit(("update", execution_id, values, unfinished_only))

    async def task_variables(self, task_id: str) -> dict[str, Any] | None:
        return await self.read(self.db.task_variables, task_id)

    async def executions(self, task_id: str | None = None, limit: int = 100) -> Rows:
        """Executions of steps, newest first (of one task, or all)."""
        return await self.read(self.db.executions, task_id, limit)

    # -- the embedded platform (VWED.storage, VWED.task, VWED.robot) --------------------
    async def location(self, location_code: str) -> dict[str, Any]:
        return await self.read(self.db.location, location_code)

    async def locations(self, zone: str | None = None) -> Rows:
        return await self.read(self.db.locations, zone)

    async def lock_location(self, location_code: str, task_id: Any) -> dict[str, Any]:
        """Lock a location for a task: of two racing, exactly one gets ``locked``."""
        return await self.write(self.db.lock_location, location_code, task_id)

    async def unlock_location(self, location_code: str, task_id: Any = None) -> dict[str, Any]:
        return await self.write(self.db.unlock_location, location_code, task_id)

    async def seed_location(
        self, code: str, zone: str, goods: str | None, data: dict[str, Any]
    ) -> dict[str, Any]:
        return await self.write(self.db.seed_location, code, zone, goods, data)

    async def create_task(self, task_label: str, input_params: Any = None) -> dict[str, Any]:
        return await self.write(self.db.create_task, task_label, input_params)

    async def platform_task(self, task_id: Any) -> dict[str, Any]:
        return await self.read(self.db.platform_task, task_id)

    async def stop_task(self, task_id: Any) -> dict[str, Any]:
        return await self.write(self.db.stop_task, task_id)

    async def robot(self, robot_id: str) -> dict[str, Any]:
        return await self.read(self.db.robot, robot_id)

    async def robots(self) -> Rows:
        return await self.read(self.db.robots)

    async def dispatch_robot(self, robot_id: str, task_id: Any) -> dict[str, Any]:
        return await self.write(self.db.dispatch_robot, robot_id, task_id)

    async def register_robot(
        self, robot_id: str, status: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        return await self.write(self.db.register_robot, robot_id, status, data)

    # -- secrets (values encrypted by the caller: kernel_gateway/secrets/) -------------
    async def put_secret(
        self, name: str, ciphertext: str, scope: list[str] | None, set_by: str, set_at: float
    ) -> bool:
        """Set a secret (replacing it); True when it is new."""
        return await self.write(self.db.put_secret, name, ciphertext, scope, set_by, set_at)

    async def secret(self, name: str) -> dict[str, Any] | None:
        return await self.read(self.db.secret, name)

    async def secrets(self) -> Rows:
        return await self.read(self.db.secrets)

    async def delete_secret(self, name: str) -> bool:
        return await self.write(self.db.delete_secret, name)

    # -- logs --------------------------------------------------------------------------
    async def query_logs(self, query: LogQuery) -> Rows:
        return await self.read(self.db.query_logs, query)

    # -- calls -------------------------------------------------------------------------
    async def calls(self, query: CallQuery) -> Rows:
        """Calls served by scripts, newest first (``GET /script-engine/calls``)."""
        return await self.read(self.db.query_calls, query)

    async def ping(self, timeout: float = 2.0) -> bool:
        """Whether the database answers (for readiness)."""

        def check() -> bool:
            from sqlalchemy import text

            with self.db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True

        try:
            return bool(await asyncio.wait_for(self.read(check), timeout))
        except Exception as exc:  # whatever the reason, the answer is "not ready"
            log.debug("readiness: the database does not answer: %r", exc)
            return False
