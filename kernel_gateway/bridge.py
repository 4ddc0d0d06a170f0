"""The gateway end of the ``vwed`` comm: request/reply over comm messages with
correlation ids, deadlines and a kernel-death path (docs/protocol.md).

A call is a ``comm_msg`` on the shell channel; its answer is a ``comm_msg`` on
iopub with the same ``id``. Every waiting call has a deadline; when the kernel
dies, every waiting call fails at once with ``KernelDied``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import CallTimeout, GatewayError, ServiceUnavailable
from .fastpath import TRANSPORT, FastClient

__all__ = ["KernelBridge", "KernelLink", "Reply", "EventHandler", "Done"]

log = logging.getLogger("kernel_gateway.bridge")

# Ops sent to the service subshell, so they are handled even while the kernel's
# main thread is busy (docs/protocol.md, "Threads").
_SUBSHELL_OPS = frozenset({"response", "cancel"})
# seconds the calls in flight on a lost fast channel wait before they fail with 503: the
# channel also closes when the kernel dies, just before its death is noticed (within
# ``death_poll``, 0.2 s): those calls then fail with KernelDied (502), as they should
FAST_LOST_GRACE = 1.0


@dataclass
class Reply:
    """A ``result`` message: ``ok`` with fields and buffers, or an ``error`` dict."""

    ok: bool
    data: dict[str, Any]
    buffers: list[bytes] = field(default_factory=list)

    @property
    def error(self) -> dict[str, Any]:
        return dict(self.data.get("error") or {})

    def json_bytes(self) -> bytes:
        """The result value as JSON bytes, as the kernel serialized it."""
        return self.buffers[0] if self.buffers else b"null"

    def value(self) -> Any:
        return json.loads(self.json_bytes())


class _Expired(Exception):
    """A call's deadline passed (internal: turned into CallTimeout)."""


def _expire(fut: asyncio.Future[Reply]) -> None:
    if not fut.done():
        fut.set_exception(_Expired())


# what ``KernelBridge.start`` calls with the answer: (reply, None) or (None, error)
Done = Callable[["Reply | None", "BaseException | None"], None]


class _Waiter:
    """A call waited for by a callback instead of a future (``KernelBridge.start``):
    the answer is handed over in the loop iteration it arrives in, no task to wake."""

    __slots__ = ("bridge", "call_id", "on_done", "timer", "finished")

    def __init__(self, bridge: KernelBridge, call_id: str, on_done: Done) -> None:
        self.bridge = bridge
        self.call_id = call_id
        self.on_done = on_done
        self.timer: asyncio.TimerHandle | None = None
        self.finished = False

    def done(self) -> bool:
        return self.finished

    def _end(self) -> None:
        self.finished = True
        if self.timer is not None:
            self.timer.cancel()
        self.bridge._pending.pop(self.call_id, None)
        self.bridge._on_fast.discard(self.call_id)

    def set_result(self, reply: Reply) -> None:
        if not self.finished:
            self._end()
            self.on_done(reply, None)

    def set_exception(self, exc: BaseException) -> None:
        if not self.finished:
            self._end()
            self.on_done(None, exc)


class KernelLink(Protocol):
    """What the bridge needs of a kernel (``kernels.ScriptKernel`` is one)."""

    kernel_id: str
    script_id: str | None

    @property
    def session(self) -> Any:
        """The Jupyter session that makes and signs messages (``.msg()``, ``.key``)."""

    @property
    def ip(self) -> str:
        """The address the kernel listens on (for the fast channel)."""

    def send(self, channel: str, msg: dict[str, Any], buffers: list[Any] | None = None) -> None:
        """Send a message on the kernel's ``shell`` or ``control`` channel."""

    async def interrupt(self) -> None:
        """Interrupt the code running in the kernel."""


# (kernel, op data, buffers, parent msg_id): the ops a kernel sends unasked
EventHandler = Callable[[Any, dict[str, Any], list[bytes], "str | None"], None]


