"""The fast channel: a socket between the gateway and this kernel for calls (and a
script's ``load``: its ``hello`` says so in ``ops``).

Why: a call sent as a ``comm_msg`` goes through ipykernel's shell dispatch,
which publishes busy/idle status on iopub and waits on the stdout/stderr flush
handshake with the IOPub thread after every message; the answer is broadcast on
iopub to every client. For the gateway's calls none of that is needed.

How: when the gateway asks for it in ``comm_open``, the kernel listens on a TCP
port next to its Jupyter sockets and reports it in ``hello`` (transport
``"stream"``). The gateway connects to it. A message is ``[signature, header
JSON, *buffers]`` framed on the stream (``framing``: a count, the lengths, the
frames), the signature an HMAC-SHA256 of the header and buffers with the
kernel's own session key (the same trust as the Jupyter channels). A plain
socket read by the event loop, not ZeroMQ: no I/O thread on either side, one
system call per message each way, or fewer: the calls read in one ``recv`` (the
gateway writes a burst of concurrent calls at once) are answered in one write
after the last of them (``HOLD`` and the handlers known to be slow bound how long
an answer waits for the calls after it). Messages are read on the kernel's main thread
event loop, so calls run exactly where comm calls run: a sync handler inline
(interruptible by SIGINT), a coroutine as a task. Output printed during a call
carries a parent header whose ``msg_id`` is the call's id. Every other client of
the kernel still sees the normal Jupyter protocol (its own busy/idle and output).
"""

from __future__ import annotations

import _signal
import asyncio
import hashlib
import hmac
import json
import logging
import signal
import socket
import struct
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from .dispatch import Calls
from .replay import GUARD
from .replies import Send, reply_error

# an op besides ``call`` (``load``): called with (data, buffers, send)
Op = Callable[[dict[str, Any], list[Any], Send], None]

__all__ = ["FastChannel", "Signer", "TRANSPORT", "framing", "Frames"]

log = logging.getLogger("vwed_kernel")

TRANSPORT = "stream"  # what hello says; a gateway that does not know it uses the comm
# one encoder for every answer: json.dumps() with separators builds a new one each time
_encode = json.JSONEncoder(separators=(",", ":")).encode
_COUNT = struct.Struct("!I")
# connections at once: a gateway holds one (a restarted one, a second briefly); past it, the
# oldest one that never sent a signed message is closed
MAX_CONNECTIONS = 8
_IDENT = [b"vwed-fast"]  # the shell "ident" of a call's parent (nothing is routed on it)
_SIGINT = int(signal.SIGINT)
_INT_HANDLER = signal.default_int_handler
_HEADER = {
    "msg_type": "vwed_call",
    "username": "vwed-gateway",
    "session": "vwed-fast",
    "version": "5.3",
}
_clock: list[Any] = [-1, ""]
# how long the answers of the calls read together may wait for the calls after them
# (seconds): a burst of quick calls is answered in one write, a slow one does not hold
# the answers before it longer than this (plus its own first run)
HOLD = 0.0005


