"""The fast channel: a ZeroMQ socket between the gateway and this kernel for calls.

Why: a call sent as a ``comm_msg`` goes through ipykernel's shell dispatch,
which publishes busy/idle status on iopub and waits on the stdout/stderr flush
handshake with the IOPub thread after every message; the answer is broadcast on
iopub to every client. For the gateway's calls none of that is needed.

How: when the gateway asks for it in ``comm_open``, the kernel binds a ROUTER
socket next to its Jupyter sockets and reports its port in ``hello``. The
gateway connects a DEALER socket to it. Frames are ``[signature, header JSON,
*buffers]``, the signature an HMAC-SHA256 of the header and buffers with the
kernel's own session key (the same trust as the Jupyter channels). Messages
are read on the kernel's main thread event loop, so calls run exactly where
comm calls run: a sync handler inline (interruptible by SIGINT), a coroutine as
a task. Output printed during a call carries a parent header whose ``msg_id``
is the call's id. Every other client of the kernel still sees the normal
Jupyter protocol (its own busy/idle and output).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import signal
from datetime import datetime, timezone
from typing import Any

import zmq
import zmq.asyncio

from .dispatch import Calls

__all__ = ["FastChannel", "sign"]

log = logging.getLogger("vwed_kernel")


def sign(key: bytes, frames: list[bytes]) -> bytes:
    if not key:
        return b""
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for frame in frames:
        mac.update(frame)
    return mac.hexdigest().encode()


class FastChannel:
    """The kernel's end: a ROUTER socket read by a task on the main event loop."""

    def __init__(self, kernel: Any, calls: Calls, ip: str) -> None:
        self._kernel = kernel
        self._calls = calls
        self._key: bytes = kernel.session.key or b""
        self._ctx = zmq.asyncio.Context()
        self._sock = self._ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self.port = self._sock.bind_to_random_port(f"tcp://{ip}")
        self._task = asyncio.ensure_future(self._read())

    def close(self) -> None:
        self._task.cancel()
        self._sock.close(0)

    def _send(self, ident: bytes, data: dict[str, Any], buffers: list[bytes] | None) -> None:
        head = json.dumps(data, separators=(",", ":")).encode()
        frames = [head, *(buffers or [])]
        self._sock.send_multipart([ident, sign(self._key, frames), *frames], copy=False)

    def _parent(self, call_id: str) -> dict[str, Any]:
        header = {"msg_id": call_id, "msg_type": "vwed_call", "username": "vwed-gateway",
                  "session": "vwed-fast", "date": datetime.now(timezone.utc).isoformat(),
                  "version": "5.3"}
        return {"header": header, "parent_header": {}, "metadata": {}, "content": {},
                "msg_id": call_id, "msg_type": "vwed_call"}

    async def _read(self) -> None:
        while True:
            try:
                frames = await self._sock.recv_multipart()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("fast channel: receive failed")
                continue
            try:
                self._handle(frames)
            except Exception:
                log.exception("fast channel: bad message")

    def _handle(self, frames: list[bytes]) -> None:
        if len(frames) < 3:
            return
        ident, signature, rest = frames[0], frames[1], frames[2:]
        if not hmac.compare_digest(signature, sign(self._key, rest)):
            log.warning("fast channel: message with a bad signature dropped")
            return
        data = json.loads(rest[0])
        if data.get("op") != "call":
            return

        def send(reply: dict[str, Any], buffers: list[bytes] | None) -> None:
            self._send(ident, reply, buffers)

        # Attribute output to the call, as ipykernel does for a shell message.
        self._kernel.set_parent([ident], self._parent(str(data.get("id"))), "shell")
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            self._calls.call(data, rest[1:], send)
        finally:
            signal.signal(signal.SIGINT, previous)
