"""Routing calls to scripts (routes and functions, to the least busy replica)
and serving the platform services kernels ask for (``request`` ops)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from .boot import map_call_error
from .bridge import Reply
from .engine import ScriptEngine
from .errors import BadRequest, GatewayError, MethodNotAllowed, NotFound, ServiceUnavailable
from .inputs import parse_timeout
from .kernels import ScriptKernel
from .logs import LogHub
from .mail import Mailer
from .platform import PlatformBackend
from .registry import Registry
from .store.service import StoreService

__all__ = ["CallRouter"]

log = logging.getLogger("kernel_gateway.routing")


class CallRouter:
    def __init__(
        self,
        engine: ScriptEngine,
        registry: Registry,
        logs: LogHub,
        *,
        call_timeout: float = 30.0,
        max_timeout: float = 24 * 3600.0,
        debug: bool = False,
        store: StoreService | None = None,
        mailer: Mailer | None = None,
        platform: PlatformBackend | None = None,
    ) -> None:
        self.mailer = mailer
        self.platform = platform
        self.metrics: Any = None  # a metrics.Metrics, set by the app
        self.max_in_flight = 0
        self.websockets: dict[str, set[Any]] = {}  # script_id -> open /script-ws connections
        self.engine = engine
        self.registry = registry
        self.logs = logs
        self.store = store
        self.call_timeout = call_timeout
        self.max_timeout = max_timeout
        self.debug = debug
        engine.on_kernel_event = self.on_kernel_event
        engine.on_script_gone = self.script_gone

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
        found = self.registry.match(method, path)
        if found is None:
            allowed = self.registry.methods_for(path)
            if allowed:
                raise MethodNotAllowed(
                    f"{method} is not registered for /script-api{path}",
                    details={"allowed": allowed},
                    headers={"Allow": ", ".join(allowed)},
                )
            raise NotFound(f"no script registered {method} /script-api{path}", "ROUTE_NOT_FOUND")
        entry, params = found
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
        script = await self.engine.wait_serving(script_id, timeout or self.call_timeout)
        kernel = script.pick()
        if self.max_in_flight and kernel.bridge.in_flight >= self.max_in_flight:
            raise ServiceUnavailable(
                f"script {script_id} has {kernel.bridge.in_flight} calls in flight "
                "(the limit); try again",
                "BUSY",
                headers={"Retry-After": "1"},
                details={"script_id": script_id},
            )
        call_id = kernel.bridge.new_call_id()
        self.logs.note_call(call_id, task_id)
        started = time.perf_counter()
        error_type: str | None = None
        try:
            reply = await kernel.bridge.call(
                data, buffers, timeout=timeout or self.call_timeout, call_id=call_id
            )
            if not reply.ok:
                error = map_call_error(
                    reply, f"{'route' if kind == 'api' else 'function'} {name}", self.debug
                )
                error_type = error.code
                raise error
            return reply
        except GatewayError as exc:
            error_type = error_type or exc.code
            raise
        finally:
            if self.metrics is not None:
                self.metrics.call(
                    script_id, kind, error_type or "ok", time.perf_counter() - started
                )
            if self.store is not None:
                self.store.add_call(
                    {
                        "ts": time.time(),
                        "script_id": script_id,
                        "kind": kind,
                        "name": name[:512],
                        "ok": error_type is None,
                        "duration_ms": (time.perf_counter() - started) * 1000,
                        "error_type": error_type,
                        "call_id": call_id,
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
                script = self.engine.serving(entry.script_id)
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
                        }
                    )
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

    # -- messages from kernels ----------------------------------------------------------
    def on_kernel_event(
        self,
        kernel: ScriptKernel,
        data: dict[str, Any],
        buffers: list[bytes],
        parent: str | None = None,
    ) -> None:
        op = data.get("op")
        if op == "log":
            self.logs.structured(kernel.script_id, data, parent)
            if data.get("refusal") and self.metrics is not None:
                self.metrics.policy_refusal(kernel.script_id or "")
        elif op in ("register", "unregister"):
            self._registration(kernel, op, data)
        elif op == "request":
            self.engine._spawn(self._serve_request(kernel, data, buffers))
        else:
            log.debug("kernel %s: unexpected op %r", kernel.kernel_id, op)

    def _registration(self, kernel: ScriptKernel, op: str, data: dict[str, Any]) -> None:
        try:
            script = self.engine.serving(kernel.script_id or "")
        except GatewayError:
            return  # while starting, the boot result is the authoritative list
        kind, item = str(data.get("kind", "")), data.get("item") or {}
        if script.replicas > 1:
            if kind != "timer":
                self.logs.engine(
                    script.script_id,
                    "WARNING",
                    "registrations after boot are ignored for a script with replicas",
                )
            return
        try:
            if op == "register":
                self.registry.add_one(script.script_id, kind, item)
            else:
                self.registry.remove_one(script.script_id, kind, item)
            script.registrations = self.registry.of(script.script_id) or script.registrations
        except GatewayError as exc:
            self.logs.engine(script.script_id, "WARNING", f"registration refused: {exc.message}")

    async def _serve_request(
        self, kernel: ScriptKernel, data: dict[str, Any], buffers: list[bytes]
    ) -> None:
        req_id = str(data.get("id", ""))
        service = data.get("service")
        noreply = bool(data.get("noreply"))
        try:
            payload = json.loads(buffers[0]) if buffers else {}
            if service == "event.emit":
                report = await self.emit(str(payload.get("name")), payload.get("data"))
                if not noreply:
                    kernel.bridge.respond(req_id, True, json.dumps(report).encode())
            elif service == "platform":
                if self.platform is None:
                    raise ServiceUnavailable("no platform backend is configured", "NO_PLATFORM")
                result = await self.platform.call(
                    str(payload.get("module")),
                    str(payload.get("method")),
                    payload.get("args") or {},
                )
                kernel.bridge.respond(req_id, True, json.dumps(result).encode())
            elif service == "mail.send":
                if self.mailer is None:
                    raise ServiceUnavailable("mail is not configured", "MAIL_NOT_CONFIGURED")
                result = await asyncio.get_running_loop().run_in_executor(
                    None, self.mailer.send, payload
                )
                kernel.bridge.respond(req_id, True, json.dumps(result).encode())
            elif service == "function.call":
                _, reply = await self.call_function(
                    str(payload.get("name")),
                    payload.get("args"),
                    timeout=parse_timeout(payload.get("timeout"), self.max_timeout),
                )
                kernel.bridge.respond(req_id, True, reply.json_bytes())
            elif service == "function.list":
                value = [f.describe() for f in self.registry.functions()]
                kernel.bridge.respond(req_id, True, json.dumps(value).encode())
            else:
                raise BadRequest(f"unknown service {service!r}", "UNKNOWN_SERVICE")
        except GatewayError as exc:
            if noreply:
                self.logs.engine(kernel.script_id, "WARNING", f"{service} failed: {exc.message}")
                return
            kernel.bridge.respond(
                req_id,
                False,
                error={
                    "message": exc.message,
                    "code": exc.code,
                    "type": exc.details.get("type", ""),
                },
            )
        except Exception as exc:
            log.exception("service %s failed", service)
            if not noreply:
                kernel.bridge.respond(
                    req_id,
                    False,
                    error={
                        "message": str(exc),
                        "code": "INTERNAL_ERROR",
                        "type": type(exc).__name__,
                    },
                )
