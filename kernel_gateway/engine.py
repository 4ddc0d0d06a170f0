"""Script lifecycle and call routing: start a script in a pooled kernel, commit
its registrations, route calls to it, stop it. The one place that ties the
kernel pool, the routing table and the file store together."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

from .bridge import Reply
from .errors import (
    BadRequest,
    CallTimeout,
    Conflict,
    GatewayError,
    HandlerError,
    MethodNotAllowed,
    NotFound,
    ScriptError,
    ServiceUnavailable,
)
from .kernels import KernelPool, ScriptKernel
from .logs import LogHub
from .registry import Registry, ScriptRegistrations, parse_registrations
from .scripts import ScriptStore

__all__ = ["ScriptEngine", "RunningScript", "map_call_error"]

log = logging.getLogger("kernel_gateway.engine")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


@dataclass
class RunningScript:
    script_id: str
    path: str
    kernel: ScriptKernel | None
    started_at: float
    status: str = "starting"  # starting | running | stopping | died
    registrations: ScriptRegistrations = field(default_factory=ScriptRegistrations)
    exit_reason: str | None = None

    def summary(self) -> dict[str, Any]:
        k = self.kernel
        return {
            "script_id": self.script_id,
            "script_path": self.path,
            "status": self.status,
            "started_at": self.started_at,
            "kernel_id": k.kernel_id if k else None,
            "pid": k.pid if k else None,
            "in_flight": k.bridge.in_flight if k else 0,
            "fast_path": k.bridge.fast if k else False,
            "registrations": self.registrations.counts(),
            "exit_reason": self.exit_reason,
        }


def map_call_error(reply: Reply, what: str, debug: bool) -> GatewayError:
    """Turn a failed ``result`` into the gateway error a client gets."""
    err = reply.error
    kind = err.get("kind", "handler")
    etype = err.get("type", "Exception")
    message = err.get("message", "")
    details: dict[str, Any] = {"type": etype, "message": message}
    if debug:
        details["traceback"] = err.get("traceback", "")
    if kind == "serialization":
        return HandlerError(f"{what} returned a result that is not JSON-serializable: {message}",
                            "RESULT_NOT_SERIALIZABLE", details=details)
    if kind == "arguments":
        return BadRequest(f"{what}: {message}", "BAD_ARGUMENTS", details=details)
    if kind == "not_found":
        return NotFound(f"{what} is no longer registered", "NOT_REGISTERED", details=details)
    if kind in ("interrupted", "cancelled"):
        return CallTimeout(f"{what} was interrupted", details=details)
    return HandlerError(f"{what} raised {etype}: {message}", "HANDLER_ERROR", details=details,
                        log_message=err.get("traceback"))


class ScriptEngine:
    """Running scripts, by id and by path."""

    def __init__(
        self,
        store: ScriptStore,
        registry: Registry,
        pool: KernelPool,
        logs: LogHub,
        *,
        call_timeout: float = 30.0,
        boot_timeout: float = 60.0,
        debug: bool = False,
    ) -> None:
        self.store = store
        self.registry = registry
        self.pool = pool
        self.logs = logs
        self.call_timeout = call_timeout
        self.boot_timeout = boot_timeout
        self.debug = debug
        self._scripts: dict[str, RunningScript] = {}
        self._by_path: dict[str, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._background: set[asyncio.Task[Any]] = set()

    # -- queries ---------------------------------------------------------------------
    def running(self) -> list[RunningScript]:
        return sorted(self._scripts.values(), key=lambda s: s.started_at)

    def get(self, script_id: str) -> RunningScript:
        script = self._scripts.get(script_id)
        if script is None:
            raise NotFound(f"script {script_id!r} is not running", "NOT_RUNNING",
                           details={"script_id": script_id})
        return script

    def find(self, script_id: Any = None, script_path: Any = None) -> RunningScript:
        if script_id is not None:
            if not isinstance(script_id, str):
                raise BadRequest("'script_id' must be a string", "BAD_REQUEST")
            return self.get(script_id)
        if script_path is not None:
            rel = self.store.relative(self.store.resolve(script_path))
            sid = self._by_path.get(rel)
            if sid is None:
                raise NotFound(f"script {rel!r} is not running", "NOT_RUNNING",
                               details={"script_path": rel})
            return self._scripts[sid]
        raise BadRequest("give 'script_id' or 'script_path'", "MISSING_FIELD")

    def _lock(self, path: str) -> asyncio.Lock:
        return self._locks.setdefault(path, asyncio.Lock())

    # -- lifecycle -------------------------------------------------------------------
    async def start(self, script_path: Any) -> RunningScript:
        source = self.store.load(script_path)
        async with self._lock(source.path):
            existing = self._by_path.get(source.path)
            if existing is not None:
                current = self._scripts[existing]
                if current.status != "died":
                    raise Conflict(f"script {source.path!r} is already running", "ALREADY_RUNNING",
                                   details={"script_id": existing})
                self._forget(current)
            kernel = await self.pool.acquire()
            script_id = f"{source.path}_{int(time.time() * 1000)}"
            while script_id in self._scripts:  # two starts in the same millisecond
                script_id += "_"
            script = RunningScript(script_id, source.path, kernel, time.time())
            kernel.script_id = script_id
            kernel.bridge.on_event = self._on_kernel_event
            kernel.on_iopub = self.logs.on_iopub
            kernel.on_death = self._on_kernel_death
            self._scripts[script_id] = script
            self._by_path[source.path] = script_id
            try:
                regs = await self._boot(script, source.file, source.cells)
                self.registry.commit(script_id, regs)
            except BaseException:
                self._forget(script)
                self._spawn(kernel.shutdown(now=True))
                raise
            script.registrations = regs
            script.status = "running"
            self.logs.engine(script_id, "INFO", f"started {source.path} "
                             f"({sum(regs.counts().values())} registrations)")
            return script

    async def _boot(self, script: RunningScript, file: str, cells: list[str]) -> ScriptRegistrations:
        try:
            return await asyncio.wait_for(self._load_and_boot(script, file, cells), self.boot_timeout)
        except (asyncio.TimeoutError, CallTimeout):
            raise CallTimeout(f"script {script.path!r} did not load and boot within "
                              f"{self.boot_timeout:g} s", "BOOT_TIMEOUT") from None

    async def _load_and_boot(self, script: RunningScript, file: str,
                             cells: list[str]) -> ScriptRegistrations:
        kernel = script.kernel
        assert kernel is not None
        # The outer deadline (boot_timeout) bounds every step; the per-step
        # timeouts below are only there so that no wait is unbounded on its own.
        step = self.boot_timeout + 1
        reply = await kernel.bridge.call(
            {"op": "prepare", "script_id": script.script_id, "file": file}, timeout=step)
        if not reply.ok:
            raise map_call_error(reply, "prepare", self.debug)
        for index, cell in enumerate(cells):
            result = await kernel.execute(cell, timeout=step)
            if result.get("status") != "ok":
                where = f" (cell {index + 1})" if len(cells) > 1 else ""
                raise ScriptError(
                    f"script {script.path!r} raised {result.get('ename')} while loading{where}: "
                    f"{result.get('evalue')}", "BOOT_FAILED",
                    details={"type": result.get("ename"), "message": result.get("evalue"),
                             "traceback": strip_ansi("\n".join(result.get("traceback") or [])),
                             "phase": "load"})
        reply = await kernel.bridge.call({"op": "boot"}, timeout=step)
        if not reply.ok:
            err = reply.error
            if err.get("kind") == "boot_missing":
                raise ScriptError(f"script {script.path!r} defines no boot() function",
                                  "BOOT_MISSING")
            raise ScriptError(
                f"boot() of {script.path!r} raised {err.get('type')}: {err.get('message')}",
                "BOOT_FAILED",
                details={"type": err.get("type"), "message": err.get("message"),
                         "traceback": err.get("traceback"), "phase": "boot"})
        return parse_registrations(script.script_id, reply.value())

    async def stop(self, script: RunningScript, reason: str = "stopped") -> RunningScript:
        async with self._lock(script.path):
            if self._scripts.get(script.script_id) is not script:
                raise NotFound(f"script {script.script_id!r} is not running", "NOT_RUNNING")
            # Unregister first: new calls get 404 at once, never a hang.
            self.registry.remove(script.script_id)
            script.status = "stopping"
            kernel = script.kernel
            if kernel is not None:
                await kernel.shutdown()
            script.exit_reason = reason
            self._forget(script)
            self.logs.engine(script.script_id, "INFO", f"stopped {script.path} ({reason})")
            return script

    async def restart(self, script: RunningScript) -> RunningScript:
        await self.stop(script, "restarted")
        return await self.start(script.path)

    def _forget(self, script: RunningScript) -> None:
        self.registry.remove(script.script_id)
        self._scripts.pop(script.script_id, None)
        if self._by_path.get(script.path) == script.script_id:
            del self._by_path[script.path]

    async def _on_kernel_death(self, kernel: ScriptKernel) -> None:
        script = self._scripts.get(kernel.script_id or "")
        if script is None or script.kernel is not kernel or script.status == "stopping":
            return
        self.registry.remove(script.script_id)
        script.status = "died"
        script.exit_reason = "kernel died"
        script.registrations = ScriptRegistrations()
        self.logs.engine(script.script_id, "ERROR", f"the kernel of {script.path} died")

    async def close(self) -> None:
        for script in list(self._scripts.values()):
            try:
                await self.stop(script, "gateway shutdown")
            except GatewayError:
                pass
        for task in list(self._background):
            task.cancel()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- calls -----------------------------------------------------------------------
    def _kernel_of(self, script_id: str) -> ScriptKernel:
        script = self._scripts.get(script_id)
        if script is None or script.status != "running" or script.kernel is None:
            raise ServiceUnavailable(f"script {script_id} is not serving calls", "SCRIPT_STOPPING",
                                     details={"script_id": script_id})
        return script.kernel

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
        kernel = self._kernel_of(entry.script_id)
        request["path_params"] = params
        request["route"] = entry.path
        reply = await kernel.bridge.call(
            {"op": "call", "kind": "api", "name": entry.key, "request": request},
            [body], timeout=timeout or self.call_timeout)
        if not reply.ok:
            raise map_call_error(reply, f"route {entry.key}", self.debug)
        return entry.script_id, reply

    async def call_function(self, name: str, args: Any, timeout: float | None = None) -> tuple[str, Reply]:
        entry = self.registry.function(name)
        if entry is None:
            raise NotFound(f"no running script registered function {name!r}", "FUNCTION_NOT_FOUND")
        kernel = self._kernel_of(entry.script_id)
        reply = await kernel.bridge.call(
            {"op": "call", "kind": "function", "name": name, "args": args},
            timeout=timeout or self.call_timeout)
        if not reply.ok:
            raise map_call_error(reply, f"function {name!r}", self.debug)
        return entry.script_id, reply

    # -- messages from kernels ----------------------------------------------------------
    def _on_kernel_event(self, kernel: ScriptKernel, data: dict[str, Any], buffers: list[bytes]) -> None:
        op = data.get("op")
        script = self._scripts.get(kernel.script_id or "")
        if op == "log":
            self.logs.structured(kernel.script_id, data)
        elif op in ("register", "unregister"):
            if script is None or script.status != "running":
                return  # during boot, the boot result is the authoritative list
            try:
                if op == "register":
                    self.registry.add_one(script.script_id, data.get("kind", ""), data.get("item") or {})
                else:
                    self.registry.remove_one(script.script_id, data.get("kind", ""), data.get("item") or {})
                script.registrations = self.registry.of(script.script_id) or script.registrations
            except GatewayError as exc:
                self.logs.engine(script.script_id, "WARNING", f"registration refused: {exc.message}")
        elif op == "request":
            self._spawn(self._serve_request(kernel, data, buffers))
        else:
            log.debug("kernel %s: unexpected op %r", kernel.kernel_id, op)

    async def _serve_request(self, kernel: ScriptKernel, data: dict[str, Any], buffers: list[bytes]) -> None:
        import json

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
