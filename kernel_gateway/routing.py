"""Routing calls to scripts (routes and functions, to the least busy replica)
and serving the platform services kernels ask for (``request`` ops)."""

from __future__ import annotations

import json
import logging
from typing import Any

from .boot import map_call_error
from .bridge import Reply
from .engine import ScriptEngine
from .errors import BadRequest, GatewayError, MethodNotAllowed, NotFound
from .kernels import ScriptKernel
from .logs import LogHub
from .registry import Registry

__all__ = ["CallRouter"]

log = logging.getLogger("kernel_gateway.routing")


class CallRouter:
    def __init__(self, engine: ScriptEngine, registry: Registry, logs: LogHub, *,
                 call_timeout: float = 30.0, debug: bool = False) -> None:
        self.engine = engine
        self.registry = registry
        self.logs = logs
        self.call_timeout = call_timeout
        self.debug = debug
        engine.on_kernel_event = self.on_kernel_event

    async def call_route(
        self, method: str, path: str, request: dict[str, Any], body: bytes,
        timeout: float | None = None,
    ) -> tuple[str, Reply]:
        found = self.registry.match(method, path)
        if found is None:
            allowed = self.registry.methods_for(path)
            if allowed:
                raise MethodNotAllowed(f"{method} is not registered for /script-api{path}",
                                       details={"allowed": allowed},
                                       headers={"Allow": ", ".join(allowed)})
            raise NotFound(f"no script registered {method} /script-api{path}", "ROUTE_NOT_FOUND")
        entry, params = found
        kernel = self.engine.serving(entry.script_id).pick()
        request["path_params"] = params
        request["route"] = entry.path
        reply = await kernel.bridge.call(
            {"op": "call", "kind": "api", "name": entry.key, "request": request},
            [body], timeout=timeout or self.call_timeout)
        if not reply.ok:
            raise map_call_error(reply, f"route {entry.key}", self.debug)
        return entry.script_id, reply

    async def call_function(self, name: str, args: Any,
                            timeout: float | None = None) -> tuple[str, Reply]:
        entry = self.registry.function(name)
        if entry is None:
            raise NotFound(f"no running script registered function {name!r}", "FUNCTION_NOT_FOUND")
        kernel = self.engine.serving(entry.script_id).pick()
        reply = await kernel.bridge.call(
            {"op": "call", "kind": "function", "name": name, "args": args},
            timeout=timeout or self.call_timeout)
        if not reply.ok:
            raise map_call_error(reply, f"function {name!r}", self.debug)
        return entry.script_id, reply

    # -- messages from kernels ----------------------------------------------------------
    def on_kernel_event(self, kernel: ScriptKernel, data: dict[str, Any], buffers: list[bytes]) -> None:
        op = data.get("op")
        if op == "log":
            self.logs.structured(kernel.script_id, data)
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
        if script.replicas > 1:
            self.logs.engine(script.script_id, "WARNING",
                             "registrations after boot are ignored for a script with replicas")
            return
        kind, item = str(data.get("kind", "")), data.get("item") or {}
        try:
            if op == "register":
                self.registry.add_one(script.script_id, kind, item)
            else:
                self.registry.remove_one(script.script_id, kind, item)
            script.registrations = self.registry.of(script.script_id) or script.registrations
        except GatewayError as exc:
            self.logs.engine(script.script_id, "WARNING", f"registration refused: {exc.message}")

    async def _serve_request(self, kernel: ScriptKernel, data: dict[str, Any], buffers: list[bytes]) -> None:
        req_id = str(data.get("id", ""))
        service = data.get("service")
        try:
            payload = json.loads(buffers[0]) if buffers else {}
            if service == "function.call":
                _, reply = await self.call_function(str(payload.get("name")), payload.get("args"),
                                                    timeout=payload.get("timeout"))
                kernel.bridge.respond(req_id, True, reply.json_bytes())
            elif service == "function.list":
                value = [f.describe() for f in self.registry.functions()]
                kernel.bridge.respond(req_id, True, json.dumps(value).encode())
            else:
                raise BadRequest(f"unknown service {service!r}", "UNKNOWN_SERVICE")
        except GatewayError as exc:
            kernel.bridge.respond(req_id, False, error={"message": exc.message, "code": exc.code,
                                                        "type": exc.details.get("type", "")})
        except Exception as exc:
            log.exception("service %s failed", service)
            kernel.bridge.respond(req_id, False, error={"message": str(exc), "code": "INTERNAL_ERROR",
                                                        "type": type(exc).__name__})
