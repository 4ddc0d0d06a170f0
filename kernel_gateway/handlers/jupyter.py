"""The Jupyter kernels API, as Jupyter Server's gateway client expects it, so
``jupyter lab --gateway-url=...`` can attach a notebook (or the debugger) to a
running script's kernel: ``/api``, ``/api/kernelspecs``, ``/api/kernels[/{id}]``,
``/api/kernels/{id}/interrupt|restart``, WebSocket ``/api/kernels/{id}/channels``.

Script kernels are listed with ``{"vwed": {"script_id", "script_path", "replica"}}``;
deleting or restarting one goes through the script lifecycle.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from jupyter_client.jsonutil import json_default
from jupyter_client.session import new_id
from tornado import websocket

from ..engine import RunningScript, ScriptEngine
from ..errors import GatewayError, NotFound
from ..logs import LogHub
from ..scratch import ScratchKernels, iso_utc
from ..zmqsend import send_message
from .attach_audit import AttachAudit, token_role
from .base import JSONHandler
from .wsbase import GatewaySocket

__all__ = [
    "ApiRootHandler",
    "KernelSpecsHandler",
    "KernelsHandler",
    "KernelHandler",
    "KernelActionHandler",
    "KernelChannelsHandler",
    "KernelConnectionHandler",
]

log = logging.getLogger("kernel_gateway.jupyter")

CHANNELS = ("shell", "control", "iopub", "stdin")


class _Jupyter(JSONHandler):
    engine: ScriptEngine
    scratch: ScratchKernels

    def write_json(self, payload: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(payload, default=json_default))

    def _script_kernel(self, kernel_id: str) -> tuple[RunningScript, Any] | None:
        for script in self.engine.running():
            for kernel in script.kernels:
                if kernel.kernel_id == kernel_id:
                    return script, kernel
        return None

    def _models(self) -> list[dict[str, Any]]:
        models = []
        for script in self.engine.running():
            for kernel in script.kernels:
                models.append(
                    {
                        "id": kernel.kernel_id,
                        "name": self.scratch.default_name,
                        "execution_state": "idle" if not kernel.bridge.in_flight else "busy",
                        "connections": 0,
                        "last_activity": iso_utc(kernel.started_at),
                        "vwed": {
                            "script_id": script.script_id,
                            "script_path": script.path,
                            "replica": kernel.replica,
                        },
                    }
                )
        models += [self.scratch.model(k) for k in self.scratch.kernels.values()]
        return models

    def _model(self, kernel_id: str) -> dict[str, Any]:
        for model in self._models():
            if model["id"] == kernel_id:
                return model
        raise NotFound(f"no kernel {kernel_id!r}", "KERNEL_NOT_FOUND")


class ApiRootHandler(_Jupyter):
    def get(self) -> None:
        from .. import __version__

        self.write_json({"version": "2.14.0", "vwed": __version__})


class KernelSpecsHandler(_Jupyter):
    def get(self, name: str | None = None) -> None:
        ksm = self.scratch.ksm
        specs = {}
        for spec_name in ksm.find_kernel_specs():
            try:
                spec = ksm.get_kernel_spec(spec_name)
            except Exception as exc:  # a broken kernel.json: the others are still listed
                log.warning("kernelspec %r cannot be read, not listed: %s", spec_name, exc)
                continue
            specs[spec_name] = {"name": spec_name, "spec": spec.to_dict(), "resources": {}}
        if name is not None:
            if name not in specs:
                raise NotFound(f"no kernelspec {name!r}", "KERNELSPEC_NOT_FOUND")
            self.write_json(specs[name])
            return
        self.write_json({"default": self.scratch.default_name, "kernelspecs": specs})


class KernelsHandler(_Jupyter):
    def get(self) -> None:
        self.write_json(self._models())

    async def post(self) -> None:
        body = self.json_body(required=False)
        kernel = await self.scratch.start(body.get("name"))
        self.write_json(self.scratch.model(kernel), status=201)


class KernelHandler(_Jupyter):
    def get(self, kernel_id: str) -> None:
        self.write_json(self._model(kernel_id))

    async def delete(self, kernel_id: str) -> None:
        found = self._script_kernel(kernel_id)
        if found is not None:
            await self.engine.stop(found[0], "stopped through the kernels API")
            await self.engine.forget_desired(found[0].path)
        else:
            await self.scratch.shutdown(kernel_id)
        self.set_status(204)
        self.finish()


class KernelActionHandler(_Jupyter):
    async def post(self, kernel_id: str, action: str) -> None:
        found = self._script_kernel(kernel_id)
        if action == "interrupt":
            if found is not None:
                await found[1].interrupt()
            else:
                await self.scratch.get(kernel_id).km.interrupt_kernel()
            self.set_status(204)
            self.finish()
            return
        # restart
        if found is not None:
            script = await self.engine.restart(found[0])
            self.write_json(self._model(script.kernels[0].kernel_id))
            return
        kernel = self.scratch.get(kernel_id)
        await kernel.km.restart_kernel(now=True)
        self.write_json(self.scratch.model(kernel))


class KernelConnectionHandler(_Jupyter):
    """The connection info of a kernel on this machine, for ``jupyter console --existing``
    (write it to a file). Security: it holds the kernel's key; like every endpoint it
    needs the gateway's token when one is set."""

    hub: LogHub

    def get(self, kernel_id: str) -> None:
        found = self._script_kernel(kernel_id)
        km = found[1].km if found is not None else self.scratch.get(kernel_id).km
        if found is not None:
            # a client holding the key talks ZeroMQ to the kernel directly, past the
            # channels proxy and its audit: the hand-out is what can be recorded
            self.hub.engine(
                found[0].script_id,
                "WARNING",
                f"connection info (with the key) of kernel {kernel_id} of script "
                f"{found[0].path} handed out (token role: {token_role(self, self.token)}; "
                f"to {self.request.remote_ip or 'unknown address'}); what a client runs "
                "over it directly is not recorded",
            )
        info = dict(km.get_connection_info())
        info["key"] = (
            info["key"].decode() if isinstance(info.get("key"), bytes) else info.get("key")
        )
        self.write_json(info)


