"""The gateway's own HTTP layer (kernel_gateway/httpfront.py): calls parsed by httptools
stay on it; every other request, and every connection it cannot serve to the end, is
Tornado's from that byte on, on the same connection. Raw sockets, so the bytes on the
wire are the test's: keep-alive, pipelining, a request split anywhere, a chunked or
``Expect: 100-continue`` body, HTTP/1.0, ``Connection: close``, malformed requests, a
client that leaves while its call runs."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import httpx
import pytest

from conftest import GatewayThread, start_script, token_gateway, unique, wait_until
from kernel_gateway.httpfront import FrontServer

ADMIN = "wire-admin-token"
CALLER = "wire-caller-token"

SCRIPT = """
import time

naps = 0

def boot():
    VWED.api.register_route("/{n}/ping", "GET", lambda: {{"ok": True}})
    VWED.api.register_route("/{n}/echo", "POST", lambda r: {{"got": r["json"]}})
    VWED.api.register_route("/{n}/nap", "GET", nap)
    VWED.api.register_route("/{n}/big", "GET", lambda: {{"z": "z" * 8_000_000}})
    VWED.function.register("{n}_add", lambda a, b: a + b)
    VWED.function.register("{n}_naps", lambda: naps)

def nap():
    global naps
    time.sleep(0.5)
    naps += 1
    return {{"slept": True}}
