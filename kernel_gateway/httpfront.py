"""The gateway's listening sockets: call requests parsed by ``httptools`` on the event
loop's selector, every other connection handed to Tornado's ``HTTPServer`` (issue 19,
throughput).

Tornado's HTTP/1 connection reads a request through ``IOStream`` futures and a
coroutine per connection: several event-loop turns and about a third of the
gateway's CPU per routed call. Here a connection starts on ``_Conn``: its socket is
read by a selector callback (``add_reader``, as ``IOStream`` does) and its bytes go
to llhttp (the C parser of Node.js, through ``httptools``, the parser uvicorn uses). A request the call front serves (``/script-api/``
and function calls, ``CallFront.claims``) is answered by the same code as on
Tornado's path (``CallFront.serve``), in the same loop turn the request completed.

Anything else is Tornado's, with the connection from that request on: a request the
front does not serve (a target outside the call prefixes is handed over unparsed), one with ``Transfer-Encoding``, ``Expect`` or ``Upgrade``, a
request llhttp refuses (Tornado then gives its own answer), pipelined requests in
one read, headers over 64 KiB, a standby gateway. The bytes read since the last
answered request are put back in front of a new ``IOStream`` on the same socket (no
asyncio transport owns it: nothing to detach) and
``HTTPServer.handle_stream`` serves it as if it had accepted it. So a browser, the
CLI or a WebSocket sees Tornado from their first request, and a task flow's
keep-alive connection doing calls stays here.

Off with ``--no-fast-http`` (every connection then goes to Tornado at once).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any, cast

import httptools
from tornado import httputil
from tornado.httpserver import HTTPServer
from tornado.iostream import IOStream

from .handlers.front import CallFront

__all__ = ["FrontServer"]

log = logging.getLogger("kernel_gateway.http")

MAX_HEADER_SIZE = 65536  # Tornado's default max_header_size
READ_SIZE = 65536
WRITE_HIGH = 65536  # answers not yet written past which a connection reads no more
ACCEPTS_PER_TURN = 128
_CALL_PREFIXES = (b"/script-api/", b"/script-engine/functions/")
_LONGEST = max(map(len, _CALL_PREFIXES))
IDLE_TIMEOUT = 3600.0  # Tornado's default idle_connection_timeout
SWEEP_EVERY = 60.0
# a request with one of these goes to Tornado (it implements them, the front does not)
_TORNADO_HEADERS = ("Transfer-Encoding", "Expect", "Upgrade")


class _HandOff(Exception):
    """Raised from a parser callback: this connection is Tornado's from here on."""


class _Context:
    """What ``HTTPServerRequest`` and the access log read of a connection
    (``tornado.httpserver._HTTPRequestContext``)."""

    protocol = "http"

    def __init__(self, address: Any, family: int) -> None:
        self.address = address
        self.address_family = family
        inet = family in (socket.AF_INET, socket.AF_INET6) and address is not None
        self.remote_ip = address[0] if inet else "0.0.0.0"
        self._orig_remote_ip = self.remote_ip
        self._orig_protocol = self.protocol
        self.trusted_downstream: set[str] = set()

    def __str__(self) -> str:
        return self.remote_ip