class KernelChannelsHandler(GatewaySocket):
    """Proxies the Jupyter messages of one kernel between a WebSocket (the JSON wire
    protocol, one message a frame with its ``channel``) and the kernel's ZeroMQ
    channels, through a client of its own."""

    def initialize(
        self,
        engine: ScriptEngine,
        scratch: ScratchKernels,  # type: ignore[override]
        hub: LogHub,
        token: Any = "",
        allow_origins: tuple[str, ...] = (),
        allow_hosts: tuple[str, ...] | None = (),
    ) -> None:
        self.allow_hosts = allow_hosts
        self.engine = engine
        self.scratch = scratch
        self.hub = hub
        self.token = token
        self.allow_origins = allow_origins
        self.client: Any = None
        self.readers: list[asyncio.Task[None]] = []
        self.audit: AttachAudit | None = None

    def _manager(self, kernel_id: str) -> Any:
        for script in self.engine.running():
            for kernel in script.kernels:
                if kernel.kernel_id == kernel_id:
                    # a script's kernel: production state, so the session is recorded
                    self.audit = AttachAudit(
                        self.hub,
                        script.script_id,
                        script.path,
                        kernel_id,
                        kernel.replica,
                        token_role(self, self.token),
                        self.request.remote_ip or "",
                    )
                    return kernel.km
        return self.scratch.get(kernel_id).km

    async def get(self, kernel_id: str, *args: Any, **kwargs: Any) -> None:
        try:
            self.admit()
            self.km = self._manager(kernel_id)
            self.require_upgrade()
        except GatewayError as exc:
            self.refuse(exc)
            return
        await super().get(kernel_id, *args, **kwargs)

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        return None  # the JSON protocol only

    async def open(self, kernel_id: str, *args: Any, **kwargs: Any) -> None:
        # A Session of its own: the ZeroMQ identity of a client's shell/control/stdin
        # sockets is its session id, and the kernel's ROUTERs hand an identity over to
        # its newest connection; sharing the manager's Session (km.client()'s default)
        # cut the gateway's own channels while a client was attached (its comm
        # responses and control replies were lost: list_all hung 60 s).
        session = self.km.session.clone()
        session.session = new_id()
        self.client = self.km.client(session=session)
        self.client.start_channels()
        # Like Jupyter Server's "nudge": until iopub delivers, messages the browser
        # sends now would have their output lost (ZeroMQ's slow-joiner). Tornado does
        # not call on_message before open() returns.
        try:
            await self.client.wait_for_ready(timeout=30)
        except Exception as exc:
            log.warning(
                "kernel %s did not answer kernel_info within 30 s on a new WebSocket: %s "
                "(its first outputs may be lost)",
                kernel_id,
                exc,
            )
        self.readers = [asyncio.ensure_future(self._pump(name)) for name in CHANNELS]
        if self.audit is not None:
            self.audit.attached()

    async def _pump(self, name: str) -> None:
        channel = getattr(self.client, f"{name}_channel")
        kid = self.path_args[0] if self.path_args else "?"
        while True:
            try:
                msg = await channel.get_msg()
            except asyncio.CancelledError:
                raise
            except Exception:
                # this channel is no longer proxied: say so rather than go quiet
                if channel.is_alive():
                    log.exception("kernel %s: %s channel unreadable, no longer proxied", kid, name)
                else:  # its client stopped: expected as a connection ends
                    log.debug(
                        "kernel %s: %s channel closed, no longer proxied", kid, name, exc_info=True
                    )
                return
            msg["channel"] = name
            msg.pop("buffers", None)
            try:
                await self.write_message(json.dumps(msg, default=json_default))
            except websocket.WebSocketClosedError:
                log.debug(
                    "kernel %s: the WebSocket closed, %s channel no longer proxied", kid, name
                )
                return

    def on_message(self, message: str | bytes) -> None:
        try:
            msg = json.loads(message)
            name = msg.pop("channel", "shell")
        except (ValueError, AttributeError, RecursionError):  # not a message: ignored
            return
        if name not in CHANNELS or self.client is None:
            return
        if self.audit is not None and name == "shell":
            self.audit.request(msg)
        channel = getattr(self.client, f"{name}_channel")
        send_message(self.client.session, channel.socket, msg)

    def on_close(self) -> None:
        if self.audit is not None:
            self.audit.detached()
            self.audit = None
        for task in self.readers:
            task.cancel()
        if self.client is not None:
            self.client.stop_channels()
