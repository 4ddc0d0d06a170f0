"""Serving what kernels send the gateway unasked: their log records, registrations
made after boot, the progress of their calls (``progress`` ops, handed to
``on_progress``), and requests for the gateway's services (``request`` ops).

Services are a table keyed by service name, the way ipykernel dispatches message
types: a handler takes the request's JSON payload and returns the JSON bytes of
its answer, or raises a ``GatewayError`` that the kernel receives as the error."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from .background import Background
from .engine import ScriptTable
from .errors import BadRequest, GatewayError, ServiceUnavailable
from .inputs import parse_timeout
from .kernels import ScriptKernel
from .logs import LogHub
from .mail import Mailer
from .metrics import Metrics
from .platform import PlatformBackend
from .plugins import ServicePlugins
from .registry import Registry
from .routing import CallRouter
from .shared_modules import SharedModules

__all__ = ["KernelServices"]

log = logging.getLogger("kernel_gateway.routing")

Service = Callable[[dict[str, Any]], Awaitable[bytes]]
# a service that must know which kernel asked
KernelService = Callable[[ScriptKernel, dict[str, Any]], Awaitable[bytes]]
# receives a kernel's ``progress`` op (docs/protocol.md)
ProgressHook = Callable[[ScriptKernel, dict[str, Any]], None]
MAX_PROGRESS_MESSAGE = 500


class KernelServices:
    def __init__(
        self,
        scripts: ScriptTable,
        registry: Registry,
        logs: LogHub,
        metrics: Metrics,
        router: CallRouter,
        *,
        platform: PlatformBackend | None = None,
        mailer: Mailer | None = None,
        modules: SharedModules | None = None,
        secrets: KernelService | None = None,
        plugins: ServicePlugins | None = None,
    ) -> None:
        self.scripts = scripts
        self.registry = registry
        self.logs = logs
        self.metrics = metrics
        self.router = router
        self.platform = platform
        self.mailer = mailer
        self.services: dict[str, Service] = {
            "event.emit": self._event_emit,
            "platform": self._platform,
            "mail.send": self._mail_send,
            "function.call": self._function_call,
            "function.list": self._function_list,
        }
        self.kernel_services: dict[str, KernelService] = {}
        if modules is not None:
            self.kernel_services["module.find"] = modules.find
        if secrets is not None:
            self.kernel_services["secret.get"] = secrets  # Secrets.kernel_get
        # gateway-side plugins (entry points ``vwed.services``, kernel_gateway/plugins.py):
        # their services are named ``<plugin>:<service>``, which no built-in name is
        if plugins is None:
            plugins = ServicePlugins()
            plugins.load(taken={*self.services, *self.kernel_services, "draft.deploy"})
        self.plugins = plugins
        for key in self.plugins.handlers:
            if key not in self.services and key not in self.kernel_services:
                self.kernel_services[key] = self.plugins.kernel_service(key)
        self._tasks = Background(log)
        # VWED.progress updates (op ``progress``, shape checked), for the execution service
        self.on_progress: ProgressHook | None = None

    def on_kernel_event(
        self,
        kernel: ScriptKernel,
        data: dict[str, Any],
        buffers: list[bytes],
        parent: str | None = None,
    ) -> None:
        """An op a kernel sent unasked (``bridge.EventHandler``)."""
        op = data.get("op")
        if op == "log":
            self.logs.structured(kernel.script_id, data, parent, kernel.kernel_id)
            if data.get("refusal"):
                self.metrics.policy_refusal(kernel.script_id or "")
        elif op in ("register", "unregister"):
            self._registration(kernel, op, data)
        elif op == "request":
            self._tasks.spawn(self._serve(kernel, data, buffers))
        elif op == "progress":
            self._progress(kernel, data)
        else:
            log.debug("kernel %s: unexpected op %r", kernel.kernel_id, op)

    def _progress(self, kernel: ScriptKernel, data: dict[str, Any]) -> None:
        """A call's ``VWED.progress`` update, to ``on_progress`` when its shape is right
        (the kernel runs the script's code: a malformed op is dropped, not trusted)."""
        if self.on_progress is None:
            return
        problem = _progress_problem(data)
        if problem:
            log.debug("kernel %s: progress op dropped (%s)", kernel.kernel_id, problem)
            return
        try:
            self.on_progress(kernel, data)
        except Exception:  # the kernel's iopub reader must go on
            log.exception("kernel %s: the progress hook failed", kernel.kernel_id)

    def start(self) -> None:
        """The gateway's log is open: the service plugins' records (their load
        failures first) go there."""
        self.plugins.attach_log(self.logs.engine)

    async def close(self) -> None:
        """Cancel the requests still being served (the gateway is stopping), then
        close the service plugins."""
        await self._tasks.cancel()
        await self.plugins.close()

    def _registration(self, kernel: ScriptKernel, op: str, data: dict[str, Any]) -> None:
        try:
            script = self.scripts.serving(kernel.script_id or "")
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

    async def _serve(
        self, kernel: ScriptKernel, data: dict[str, Any], buffers: list[bytes]
    ) -> None:
        req_id = str(data.get("id", ""))
        service = data.get("service")
        noreply = bool(data.get("noreply"))
        try:
            handler = self.services.get(str(service))
            if handler is None and str(service) in self.kernel_services:
                handler = functools.partial(self.kernel_services[str(service)], kernel)
            if handler is None:
                raise BadRequest(f"unknown service {service!r}", "UNKNOWN_SERVICE")
            payload = json.loads(buffers[0]) if buffers else {}
            value = await handler(payload)
            if not noreply:
                kernel.bridge.respond(req_id, True, value)
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

    # -- the services ------------------------------------------------------------------
    async def _event_emit(self, payload: dict[str, Any]) -> bytes:
        report = await self.router.emit(str(payload.get("name")), payload.get("data"))
        return json.dumps(report).encode()

    async def _platform(self, payload: dict[str, Any]) -> bytes:
        if self.platform is None:
            raise ServiceUnavailable("no platform backend is configured", "NO_PLATFORM")
        result = await self.platform.call(
            str(payload.get("module")), str(payload.get("method")), payload.get("args") or {}
        )
        return json.dumps(result).encode()

    async def _mail_send(self, payload: dict[str, Any]) -> bytes:
        if self.mailer is None:
            raise ServiceUnavailable("mail is not configured", "MAIL_NOT_CONFIGURED")
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(None, self.mailer.send, payload)
        return json.dumps(result).encode()

    async def _function_call(self, payload: dict[str, Any]) -> bytes:
        _, reply = await self.router.call_function(
            str(payload.get("name")),
            payload.get("args"),
            timeout=parse_timeout(payload.get("timeout"), self.router.max_timeout),
        )
        return reply.json_bytes()

    async def _function_list(self, payload: dict[str, Any]) -> bytes:
        return json.dumps([f.describe() for f in self.registry.functions()]).encode()


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _progress_problem(data: dict[str, Any]) -> str | None:
    """What is wrong with a ``progress`` op's shape, or None."""
    call_id, fraction, message = data.get("id"), data.get("fraction"), data.get("message")
    if not isinstance(call_id, str) or not call_id:
        return "no call id"
    if fraction is not None and not (isinstance(fraction, float) and 0.0 <= fraction <= 1.0):
        return f"fraction {fraction!r}"
    for name in ("done", "total"):
        value = data.get(name)
        if value is not None and not (_number(value) and value >= 0):
            return f"{name} {value!r}"
    if not isinstance(message, str) or len(message) > MAX_PROGRESS_MESSAGE:
        return "message not a str of at most 500 characters"
    return None
