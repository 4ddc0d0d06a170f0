"""Asynchronous executions of task-flow steps (``"async": true`` on ``POST
/script-engine/execute``): stored before they are accepted, queued, run in the step
workers with their retries, followed (progress, output), cancelled, waited for, and
never lost.

- Submitted: the row is written (``queued``) before the 202; an ``idempotency_key``
  already used answers the execution it named (same request) or 409.
- Queued: at most ``concurrency`` run at once (a semaphore; waiting ones are cheap
  asyncio tasks). Cancelling a queued one removes it.
- Running: each attempt is ``StepService.run`` with the call id ``<id>-<attempt>``;
  between attempts the backoff of its ``retry``; progress and output reach the record
  (progress written at most every ``progress_every`` seconds) and the followers.
- Never lost: a gateway that starts finds the rows its predecessor left: ``running``
  ones become ``failed`` with reason ``gateway died`` (their worker died with it), and
  ``queued`` ones run again unless they said ``at_most_once``. A gateway that stops
  cleanly lets running executions finish for ``drain`` seconds; queued ones stay queued
  for the next gateway.
- Kept for ``retention_hours`` after they end.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from typing import Any

from ..errors import (
    BadRequest,
    Conflict,
    GatewayError,
    NotFound,
    ServiceUnavailable,
    StoreTimeout,
)
from ..logs import LogHub
from ..metrics import Metrics
from ..steps import StepService, attempt_summary, status_of
from ..store.service import StoreService
from .feed import Feed
from .record import FINISHED, TAIL_CHARS, AsyncExecution, history_record, request_hash
from .retry import RetryPolicy, parse_retry
from .watchers import CallWatchers, progress_event, progress_text

__all__ = ["ExecutionService", "STATUS_URL", "BODY_KEYS"]

log = logging.getLogger("kernel_gateway.executions")
STATUS_URL = "/script-engine/executions/{}"
GATEWAY_DIED = "gateway died"
GATEWAY_STOPPED = "gateway stopped"
MAX_KEY = 255
# what a step's body may hold (POST /script-engine/execute; besides "id" over the WebSocket)
BODY_KEYS = frozenset(
    {
        "script_path",
        "function_name",
        "mode",
        "args",
        "task_id",
        "timeout",
        "retry",
        "async",
        "idempotency_key",
        "at_most_once",
    }
)


def status_url(execution_id: str) -> str:
    return STATUS_URL.format(execution_id)


class ExecutionService:
    def __init__(
        self,
        steps: StepService,
        db: StoreService | None,
        logs: LogHub,
        watchers: CallWatchers,
        *,
        concurrency: int,
        queue_max: int = 10_000,
        retention_hours: float = 72.0,
        progress_every: float = 0.5,
        prune_every: float = 600.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.steps = steps
        self.db = db
        self.logs = logs
        self.watchers = watchers
        self.concurrency = max(1, concurrency)
        self.queue_max = queue_max
        self.retention_hours = retention_hours
        self.progress_every = progress_every
        self.prune_every = prune_every
        self.metrics = metrics
        self._slots = asyncio.Semaphore(self.concurrency)
        self._live: dict[str, AsyncExecution] = {}  # not finished, or not stored yet
        self._feeds: dict[str, set[Feed]] = {}
        self._cancelling: set[str] = set()
        self._submitting: set[str] = set()  # stored now: not to be taken for orphans
        self._taken_over = False  # the rows of the last gateway are taken over
        self._closing = False
        self._chores: set[asyncio.Task[Any]] = set()
        self._prune: asyncio.Task[None] | None = None

    # -- start and stop -------------------------------------------------------------------
    async def start(self) -> None:
        """Take over what the last gateway left (see the module's docstring), in the
        background: a slow database or many rows do not hold the gateway's start."""
        if self.db is None:
            return
        self._spawn(self._takeover())
        self._prune = asyncio.ensure_future(self._prune_loop())

    async def _takeover(self) -> None:
        assert self.db is not None
        delay = 1.0
        while True:
            try:
                rows = await self.db.read(self.db.db.unfinished_async, timeout=self.db.open_timeout)
                break
            except GatewayError as exc:
                log.warning(
                    "the executions the last gateway left could not be read yet: %s", exc.message
                )
                if self._closing:
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        again = 0
        for row in rows:
            ex = self._from_row(row)
            if ex is None or ex.id in self._live or ex.id in self._submitting:
                continue  # unreadable, or submitted to this gateway since it started
            if ex.status == "running":
                self._end(
                    ex,
                    "failed",
                    GATEWAY_DIED,
                    "GATEWAY_DIED",
                    "the gateway died while this step ran; its worker died with it",
                )
            elif ex.at_most_once:
                self._end(
                    ex,
                    "failed",
                    f"{GATEWAY_DIED} before it ran (at_most_once: not run again)",
                    "GATEWAY_DIED",
                    "the gateway died before this step ran, and it said "
                    "at_most_once: it is not run again",
                )
            else:
                self._queue(ex)
                again += 1
                continue
            self.logs.engine(
                ex.req["path"], "WARNING", f"execution {ex.id} ({self._what(ex)}): {ex.reason}"
            )
            self._live[ex.id] = ex  # readable from memory until its end is stored
            self._spawn(self._store_end(ex))
        if again:
            self.logs.engine(
                None, "INFO", f"{again} queued execution(s) of the last gateway run again"
            )
        self._taken_over = True

    def _from_row(self, row: dict[str, Any]) -> AsyncExecution | None:
        """The execution of a stored row; None (said in the log) for a row that cannot be
        read back (written by another version, damaged): it is left as it is."""
        try:
            return AsyncExecution.from_row(row)
        except Exception as exc:
            log.error("execution %s cannot be read back, left as it is: %s", row.get("id"), exc)
            return None

    def _adopt(self, row: dict[str, Any]) -> None:
        """A ``queued`` row nobody runs (its submission was answered 503 STORE_TIMEOUT
        and still written): this gateway runs it (one gateway per database)."""
        if row.get("status") != "queued" or self._closing or not self._taken_over:
            return  # before the takeover at start, every row is the takeover's
        if row["id"] in self._live or row["id"] in self._submitting:
            return
        ex = self._from_row(row)
        if ex is None:
            return
        if ex.at_most_once:  # its submitter was told it failed: it never runs
            self._end(
                ex,
                "failed",
                "its submission timed out (at_most_once: not run)",
                "STORE_TIMEOUT",
                "the database stored this execution after its submission was answered "
                "503 STORE_TIMEOUT; it said at_most_once, so it is not run",
            )
            self._live[ex.id] = ex
            self._spawn(self._store_end(ex))
            return
        log.info("execution %s was stored after its submission timed out: it runs", ex.id)
        self._queue(ex)

    async def _settle(self, ex: AsyncExecution) -> None:
        """After a submission answered 503 STORE_TIMEOUT that may still be written: look
        for its row for a while, and run it if it appears."""
        assert self.db is not None
        delay, deadline = 0.5, time.monotonic() + 300
        while time.monotonic() < deadline and not self._closing:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
            try:
                row = await self.db.read(self.db.db.async_execution, ex.id)
            except GatewayError:
                continue
            if row is not None:
                self._adopt(row)
                return

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

    def stop_taking(self) -> None:
        """The gateway is stopping: no new submission, no queued execution starts (they
        stay queued for the next gateway); running ones go on (``close``)."""
        self._closing = True

    async def close(self, drain: float = 0.0) -> None:
        """Stop: running executions get ``drain`` seconds to end, then fail with reason
        ``gateway stopped``; queued ones stay queued (the next gateway runs them)."""
        self._closing = True
        if self._prune is not None:
            self._prune.cancel()
        running = [ex for ex in self._live.values() if ex.status == "running" and ex.task]
        if running and drain > 0:
            await asyncio.wait([ex.task for ex in running if ex.task], timeout=drain)
        for ex in list(self._live.values()):
            if ex.task is not None and not ex.task.done():
                ex.task.cancel()
                with contextlib.suppress(BaseException):
                    await ex.task
            if ex.status == "running":
                self._end(
                    ex,
                    "failed",
                    GATEWAY_STOPPED,
                    "GATEWAY_STOPPED",
                    "the gateway stopped while this step ran",
                )
                with contextlib.suppress(GatewayError):
                    await self._store(ex)
        for ex in list(self._live.values()):
            if ex.finished:  # ended, its end not stored yet: one more try
                with contextlib.suppress(GatewayError):
                    await self._store(ex)
        for task in list(self._chores):
            task.cancel()

    # -- the API ----------------------------------------------------------------------------
    async def submit(self, body: dict[str, Any], *, admin: bool) -> dict[str, Any]:
        """Queue a step; its answer once it is stored (``duplicate``: the execution an
        earlier submission with the same ``idempotency_key`` made)."""
        if self.db is None:
            raise ServiceUnavailable(
                "asynchronous executions are stored before they are accepted, and this "
                "gateway runs without a database",
                "NO_DATABASE",
            )
        if self._closing:
            raise ServiceUnavailable(
                "the gateway is stopping", "STOPPING", headers={"Retry-After": "5"}
            )
        unknown = sorted(k for k in body if k not in BODY_KEYS)
        if unknown:  # a typo (idempotencyKey, retries) would silently turn a guarantee off
            raise BadRequest(
                f"unknown field(s) {', '.join(map(repr, unknown))} in an asynchronous "
                f"submission (known: {', '.join(sorted(BODY_KEYS))})",
                "UNKNOWN_FIELD",
                details={"fields": unknown},
            )
        req = self.steps.parse(body)
        policy = parse_retry(body.get("retry"))
        at_most_once = body.get("at_most_once", False)
        if not isinstance(at_most_once, bool):
            raise BadRequest(
                "'at_most_once' must be true or false",
                "BAD_PARAMETER",
                details={"parameter": "at_most_once"},
            )
        key = body.get("idempotency_key")
        if key is not None and (not isinstance(key, str) or not 0 < len(key) <= MAX_KEY):
            raise BadRequest(
                f"'idempotency_key' must be a string of 1 to {MAX_KEY} characters",
                "BAD_PARAMETER",
                details={"parameter": "idempotency_key"},
            )
        await self.steps.precheck(req, admin=admin)
        waiting = sum(1 for ex in self._live.values() if ex.status == "queued")
        if waiting >= self.queue_max:
            raise ServiceUnavailable(
                f"{waiting} asynchronous executions are queued already",
                "BUSY",
                headers={"Retry-After": "5"},
                details={"queued": waiting},
            )
        ex = AsyncExecution(uuid.uuid4().hex, req, admin, policy, at_most_once, key)
        self._submitting.add(ex.id)
        try:
            row, created = await self.db.async_insert(ex.row())
        except StoreTimeout as exc:
            if exc.details.get("may_still_be_written"):
                self._spawn(self._settle(ex))
            raise
        finally:
            self._submitting.discard(ex.id)
        if not created:
            if row["request_hash"] != request_hash(req):
                raise Conflict(
                    f"idempotency key {key!r} was used for a different step "
                    f"(execution {row['id']})",
                    "IDEMPOTENCY_KEY_REUSED",
                    details={"execution_id": row["id"]},
                )
            self._adopt(row)
            live = self._live.get(row["id"])
            status = live.status if live is not None else row["status"]
            return self._accepted(row["id"], status, duplicate=True)
        self._queue(ex)
        return self._accepted(ex.id, "queued", duplicate=False)

    async def record(self, execution_id: str) -> dict[str, Any]:
        """The record of an execution: asynchronous, or a synchronous step (running, or
        from the steps history)."""
        ex = self._live.get(execution_id)
        if ex is not None:
            return ex.public(status_url(execution_id))
        if self.db is not None:
            row = await self.db.read(self.db.db.async_execution, execution_id)
            if row is not None:
                self._adopt(row)
                live = self._live.get(execution_id)
                if live is not None:
                    return live.public(status_url(execution_id))
                found = self._from_row(row)
                if found is None:
                    raise ServiceUnavailable(
                        f"execution {execution_id} cannot be read back", "STORE_FAILED"
                    )
                return found.public(status_url(execution_id))
        run = self.steps.running.get(execution_id)
        if run is not None:
            return {
                "execution_id": execution_id,
                "async": False,
                "status": "running",
                "status_url": status_url(execution_id),
                "script_path": run.path,
                "worker": run.worker.kernel_id,
            }
        if self.db is not None:
            row = await self.db.read(self.db.db.execution, execution_id)
            if row is not None:
                return history_record(row, status_url(execution_id))
        raise NotFound(f"no execution {execution_id!r}", "EXECUTION_NOT_FOUND")

    async def wait(self, execution_id: str, timeout: float) -> dict[str, Any]:
        """The record once the execution ended, or after ``timeout`` seconds (then with
        the status it has: the caller asks again)."""
        ex = self._live.get(execution_id)
        if ex is not None and not ex.finished:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(ex.done.wait(), timeout)
        return await self.record(execution_id)

    async def cancel(self, execution_id: str) -> dict[str, Any]:
        """Cancel a queued (removed from the queue), waiting (between attempts) or running
        (its worker interrupted) execution; a synchronous running step too."""
        ex = self._live.get(execution_id)
        if ex is None:
            if execution_id in self.steps.running:
                await self.steps.cancel(execution_id)
                return {"execution_id": execution_id, "cancelled": True, "async": False}
            found = await self.record(execution_id)  # 404 when there is none
            raise Conflict(
                f"execution {execution_id} has ended ({found['status']}): nothing to cancel",
                "EXECUTION_FINISHED",
                details={"status": found["status"]},
            )
        if ex.finished:
            raise Conflict(
                f"execution {execution_id} has ended ({ex.status}): nothing to cancel",
                "EXECUTION_FINISHED",
                details={"status": ex.status},
            )
        self._cancelling.add(ex.id)
        if ex.call_id is not None and ex.call_id in self.steps.running:
            await self.steps.cancel(ex.call_id)  # the attempt ends with CANCELLED
        elif ex.task is not None:
            ex.task.cancel()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(ex.done.wait(), self.steps.grace + 5)
        return {**ex.public(status_url(ex.id)), "cancelled": ex.status == "cancelled"}

    async def subscribe(self, execution_id: str) -> Feed:
        """A feed of the execution's events: first its state now; ``end`` when it ends
        (at once for one that has ended)."""
        record = await self.record(execution_id)
        if not record["async"] and record["status"] == "running":
            raise Conflict(
                f"execution {execution_id} is a synchronous step: its progress and output go "
                "to whoever sent it (POST /script-engine/execute answers at its end; "
                "/script-engine/execute/ws streams them)",
                "NOT_ASYNC",
            )
        feed = Feed(execution_id)
        feed.put({"type": "state", "execution": record})
        ex = self._live.get(execution_id)
        if ex is None or ex.finished:
            if record["status"] in FINISHED:
                feed.put({"type": "end", "execution": record})
            return feed
        self._feeds.setdefault(execution_id, set()).add(feed)
        return feed

    def unsubscribe(self, feed: Feed) -> None:
        feeds = self._feeds.get(feed.execution_id)
        if feeds is not None:
            feeds.discard(feed)
            if not feeds:
                self._feeds.pop(feed.execution_id, None)

    async def listing(
        self, status: str | None, task_id: str | None, script_path: str | None, limit: int
    ) -> list[dict[str, Any]]:
        if self.db is None:
            return []
        rows = await self.db.read(self.db.db.list_async, status, task_id, script_path, limit)
        out = []
        for row in rows:
            live = self._live.get(row["id"])
            ex = live if live is not None else AsyncExecution.from_row(row)
            out.append(ex.public(status_url(ex.id)))
        return out

    def on_progress(self, kernel: Any, data: dict[str, Any]) -> None:
        """A ``progress`` op of a kernel (``KernelServices.on_progress``): to whoever
        follows the call, and a DEBUG record of the call in the logs."""
        call_id = str(data.get("id"))
        bridge = getattr(kernel, "bridge", None)
        if bridge is None or not bridge.waits_for(call_id):
            return  # not a call of this kernel's: code in a kernel may not speak for another's
        run = self.steps.running.get(call_id)
        script = run.path if run is not None else getattr(kernel, "script_id", None)
        message = data.get("message") or ""
        if message and self.logs.redactor:  # a secret the step read, written ***
            data = {**data, "message": self.logs.redactor.redact(message, kernel.kernel_id, script)}
        self.watchers.progress(call_id, data)
        self.logs.emit(
            getattr(kernel, "script_id", None),
            "DEBUG",
            "vwed",
            "progress",
            progress_text(progress_event(data)),
            call_id,
            kernel_id=getattr(kernel, "kernel_id", None),
        )

    def status(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for ex in self._live.values():
            counts[ex.status] = counts.get(ex.status, 0) + 1
        return {"concurrency": self.concurrency, **counts}

    # -- running ------------------------------------------------------------------------
    def _accepted(self, execution_id: str, status: str, *, duplicate: bool) -> dict[str, Any]:
        return {
            "execution_id": execution_id,
            "status_url": status_url(execution_id),
            "status": status,
            "duplicate": duplicate,
        }

    def _queue(self, ex: AsyncExecution) -> None:
        self._live[ex.id] = ex
        ex.task = asyncio.ensure_future(self._run(ex))

    async def _run(self, ex: AsyncExecution) -> None:
        try:
            async with self._slots:
                if self._closing:
                    return  # stays queued in the database: the next gateway runs it
                ex.status, ex.started_at = "running", time.time()
                self._publish(ex, {"type": "status", "status": "running", "ts": ex.started_at})
                await self._note(ex)
                await self._attempts(ex)
        except asyncio.CancelledError:
            if ex.id not in self._cancelling:
                raise  # the gateway is stopping: close() says what became of it
            self._end(ex, "cancelled", "cancelled", "CANCELLED", f"execution {ex.id} was cancelled")
        except Exception as exc:  # a bug of ours: the execution still ends, and says so
            log.exception("execution %s failed in the gateway", ex.id)
            self._end(
                ex, "failed", "internal error", "INTERNAL_ERROR", f"the gateway failed: {exc}"
            )
        await self._store_end(ex)

    async def _attempts(self, ex: AsyncExecution) -> None:
        policy = ex.policy or RetryPolicy()
        for attempt in range(len(ex.attempts) + 1, policy.attempts + 1):
            if ex.id in self._cancelling:  # a cancel the task did not get (see steps.run)
                raise asyncio.CancelledError
            call_id = f"{ex.id}-{attempt}"
            ex.call_id = call_id
            started = time.time()
            self._publish(ex, {"type": "attempt", "attempt": attempt, "ts": started})
            try:
                answer = await self._attempt(ex, call_id, attempt)
            except GatewayError as exc:
                self._attempted(ex, attempt_summary(attempt, call_id, exc), started)
                ex.stdout = str(exc.details.get("stdout") or ex.stdout)[-TAIL_CHARS:]
                ex.stderr = str(exc.details.get("stderr") or ex.stderr)[-TAIL_CHARS:]
                if ex.id in self._cancelling:
                    self._end(
                        ex,
                        "cancelled",
                        "cancelled",
                        "CANCELLED",
                        f"execution {ex.id} was cancelled",
                    )
                    return
                if attempt < policy.attempts and policy.retries(exc):
                    delay = policy.delay(attempt)
                    if self.metrics is not None:
                        self.metrics.attempts.inc()
                    self._publish(
                        ex,
                        {
                            "type": "retry",
                            "attempt": attempt,
                            "in_s": delay,
                            "error": _error(exc),
                            "ts": time.time(),
                        },
                    )
                    await self._note(ex)
                    await asyncio.sleep(delay)
                    continue
                ex.error = _error(exc)
                self._end(ex, status_of(exc), None)
                return
            self._attempted(ex, attempt_summary(attempt, call_id, None, answer), started)
            ex.outcome = {"result": answer["result"], "variables": answer["variables"]}
            ex.stdout, ex.stderr = answer["stdout"][-TAIL_CHARS:], answer["stderr"][-TAIL_CHARS:]
            self._end(ex, "succeeded", None)
            return

    async def _attempt(self, ex: AsyncExecution, call_id: str, attempt: int) -> dict[str, Any]:
        """One attempt; while every step worker is busy and the workers' queue is full
        (503 BUSY, synchronous steps crowding in), it waits for room instead of failing:
        it was accepted already."""
        delay = 0.05
        while True:
            try:
                return await self.steps.run(
                    ex.req,
                    admin=ex.admin,
                    listener=functools.partial(self._event, ex),
                    call_id=call_id,
                    group=ex.id,
                    attempt=attempt,
                    cancelled=lambda: ex.id in self._cancelling,
                )
            except ServiceUnavailable as exc:
                if exc.code != "BUSY":
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    def _attempted(self, ex: AsyncExecution, summary: dict[str, Any], started: float) -> None:
        """An attempt ended: its summary in the record, its worker and usage the record's."""
        ex.call_id = None
        summary = {**summary, "started_at": started, "finished_at": time.time()}
        ex.attempts.append(summary)
        usage = summary.get("usage") or {}
        ex.worker = summary.get("worker") or ex.worker
        ex.cpu_ms = usage.get("cpu_ms")
        ex.peak_rss = usage.get("peak_rss_bytes")

    def _end(
        self,
        ex: AsyncExecution,
        status: str,
        reason: str | None,
        code: str | None = None,
        message: str | None = None,
    ) -> None:
        ex.status, ex.reason = status, reason
        ex.call_id = None
        ex.finished_at = time.time()
        if code is not None:
            ex.error = {"code": code, "message": message or reason or code, "details": {}}
        if ex.started_at is not None:
            ex.duration_ms = round((ex.finished_at - ex.started_at) * 1000, 3)

    async def _store_end(self, ex: AsyncExecution) -> None:
        """Write the end, trying again for a while if the database is away; the record
        stays in memory (readable) until it is stored."""
        ex.done.set()
        self._cancelling.discard(ex.id)
        if self.metrics is not None:
            self.metrics.executions.labels(ex.status).inc()
        self._publish(ex, {"type": "end", "execution": ex.public(status_url(ex.id))})
        self._feeds.pop(ex.id, None)
        delay = 0.5
        for _ in range(12):
            try:
                await self._store(ex)
                self._live.pop(ex.id, None)
                return
            except GatewayError as exc:
                log.warning("execution %s: its end could not be stored yet: %s", ex.id, exc.message)
                if self._closing:
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        self.logs.engine(
            ex.req["path"],
            "ERROR",
            f"execution {ex.id} ended {ex.status}, but that could not be stored",
        )

    async def _store(self, ex: AsyncExecution) -> None:
        if self.db is None:
            return
        await self.db.async_update(ex.id, ex.changes())

    async def _note(self, ex: AsyncExecution) -> None:
        """A step of the way (running, an attempt failed): a database that does not
        answer now does not stop the execution (its end is stored with all of it)."""
        try:
            await self._store(ex)
        except GatewayError as exc:
            log.warning("execution %s: its state could not be stored now: %s", ex.id, exc.message)

    def _event(self, ex: AsyncExecution, event: dict[str, Any]) -> None:
        """Progress or output of the running attempt."""
        if event["type"] == "started":  # the attempt has its worker
            ex.worker = event.get("worker")
            return
        if event["type"] == "progress":
            ex.progress = {k: event[k] for k in ("fraction", "done", "total", "message")}
            ex.progress["updated_at"] = event.get("ts") or time.time()
            self._progress_later(ex)
        elif event.get("stream") in ("stdout", "stderr"):
            ex.add_output(event["stream"], str(event.get("text", "")))
        self._publish(ex, event)

    def _progress_later(self, ex: AsyncExecution) -> None:
        """Progress to the database at most every ``progress_every`` seconds."""
        if ex.stored_progress < 0:
            return  # a write is scheduled
        wait = ex.stored_progress + self.progress_every - time.monotonic()
        ex.stored_progress = -1.0

        async def write() -> None:
            if wait > 0:
                await asyncio.sleep(wait)
            ex.stored_progress = time.monotonic()
            if ex.finished or self.db is None:
                return
            try:
                await self.db.async_update(ex.id, ex.progress_changes(), True)
            except GatewayError as exc:
                log.debug("execution %s: progress not stored: %s", ex.id, exc.message)

        task = asyncio.ensure_future(write())
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

    def _publish(self, ex: AsyncExecution, event: dict[str, Any]) -> None:
        for feed in self._feeds.get(ex.id, ()):
            feed.put(event)

    def _what(self, ex: AsyncExecution) -> str:
        req = ex.req
        return f"{req['path']}" + (f" {req['function']}" if req.get("function") else " (RUN)")

    async def _prune_loop(self) -> None:
        assert self.db is not None
        every = min(self.prune_every, max(1.0, self.retention_hours * 900))
        while not self._closing:
            try:
                before = time.time() - self.retention_hours * 3600
                for row in await self.db.read(self.db.db.unfinished_async):
                    self._adopt(row)  # queued rows nobody runs (a submission that timed out)
                removed = await self.db.write(self.db.db.prune_async, before)
                if removed:
                    log.info(
                        "%d asynchronous execution(s) older than %g h removed",
                        removed,
                        self.retention_hours,
                    )
            except GatewayError as exc:
                log.warning("old executions could not be removed: %s", exc.message)
            await asyncio.sleep(every)


def _error(exc: GatewayError) -> dict[str, Any]:
    details = {k: v for k, v in exc.details.items() if k not in ("stdout", "stderr", "attempts")}
    return {"code": exc.code, "message": exc.message, "details": details}