"""


@pytest.fixture(scope="module")
def wire(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayThread, str]]:
    for gw, root in token_gateway(tmp_path_factory, "wire", ADMIN, CALLER):
        n = unique("wi")
        start_script(gw, root, n, SCRIPT.format(n=n), ADMIN)
        yield gw, n


def _front(gw: GatewayThread) -> FrontServer:
    assert gw.gateway is not None and gw.gateway.http_front is not None
    return gw.gateway.http_front


def _counts(gw: GatewayThread) -> tuple[int, int]:
    assert gw.gateway is not None and gw.gateway.http_front is not None
    return gw.gateway.http_front.served, gw.gateway.http_front.handed


class Wire:
    """A raw HTTP/1 client: writes bytes, reads answers one by one (Content-Length or
    chunked bodies), and sees the connection close."""

    def __init__(self, gw: GatewayThread, rcvbuf: int = 0) -> None:
        assert gw.gateway is not None
        self.sock = socket.socket()
        if rcvbuf:  # before connecting: the window the server may fill
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(15)
        self.sock.connect(("127.0.0.1", gw.gateway.port))
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _more(self) -> bytes:
        chunk = self.sock.recv(65536)
        self.buf += chunk
        return chunk

    def answer(self, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buf:
            if not self._more():
                raise ConnectionError(f"closed before an answer: {self.buf!r}")
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if head_only or status in (100, 204, 304):
            return status, headers, b""
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                while b"\r\n" not in self.buf:
                    self._more()
                size_line, _, self.buf = self.buf.partition(b"\r\n")
                size = int(size_line, 16)
                while len(self.buf) < size + 2:
                    self._more()
                body += self.buf[:size]
                self.buf = self.buf[size + 2 :]
                if size == 0:
                    return status, headers, body
        length = int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            if not self._more():
                raise ConnectionError("closed inside a body")
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, headers, body

    def closed(self) -> bool:
        """True once the server has closed the connection (waits up to 10 s)."""
        self.sock.settimeout(10)
        try:
            while self._more():
                pass
        except (ConnectionResetError, TimeoutError):
            return False
        return True

    def close(self) -> None:
        self.sock.close()


def _get(path: str, *, token: str = CALLER, extra: str = "", version: str = "1.1") -> bytes:
    return (
        f"GET {path} HTTP/{version}\r\nHost: 127.0.0.1\r\n"
        f"Authorization: token {token}\r\n{extra}\r\n"
    ).encode()


def _post(path: str, body: bytes, *, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: token {CALLER}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


@pytest.mark.timeout(60)
def test_calls_on_one_connection_stay_on_the_fast_layer(wire: tuple[GatewayThread, str]) -> None:
    gw, n = wire
    served, handed = _counts(gw)
    w = Wire(gw)
    try:
        for i in range(5):
            w.send(_post(f"/script-engine/functions/{n}_add/call", b'{"args": [%d, 1]}' % i))
            status, headers, body = w.answer()
            assert status == 200, body
            assert json.loads(body)["result"] == i + 1
            w.send(_get(f"/script-api/{n}/ping"))
            status, headers, body = w.answer()
            assert (status, json.loads(body)) == (200, {"ok": True})
            assert headers["content-type"] == "application/json; charset=utf-8"
            assert headers["etag"].startswith('"') and "connection" not in headers
    finally:
        w.close()
    assert _counts(gw) == (served + 10, handed)


@pytest.mark.timeout(60)
def test_a_request_split_anywhere_is_read_whole(wire: tuple[GatewayThread, str]) -> None:
    gw, n = wire
    request = _post(f"/script-api/{n}/echo", json.dumps({"pallet": "x" * 3000}).encode())
    served, handed = _counts(gw)
    front = _front(gw)
    w = Wire(gw)
    try:
        for cut in (1, 17, len(request) // 2, len(request) - 1):
            w.send(request[:cut])
            # the server has read the first part (and not more): the split is the test
            read = cut
            wait_until(lambda: any(len(c.raw) == read for c in front._conns), 10, "a read")  # noqa: B023
            w.send(request[cut:])
            status, _, body = w.answer()
            assert (status, json.loads(body)["got"]["pallet"]) == (200, "x" * 3000)
    finally:
        w.close()
    assert _counts(gw) == (served + 4, handed)


@pytest.mark.timeout(60)
def test_a_request_it_does_not_serve_hands_the_connection_to_tornado(
    wire: tuple[GatewayThread, str],
) -> None:
    gw, n = wire
    served, handed = _counts(gw)
    w = Wire(gw)
    try:
        w.send(_get(f"/script-api/{n}/ping"))
        assert w.answer()[0] == 200
        w.send(_get("/script-engine/running", token=ADMIN))  # Tornado's, from here on
        status, _, body = w.answer()
        assert status == 200 and "scripts" in json.loads(body)
        w.send(_get(f"/script-api/{n}/ping"))  # on Tornado's connection: its call front
        status, _, body = w.answer()
        assert (status, json.loads(body)) == (200, {"ok": True})
    finally:
        w.close()
    assert _counts(gw) == (served + 1, handed + 1)


@pytest.mark.timeout(60)
def test_pipelined_requests_are_answered_in_order(wire: tuple[GatewayThread, str]) -> None:
    gw, n = wire
    w = Wire(gw)
    try:
        w.send(
            _get(f"/script-api/{n}/ping")
            + _post(f"/script-engine/functions/{n}_add/call", b'{"args": [2, 3]}')
            + _get("/script-engine/health")
        )
        assert json.loads(w.answer()[2]) == {"ok": True}
        assert json.loads(w.answer()[2])["result"] == 5
        assert w.answer()[0] == 200
    finally:
        w.close()
    # sent while a call runs: read, and served on this layer after that answer
    served, handed = _counts(gw)
    front = _front(gw)
    w = Wire(gw)
    try:
        w.send(_get(f"/script-api/{n}/nap"))
        wait_until(lambda: any(c.request for c in front._conns), 10, "the nap being served")
        w.send(_get(f"/script-api/{n}/ping"))
        wait_until(lambda: any(c.waiting for c in front._conns), 10, "the ping read")
        assert json.loads(w.answer()[2]) == {"slept": True}
        assert json.loads(w.answer()[2]) == {"ok": True}
    finally:
        w.close()
    assert _counts(gw) == (served + 2, handed)


@pytest.mark.timeout(60)
def test_a_client_that_does_not_read_its_answers(wire: tuple[GatewayThread, str]) -> None:
    """An answer larger than the socket's buffers, not read: the next request waits
    until the client reads, then is answered after it, on this layer."""
    gw, n = wire
    served = _counts(gw)[0]
    w = Wire(gw, rcvbuf=4096)
    try:
        w.send(_get(f"/script-api/{n}/big"))
        wait_until(lambda: _counts(gw)[0] > served, 10, "the big call served")
        assert gw.gateway is not None and gw.gateway.http_front is not None
        front = gw.gateway.http_front
        wait_until(lambda: any(c.writing_paused for c in front._conns), 10, "writes paused")
        w.send(_get(f"/script-api/{n}/ping"))
        status, _, body = w.answer()
        assert status == 200 and len(json.loads(body)["z"]) == 8_000_000
        assert json.loads(w.answer()[2]) == {"ok": True}
    finally:
        w.close()
    assert _counts(gw)[0] == served + 2


@pytest.mark.timeout(60)
def test_bodies_tornado_reads(wire: tuple[GatewayThread, str]) -> None:
    gw, n = wire
    w = Wire(gw)
    try:
        body = b'{"args": [40, 2]}'
        w.send(
            (
                f"POST /script-engine/functions/{n}_add/call HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: token {CALLER}\r\nContent-Type: application/json\r\n"
                "Transfer-Encoding: chunked\r\n\r\n"
            ).encode()
            + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        )
        status, _, answer = w.answer()
        assert (status, json.loads(answer)["result"]) == (200, 42)
    finally:
        w.close()
    body = json.dumps({"pallet": "y" * 2000}).encode()
    w = Wire(gw)
    try:  # curl's way with a body over 1 KiB
        head = _post(f"/script-api/{n}/echo", body, extra="Expect: 100-continue\r\n")
        head, payload = head[: -len(body)], body
        w.send(head)
        assert w.answer(head_only=True)[0] == 100
        w.send(payload)
        status, _, answer = w.answer()
        assert (status, json.loads(answer)["got"]["pallet"]) == (200, "y" * 2000)
    finally:
        w.close()


@pytest.mark.timeout(60)
def test_connection_close_and_http_1_0(wire: tuple[GatewayThread, str]) -> None:
    gw, n = wire
    w = Wire(gw)
    try:
        w.send(_get(f"/script-api/{n}/ping", extra="Connection: close\r\n"))
        status, headers, _ = w.answer()
        assert (status, headers.get("connection")) == (200, "close")
        assert w.closed()
    finally:
        w.close()
    w = Wire(gw)
    try:
        w.send(_get(f"/script-api/{n}/ping", version="1.0"))
        status, headers, body = w.answer()
        assert (status, json.loads(body)) == (200, {"ok": True})
        assert "connection" not in headers
        assert w.closed()
    finally:
        w.close()
    w = Wire(gw)
    try:
        for _ in range(2):
            w.send(_get(f"/script-api/{n}/ping", version="1.0", extra="Connection: keep-alive\r\n"))
            status, headers, _ = w.answer()
            assert (status, headers.get("connection")) == (200, "Keep-Alive")
    finally:
        w.close()


@pytest.mark.timeout(60)
def test_malformed_requests_get_tornados_answer(wire: tuple[GatewayThread, str]) -> None:
    gw, n = wire
    for request in (
        b"GET /script-api/x HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\r\n\r\n",
        b"POST /script-api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    ):
        w = Wire(gw)
        try:
            w.send(request)
            try:
                status, _, _ = w.answer()
            except (ConnectionError, TimeoutError) as exc:
                raise AssertionError(f"no answer to {request!r}") from exc
            assert status == 400, request
        finally:
            w.close()
    handed = _counts(gw)[1]
    w = Wire(gw)
    try:  # TLS to a plain port: Tornado waits for the end of a head, so this layer does
        w.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40)
        wait_until(lambda: _counts(gw)[1] > handed, 10, "the hand-off")
    finally:
        w.close()
    # and the gateway serves on
    assert httpx.get(
        f"{gw.url}/script-api/{n}/ping", headers={"Authorization": f"token {CALLER}"}
    ).json() == {"ok": True}


@pytest.mark.timeout(60)
def test_a_bad_host_gets_tornados_400(wire: tuple[GatewayThread, str]) -> None:
    """No Host in HTTP/1.1, two of them, a malformed one: Tornado refuses those before
    a handler runs; so does this layer (it hands the request over), also when it comes
    after a call on a connection of its own."""
    gw, n = wire
    path = f"/script-api/{n}/ping"
    for heads in (
        "",  # none
        "Host: 127.0.0.1\r\nHost: 127.0.0.1\r\n",
        "Host: 127.0.0.1,localhost\r\n",
    ):
        request = f"GET {path} HTTP/1.1\r\n{heads}Authorization: token {CALLER}\r\n\r\n"
        for first in (False, True):
            w = Wire(gw)
            try:
                if first:  # a call of this layer first, then the bad one
                    w.send(_get(path))
                    assert w.answer()[0] == 200
                w.send(request.encode())
                status, _, _ = w.answer()
                assert status == 400, (heads, first)
                assert w.closed()
            finally:
                w.close()


@pytest.mark.timeout(60)
def test_a_hand_off_waits_for_the_answers_before_it(wire: tuple[GatewayThread, str]) -> None:
    """A request for Tornado after a large answer the client has not read yet: the
    connection goes to Tornado once that answer is written, not before (and nothing
    polls meanwhile)."""
    gw, n = wire
    front = _front(gw)
    handed = _counts(gw)[1]
    w = Wire(gw, rcvbuf=4096)
    try:
        w.send(_get(f"/script-api/{n}/big"))
        wait_until(lambda: any(c.writing_paused for c in front._conns), 10, "writes paused")
        w.send(_get("/script-engine/health"))
        # read, and left unparsed until the client reads what it was answered
        wait_until(lambda: any(c.waiting for c in front._conns), 10, "the health request read")
        assert _counts(gw)[1] == handed
        status, _, body = w.answer()
        assert status == 200 and len(json.loads(body)["z"]) == 8_000_000
        status, _, body = w.answer()
        assert status == 200 and "status" in json.loads(body)
    finally:
        w.close()
    assert _counts(gw)[1] == handed + 1


@pytest.mark.timeout(60)
def test_a_client_that_leaves_during_its_call(wire: tuple[GatewayThread, str]) -> None:
    """The call runs to its end (as a RequestHandler's would); its answer is dropped
    with the connection, and nothing else is disturbed."""
    gw, n = wire
    front = _front(gw)
    auth = {"Authorization": f"token {CALLER}"}

    def naps() -> int:
        r = httpx.post(f"{gw.url}/script-engine/functions/{n}_naps/call", json={}, headers=auth)
        return int(r.json()["result"])

    before = naps()
    w = Wire(gw)
    w.send(_get(f"/script-api/{n}/nap"))
    wait_until(lambda: any(c.request for c in front._conns), 10, "the nap being served")
    w.close()
    wait_until(lambda: naps() == before + 1, 10, "the nap's end")
    wait_until(lambda: not any(c.request for c in front._conns), 10, "the connection gone")
    r = httpx.get(f"{gw.url}/script-api/{n}/ping", headers=auth)
    assert r.json() == {"ok": True}


@pytest.mark.timeout(90)
def test_off_every_connection_is_tornados(tmp_path_factory: pytest.TempPathFactory) -> None:
    for gw, root in token_gateway(tmp_path_factory, "wire-off", ADMIN, CALLER, fast_http=False):
        assert gw.gateway is not None and gw.gateway.http_front is None
        n = unique("wo")
        start_script(gw, root, n, SCRIPT.format(n=n), ADMIN)
        served = gw.gateway.front.served if gw.gateway.front else 0
        w = Wire(gw)
        try:
            w.send(_get(f"/script-api/{n}/ping"))
            assert json.loads(w.answer()[2]) == {"ok": True}
        finally:
            w.close()
        assert gw.gateway.front is not None and gw.gateway.front.served == served + 1
