"""WebSocket ``/api/kernels/{id}/channels``: the Jupyter messages of one kernel
between a WebSocket (the JSON wire protocol, one message a frame with its
``channel``) and the kernel's ZeroMQ channels, through a client of its own.

Under a script replica's stable id (kernel_ids.py) the socket follows the script:
when the replica's kernel is replaced (a restart through the kernels API or the
scripts API, a crash, a reload), the proxy moves to the new kernel and the socket
stays open, so a notebook attached to a script stays connected across its restarts.
It closes when the script stops.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from jupyter_client.jsonutil import json_default
from jupyter_client.session import new_id
from tornado import websocket

from ..engine import ScriptEngine
from ..errors import GatewayError
from ..logs import LogHub
from ..scratch import ScratchKernels
from ..zmqsend import send_message
from .attach_audit import AttachAudit, token_role
from .kernel_ids import Target, resolve
from .wsbase import GatewaySocket

__all__ = ["KernelChannelsHandler"]

log = logging.getLogger("kernel_gateway.jupyter")

CHANNELS = ("shell", "control", "iopub", "stdin")
FOLLOW_EVERY = 0.2  # s between looks at which kernel a stable id names
RESTART_WAIT = 120.0  # s a socket waits for a restarting script's new kernel


class KernelChannelsHandler(GatewaySocket):
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
        self.km: Any = None  # a scratch kernel's manager
        self.bound: Any = None  # the script kernel proxied now
        self.stable = False  # the id is a script replica's stable id: follow it
        self.follower: asyncio.Task[None] | None = None

    async def get(self, kernel_id: str, *args: Any, **kwargs: Any) -> None:
        try:
            self.admit()
            target = resolve(self.engine, kernel_id)
            if target is None:
                self.km = self.scratch.get(kernel_id).km
            else:
                self.stable = target.stable
                if not target.stable and target.kernel is not None:
                    self.bound = target.kernel
            self.require_upgrade()
        except GatewayError as exc:
            self.refuse(exc)
            return
        await super().get(kernel_id, *args, **kwargs)

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        return None  # the JSON protocol only

    @property
    def kernel_id(self) -> str:
        return self.path_args[0] if self.path_args else "?"

    async def open(self, kernel_id: str, *args: Any, **kwargs: Any) -> None:
        if self.km is not None:  # a scratch kernel
            await self._attach(self.km)
            return
        if self.stable:
            target = await self._current(RESTART_WAIT)
            if target is None or target.kernel is None:
                self.close(1011, "the script's kernel is not running")
                return
            await self._attach_script(target)
            self.follower = asyncio.ensure_future(self._follow())
            return
        target = resolve(self.engine, kernel_id)
        if target is None or target.kernel is None:
            self.close(1011, "the kernel stopped")
            return
        await self._attach_script(target)

    async def _current(self, timeout: float) -> Target | None:
        """What the stable id names now, waiting out a restart (None: stopped)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            target = resolve(self.engine, self.kernel_id)
            if target is None or target.kernel is not None:
                return target
            if asyncio.get_running_loop().time() > deadline:
                return None
            await asyncio.sleep(FOLLOW_EVERY)

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(FOLLOW_EVERY)
            target = resolve(self.engine, self.kernel_id)
            if target is None:
                self._detach()
                self.close(1000, "the script stopped")
                return
            if target.kernel is self.bound:
                continue
            self._detach()  # the old kernel is gone or going
            if target.kernel is None:
                continue  # restarting: attach to the next one
            log.info(
                "kernel %s: %s replica %d has a new kernel %s; the WebSocket follows it",
                self.kernel_id,
                target.path,
                target.replica,
                target.kernel.kernel_id,
            )
            await self._attach_script(target)

    async def _attach_script(self, target: Target) -> None:
        script, kernel = target.script, target.kernel
        assert script is not None and kernel is not None
        self.bound = kernel
        # a script's kernel: production state, so the session is recorded
        self.audit = AttachAudit(
            self.hub,
            script.script_id,
            script.path,
            kernel.kernel_id,
            kernel.replica,
            token_role(self, self.token),
            self.request.remote_ip or "",
        )
        await self._attach(kernel.km)
        if self.audit is not None:
            self.audit.attached()

    async def _attach(self, km: Any) -> None:
        # A Session of its own: the ZeroMQ identity of a client's shell/control/stdin
        # sockets is its session id, and the kernel's ROUTERs hand an identity over to
        # its newest connection; sharing the manager's Session (km.client()'s default)
        # cut the gateway's own channels while a client was attached (its comm
        # responses and control replies were lost: list_all hung 60 s).
        session = km.session.clone()
        session.session = new_id()
        client = km.client(session=session)
        client.start_channels()
        self.client = client
        # Like Jupyter Server's "nudge": until iopub delivers, messages the browser
        # sends now would have their output lost (ZeroMQ's slow-joiner). Tornado does
        # not call on_message before open() returns.
        try:
            await client.wait_for_ready(timeout=30)
        except Exception as exc:
            log.warning(
                "kernel %s did not answer kernel_info within 30 s on a new WebSocket: %s "
                "(its first outputs may be lost)",
                self.kernel_id,
                exc,
            )
        if self.client is not client:  # closed meanwhile
            return
        self.readers = [asyncio.ensure_future(self._pump(client, name)) for name in CHANNELS]

    def _detach(self) -> None:
        if self.audit is not None:
            self.audit.detached()
            self.audit = None
        for task in self.readers:
            task.cancel()
        self.readers = []
        if self.client is not None:
            self.client.stop_channels()
            self.client = None
        self.bound = None

    async def _pump(self, client: Any, name: str) -> None:
        channel = getattr(client, f"{name}_channel")
        kid = self.kernel_id
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
        if self.follower is not None:
            self.follower.cancel()
            self.follower = None
        self._detach()
