"""Task-flow steps: ``POST /script-engine/execute`` runs a function of a script
file (or the whole file) in a warm worker kernel and turns its result into task
variables (modes ``SCRIPT``, ``SET_TASK_VARIABLES``, ``RUN``)."""

from __future__ import annotations

import asyncio
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .deps import Declaration, Environment, Environments, read_declaration
from .envworkers import EnvWorkerPools
from .errors import (
    BadRequest,
    CallTimeout,
    Conflict,
    GatewayError,
    HandlerError,
    KernelDied,
    KernelStartError,
    NotFound,
    PathInvalid,
    ScriptError,
    ServiceUnavailable,
    StoreTimeout,
)
from .executions.retry import parse_retry
from .executions.watchers import CallWatchers, Listener
from .inputs import parse_timeout
from .kernels import ScriptKernel
from .logs import LogHub
from .quotas import StepLimits
from .scripts import ScriptStore
from .shared_modules import SharedModules
from .store.service import StoreService
from .workers import WorkerPool

__all__ = ["StepService", "MODES", "NOT_READY", "attempt_summary", "status_of"]

MODES = ("SCRIPT", "SET_TASK_VARIABLES", "RUN")
NOT_READY = "DEPENDENCIES_NOT_READY"
READY_TTL = 5.0  # seconds a step trusts that an environment it found is still ready
TOUCH_EVERY = 60.0  # seconds between two marks of an environment's use by one file
CANCEL_ANSWER_S = 1.0  # seconds a cancel waits for the worker's answer before interrupting


@dataclass
class Execution:
    id: str
    worker: ScriptKernel
    path: str = ""  # the step's file (its secrets' scope)
    started: float = field(default_factory=time.perf_counter)
    cancelled: bool = False
    ended: asyncio.Event = field(default_factory=asyncio.Event)  # set once it has ended