class FrontServer:
    """Listens on the gateway's sockets (``listen``); ``stop`` stops accepting,
    ``close_all_connections`` closes what is left (after the drain)."""

    def __init__(self, http_server: HTTPServer, front: CallFront, gate: Any = None) -> None:
        self.http_server = http_server  # Tornado's, for the connections handed to it
        self.front = front
        self.gate = gate  # ha.Failover or None: only an active gateway serves here
        self.served = 0  # requests answered on this path
        self.handed = 0  # connections handed to Tornado
        self._sockets: list[socket.socket] = []
        self._conns: set[_Conn] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def listen(self, sockets: list[socket.socket]) -> None:
        loop = self._loop = asyncio.get_running_loop()
        for sock in sockets:
            sock.setblocking(False)
            loop.add_reader(sock.fileno(), self._accept, sock)
            self._sockets.append(sock)
        self._sweeper = loop.call_later(SWEEP_EVERY, self._sweep)

    def _accept(self, listening: socket.socket) -> None:
        """The connections waiting (as Tornado's ``add_accept_handler``: a bounded number
        per turn, so a flood of connections does not starve the calls)."""
        for _ in range(ACCEPTS_PER_TURN):
            try:
                sock, address = listening.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:  # out of file descriptors: the next turn tries again
                log.warning("accepting a connection failed: %s", exc)
                return
            sock.setblocking(False)
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _Conn(self, sock, address)

    def stop(self) -> None:
        """Stop accepting (connections already open stay)."""
        for sock in self._sockets:
            if self._loop is not None and sock.fileno() >= 0:
                self._loop.remove_reader(sock.fileno())
            sock.close()
        self._sockets = []
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    async def close_all_connections(self) -> None:
        """At the gateway's stop, after the drain (what a client did not read yet is
        dropped, as Tornado's ``close_all_connections`` drops it)."""
        for conn in list(self._conns):
            conn._close_now()
        await self.http_server.close_all_connections()

    def _sweep(self) -> None:
        """Close connections idle for longer than Tornado would keep them (its
        ``idle_connection_timeout``), or whose request's head has been coming for that
        long (its ``header_timeout``); one whose client does not read what was written
        is ended too."""
        now = time.monotonic()
        for conn in list(self._conns):
            idle = conn.request is None and now - conn.last > IDLE_TIMEOUT
            if idle or (conn.raw and now - conn.began > IDLE_TIMEOUT):
                conn._close_now()
        self._sweeper = asyncio.get_running_loop().call_later(SWEEP_EVERY, self._sweep)

    def claims(self, start_line: httputil.RequestStartLine, headers: httputil.HTTPHeaders) -> Any:
        if self.gate is not None and not self.gate.serving:
            return None  # the standby gate's answers are Tornado's
        for name in _TORNADO_HEADERS:
            if name in headers:
                return None
        return self.front.claims(start_line, headers)


