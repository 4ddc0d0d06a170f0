"""The gateway's end of a kernel's fast channel (see docs/protocol.md, "Fast channel").

A TCP connection to the socket the VWED kernel listens on (transport ``"stream"`` in
its ``hello``); a message is ``[signature, header JSON, *buffers]``, framed as a frame
count, the frames' lengths and the frames, signed with HMAC-SHA256 and the kernel's
session key. Only ``call`` ops and their ``result`` travel here. An asyncio protocol:
a send is one ``send()`` from the event loop's thread, an answer is read by the loop's
selector (no ZeroMQ I/O thread, no wake-up of another thread per message).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import struct
import time
from collections.abc import Callable
from typing import Any

from .busypoll import BusyPoller, poller_of

__all__ = ["FastClient", "TRANSPORT", "Frames", "framing"]

log = logging.getLogger("kernel_gateway.fastpath")

OnResult = Callable[[dict[str, Any], list[bytes]], None]
OnLost = Callable[[], None]

TRANSPORT = "stream"  # the kernel's hello must say it (vwed_kernel/fastpath.py)
_COUNT = struct.Struct("!I")
# one encoder for every call: json.dumps() with separators builds a new one each time
_encode = json.JSONEncoder(separators=(",", ":")).encode
_now = time.perf_counter
# the weight of the newest answer time in the moving average (``FastClient.answer_time``)
ANSWER_WEIGHT = 0.2
MAX_TIMED = 4096  # calls timed at once at most (``FastClient._sent_at``)
# a kernel is polled for when its last answer came at most this many budgets ago
RECENT = 10


def framing(frames: list[bytes]) -> list[bytes]:
    """A message on the stream: the frame count and each frame's length (4-byte big
    endian unsigned ints), then the frames."""
    head = struct.pack(f"!{len(frames) + 1}I", len(frames), *map(len, frames))
    return [head, *frames]


class Frames:
    """Reassembles messages from a byte stream (``framing``'s inverse)."""

    MAX_FRAMES = 4096

    def __init__(self, on_message: Callable[[list[bytes]], None]) -> None:
        self._buf = bytearray()
        self._need = 4  # bytes needed before the next parse step can succeed
        self._on_message = on_message

    def feed(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        while len(buf) >= self._need:
            (count,) = _COUNT.unpack_from(buf, 0)
            if not 0 < count <= self.MAX_FRAMES:
                raise ValueError(f"a fast channel message of {count} frames")
            head = 4 + 4 * count
            if len(buf) < head:
                self._need = head
                return
            lengths = struct.unpack_from(f"!{count}I", buf, 4)
            total = head + sum(lengths)
            if len(buf) < total:
                self._need = total
                return
            frames = []
            at = head
            with memoryview(buf) as view:
                for n in lengths:
                    frames.append(bytes(view[at : at + n]))
                    at += n
            del buf[:total]
            self._need = 4
            self._on_message(frames)


class _Signer:
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


class FastClient(asyncio.Protocol):
    """One connection to a kernel's fast channel (``connect``)."""

    def __init__(self, key: bytes, on_result: OnResult, on_lost: OnLost | None = None) -> None:
        self._sign = _Signer(key)
        self._cid = os.urandom(8).hex()  # this connection's name in its messages
        self._seq = 0  # the number of its last message
        self._on_result = on_result
        self._on_lost = on_lost
        self._frames = Frames(self._message)
        self._transport: asyncio.Transport | None = None
        # calls sent in one turn of the event loop after the first go out in one write
        # at the next turn (``send``); None: no send in this turn
        self._held: list[bytes] | None = None
        self._out = 0  # calls sent and not answered yet (a hint: lost answers stay)
        # the event loop's busy poller (``--busy-poll-us``; None: off), told of each call
        self._poller: BusyPoller | None = None
        # moving average of how long this kernel's calls took to be answered (seconds; 0:
        # none yet): polled for when that is within the budget
        self.answer_time = 0.0
        self._sent_at: dict[Any, float] = {}  # call id -> when it was sent
        # when its last answer came: a kernel called once in a while is not polled for
        # (asleep and cold, it answers slower, and the scheduler may queue it on the core
        # the poll holds)
        self._answered_at = 0.0

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        key: bytes,
        on_result: OnResult,
        on_lost: OnLost | None = None,
        timeout: float = 10.0,
    ) -> FastClient:
        loop = asyncio.get_running_loop()
        _, client = await asyncio.wait_for(
            loop.create_connection(lambda: cls(key, on_result, on_lost), host, port), timeout
        )
        return client

    @property
    def connected(self) -> bool:
        return self._transport is not None

    # -- asyncio.Protocol ---------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport  # asyncio sets TCP_NODELAY on TCP transports
        self._poller = poller_of(asyncio.get_running_loop())

    def data_received(self, data: bytes) -> None:
        try:
            self._frames.feed(data)
        except ValueError as exc:
            log.warning("fast channel: %s; connection closed", exc)
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._sent_at.clear()
        if self._on_lost is not None:
            self._on_lost()

    # -- messages -----------------------------------------------------------------
    def send(self, data: dict[str, Any], buffers: list[Any] | None = None) -> None:
        """Send a call (ConnectionError when the connection is gone)."""
        transport = self._transport
        if transport is None:
            raise ConnectionError("the fast channel to the kernel is closed")
        # numbered per connection, inside the signed header: the kernel refuses a
        # message whose number it has taken (a replay; vwed_kernel/replay.py)
        self._seq += 1
        frames = [_encode({**data, "cid": self._cid, "seq": self._seq}).encode()]
        if buffers:
            frames.extend(b if isinstance(b, bytes) else bytes(b) for b in buffers)
        message = framing([self._sign(frames), *frames])
        held = self._held
        if held is not None:  # a burst (concurrent requests): one write for the rest
            held.extend(message)
        else:
            self._write_now(message)
        self._out += 1
        if data.get("op") == "call":  # (a script's ``load`` is neither timed nor polled for)
            sent_at = self._sent_at
            if len(sent_at) >= MAX_TIMED:  # answers that never came (a hint only)
                sent_at.clear()
            now = sent_at[data.get("id")] = _now()
            poller = self._poller
            if (
                poller is not None
                and self.answer_time <= poller.budget
                and now - self._answered_at <= RECENT * poller.budget
            ):
                poller.sent()

    def _write_now(self, message: list[bytes]) -> None:
        # The first call of a loop turn is written now (no added latency when calls
        # come one at a time); when other calls are out (concurrent requests), the
        # calls sent after it in the same turn are held and written together when the
        # loop comes back (one system call, one wake-up of the kernel for all of them
        # instead of one each). Alone, nothing is scheduled.
        assert self._transport is not None
        self._transport.write(b"".join(message))
        if self._out:
            self._held = []
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        held, self._held = self._held, None
        if held and self._transport is not None:
            self._transport.write(b"".join(held))

    def _message(self, frames: list[bytes]) -> None:
        if len(frames) < 2:
            return
        signature, rest = frames[0], frames[1:]
        if not hmac.compare_digest(signature, self._sign(rest)):
            log.warning("fast channel: answer with a bad signature dropped")
            return
        if self._out:
            self._out -= 1
        try:
            data = json.loads(rest[0])
            sent_at = self._sent_at.pop(data.get("id"), 0.0)
            if sent_at:
                self._answered_at = _now()
                took = self._answered_at - sent_at
                average = self.answer_time
                self.answer_time = (
                    took if not average else average + ANSWER_WEIGHT * (took - average)
                )
            self._on_result(data, rest[1:])
        except Exception:
            log.exception("fast channel: bad answer")

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
