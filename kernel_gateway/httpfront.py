"""The gateway's listening sockets: call requests parsed by ``httptools`` on an asyncio
protocol, every other connection handed to Tornado's ``HTTPServer`` (issue 19,
throughput).

Tornado's HTTP/1 connection reads a request through ``IOStream`` futures and a
coroutine per connection: several event-loop turns and about a third of the
gateway's CPU per routed call. Here a connection starts on ``_Conn``, an
``asyncio.Protocol`` whose bytes go to llhttp (the C parser of Node.js, through
``httptools``, the parser uvicorn uses). A request the call front serves (``/script-api/``
and function calls, ``CallFront.claims``) is answered by the same code as on
Tornado's path (``CallFront.serve``), in the same loop turn the request completed.

Anything else is Tornado's, with the connection from that request on: a request the
front does not serve, one with ``Transfer-Encoding``, ``Expect`` or ``Upgrade``, a
request llhttp refuses (Tornado then gives its own answer), pipelined requests in
one read, headers over 64 KiB, a standby gateway. The bytes read since the last
answered request are put back in front of a new ``IOStream`` on the same socket and
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
        self._servers: list[asyncio.AbstractServer] = []
        self._conns: set[_Conn] = set()
        self._sweeper: asyncio.TimerHandle | None = None

    async def listen(self, sockets: list[socket.socket]) -> None:
        loop = asyncio.get_running_loop()
        for sock in sockets:
            server = await loop.create_server(lambda: _Conn(self), sock=sock, backlog=128)
            self._servers.append(server)
        self._sweeper = loop.call_later(SWEEP_EVERY, self._sweep)

    def stop(self) -> None:
        """Stop accepting (connections already open stay)."""
        for server in self._servers:
            server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    async def close_all_connections(self) -> None:
        for conn in list(self._conns):
            conn.close()
        await self.http_server.close_all_connections()

    def _sweep(self) -> None:
        """Close connections idle for longer than Tornado would keep them."""
        now = time.monotonic()
        for conn in list(self._conns):
            if conn.request is None and now - conn.last > IDLE_TIMEOUT:
                conn.close()
        self._sweeper = asyncio.get_running_loop().call_later(SWEEP_EVERY, self._sweep)

    def claims(self, start_line: httputil.RequestStartLine, headers: httputil.HTTPHeaders) -> Any:
        if self.gate is not None and not self.gate.serving:
            return None  # the standby gate's answers are Tornado's
        for name in _TORNADO_HEADERS:
            if name in headers:
                return None
        return self.front.claims(start_line, headers)


class _Conn(asyncio.Protocol):
    """One connection while it is ours: a request at a time, in order."""

    def __init__(self, server: FrontServer) -> None:
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.context: _Context | None = None
        self.raw = bytearray()  # bytes fed since the last answered request
        self.waiting = bytearray()  # bytes read while a request is served (not fed yet)
        self.request: httputil.HTTPServerRequest | None = None  # being served
        self.keep_alive = True
        self.writing_paused = False  # the client does not read its answers: read no more
        self.last = time.monotonic()
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: httputil.HTTPHeaders | None = None
        self.header_list: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.what: Any = None
        self.complete = False

    # -- asyncio ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        self.context = _Context(transport.get_extra_info("peername"), sock.family)
        self.server._conns.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._conns.discard(self)
        self.transport = None  # a call in flight finds it gone and drops its answer

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.request is None and self.waiting:
            self._next()

    def data_received(self, data: bytes) -> None:
        self.last = time.monotonic()
        if self.request is None and not self.writing_paused and not self.waiting:
            self._feed(data)
            return
        # pipelined, or a client not reading its answers: read after this answer
        self.waiting += data
        if len(self.waiting) > MAX_HEADER_SIZE and self.transport is not None:
            self.transport.pause_reading()

    def _feed(self, data: bytes) -> None:
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
        self.raw.clear()
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
        self.start_line = start_line
        self.what = self.server.claims(start_line, headers)
        if self.what is None:
            raise _HandOff

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()

    # -- serving (HTTPConnection's side for the call front) ----------------------------------
    def _serve(self) -> None:
        conn = cast(httputil.HTTPConnection, self)  # the part of one the front uses
        request = httputil.HTTPServerRequest(
            connection=conn, start_line=self.start_line, headers=self.headers
        )
        request.body = b"".join(self.body)
        what = self.what
        self.request = request
        self._reset()
        self.server.served += 1
        self.server.front.serve(conn, what, request)

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
        elif self.keep_alive:  # an HTTP/1.0 client that asked for keep-alive
            headers["Connection"] = "Keep-Alive"
        lines = [f"HTTP/1.1 {start_line.code} {start_line.reason}"]
        lines.extend(f"{name}: {value}" for name, value in headers.get_all())
        for line in lines:
            if "\r" in line or "\n" in line:
                raise ValueError(f"Illegal characters (CR or LF) in header: {line!r}")
        head = "\r\n".join(lines)
        if self.transport is not None:
            self.transport.write(head.encode("latin1") + b"\r\n\r\n" + (chunk or b""))

    def write(self, chunk: bytes) -> None:  # pragma: no cover - the front writes once
        if self.transport is not None:
            self.transport.write(chunk)

    def finish(self) -> None:
        """The answer is written: the next request, or the end of the connection."""
        self.request = None
        if self.transport is None:
            return
        if not self.keep_alive:
            self.transport.close()
            return
        if self.waiting and not self.writing_paused:  # else when the client reads again
            self._next()

    def _next(self) -> None:
        """The requests read while one was served."""
        data, self.waiting = bytes(self.waiting), bytearray()
        if self.transport is not None:
            self.transport.resume_reading()
        self._feed(data)

    def set_close_callback(self, callback: Any) -> None:  # pragma: no cover
        pass

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # -- to Tornado ------------------------------------------------------------------------
    def _hand_off(self) -> None:
        """From the first byte of the request being read, the connection is Tornado's."""
        transport = self.transport
        if transport is None:
            return
        transport.pause_reading()
        if transport.get_write_buffer_size():  # an answer not yet out: after it
            asyncio.get_running_loop().call_later(0.001, self._hand_off)
            return
        raw, self.raw = bytes(self.raw), bytearray()
        sock = transport.get_extra_info("socket").dup()  # the same connection, own fd
        sock.setblocking(False)
        address = transport.get_extra_info("peername")
        self.transport = None
        transport.abort()  # closes our fd only: the connection lives on in ``sock``
        server = self.server.http_server
        stream = IOStream(
            sock, max_buffer_size=server.max_buffer_size, read_chunk_size=server.read_chunk_size
        )
        if raw:  # what this side read, read again by Tornado
            stream._read_buffer += raw
            stream._read_buffer_size += len(raw)
        self.server.handed += 1
        server.handle_stream(stream, address)