class _Conn:
    """One connection while it is ours: read and written by the event loop's selector
    (``add_reader``/``add_writer``, as Tornado's ``IOStream`` does, so the socket can be
    handed to one as it is), a request at a time, in order."""

    def __init__(self, server: FrontServer, sock: socket.socket, address: Any) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.sock: socket.socket | None = sock
        self.fd = sock.fileno()
        self.address = address
        self.context = _Context(address, sock.family)
        self.parser = httptools.HttpRequestParser(self)
        self.raw = bytearray()  # bytes fed since the last answered request
        self.waiting = bytearray()  # bytes read while a request is served (not fed yet)
        self.out = bytearray()  # answers the socket did not take yet
        self.request: httputil.HTTPServerRequest | None = None  # being served
        self.keep_alive = True
        self.reading = True
        self.writing_paused = False  # the client does not read its answers: read no more
        self.closing = False  # close once ``out`` is written
        self.handing = False  # hand to Tornado once ``out`` is written
        self.next_scheduled = False
        self.last = time.monotonic()
        self.began = 0.0  # when the first bytes of the request being read came
        self._reset()
        server._conns.add(self)
        self.loop.add_reader(self.fd, self._readable)
        self._readable()  # a client's request is often there with its connection

    def _reset(self) -> None:
        self.url = b""
        self.headers: httputil.HTTPHeaders | None = None
        self.header_list: list[tuple[bytes, bytes]] = []
        self.next_request: httputil.HTTPServerRequest | None = None
        self.what: Any = None
        self.complete = False

    # -- the socket -----------------------------------------------------------------------
    def _readable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        try:
            data = sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close_now()
            return
        if not data:  # the client closed its side: so does Tornado
            self._close_now()
            return
        self.last = time.monotonic()
        if self.request is None and not self.writing_paused and not self.waiting:
            self._feed(data)
            return
        # pipelined, or a client not reading its answers: read after this answer
        self.waiting += data
        if len(self.waiting) > MAX_HEADER_SIZE:
            self._pause_reading()

    def _pause_reading(self) -> None:
        if self.reading and self.sock is not None:
            self.reading = False
            self.loop.remove_reader(self.fd)

    def _resume_reading(self) -> None:
        if not self.reading and self.sock is not None and not self.handing:
            self.reading = True
            self.loop.add_reader(self.fd, self._readable)

    def _send(self, data: bytes) -> None:
        sock = self.sock
        if sock is None:
            return
        if self.out:
            self.out += data
        else:
            try:
                sent = sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._close_now()
                return
            if sent == len(data):
                return
            self.out += data[sent:]
            self.loop.add_writer(self.fd, self._writable)
        if len(self.out) > WRITE_HIGH:
            self.writing_paused = True

    def _writable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        try:
            sent = sock.send(self.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close_now()
            return
        del self.out[:sent]
        self.last = time.monotonic()
        if self.out:
            return
        self.loop.remove_writer(self.fd)
        if self.closing:
            self._close_now()
        elif self.handing:
            self._hand_off()
        elif self.writing_paused:
            self.writing_paused = False
            if self.request is None and self.waiting:
                self._next_soon()

    def close(self) -> None:
        """Close once what was answered is written."""
        if self.out:
            self.closing = True
            self._pause_reading()
        else:
            self._close_now()

    def _close_now(self) -> None:
        sock, self.sock = self.sock, None
        self.server._conns.discard(self)
        if sock is None:
            return
        if self.reading:
            self.loop.remove_reader(self.fd)
        if self.out:
            self.loop.remove_writer(self.fd)
            self.out.clear()
        sock.close()  # a call in flight finds the socket gone and drops its answer

    def _feed(self, data: bytes) -> None:
        if not self.raw:
            self.began = time.monotonic()
            if not _may_claim(data):
                self.raw += data
                self._hand_off()  # not a call: Tornado's without parsing
                return
        self.raw += data
        try:
            self.parser.feed_data(data)
        except Exception:  # ours (_HandOff), an upgrade, or a request llhttp refuses
            self._hand_off()
            return
        if not self.complete:
            if self.headers is None and len(self.raw) > MAX_HEADER_SIZE:
                self._hand_off()  # Tornado's answer to headers that large
            return
        self._serve()

    # -- httptools' callbacks ---------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self.complete:  # a second request in the same read: Tornado's (pipelining)
            raise _HandOff

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_list.append((name, value))

    def on_headers_complete(self) -> None:
        headers = httputil.HTTPHeaders()
        for name, value in self.header_list:
            headers.add(name.decode("latin1"), value.decode("latin1"))
        self.headers = headers
        start_line = httputil.RequestStartLine(
            self.parser.get_method().decode("latin1"),
            self.url.decode("latin1"),
            "HTTP/" + self.parser.get_http_version(),
        )
        self.what = self.server.claims(start_line, headers)
        if self.what is None:
            raise _HandOff
        # what Tornado refuses (no Host in HTTP/1.1, two of them, a bad one: HTTPInputError)
        # it answers itself, from the first byte of this request
        self.next_request = httputil.HTTPServerRequest(
            connection=cast(httputil.HTTPConnection, self),
            start_line=start_line,
            headers=headers,
        )

    # no on_body: a request served here ends where the bytes read end (anything after
    # it is handed to Tornado), so its body is the tail of ``raw``

    def on_message_complete(self) -> None:
        self.complete = True

    # -- serving (HTTPConnection's side for the call front) ----------------------------------
    def _serve(self) -> None:
        request, what = self.next_request, self.what
        assert request is not None and self.headers is not None
        length = int(self.headers.get("Content-Length") or 0)  # llhttp checked it
        request.body = bytes(self.raw[len(self.raw) - length :]) if length else b""
        self.raw.clear()
        self.keep_alive = _keep_alive(request)
        self.request = request
        self._reset()
        self.server.served += 1
        try:
            self.server.front.serve(cast(httputil.HTTPConnection, self), what, request)
        except Exception:  # not expected (the front answers its errors): no answer hangs
            log.exception("serving %s %s failed", request.method, request.path)
            self._close_now()

    def write_headers(
        self,
        start_line: httputil.ResponseStartLine | httputil.RequestStartLine,
        headers: httputil.HTTPHeaders,
        chunk: bytes | None = None,
    ) -> None:
        """``HTTP1Connection.write_headers`` for an answer with its whole body (the front
        always sets ``Content-Length`` or sends a status without a body)."""
        assert isinstance(start_line, httputil.ResponseStartLine)
        request = self.request
        assert request is not None
        if request.version == "HTTP/1.1":
            if not self.keep_alive:
                headers["Connection"] = "close"
        elif request.headers.get("Connection", "").lower() == "keep-alive":
            headers["Connection"] = "Keep-Alive"  # an HTTP/1.0 client that asked (as Tornado)
        lines = [f"HTTP/1.1 {start_line.code} {start_line.reason}"]
        lines.extend(f"{name}: {value}" for name, value in headers.get_all())
        for line in lines:
            if "\r" in line or "\n" in line:
                raise ValueError(f"Illegal characters (CR or LF) in header: {line!r}")
        head = "\r\n".join(lines)
        self._send(head.encode("latin1") + b"\r\n\r\n" + (chunk or b""))

    def write(self, chunk: bytes) -> None:  # pragma: no cover - the front writes once
        self._send(chunk)

    def finish(self) -> None:
        """The answer is written: the next request, or the end of the connection."""
        self.request = None
        self.last = time.monotonic()
        if self.sock is None:
            return
        if not self.keep_alive:
            self.close()
            return
        if self.waiting and not self.writing_paused:  # else when the client reads again
            self._next_soon()

    def _next_soon(self) -> None:
        """The requests read while one was served, from the next loop turn (not inside
        the answer of this one: its access log line and its errors stay its own)."""
        if not self.next_scheduled:
            self.next_scheduled = True
            self.loop.call_soon(self._next)

    def _next(self) -> None:
        self.next_scheduled = False
        if self.sock is None or self.request is not None or not self.waiting:
            return
        data, self.waiting = bytes(self.waiting), bytearray()
        self._resume_reading()
        self._feed(data)

    def set_close_callback(self, callback: Any) -> None:  # pragma: no cover
        pass

    # -- to Tornado ------------------------------------------------------------------------
    def _hand_off(self) -> None:
        """From the first byte of the request being read, the connection is Tornado's:
        the same socket in an ``IOStream`` that reads first what was read here."""
        sock = self.sock
        if sock is None:
            return
        self._pause_reading()
        if self.out:  # an answer not yet out: after it
            self.handing = True
            return
        self.sock = None
        self.server._conns.discard(self)
        raw, self.raw = bytes(self.raw + self.waiting), bytearray()
        self.waiting = bytearray()
        server = self.server.http_server
        stream = IOStream(
            sock, max_buffer_size=server.max_buffer_size, read_chunk_size=server.read_chunk_size
        )
        if raw:  # what this side read, read again by Tornado
            stream._read_buffer += raw
            stream._read_buffer_size += len(raw)
        self.server.handed += 1
        server.handle_stream(stream, self.address)


def _keep_alive(request: httputil.HTTPServerRequest) -> bool:
    """``HTTP1Connection._can_keep_alive``: the same answer as Tornado's for the same
    request (a served request has no Transfer-Encoding)."""
    connection = request.headers.get("Connection")
    if connection is not None:
        connection = connection.lower()
    if request.version == "HTTP/1.1":
        return connection != "close"
    if "Content-Length" in request.headers or request.method in ("HEAD", "GET"):
        return connection == "keep-alive"
    return False


def _may_claim(data: bytes) -> bool:
    """Whether a request that starts with ``data`` may be a call (else it is handed to
    Tornado unparsed): its target starts with a prefix the call front serves."""
    space = data.find(b" ", 0, 12)
    if space < 0:
        return len(data) < 12  # too little to tell yet
    if data.startswith(_CALL_PREFIXES, space + 1):
        return True
    target = data[space + 1 : space + 1 + _LONGEST]  # a prefix cut short by the read
    return len(target) < _LONGEST and any(p.startswith(target) for p in _CALL_PREFIXES)
