"""The gateway's end of a kernel's fast channel (see docs/protocol.md, "Fast channel").

A DEALER socket connected to the ROUTER the VWED kernel binds; frames are
``[signature, header JSON, *buffers]`` signed with HMAC-SHA256 and the kernel's
session key. Only ``call`` ops and their ``result`` travel here.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from typing import Any

import zmq
import zmq.asyncio

__all__ = ["FastClient"]

log = logging.getLogger("kernel_gateway.fastpath")

OnResult = Callable[[dict[str, Any], list[bytes]], None]


def _sign(key: bytes, frames: list[bytes]) -> bytes:
    if not key:
        return b""
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for frame in frames:
        mac.update(frame)
    return mac.hexdigest().encode()


class FastClient:
    def __init__(self, context: zmq.asyncio.Context, endpoint: str, key: bytes,
                 on_result: OnResult) -> None:
        self._key = key
        self._on_result = on_result
        self._sock = context.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.connect(endpoint)
        self._task = asyncio.ensure_future(self._read())

    def send(self, data: dict[str, Any], buffers: list[Any] | None = None) -> None:
        head = json.dumps(data, separators=(",", ":")).encode()
        frames = [head, *(bytes(b) if not isinstance(b, bytes) else b for b in buffers or [])]
        self._sock.send_multipart([_sign(self._key, frames), *frames], copy=False)

    async def _read(self) -> None:
        while True:
            try:
                frames = await self._sock.recv_multipart()
            except asyncio.CancelledError:
                raise
            except zmq.ZMQError:
                return
            if len(frames) < 2:
                continue
            signature, rest = frames[0], frames[1:]
            if not hmac.compare_digest(signature, _sign(self._key, rest)):
                log.warning("fast channel: answer with a bad signature dropped")
                continue
            try:
                self._on_result(json.loads(rest[0]), rest[1:])
            except Exception:
                log.exception("fast channel: bad answer")

    def close(self) -> None:
        self._task.cancel()
        self._sock.close(0)