class StepService:
    def __init__(
        self,
        store: ScriptStore,
        pool: WorkerPool,
        logs: LogHub,
        db: StoreService | None,
        *,
        timeout: float = 30.0,
        max_timeout: float = 24 * 3600.0,
        grace: float = 5.0,
        debug: bool = False,
        modules: SharedModules | None = None,
        environments: Environments | None = None,
        env_pools: EnvWorkerPools | None = None,
        watchers: CallWatchers | None = None,
        limits: StepLimits | None = None,
    ) -> None:
        self.store = store
        self.pool = pool
        self.logs = logs
        self.db = db
        self.timeout = timeout
        self.max_timeout = max_timeout
        self.grace = grace
        self.debug = debug
        self.modules = modules
        self.environments = environments
        self.env_pools = env_pools
        self.watchers = watchers
        self.limits = limits  # calls per minute of the step's script (quotas.py)
        # the declaration of each step file, by the file's and its requirements.txt's version
        self._declarations: dict[tuple[Any, ...], Declaration | None] = {}
        # environments found ready (by declaration key, with when), and when each (lock, file)
        # was last marked used: a step does not read and write the deps dir every time
        self._ready: dict[str, tuple[float, Environment]] = {}
        self._touched: dict[tuple[str, str], float] = {}
        self.running: dict[str, Execution] = {}
        # the step files each worker has imported already (sent as source only once)
        self._loaded: weakref.WeakKeyDictionary[ScriptKernel, set[tuple[Any, ...]]] = (
            weakref.WeakKeyDictionary()
        )

    # -- validation ----------------------------------------------------------------------
    def parse(self, body: dict[str, Any]) -> dict[str, Any]:
        mode = body.get("mode", "SCRIPT")
        if mode not in MODES:
            raise BadRequest(
                f"'mode' must be one of {', '.join(MODES)}, not {mode!r}", "BAD_REQUEST"
            )
        path = body.get("script_path")
        if not isinstance(path, str) or not path:
            raise BadRequest("'script_path' is required", "MISSING_FIELD")
        function = body.get("function_name")
        if mode != "RUN" and (not isinstance(function, str) or not function):
            raise BadRequest("'function_name' is required (except in RUN mode)", "MISSING_FIELD")
        task_id = body.get("task_id")
        if task_id is not None and (
            not isinstance(task_id, (str, int)) or isinstance(task_id, bool)
        ):
            raise BadRequest("'task_id' must be a string", "BAD_REQUEST")
        # the lengths the history's columns hold (a longer one would fail its write)
        if len(path) > 480:
            raise PathInvalid(f"'script_path' is longer than 480 characters: {path[:60]!r}...")
        for name, value, most in (
            ("function_name", function, 255),
            ("task_id", None if task_id is None else str(task_id), 128),
        ):
            if isinstance(value, str) and len(value) > most:
                raise BadRequest(
                    f"'{name}' is longer than {most} characters",
                    "BAD_PARAMETER",
                    details={"parameter": name},
                )
        timeout = parse_timeout(body.get("timeout"), self.max_timeout) or self.timeout
        if self.limits is not None:  # a step is a call into its file's script: one token
            self.limits.admit(path)  # 429 RATE_LIMITED
        return {
            "mode": mode,
            "path": path,
            "function": function,
            "args": body.get("args"),
            "task_id": None if task_id is None else str(task_id),
            "timeout": timeout,
        }

    # -- running ------------------------------------------------------------------------
    async def execute(
        self, body: dict[str, Any], *, admin: bool = True, listener: Listener | None = None
    ) -> dict[str, Any]:
        """Run one step synchronously (with its ``retry``, if any: each attempt is
        recorded, the answer is the last one's). ``admin``: the caller may install the
        file's packages (the admin token); a caller token gets 409
        ``DEPENDENCIES_NOT_READY`` for an environment that is not installed yet
        (installing runs the packages' build code). ``listener``: told of the step's
        progress and output as they happen (``executions/watchers.py``)."""
        req = self.parse(body)
        policy = parse_retry(body.get("retry"))
        if policy is None:
            return await self.run(req, admin=admin, listener=listener)
        attempts: list[dict[str, Any]] = []
        first_id: str | None = None
        for attempt in range(1, policy.attempts + 1):
            call_id = self.new_id()
            first_id = first_id or call_id
            try:
                answer = await self.run(
                    req,
                    admin=admin,
                    listener=listener,
                    call_id=call_id,
                    group=first_id,
                    attempt=attempt,
                )
            except GatewayError as exc:
                attempts.append(attempt_summary(attempt, call_id, exc))
                if attempt == policy.attempts or not policy.retries(exc):
                    exc.details["attempts"] = attempts
                    raise
                await asyncio.sleep(policy.delay(attempt))
                continue
            attempts.append(attempt_summary(attempt, call_id, None, answer))
            answer["attempts"] = attempts
            return answer
        raise AssertionError("unreachable")

    def new_id(self) -> str:
        """A fresh execution id (also the call id of the step in its worker)."""
        return uuid.uuid4().hex

    async def run(
        self,
        req: dict[str, Any],
        *,
        admin: bool = True,
        listener: Listener | None = None,
        call_id: str | None = None,
        group: str | None = None,
        attempt: int | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> dict[str, Any]:
        """One attempt of a parsed step (``parse``): a worker, the call, the task
        variables. ``call_id``: the attempt's execution id (made here if None);
        ``group``: the execution it is an attempt of (the ``async_id`` of its history
        row); ``cancelled``: true once whoever runs the attempt cancelled it (checked
        when it has its worker, before the call is sent: ``asyncio.CancelledError``).
        Raises the step's ``GatewayError``."""
        source = self.store.stat(req["path"])
        key = [source.file, source.mtime, source.size]
        lock = await self._environment(source.path, admin)
        pool = self.pool
        if lock is None:
            worker = await self.pool.acquire()
        else:
            pool, worker = await self._env_worker(lock, req["timeout"])
        if cancelled is not None and cancelled():
            # cancelled while it waited, and the task's cancel did not reach it here
            # (before Python 3.12 ``asyncio.wait_for``, under the store's calls, can
            # swallow one: gh-86296): the step is not sent at all
            self._give_back(pool, worker, lock, keep=True)
            raise asyncio.CancelledError
        # random: an execution id is what lets a caller token read its record
        execution_id = call_id or uuid.uuid4().hex
        run = Execution(execution_id, worker, source.path)
        self.running[execution_id] = run
        self.logs.note_call(execution_id, req["task_id"], script_id=source.path)
        if listener is not None and self.watchers is not None:
            self.watchers.add(execution_id, listener)
            listener({"type": "started", "execution_id": execution_id, "worker": worker.kernel_id})
        data = {
            "op": "call",
            "kind": "step",
            "key": key,
            "file": source.file,
            "mode": req["mode"],
            "function": req["function"],
            "args": req["args"],
            "task_id": req["task_id"],
        }
        release = True
        error: GatewayError | None = None
        usage: dict[str, Any] = {}
        try:
            self._invalidate(worker, data)
            known = tuple(key) in self._loaded.setdefault(worker, set())
            if not known:
                data["source"] = self._code(req["path"])
            reply = await worker.bridge.call(data, timeout=req["timeout"], call_id=execution_id)
            if not reply.ok and reply.error.get("kind") == "cache_miss":
                data["source"] = self._code(req["path"])
                # the same call id: its output, log records and cancel reach this execution
                reply = await worker.bridge.call(data, timeout=req["timeout"], call_id=execution_id)
            self._loaded[worker].add(tuple(key))
            if not reply.ok:
                usage = reply.error.get("usage") or {}
                raise self._error(reply.error, run, req)
            value = reply.value()
            usage = value.get("usage") or {}
            if self.logs.redactor:  # the secrets the step read, out of its printed output
                for stream in ("stdout", "stderr"):
                    value[stream] = self.logs.redactor.redact(
                        value[stream], worker.kernel_id, source.path
                    )
        except CallTimeout as exc:
            # interrupted already; a worker that does not come back in time is replaced
            self.logs.redactor.redact_error(exc, worker.kernel_id, source.path)
            release = await worker.barrier(self.grace)
            error = exc
            raise
        except KernelDied as exc:
            self.logs.redactor.redact_error(exc, worker.kernel_id, source.path)
            release = False
            error = exc
            raise
        except GatewayError as exc:
            error = exc
            self.logs.redactor.redact_error(exc, worker.kernel_id, source.path)
            if exc.code == "CANCELLED":
                release = await worker.barrier(self.grace)
            raise
        except asyncio.CancelledError:
            # the gateway stops (or whoever waited is gone) while the step runs: it is
            # recorded cancelled, and its worker, still busy with it, is replaced
            error = Conflict(f"execution {execution_id} was cut off", "CANCELLED")
            release = False
            raise
        finally:
            self.running.pop(execution_id, None)
            run.ended.set()
            if listener is not None and self.watchers is not None:
                self.watchers.remove(execution_id)
            self._give_back(pool, worker, lock, keep=release)
            took = (time.perf_counter() - run.started) * 1000
            facts = {
                "worker": worker.kernel_id,
                "cpu_ms": _number(usage.get("cpu_ms")),
                "peak_rss": _whole(usage.get("peak_rss_bytes")),
                "async_id": group,
                "attempt": attempt,
            }
            if error is not None:
                error.details.setdefault("execution_id", execution_id)
                error.details["worker"] = worker.kernel_id
                error.details["usage"] = _usage(facts)
            self._record(execution_id, source.path, req, took, error, facts)
        variables = self._variables(req["mode"], value["value"])
        if req["task_id"] is not None and self.db is not None:
            await self._store_variables(req, variables, value, execution_id, run)
        return {
            "result": value["value"],
            "variables": variables,
            "stdout": value["stdout"],
            "stderr": value["stderr"],
            "duration_ms": round(took, 3),
            "execution_id": execution_id,
            "task_id": req["task_id"],
            "environment": None if lock is None else lock[0],
            "worker": worker.kernel_id,
            "usage": _usage(facts),
        }

    def _give_back(
        self, pool: Any, worker: ScriptKernel, lock: tuple[str, str] | None, *, keep: bool
    ) -> None:
        """A step's worker back to its pool (``keep``), or replaced."""
        if lock is not None and self.env_pools is not None:
            self.env_pools.done(pool, worker, keep=keep)
        elif keep:
            self.pool.release(worker)
        else:
            self.pool.discard(worker)

    async def _store_variables(
        self,
        req: dict[str, Any],
        variables: dict[str, Any],
        value: dict[str, Any],
        execution_id: str,
        run: Execution,
    ) -> None:
        assert self.db is not None
        # The step answers within its timeout plus a second, whatever the database
        # does: the merge gets what is left of that (at most --db-timeout).
        left = req["timeout"] + 0.9 - (time.perf_counter() - run.started)
        try:
            await self.db.merge_task_variables(
                req["task_id"], variables, timeout=max(0.2, min(self.db.timeout, left))
            )
        except StoreTimeout as exc:
            maybe = bool(exc.details.get("may_still_be_written"))
            raise StoreTimeout(
                "the step ran, but the database did not store its task variables in "
                + ("time; they may still be written" if maybe else "time; they were not written"),
                details={
                    "execution_id": execution_id,
                    "result": value["value"],
                    "variables": variables,
                    "variables_may_be_written": maybe,
                },
            ) from exc
        except Exception as exc:
            raise ServiceUnavailable(
                f"the step ran, but its task variables could not be stored: {exc}",
                "STORE_FAILED",
                details={"execution_id": execution_id, "result": value["value"]},
            ) from exc

    async def precheck(self, req: dict[str, Any], *, admin: bool) -> None:
        """What a step would be refused for, checked before it is queued: a file that is
        not there (404), packages a caller token may not install (409)."""
        source = self.store.stat(req["path"])
        if admin or self.environments is None or self.env_pools is None:
            return
        decl = self._declaration(source.path)
        if decl is not None and self.environments.find(decl) is None:
            raise self._not_ready(source.path, decl)

    # -- environments ---------------------------------------------------------------------
    async def _environment(self, path: str, admin: bool) -> tuple[str, str] | None:
        """The (lock, site dir) the step of ``path`` runs with; None: no declaration (the
        plain workers). Not installed yet: installed first for an admin, else refused."""
        if self.environments is None or self.env_pools is None:
            return None
        decl = self._declaration(path)
        if decl is None:
            return None
        now = time.monotonic()
        known = self._ready.get(decl.key)
        env = known[1] if known is not None and now - known[0] < READY_TTL else None
        if env is None:
            env = self.environments.find(decl)  # a few small file reads
        if env is None:
            if not admin:
                raise self._not_ready(path, decl)

            def progress(line: str) -> None:
                self.logs.emit(path, "INFO", "engine", "deps", f"for a step: {line}")

            env = await self.environments.ensure(decl, progress)
        if known is None or known[1] is not env:
            if len(self._ready) > 1024:
                self._ready.clear()
            self._ready[decl.key] = (now, env)
        # the environment's last use, for its GC: written at most once a minute per file
        touched = self._touched.get((env.lock.hash, path))
        if touched is None or now - touched >= TOUCH_EVERY:
            if len(self._touched) > 4096:
                self._touched.clear()
            self._touched[(env.lock.hash, path)] = now
            self.environments.touch(env.lock.hash, path)
        return env.lock.hash, env.site

    @staticmethod
    def _not_ready(path: str, decl: Declaration) -> Conflict:
        return Conflict(
            f"the packages of {path!r} are not installed yet, and installing runs "
            "code: an admin must start or prefetch the script first "
            "(POST /script-engine/environments/prefetch, or `vwed deps prefetch`)",
            NOT_READY,
            details={"script_path": path, "requirements": list(decl.requirements)},
        )

    async def _env_worker(
        self, lock: tuple[str, str], timeout: float
    ) -> tuple[WorkerPool, ScriptKernel]:
        """A worker of the environment, within the step's timeout: a pool whose kernels
        cannot start (its site dir gone, the policy refused) must not hold the step forever."""
        assert self.env_pools is not None
        try:
            return await asyncio.wait_for(self.env_pools.acquire(*lock), timeout)
        except asyncio.TimeoutError:
            raise KernelStartError(
                f"no worker of environment {lock[0][:12]} was free or started within {timeout:g} s",
                details={"environment": lock[0]},
            ) from None

    def _declaration(self, path: str) -> Declaration | None:
        """``read_declaration`` of the step file, cached while neither the file nor a
        ``requirements.txt`` beside it changed."""
        source = self.store.stat(path)
        beside = Path(source.file).with_name("requirements.txt")
        try:
            st = beside.stat()
            req_version: tuple[float, int] | None = (st.st_mtime, st.st_size)
        except OSError:
            req_version = None
        key = (source.file, source.mtime, source.size, req_version)
        if key not in self._declarations:
            if len(self._declarations) > 1024:
                self._declarations.clear()
            self._declarations[key] = read_declaration(self.store.load(path), self.store.root)
        return self._declarations[key]

    def _invalidate(self, worker: ScriptKernel, data: dict[str, Any]) -> None:
        """A worker holding a root module whose file changed (or told a name was
        missing that now exists) drops, with this step, every root module and every
        step module it loaded, so the step's imports are fresh (``modules`` field of
        the step call, docs/protocol.md). All of them: a step module or helper that
        did ``from common.utils import pick`` holds the old function too."""
        if self.modules is None:
            return
        stale = self.modules.stale(worker)
        if not stale["modules"] and not stale["missing"]:
            return
        data["modules"] = {"drop": True, "missing": stale["missing"]}
        self.modules.forget(worker, stale["missing"])
        self._loaded.pop(worker, None)

    def _code(self, path: str) -> str:
        return "\n\n".join(self.store.load(path).cells)

    @staticmethod
    def _variables(mode: str, result: Any) -> dict[str, Any]:
        if mode == "SET_TASK_VARIABLES" and isinstance(result, dict):
            return {str(k): v for k, v in result.items()}
        return {"scriptResult": result}

    def _error(self, err: dict[str, Any], run: Execution, req: dict[str, Any]) -> GatewayError:
        kind = err.get("kind")
        details = {
            "type": err.get("type"),
            "bases": err.get("bases") or [err.get("type")],
            "message": err.get("message"),
            "stdout": err.get("stdout", ""),
            "stderr": err.get("stderr", ""),
            "execution_id": run.id,
        }
        if kind == "function_missing":
            return NotFound(
                f"{req['path']} has no function {req['function']!r}",
                "FUNCTION_NOT_FOUND",
                details={"available": err.get("available", []), "execution_id": run.id},
            )
        if kind == "arguments":
            return BadRequest(
                f"{req['function']}: {err.get('message')}", "BAD_ARGUMENTS", details=details
            )
        if kind == "serialization":
            return HandlerError(
                f"the step returned a result that is not JSON-serializable: {err.get('message')}",
                "RESULT_NOT_SERIALIZABLE",
                details=details,
            )
        if kind in ("interrupted", "cancelled") and run.cancelled:
            return Conflict(f"execution {run.id} was cancelled", "CANCELLED", details=details)
        if kind in ("interrupted", "cancelled"):
            return CallTimeout(f"execution {run.id} was interrupted", details=details)
        details["traceback"] = err.get("traceback", "")
        if "exit_code" in err:
            details["exit_code"] = err["exit_code"]
        return ScriptError(
            f"the step raised {err.get('type')}: {err.get('message')}",
            "STEP_FAILED",
            details=details,
        )

    def _record(
        self,
        execution_id: str,
        path: str,
        req: dict[str, Any],
        took: float,
        error: GatewayError | None,
        facts: dict[str, Any],
    ) -> None:
        if self.db is None:
            return
        row = {
            **facts,
            "id": execution_id,
            "ts": time.time(),
            "script_path": path,
            "function_name": req["function"],
            "mode": req["mode"],
            "task_id": req["task_id"],
            "duration_ms": took,
            "ok": error is None,
            "error_type": None if error is None else (error.details.get("type") or error.code),
            "error_message": None if error is None else error.message[:2000],
            "status": status_of(error),
        }
        self.db.add_execution(row)  # stored with the next batch (within 0.2 s)

    def path_of(self, worker: ScriptKernel) -> str | None:
        """The file of the step ``worker`` runs now (None: it runs none)."""
        for run in self.running.values():
            if run.worker is worker:
                return run.path
        return None

    async def cancel(self, execution_id: str) -> None:
        run = self.running.get(execution_id)
        if run is None:
            raise NotFound(f"no running execution {execution_id!r}", "EXECUTION_NOT_FOUND")
        run.cancelled = True
        # The kernel says what it did: a step that has not started yet is skipped
        # (an interrupt now would arrive before its code runs and be lost, and the step
        # would run on to its timeout); only running code, or no answer, needs one.
        state = await run.worker.bridge.cancel(execution_id, timeout=CANCEL_ANSWER_S)
        if state == "pending":
            return
        if state == "task":
            # An async step stops at its next await; one blocked in synchronous code
            # inside it (time.sleep, a blocking call) does not: interrupted if it has not
            # ended within CANCEL_ANSWER_S.
            try:
                await asyncio.wait_for(run.ended.wait(), CANCEL_ANSWER_S)
                return
            except asyncio.TimeoutError:
                pass
        await run.worker.interrupt()


def status_of(error: GatewayError | None) -> str:
    """The status an execution ends with, after ``error`` (None: it succeeded)."""
    if error is None:
        return "succeeded"
    if error.code == "CALL_TIMEOUT":
        return "timed_out"
    return "cancelled" if error.code == "CANCELLED" else "failed"


def _number(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return round(float(value), 3) if ok else None


def _whole(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _usage(facts: dict[str, Any]) -> dict[str, Any]:
    """What the worker used during the step (null where it could not be measured)."""
    return {"cpu_ms": facts["cpu_ms"], "peak_rss_bytes": facts["peak_rss"]}


def attempt_summary(
    attempt: int,
    call_id: str,
    error: GatewayError | None,
    answer: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One attempt of a step with retries, as the answer and the record list them."""
    if error is None:
        assert answer is not None
        return {
            "attempt": attempt,
            "execution_id": call_id,
            "ok": True,
            "duration_ms": answer["duration_ms"],
            "worker": answer["worker"],
            "usage": answer["usage"],
        }
    return {
        "attempt": attempt,
        "execution_id": call_id,
        "ok": False,
        "code": error.code,
        "error_type": error.details.get("type"),
        "message": error.message[:500],
        "worker": error.details.get("worker"),
        "usage": error.details.get("usage"),
    }