def _date() -> str:
    """The parent header's date (ISO 8601, UTC), formatted once a second."""
    now = time.time()
    if int(now) != _clock[0]:
        _clock[0] = int(now)
        _clock[1] = datetime.fromtimestamp(int(now), timezone.utc).isoformat()
    return str(_clock[1])


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
    """The kernel's end: a listening socket on the main event loop, one connection
    per gateway (a restarted gateway connects again)."""

    transport = TRANSPORT

    def __init__(
        self, kernel: Any, calls: Calls, ip: str, ops: Mapping[str, Op] | None = None
    ) -> None:
        self._kernel = kernel
        self._calls = calls
        self._ops = ops or {}  # ops besides ``call`` (``load``): (data, buffers, send)
        self.ops = ["call", *self._ops]  # what ``hello`` says the channel carries
        self._sign = Signer(kernel.session.key or b"")
        self._guard = GUARD  # what this kernel's channels took: a replay is refused
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        self._sock = socket.create_server((ip, 0), family=family)
        self._sock.setblocking(False)
        self.port = int(self._sock.getsockname()[1])
        self._conns: set[_Conn] = set()
        # (kind, name) of the handlers whose last synchronous run took more than HOLD
        self._slow: set[tuple[Any, Any]] = set()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._sock.fileno(), self._accept)

    def close(self) -> None:
        if self._sock.fileno() >= 0:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
        for conn in list(self._conns):
            conn.close()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                log.exception("fast channel: accept failed")
                return
            if len(self._conns) >= MAX_CONNECTIONS and not self._make_room():
                sock.close()  # every one signed by a gateway: this one uses the comm
                log.warning("fast channel: a connection refused (%d open)", len(self._conns))
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(self, sock)
            self._conns.add(conn)

    def _make_room(self) -> bool:
        """At the cap, the oldest connection that never sent a signed message goes (a
        gateway signs its first message at once: anyone else on the host holds a
        connection for nothing)."""
        unsigned = [c for c in self._conns if not c.signed]
        if not unsigned:
            return False
        min(unsigned, key=lambda c: c.opened).close()
        return True

    def _parent(self, call_id: str) -> dict[str, Any]:
        header = {**_HEADER, "msg_id": call_id, "date": _date()}
        return {
            "header": header,
            "parent_header": {},
            "metadata": {},
            "content": {},
            "msg_id": call_id,
            "msg_type": "vwed_call",
        }

    def _handle(self, conn: _Conn, frames: list[bytes]) -> None:
        if len(frames) < 2:
            return
        signature, rest = frames[0], frames[1:]
        if not hmac.compare_digest(signature, self._sign(rest)):
            log.warning("fast channel: message with a bad signature dropped")
            return
        data = json.loads(rest[0])
        if signature and not self._guard.fresh(data, signature):
            log.warning("fast channel: a message seen before (a replay) refused")
            if data.get("id"):  # on the connection that sent it: never the gateway's
                reply_error(conn.send, str(data["id"]), ValueError("replayed message"), "protocol")
                conn.release()
            return
        conn.signed = True
        if data.get("op") != "call":
            op = self._ops.get(data.get("op"))
            if op is not None:  # as a shell message's handler: its output, SIGINT raising
                self._kernel.set_parent(_IDENT, self._parent(str(data.get("id"))), "shell")
                previous = _signal.signal(_SIGINT, _INT_HANDLER)
                try:
                    op(data, rest[1:], conn.send)
                finally:
                    _signal.signal(_SIGINT, previous)
                conn.release()
            elif data.get("id"):  # a gateway that should have used the comm: not a hang
                reply_error(
                    conn.send,
                    str(data["id"]),
                    ValueError(f"unknown op {data.get('op')!r} on the fast channel"),
                    "protocol",
                )
                conn.release()
            return

        # A handler whose last run took long does not hold the answers read before it
        # (``_Conn.send``): they go first.
        handler = (data.get("kind"), data.get("name"))
        slow = self._slow
        if handler in slow:
            conn.release()
        # Attribute output to the call, as ipykernel does for a shell message.
        self._kernel.set_parent(_IDENT, self._parent(str(data.get("id"))), "shell")
        # _signal: signal.signal's enum conversions cost more than the switch itself
        previous = _signal.signal(_SIGINT, _INT_HANDLER)
        started = time.perf_counter()
        try:
            self._calls.call(data, rest[1:], conn.send)
        finally:
            _signal.signal(_SIGINT, previous)
            if time.perf_counter() - started > HOLD:
                if len(slow) >= 1024:
                    slow.clear()
                slow.add(handler)
            elif slow:
                slow.discard(handler)


class _Conn:
    """One gateway's connection: read by the loop's selector, written at once (what
    the socket does not take now is kept and written when it can)."""

    def __init__(self, channel: FastChannel, sock: socket.socket) -> None:
        self._channel = channel
        self._sock = sock
        self._loop = channel._loop
        self._fd = sock.fileno()
        self._out = bytearray()
        # answers of the calls read in one ``recv``, written together after them
        # (``_read``); None outside a read
        self._held: list[bytes] | None = None
        self._held_since = 0.0
        self._frames = Frames(self._message)
        self.signed = False  # a message with the kernel's signature came on it
        self.opened = time.monotonic()
        sock.setblocking(False)
        self._loop.add_reader(self._fd, self._read)

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def close(self) -> None:
        if self._fd < 0:
            return
        self._loop.remove_reader(self._fd)
        if self._out:
            self._loop.remove_writer(self._fd)
        self._fd = -1
        self._sock.close()
        self._channel._conns.discard(self)

    def _read(self) -> None:
        try:
            data = self._sock.recv(262144)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        if not data:
            self.close()
            return
        self._held = []
        try:
            self._frames.feed(data)
        except ValueError as exc:  # not our framing: not a gateway
            log.warning("fast channel: %s; connection closed", exc)
            self.close()
        finally:
            held, self._held = self._held, None
            if held:
                self._write(b"".join(held))

    def release(self) -> None:
        """Write the answers held so far (the read goes on holding the next ones)."""
        held = self._held
        if held:
            self._held = []
            self._write(b"".join(held))

    def _message(self, frames: list[bytes]) -> None:
        if self._held and time.perf_counter() - self._held_since > HOLD:
            self.release()  # the calls before this one took long: their answers go now
        try:
            self._channel._handle(self, frames)
        except KeyboardInterrupt:
            # An interrupt that landed just outside the handler: never let it
            # reach (and stop) the kernel's event loop.
            log.warning("fast channel: interrupt outside a call ignored")
        except Exception:
            log.exception("fast channel: bad message")

    def send(self, data: dict[str, Any], buffers: list[bytes] | None) -> None:
        if self._fd < 0:
            return  # the gateway went away: the answer is dropped
        frames = [_encode(data).encode(), *(bytes(b) for b in buffers or [])]
        message = framing([self._channel._sign(frames), *frames])
        held = self._held
        if held is not None:  # answered while the calls of one read run: written after
            if not held:
                self._held_since = time.perf_counter()
            held.extend(message)
            return
        self._write(b"".join(message))

    def _write(self, payload: bytes) -> None:
        if self._fd < 0:
            return
        if self._out:
            self._out += payload
            return
        try:
            sent = self._sock.send(payload)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self.close()
            return
        if sent < len(payload):
            self._out += payload[sent:]
            self._loop.add_writer(self._fd, self._flush)

    def _flush(self) -> None:
        try:
            sent = self._sock.send(self._out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        del self._out[:sent]
        if not self._out:
            self._loop.remove_writer(self._fd)
