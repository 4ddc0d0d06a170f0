"""Drafts: a scratch kernel of the gateway's VWED kernelspec (``POST /api/kernels``)
is connected to the gateway like a script's kernel, and what it registers is served
live under its own prefix, removed when the kernel stops (docs/vwed.md, "Drafts").

The rule (``id8``: the first 8 characters of the kernel id JupyterLab knows):

- its ``VWED`` reaches the gateway: ``VWED.function.call`` of running scripts,
  ``VWED.event.emit``, platform services, mail; ``VWED.log`` lines are records of
  script id ``drafts/<id8>``;
- a route it registers is served at ``/script-api/drafts/<id8>/<route path>`` with
  the **admin** token only (a draft is untested code: never the caller token);
- a function it registers is callable as ``drafts/<id8>/<name>`` with the admin
  token (``POST /script-engine/functions/drafts%2F<id8>%2F<name>/call``) or from
  another draft kernel; never from a production script, and never by its bare name;
- its listeners get the events emitted from its own kernel (besides the production
  listeners), never the events of production scripts; WebSocket routes are not served;
- a draft never conflicts with nor shadows a production script: production's table
  is untouched, and a production route that matches a path under
  ``/script-api/drafts/...`` wins (the draft's registration is refused with a WARNING);
- ``VWED.deploy(path)`` saves it as a script and starts it (``deploy.py``).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections import OrderedDict
from typing import Any

from jupyter_client.manager import AsyncKernelManager

from .background import Background
from .boot import map_call_error
from .bridge import Reply
from .deploy import Deployer
from .errors import BadRequest, GatewayError, NotFound, ServiceUnavailable
from .inputs import parse_timeout
from .kernel_services import KernelServices
from .kernels import KernelEvents, ScriptKernel
from .registrations import ScriptRegistrations, normalize_path
from .registry import Registry
from .scratch import DraftKernel

__all__ = ["DraftHub", "Draft", "PREFIX"]

log = logging.getLogger("kernel_gateway.drafts")

PREFIX = "drafts"
_RECENT_CALLS = 1024


class Draft:
    """One connected scratch kernel and what it registered."""

    def __init__(self, hub: DraftHub, id8: str) -> None:
        self.hub = hub
        self.id8 = id8
        self.script_id = f"{PREFIX}/{id8}"
        self.kernel: DraftKernel | None = None
        self.registry = Registry()  # the draft's own table: production's is untouched
        self._calls: OrderedDict[str, None] = OrderedDict()  # recent call ids (output)
        self._tasks = Background(log)

    # -- connection ------------------------------------------------------------------
    async def connect(self, km: AsyncKernelManager) -> None:
        """Open the comm to the kernel, name it, start with no registrations."""
        self.registry.commit(self.script_id, ScriptRegistrations())
        kernel = await DraftKernel.connect(
            km, fast_path=self.hub.fast_path, timeout=self.hub.startup_timeout
        )
        kernel.wire(
            KernelEvents(self._on_event, self._on_iopub, self.hub.services.logs.kernel_gone),
            script_id=self.script_id,
            on_death=self._on_death,
        )
        self.kernel = kernel
        reply = await kernel.bridge.call(
            {"op": "prepare", "script_id": self.script_id, "replica": 0, "replicas": 1},
            timeout=10,
        )
        if not reply.ok:
            log.warning("draft %s: prepare failed: %s", self.script_id, reply.error)

    def _forget(self) -> None:
        self.registry.remove(self.script_id)
        self.registry.commit(self.script_id, ScriptRegistrations())

    async def release(self) -> None:
        """Drop registrations and the connection; the kernel keeps running (restart)."""
        self._forget()
        kernel, self.kernel = self.kernel, None
        if kernel is not None:
            await kernel.release()

    async def close(self) -> None:
        """Drop registrations, stop the kernel (and the processes it started)."""
        self.registry.remove(self.script_id)
        await self._tasks.cancel()
        kernel, self.kernel = self.kernel, None
        if kernel is not None:
            await kernel.shutdown(now=True)

    def _on_death(self, kernel: ScriptKernel) -> None:
        if kernel is self.kernel:
            self._forget()
            self.hub.services.logs.engine(
                self.script_id, "WARNING", "the draft's kernel died; its routes are removed"
            )

    def serving(self) -> DraftKernel:
        kernel = self.kernel
        if kernel is None or not kernel.alive:
            raise ServiceUnavailable(
                f"draft {self.script_id} has no live kernel (restarting or dead)",
                "KERNEL_UNAVAILABLE",
                details={"script_id": self.script_id},
            )
        return kernel

    # -- what the kernel sends -------------------------------------------------------
    def _on_event(
        self, kernel: Any, data: dict[str, Any], buffers: list[bytes], parent: str | None
    ) -> None:
        op = data.get("op")
        if op in ("register", "unregister"):
            self._registration(str(op), data)
            return
        if op == "request":
            service = data.get("service")
            payload = _payload(buffers)
            if service in ("event.emit", "draft.deploy") or (
                service == "function.call" and str(payload.get("name", "")).startswith(PREFIX + "/")
            ):
                self._tasks.spawn(self._serve(kernel, data, service, payload))
                return
        self.hub.services.on_kernel_event(kernel, data, buffers, parent)

    def _on_iopub(self, kernel: ScriptKernel, msg: dict[str, Any]) -> None:
        # a handler's output during a gateway call goes to the logs; a cell's output
        # stays in the notebook
        if (msg.get("parent_header") or {}).get("msg_id") in self._calls:
            self.hub.services.logs.on_iopub(kernel, msg)

    def _warn(self, message: str) -> None:
        self.hub.services.logs.engine(self.script_id, "WARNING", message)

    def _registration(self, op: str, data: dict[str, Any]) -> None:
        kind, item = str(data.get("kind", "")), data.get("item") or {}
        if kind == "websocket":
            if op == "register":
                self._warn(f"WebSocket route {item.get('path')!r}: not served for drafts")
            return
        try:
            if op == "register" and kind == "api":
                method = str(item.get("method", "")).upper()
                public = self.public_path(normalize_path(str(item.get("path", ""))))
                found = self.hub.services.registry.match(method, public)
                if found is not None:
                    self._warn(
                        f"route {method} /script-api{public} is served by production script "
                        f"{found[0].script_id}; the draft's route is refused"
                    )
                    return
            if op == "register":
                self.registry.add_one(self.script_id, kind, item)
            else:
                self.registry.remove_one(self.script_id, kind, item)
        except GatewayError as exc:
            self._warn(f"registration refused: {exc.message}")

    def public_path(self, path: str) -> str:
        """Where the draft's route ``path`` is served (under ``/script-api``)."""
        return f"/{PREFIX}/{self.id8}" + ("" if path == "/" else path)

    async def _serve(
        self, kernel: ScriptKernel, data: dict[str, Any], service: Any, payload: dict[str, Any]
    ) -> None:
        """``function.call`` of a draft's function, or ``event.emit`` (production
        listeners, then this draft's own)."""
        req_id, noreply = str(data.get("id", "")), bool(data.get("noreply"))
        try:
            if service == "draft.deploy":
                if self.hub.deployer is None:
                    raise ServiceUnavailable("this gateway does not deploy drafts", "NO_DEPLOY")
                value = json.dumps(await self.hub.deployer.deploy(payload)).encode()
            elif service == "event.emit":
                name = str(payload.get("name"))
                report = await self.hub.services.router.emit(name, payload.get("data"))
                mine = await self.emit(name, payload.get("data"))
                report["listeners"] += mine["listeners"]
                report["delivered"] += mine["delivered"]
                report["failed"] += mine["failed"]
                value = json.dumps(report).encode()
            else:
                draft, fn = self.hub.function(str(payload.get("name")))
                if draft is self:  # its main thread waits for this answer: it would hang
                    raise BadRequest(
                        f"call {fn!r} by its bare name in its own notebook", "BAD_REQUEST"
                    )
                router = self.hub.services.router
                reply = await draft.call_function(
                    fn,
                    payload.get("args"),
                    parse_timeout(payload.get("timeout"), router.max_timeout),
                )
                value = reply.json_bytes()
            if not noreply:
                kernel.bridge.respond(req_id, True, value)
        except GatewayError as exc:
            if noreply:
                self._warn(f"{service} failed: {exc.message}")
            else:
                kernel.bridge.respond(
                    req_id,
                    False,
                    error={"message": exc.message, "code": exc.code, "type": ""},
                )

    # -- calls into the draft ----------------------------------------------------------
    async def call_route(
        self,
        method: str,
        path: str,
        request: dict[str, Any],
        body: bytes,
        task_id: str | None = None,
    ) -> Reply:
        """Call the draft's route ``method path`` (the path the draft registered)."""
        entry, params = self.registry.route(
            method,
            path,
            shown=self.public_path(path),
            missing=f"draft {self.script_id} registered no {method} {path}",
        )
        request["path_params"] = params
        request["route"] = entry.path
        request["path"] = path
        data = {"op": "call", "kind": "api", "name": entry.key, "request": request}
        return await self._call(f"route {entry.key}", data, [body], None, task_id)

    async def call_function(
        self, name: str, args: Any, timeout: float | None = None, task_id: str | None = None
    ) -> Reply:
        if self.registry.function(name) is None:
            raise NotFound(
                f"draft {self.script_id} registered no function {name!r}", "FUNCTION_NOT_FOUND"
            )
        data = {"op": "call", "kind": "function", "name": name, "args": args}
        return await self._call(f"function {name}", data, None, timeout, task_id)

    async def emit(self, event: str, data: Any) -> dict[str, Any]:
        """Deliver ``event`` to this draft's listeners (higher priority first)."""
        listeners = self.registry.listeners(event)
        report: dict[str, Any] = {"listeners": len(listeners), "delivered": 0, "failed": []}
        for entry in listeners:
            call = {"op": "call", "kind": "event", "name": entry.id, "event": event, "args": data}
            try:
                await self._call(f"listener {entry.id}", call, None, None, None)
                report["delivered"] += 1
            except GatewayError as exc:
                report["failed"].append(
                    {
                        "script_id": self.script_id,
                        "listener": entry.id,
                        "code": exc.code,
                        "message": exc.details.get("message", exc.message),
                    }
                )
        return report

    async def _call(
        self,
        what: str,
        data: dict[str, Any],
        buffers: list[Any] | None,
        timeout: float | None,
        task_id: str | None,
    ) -> Reply:
        kernel = self.serving()
        router = self.hub.services.router
        call_id = kernel.bridge.new_call_id()
        self.hub.services.logs.note_call(call_id, task_id)
        self._calls[call_id] = None
        while len(self._calls) > _RECENT_CALLS:
            self._calls.popitem(last=False)
        reply = await kernel.bridge.call(
            data, buffers, timeout=timeout or router.call_timeout, call_id=call_id
        )
        if not reply.ok:
            raise map_call_error(reply, f"{what} of draft {self.script_id}", router.debug)
        return reply


