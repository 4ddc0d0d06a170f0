"""Sending calls into script kernels: routes, functions, WebSocket messages and
events, each to the least busy replica, recorded (metrics and call history).
(What kernels ask of the gateway is served by ``kernel_services.py``.)"""

from __future__ import annotations

import logging
import time
from typing import Any

from .boot import map_call_error
from .bridge import Done, Reply
from .engine import ScriptTable
from .engine.model import RunningScript
from .errors import GatewayError, NotFound, ServiceUnavailable
from .kernels import ScriptKernel
from .logs import LogHub
from .metrics import Metrics
from .quotas import rate_limited
from .registry import Registry
from .store.service import StoreService

__all__ = ["CallRouter"]

log = logging.getLogger("kernel_gateway.routing")


class CallRouter:
    """Calls into the running scripts of ``scripts`` (written by the engine)."""

    def __init__(
        self,
        scripts: ScriptTable,
        registry: Registry,
        logs: LogHub,
        metrics: Metrics,
        *,
        history: StoreService | None = None,
        call_timeout: float = 30.0,
        max_timeout: float = 24 * 3600.0,
        max_in_flight: int = 0,
        debug: bool = False,
    ) -> None:
        self.scripts = scripts
        self.registry = registry
        self.logs = logs
        self.metrics = metrics
        self.history = history
        self.call_timeout = call_timeout
        self.max_timeout = max_timeout  # the longest timeout a caller may ask for
        self.max_in_flight = max_in_flight
        self.debug = debug
        self.websockets: dict[str, set[Any]] = {}  # script_id -> open /script-ws connections

    def script_gone(self, script_id: str) -> None:
        """Close the WebSocket connections of a script that stopped or died."""
        for conn in list(self.websockets.pop(script_id, ())):
            conn.close(1001, "the script stopped")

    async def call_route(
        self,
        method: str,
        path: str,
        request: dict[str, Any],
        body: bytes,
        timeout: float | None = None,
        task_id: str | None = None,
    ) -> tuple[str, Reply]:
        entry, params = self.registry.route(method, path)
        request["path_params"] = params
        request["route"] = entry.path
        reply = await self._call(
            entry.script_id,
            "api",
            entry.key,
            {"op": "call", "kind": "api", "name": entry.key, "request": request},
            [body],
            timeout,
            task_id,
        )
        return entry.script_id, reply

    async def call_function(
        self, name: str, args: Any, timeout: float | None = None, task_id: str | None = None
    ) -> tuple[str, Reply]:
        entry = self.registry.function(name)
        if entry is None:
            raise NotFound(f"no running script registered function {name!r}", "FUNCTION_NOT_FOUND")
        reply = await self._call(
            entry.script_id,
            "function",
            name,
            {"op": "call", "kind": "function", "name": name, "args": args},
            None,
            timeout,
            task_id,
        )
        return entry.script_id, reply

    def start_route(
        self,
        method: str,
        path: str,
        request: dict[str, Any],
        body: bytes,
        task_id: str | None,
        done: Done,
    ) -> bool:
        """``call_route`` without a coroutine (the call front, ``handlers/front.py``):
        sent now, ``done(reply, None)`` or ``done(None, error)`` later. False (nothing
        sent) when the script does not serve right now: ``call_route`` waits for a
        restarting one, or says why not."""
        entry, params = self.registry.route(method, path)
        script = self._serving_now(entry.script_id)
        if script is None:
            return False
        request["path_params"] = params
        request["route"] = entry.path
        self._start(
            script,
            "api",
            entry.key,
            {"op": "call", "kind": "api", "name": entry.key, "request": request},
            [body],
            None,
            task_id,
            done,
        )
        return True

    def start_function(
        self, name: str, args: Any, timeout: float | None, task_id: str | None, done: Done
    ) -> str | None:
        """``call_function`` without a coroutine (see ``start_route``): the script's id,
        or None (nothing sent) when ``call_function`` must be used."""
        entry = self.registry.function(name)
        if entry is None:
            raise NotFound(f"no running script registered function {name!r}", "FUNCTION_NOT_FOUND")
        script = self._serving_now(entry.script_id)
        if script is None:
            return None
        self._start(
            script,
            "function",
            name,
            {"op": "call", "kind": "function", "name": name, "args": args},
            None,
            timeout,
            task_id,
            done,
        )
        return entry.script_id

    def _serving_now(self, script_id: str) -> RunningScript | None:
        try:
            return self.scripts.serving(script_id)
        except ServiceUnavailable:  # restarting (to wait for) or down: the async path
            return None

    def _start(
        self,
        script: RunningScript,
        kind: str,
        name: str,
        data: dict[str, Any],
        buffers: list[Any] | None,
        timeout: float | None,
        task_id: str | None,
        done: Done,
    ) -> None:
        kernel = self._admit(script, kind)
        call_id = kernel.bridge.new_call_id()
        self.logs.note_call(call_id, task_id)
        started = time.perf_counter()

        def ended(reply: Reply | None, exc: BaseException | None) -> None:
            seconds = time.perf_counter() - started
            error: GatewayError | None = None
            try:
                error = self._outcome(script, kind, name, call_id, kernel, reply, exc)
            except Exception as failure:  # not expected: still an answer, and a failed record
                exc = failure
                error = GatewayError(type(failure).__name__, "INTERNAL_ERROR")
            try:
                if exc is not None or error is not None:
                    done(None, exc or error)
                else:
                    done(reply, None)
            finally:  # after the answer went out: the caller does not wait for these
                try:
                    self._record(script, kind, name, call_id, task_id, seconds, error)
                except Exception:
                    log.exception("the records of call %s failed", call_id)

        try:
            kernel.bridge.start(
                data, buffers, timeout=timeout or self.call_timeout, call_id=call_id, done=ended
            )
        except BaseException as exc:
            self._ended(script, kind, name, call_id, task_id, kernel, started, None, exc)

    async def _call(
        self,
        script_id: str,
        kind: str,
        name: str,
        data: dict[str, Any],
        buffers: list[Any] | None,
        timeout: float | None,
        task_id: str | None,
    ) -> Reply:
        """Send a call to the least busy replica; record it (kind, name, duration, outcome)."""
        script = await self.scripts.wait_serving(script_id, timeout or self.call_timeout)
        kernel = self._admit(script, kind)
        call_id = kernel.bridge.new_call_id()
        self.logs.note_call(call_id, task_id)
        started = time.perf_counter()
        try:
            reply = await kernel.bridge.call(
                data, buffers, timeout=timeout or self.call_timeout, call_id=call_id
            )
        except BaseException as exc:
            self._ended(script, kind, name, call_id, task_id, kernel, started, None, exc)
            raise
        return self._ended(script, kind, name, call_id, task_id, kernel, started, reply, None)

    def _admit(self, script: RunningScript, kind: str) -> ScriptKernel:
        """The replica for a call, unless the script is busy (503) or over its rate (429)."""
        script_id = script.script_id
        kernel = script.pick()
        if self.max_in_flight and kernel.bridge.in_flight >= self.max_in_flight:
            raise ServiceUnavailable(
                f"script {script_id} has {kernel.bridge.in_flight} calls in flight "
                "(the limit); try again",
                "BUSY",
                headers={"Retry-After": "1"},
                details={"script_id": script_id},
            )
        # its calls per minute (quotas.py; None: no limit), after the BUSY check: a call
        # refused for load costs no token, so retries under load do not drain the bucket
        bucket = script.bucket
        if bucket is not None:
            wait = bucket.take()
            if wait:
                self.metrics.rate_limited(script_id, kind)
                raise rate_limited(script.path, bucket.limit, wait, script_id)
        return kernel

    def _ended(
        self,
        script: RunningScript,
        kind: str,
        name: str,
        call_id: str,
        task_id: str | None,
        kernel: ScriptKernel,
        started: float,
        reply: Reply | None,
        exc: BaseException | None,
    ) -> Reply:
        """A call's end: its error (``_outcome``), then its records (``_record``).
        Raises the call's error; returns the reply."""
        seconds = time.perf_counter() - started
        error = self._outcome(script, kind, name, call_id, kernel, reply, exc)
        try:
            self._record(script, kind, name, call_id, task_id, seconds, error)
        except Exception:  # the call's answer is not the records'
            log.exception("the records of call %s failed", call_id)
        if exc is not None:
            raise exc
        if error is not None:
            raise error
        assert reply is not None
        return reply

    def _outcome(
        self,
        script: RunningScript,
        kind: str,
        name: str,
        call_id: str,
        kernel: ScriptKernel,
        reply: Reply | None,
        exc: BaseException | None,
    ) -> GatewayError | None:
        """A call's error: an error answer of the kernel as a GatewayError (secrets
        redacted), or the gateway's own (any other exception: ``INTERNAL_ERROR``, as its
        answer says)."""
        error: GatewayError | None = None
        if isinstance(exc, GatewayError):
            error = exc
        elif isinstance(exc, Exception):
            error = GatewayError(type(exc).__name__, "INTERNAL_ERROR")
        if reply is not None and not reply.ok:
            error = map_call_error(
                reply, f"{'route' if kind == 'api' else 'function'} {name}", self.debug
            )
            error.details.setdefault("call_id", call_id)  # finds the call's log records
            # secret values the kernel was given, out of the answer and the history
            self.logs.redactor.redact_error(error, kernel.kernel_id, script.script_id)
        return error

    def _record(
        self,
        script: RunningScript,
        kind: str,
        name: str,
        call_id: str,
        task_id: str | None,
        seconds: float,
        error: GatewayError | None,
    ) -> None:
        """A call's metrics, meter and call history row."""
        script_id = script.script_id
        error_type = None if error is None else error.code
        self.metrics.call(script_id, kind, error_type or "ok", seconds)
        if script.meter is not None:
            script.meter.record(error is None, seconds)
        if self.history is not None:
            self.history.add_call(
                {
                    "ts": time.time(),
                    "script_id": script_id,
                    "script_path": script.path,
                    "kind": kind,
                    "name": name[:512],
                    "ok": error is None,
                    "duration_ms": seconds * 1000,
                    "error_type": error_type,
                    "error_message": None if error is None else error.message[:500],
                    "call_id": call_id,
                    "task_id": task_id[:128] if task_id else None,
                }
            )

    async def call_websocket(self, path: str, connection_id: str, message: str) -> Reply:
        script_id = self.registry.websocket(path)
        if script_id is None:
            raise NotFound(f"no script serves WebSocket /script-ws{path}", "ROUTE_NOT_FOUND")
        return await self._call(
            script_id,
            "ws",
            path,
            {
                "op": "call",
                "kind": "ws",
                "name": path,
                "args": {"connection_id": connection_id, "message": message},
            },
            None,
            None,
            None,
        )

    async def emit(self, event: str, data: Any, task_id: str | None = None) -> dict[str, Any]:
        """Deliver an event to every listener of every running script, higher priority
        first, one after the other; a failing listener is logged and reported, the
        others still run."""
        listeners = self.registry.listeners(event)
        delivered = 0
        failed: list[dict[str, Any]] = []
        for entry in listeners:
            try:
                script = self.scripts.serving(entry.script_id)
                kernels = list(script.kernels) if entry.all_replicas else [script.pick()]
            except GatewayError as exc:
                failed.append(
                    {
                        "script_id": entry.script_id,
                        "listener": entry.id,
                        "code": exc.code,
                        "message": exc.message,
                    }
                )
                continue
            for kernel in kernels:
                call_id = kernel.bridge.new_call_id()
                self.logs.note_call(call_id, task_id)
                try:
                    reply = await kernel.bridge.call(
                        {
                            "op": "call",
                            "kind": "event",
                            "name": entry.id,
                            "event": event,
                            "args": data,
                        },
                        timeout=self.call_timeout,
                        call_id=call_id,
                    )
                    if not reply.ok:
                        raise map_call_error(reply, f"listener {entry.id}", self.debug)
                    delivered += 1
                except GatewayError as exc:
                    failed.append(
                        {
                            "script_id": entry.script_id,
                            "listener": entry.id,
                            "code": exc.code,
                            "type": exc.details.get("type"),
                            "message": exc.details.get("message", exc.message),
                            "call_id": call_id,
                        }
                    )
                    if exc.code in ("HANDLER_ERROR", "RESULT_NOT_SERIALIZABLE"):
                        continue  # the kernel logged it: an ERROR record with the call id
                    self.logs.engine(
                        entry.script_id,
                        "WARNING",
                        f"listener {entry.id} of event {event!r} failed: {exc.message}",
                    )
        return {
            "event": event,
            "listeners": len(listeners),
            "delivered": delivered,
            "failed": failed,
        }