class KernelBridge:
    """Comm RPC with one kernel."""

    def __init__(self, kernel: KernelLink) -> None:
        self._kernel = kernel
        self.comm_id = uuid.uuid4().hex
        self.subshell_id: str | None = None
        self._prefix = uuid.uuid4().hex[:8]
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[Reply] | _Waiter] = {}
        self._hello: asyncio.Future[dict[str, Any]] | None = None
        self.on_event: EventHandler | None = None
        self._dead: GatewayError | None = None
        self._fast: FastClient | None = None
        self._fast_ops: frozenset[str] = frozenset(("call",))
        # the calls sent on the fast channel and not answered yet: failed at once when
        # it is lost (``_fast_lost``), their answers would never come
        self._on_fast: set[str] = set()

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def waits_for(self, call_id: str) -> bool:
        """Whether ``call_id`` is a call of this bridge still waiting for its answer."""
        return call_id in self._pending

    def owns(self, msg: dict[str, Any]) -> bool:
        return msg.get("content", {}).get("comm_id") == self.comm_id

    # -- sending ----------------------------------------------------------------------
    def comm_ping(self) -> str:
        """Send a ``ping`` on the comm (never the fast channel); returns its msg_id."""
        return self.send({"op": "ping", "id": self.new_call_id()})

    def send(self, data: dict[str, Any], buffers: list[Any] | None = None) -> str:
        """Send an op on the comm; returns the Jupyter msg_id of the comm_msg."""
        session = self._kernel.session
        msg = session.msg("comm_msg", {"comm_id": self.comm_id, "data": data})
        if data.get("op") == "call":
            # output printed during the call will carry the call id as its parent msg_id
            msg["header"]["msg_id"] = msg["msg_id"] = data["id"]
        if self.subshell_id and data.get("op") in _SUBSHELL_OPS:
            msg["header"]["subshell_id"] = self.subshell_id
        self._kernel.send("shell", msg, buffers)
        return str(msg["header"]["msg_id"])

    async def open(
        self, target: str, subshell_id: str | None, *, timeout: float, fast: bool = True
    ) -> dict[str, Any]:
        """Open the comm, wait for the kernel's ``hello``, connect the fast channel."""
        self.subshell_id = subshell_id
        self._hello = asyncio.get_running_loop().create_future()
        session = self._kernel.session
        msg = session.msg(
            "comm_open",
            {
                "comm_id": self.comm_id,
                "target_name": target,
                "data": {"protocol": 1, "service_subshell": subshell_id, "fastpath": fast},
            },
        )
        self._kernel.send("shell", msg)
        hello = await asyncio.wait_for(self._hello, timeout)
        channel = hello.get("fastpath") or {}
        port = channel.get("port")
        # a kernel that offers another transport (an older VWED kernel: ZeroMQ) gets its
        # calls on the comm
        if fast and port and channel.get("transport") == TRANSPORT:
            # the ops it carries: calls, and a script's load where the kernel says so
            self._fast_ops = frozenset(channel.get("ops") or ("call",))
            try:
                self._fast = await FastClient.connect(
                    self._kernel.ip,
                    int(port),
                    session.key or b"",
                    self._on_result,
                    self._fast_lost,
                    timeout=timeout,
                )
            except (OSError, asyncio.TimeoutError) as exc:
                log.warning(
                    "kernel %s: the fast channel could not be connected (%s); calls use the comm",
                    self._kernel.kernel_id,
                    exc,
                )
        return hello

    def _fast_lost(self) -> None:
        """The fast channel's connection ended: later calls go on the comm. The calls in
        flight on it would never be answered: ``FAST_LOST_GRACE`` later they fail with a
        retryable 503 (``KERNEL_UNAVAILABLE``) and are cancelled in the kernel (an async
        one stops, one not started is skipped; synchronous code already running runs to
        its end), instead of waiting for their timeout. If the kernel died (noticed within
        that grace), they fail with ``KernelDied`` instead (``fail_all``)."""
        if self._fast is not None and self._dead is None:
            # INFO: it also happens just before a kernel's death is noticed (WARNING then)
            log.info(
                "kernel %s: the fast channel closed; calls use the comm", self._kernel.kernel_id
            )
        self._fast = None
        lost, self._on_fast = self._on_fast, set()
        if self._dead is None and lost:
            asyncio.get_running_loop().call_later(FAST_LOST_GRACE, self._fail_lost, lost)

    def _fail_lost(self, lost: set[str]) -> None:
        """``_fast_lost``'s end, ``FAST_LOST_GRACE`` later, if the kernel lives."""
        lost = {call_id for call_id in lost if call_id in self._pending}
        if self._dead is not None or not lost:
            return
        log.warning(
            "kernel %s: %d call(s) in flight on the lost fast channel failed",
            self._kernel.kernel_id,
            len(lost),
        )
        for call_id in lost:
            fut = self._pending.get(call_id)
            if fut is None or fut.done():
                continue
            try:
                self.send({"op": "cancel", "target": call_id})
            except Exception:
                log.exception("kernel %s: cancel of call %s", self._kernel.kernel_id, call_id)
            fut.set_exception(
                ServiceUnavailable(
                    "the connection to the script's kernel was lost while the call ran; "
                    "it may have run in part: retry",
                    details={"script_id": self._kernel.script_id},
                    headers={"Retry-After": "1"},
                )
            )

    @property
    def fast(self) -> bool:
        """Whether calls use the kernel's fast channel."""
        return self._fast is not None

    def close(self) -> None:
        fast, self._fast = self._fast, None
        if fast is not None:
            fast.close()

    def new_call_id(self) -> str:
        return f"{self._prefix}-{next(self._ids)}"

    async def call(
        self,
        data: dict[str, Any],
        buffers: list[Any] | None = None,
        *,
        timeout: float,
        call_id: str | None = None,
        abandon: bool = True,
    ) -> Reply:
        """Send ``data`` (an op with a fresh ``id``) and wait for its ``result``.

        Raises :class:`CallTimeout` past ``timeout`` (after interrupting the
        kernel and cancelling the call in it, unless not ``abandon``: a kernel the
        caller discards) and :class:`KernelDied` at once when the kernel dies.
        """
        if self._dead is not None:
            raise self._dead
        call_id = call_id or self.new_call_id()
        data = {**data, "id": call_id}
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Reply] = loop.create_future()
        self._pending[call_id] = fut
        # A timer handle instead of wait_for(): one callback, no extra task per call.
        timer = loop.call_later(timeout, _expire, fut)
        try:
            self._dispatch(call_id, data, buffers)
            return await fut
        except _Expired:
            if abandon:
                await self._abandon(call_id)
            raise self._timeout_error(data, timeout) from None
        finally:
            timer.cancel()
            self._pending.pop(call_id, None)
            self._on_fast.discard(call_id)

    async def cancel(self, call_id: str, *, timeout: float) -> str | None:
        """Ask the kernel to cancel call ``call_id`` (on its service subshell, so even
        while its main thread is busy) and return its answer: ``"pending"`` (it had not
        started: the kernel answers it ``cancelled`` without running it), ``"task"`` (its
        asyncio task is cancelled), ``"running"`` (synchronous code runs: only an interrupt
        stops it), or None: no answer within ``timeout`` seconds."""
        if self._dead is not None:
            return None
        ack_id = self.new_call_id()
        fut: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[ack_id] = fut
        try:
            self.send({"op": "cancel", "target": call_id, "id": ack_id})
            reply = await asyncio.wait_for(fut, timeout)
            state = reply.value() if reply.ok else None
        except (asyncio.TimeoutError, GatewayError, ValueError):
            return None
        finally:
            self._pending.pop(ack_id, None)
        return state if isinstance(state, str) else None

    def start(
        self,
        data: dict[str, Any],
        buffers: list[Any] | None,
        *,
        timeout: float,
        call_id: str,
        done: Done,
    ) -> None:
        """``call`` without a coroutine: send now, and ``done(reply, None)`` when the
        answer arrives, or ``done(None, error)`` with the errors ``call`` raises (a
        timeout after the kernel was interrupted, the kernel's death). Raises at once
        if the kernel is already dead."""
        if self._dead is not None:
            raise self._dead
        data = {**data, "id": call_id}
        waiter = _Waiter(self, call_id, done)
        self._pending[call_id] = waiter
        try:
            self._dispatch(call_id, data, buffers)
        except BaseException:
            waiter._end()
            raise
        # the deadline after the send: the kernel is on the call meanwhile (its answer
        # is read in a later turn of the loop)
        if not waiter.finished:
            waiter.timer = asyncio.get_running_loop().call_later(
                timeout, self._expire_waiter, waiter, data, timeout
            )

    def _dispatch(self, call_id: str, data: dict[str, Any], buffers: list[Any] | None) -> None:
        """Send a call on the fast channel when it is up (remembered there: its calls fail
        if it is lost), else on the comm."""
        fast = self._fast
        if fast is not None and fast.connected and data.get("op") in self._fast_ops:
            fast.send(data, buffers)
            self._on_fast.add(call_id)
        else:
            self.send(data, buffers)

    def _expire_waiter(self, waiter: _Waiter, data: dict[str, Any], timeout: float) -> None:
        if waiter.finished:
            return
        waiter._end()
        asyncio.ensure_future(self._time_out(waiter, data, timeout))

    async def _time_out(self, waiter: _Waiter, data: dict[str, Any], timeout: float) -> None:
        """What ``call`` does past the deadline: cancel and interrupt, then CallTimeout."""
        try:
            await self._abandon(waiter.call_id)
        except Exception:
            log.exception(
                "kernel %s: the call timed out and could not be stopped", self._kernel.kernel_id
            )
        waiter.on_done(None, self._timeout_error(data, timeout))

    def _timeout_error(self, data: dict[str, Any], timeout: float) -> CallTimeout:
        what = " ".join(str(p) for p in (data.get("kind") or data.get("op"), data.get("name")) if p)
        return CallTimeout(
            f"{what} did not answer within {timeout:g} s; the kernel was interrupted",
            details={"script_id": self._kernel.script_id, "timeout": timeout},
        )

    async def _abandon(self, call_id: str) -> None:
        """Stop a call that ran out of time: cancel it (async) and interrupt (sync)."""
        self.send({"op": "cancel", "target": call_id})
        await self._kernel.interrupt()

    def respond(
        self,
        request_id: str,
        ok: bool,
        value: bytes | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        """Answer a kernel's ``request`` op."""
        if ok:
            self.send({"op": "response", "id": request_id, "ok": True}, [value or b"null"])
        else:
            self.send({"op": "response", "id": request_id, "ok": False, "error": error or {}})

    # -- receiving ----------------------------------------------------------------------
    def on_comm_msg(self, msg: dict[str, Any]) -> None:
        data = msg["content"].get("data") or {}
        buffers = [b if isinstance(b, bytes) else bytes(b) for b in msg.get("buffers") or []]
        op = data.get("op")
        if op == "result":
            self._on_result(data, buffers)
            return
        if op == "hello":
            if self._hello is not None and not self._hello.done():
                self._hello.set_result(data)
            return
        if self.on_event is not None:
            parent = (msg.get("parent_header") or {}).get("msg_id")
            self.on_event(self._kernel, data, buffers, parent)
        else:
            log.debug("kernel %s: %s before the script was started", self._kernel.kernel_id, op)

    def _on_result(self, data: dict[str, Any], buffers: list[bytes]) -> None:
        fut = self._pending.get(data.get("id", ""))
        if fut is not None and not fut.done():
            fut.set_result(Reply(bool(data.get("ok")), data, buffers))

    def fail_all(self, error: GatewayError) -> None:
        """Fail every waiting call (kernel died or is stopping); later calls fail too."""
        self._dead = error
        for fut in list(self._pending.values()):
            if not fut.done():
                fut.set_exception(error)
        if self._hello is not None and not self._hello.done():
            self._hello.set_exception(error)