class DraftHub:
    """The drafts of the gateway, by ``id8``; what they need of the gateway."""

    def __init__(
        self,
        services: KernelServices,
        *,
        deployer: Deployer | None = None,
        fast_path: bool = True,
        startup_timeout: float = 60.0,
    ) -> None:
        self.services = services
        self.deployer = deployer
        self.fast_path = fast_path
        self.startup_timeout = startup_timeout
        self.drafts: dict[str, Draft] = {}

    def taken(self, kernel_id: str) -> bool:
        return kernel_id[:8] in self.drafts

    async def open(self, kernel_id: str, km: AsyncKernelManager) -> Draft:
        draft = Draft(self, kernel_id[:8])
        self.drafts[draft.id8] = draft
        try:
            await draft.connect(km)
        except BaseException:
            self.drafts.pop(draft.id8, None)
            await draft.release()
            raise
        return draft

    async def close(self, draft: Draft) -> None:
        if self.drafts.get(draft.id8) is draft:
            del self.drafts[draft.id8]
        await draft.close()

    def claims(self, method: str, path: str) -> bool:
        """Whether ``method path`` (under ``/script-api``) is a draft's to serve: under
        ``/drafts/`` and not served by production (production first)."""
        if not path.startswith(f"/{PREFIX}/"):
            return False
        registry = self.services.registry
        return registry.match(method, path) is None and not registry.methods_for(path)

    def route(self, path: str) -> tuple[Draft, str]:
        """The draft of ``/drafts/<id8>/<route path>`` and its route path (404 if none)."""
        segs = path.split("/")
        draft = self.drafts.get(segs[2])
        if draft is None:
            raise NotFound(f"no draft {segs[2]!r} serves {path}", "ROUTE_NOT_FOUND")
        return draft, "/" + "/".join(segs[3:])

    def function(self, name: str) -> tuple[Draft, str]:
        """The draft and function of ``drafts/<id8>/<name>`` (404 if none)."""
        parts = name.split("/", 2)
        draft = self.drafts.get(parts[1]) if len(parts) == 3 else None
        if draft is None:
            raise NotFound(f"no draft registered function {name!r}", "FUNCTION_NOT_FOUND")
        return draft, parts[2]


def _payload(buffers: list[bytes]) -> dict[str, Any]:
    with contextlib.suppress(ValueError):
        value = json.loads(buffers[0]) if buffers else {}
        return value if isinstance(value, dict) else {}
    return {}
