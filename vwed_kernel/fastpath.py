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

from .dispatch import Calls

__all__ = ["FastChannel", "Signer"]

log = logging.getLogger("vwed_kernel")


COPY_THRESHOLD = 64 * 1024  # zero-copy sends only pay off for large frames

# pyzmq's constants are enum flags: ``SNDMORE | flags`` and ``events & POLLIN`` build
# enum members in Python on every frame; plain ints do the same job for less.
_SNDMORE = int(zmq.SNDMORE)
_NOBLOCK = int(zmq.NOBLOCK)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_RCVMORE = int(zmq.RCVMORE)
# one encoder for every answer: json.dumps() with separators builds a new one each time
_encode = json.JSONEncoder(separators=(",", ":")).encode


class Signer:
    """HMAC-SHA256 over all frames with the session key (empty key: no signing)."""

    def __init__(self, key: bytes) -> None:
        self._base = hmac.new(key, digestmod=hashlib.sha256) if key else None

    def __call__(self, frames: list[bytes]) -> bytes:
        if self._base is None:
            return b""
        mac = self._base.copy()
        for frame in frames:
            mac.update(frame)
        return mac.hexdigest().encode()


class FastChannel:
    """The kernel's end: a ROUTER socket read by a task on the main event loop."""

    def __init__(self, kernel: Any, calls: Calls, ip: str) -> None:
        self._kernel = kernel
        self._calls = calls
        self._sign = Signer(kernel.session.key or b"")
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        # No high-water mark: a ROUTER drops what it cannot queue, and answers are
        # bounded by the gateway's calls in flight.
        self._sock.setsockopt(zmq.SNDHWM, 0)
        self.port = self._sock.bind_to_random_port(f"tcp://{ip}")
        # A plain socket read from the main loop's selector (as ZMQStream does):
        # cheaper than zmq.asyncio per message.
        self._loop = asyncio.get_running_loop()
        self._fd = int(self._sock.getsockopt(zmq.FD))
        self._loop.add_reader(self._fd, self._drain)
        self._loop.call_soon(self._drain)

    def close(self) -> None:
        self._loop.remove_reader(self._fd)
        self._sock.close(0)
        self._ctx.term()

    def _drain(self) -> None:
        """Handle every waiting message. ZeroMQ's FD is edge-triggered: read until
        EVENTS says nothing is left, and check again after our own sends."""
        sock = self._sock
        while not sock.closed and int(sock.getsockopt(_EVENTS)) & _POLLIN:
            try:
                frames = [sock.recv(_NOBLOCK)]
                while sock.getsockopt(_RCVMORE):
                    frames.append(sock.recv(_NOBLOCK))
            except zmq.Again:
                return
            try:
                self._handle(frames)
            except KeyboardInterrupt:
                # An interrupt that landed just outside the handler: never let it
                # reach (and stop) the kernel's event loop.
                log.warning("fast channel: interrupt outside a call ignored")
            except Exception:
                log.exception("fast channel: bad message")

    def _send(self, ident: bytes, data: dict[str, Any], buffers: list[bytes] | None) -> None:
        frames = [_encode(data).encode(), *(buffers or [])]
        copy = all(len(f) <= COPY_THRESHOLD for f in frames)
        sock = self._sock
        # send_multipart's work, frame by frame, with int flags (see _SNDMORE)
        sock.send(ident, _SNDMORE, copy=True)
        sock.send(self._sign(frames), _SNDMORE, copy=True)
        last = len(frames) - 1
        for i, frame in enumerate(frames):
            sock.send(frame, 0 if i == last else _SNDMORE, copy=copy)
        if int(sock.getsockopt(_EVENTS)) & _POLLIN:
            self._loop.call_soon(self._drain)

    def _parent(self, call_id: str) -> dict[str, Any]:
        header = {
            "msg_id": call_id,
            "msg_type": "vwed_call",
            "username": "vwed-gateway",
            "session": "vwed-fast",
            "date": datetime.now(timezone.utc).isoformat(),
            "version": "5.3",
        }
        return {
            "header": header,
            "parent_header": {},
            "metadata": {},
            "content": {},
            "msg_id": call_id,
            "msg_type": "vwed_call",
        }

    def _handle(self, frames: list[bytes]) -> None:
        if len(frames) < 3:
            return
        ident, signature, rest = frames[0], frames[1], frames[2:]
        if not hmac.compare_digest(signature, self._sign(rest)):
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
