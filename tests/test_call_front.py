"""The call front (kernel_gateway/handlers/front.py): route and function calls served
without a RequestHandler give the answers Tornado's handlers give (status, body, the
headers a client sees, errors with codes), and the requests it leaves to the
application get there. The fast channel's framing survives any split of the stream."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import GatewayThread, start_script, token_gateway, unique
from kernel_gateway.fastpath import Frames, framing

ADMIN = "front-admin-token"
CALLER = "front-caller-token"

SCRIPT = """
def boot():
    VWED.api.register_route("/{n}/ping", "GET", lambda: {{"ok": True}})
    VWED.api.register_route("/{n}/echo", "POST", lambda r: {{"got": r["json"], "q": r["query_params"]}})
    VWED.api.register_route("/{n}/made", "GET", made)
    VWED.api.register_route("/{n}/empty", "GET", lambda: VWED.api.Response(status=204))
    VWED.api.register_route("/{n}/bad204", "GET", lambda: VWED.api.Response({{"a": 1}}, status=204))
    VWED.api.register_route("/{n}/text", "GET", lambda: VWED.api.Response("hi", content_type="text/x-mine"))
    VWED.api.register_route("/{n}/none", "GET", lambda: VWED.api.Response(None, status=202))
    VWED.api.register_route("/{n}/boom", "GET", boom)
    VWED.function.register("{n}_add", lambda a, b: a + b)

def made(request):
    return VWED.api.Response({{"m": 1}}, status=201, headers={{"X-Queue": "3", "ETag": '"mine"'}})

def boom(request):
    raise ValueError("bad pallet 7")
"""

# headers that differ between two answers by nature, or only on the application's path
_VARYING = {"date", "vary"}


@pytest.fixture(scope="module", params=[True, False], ids=["httptools", "tornado"])
def front(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[tuple[GatewayThread, Path]]:
    """The call front behind the gateway's own HTTP layer (httpfront.py), and behind
    Tornado's (``--no-fast-http``)."""
    yield from token_gateway(tmp_path_factory, "front", ADMIN, CALLER, fast_http=request.param)


@pytest.fixture(scope="module")
def name(front: tuple[GatewayThread, Path]) -> str:
    gw, root = front
    n = unique("fr")
    start_script(gw, root, n, SCRIPT.format(n=n), ADMIN)
    return n


def _both(gw: GatewayThread, method: str, path: str, **kw: Any) -> tuple[httpx.Response, ...]:
    """The same request through the front and through the application (a non-matching
    If-None-Match sends it there; it changes nothing else), checking which served it."""
    assert gw.gateway is not None and gw.gateway.front is not None
    headers = {"Authorization": f"token {CALLER}", **kw.pop("headers", {})}
    answers = []
    for extra in ({}, {"If-None-Match": '"never-this"'}):
        before = gw.gateway.front.served
        answers.append(
            httpx.request(method, gw.url + path, headers={**headers, **extra}, timeout=30, **kw)
        )
        assert gw.gateway.front.served == before + (0 if extra else 1), path
    return tuple(answers)


def _same(fast: httpx.Response, slow: httpx.Response, *, body: bool = True) -> None:
    assert fast.status_code == slow.status_code, (fast.text, slow.text)
    assert {k: v for k, v in fast.headers.items() if k not in _VARYING} == {
        k: v for k, v in slow.headers.items() if k not in _VARYING
    }
    if body:
        assert fast.content == slow.content


@pytest.mark.timeout(120)
def test_answers_match_the_handlers(front: tuple[GatewayThread, Path], name: str) -> None:
    gw, _ = front
    n = name
    for path in ("ping", "made", "empty", "text", "none", "bad204"):
        fast, slow = _both(gw, "GET", f"/script-api/{n}/{path}")
        _same(fast, slow)
    fast, _ = _both(gw, "GET", f"/script-api/{n}/made")
    assert (fast.status_code, fast.headers["x-queue"], fast.headers["etag"]) == (201, "3", '"mine"')
    fast, _ = _both(gw, "GET", f"/script-api/{n}/ping")
    assert fast.json() == {"ok": True} and fast.headers["cache-control"] == "no-store"
    assert fast.headers["etag"].startswith('"') and fast.headers["server"].startswith("Tornado")
    fast, _ = _both(gw, "GET", f"/script-api/{n}/bad204")
    assert (fast.status_code, fast.json()["code"]) == (500, "INTERNAL_ERROR")
    fast, slow = _both(gw, "POST", f"/script-api/{n}/echo?a=1&a=2&b=%C3%A9", json={"x": [1]})
    _same(fast, slow)
    assert fast.json() == {"got": {"x": [1]}, "q": {"a": ["1", "2"], "b": "é"}}
    fast, slow = _both(gw, "HEAD", f"/script-api/{n}/ping")
    _same(fast, slow)
    assert fast.content == b""
    # with the admin token too (a caller endpoint takes both)
    fast, slow = _both(
        gw, "GET", f"/script-api/{n}/ping", headers={"Authorization": f"token {ADMIN}"}
    )
    _same(fast, slow)
    assert fast.status_code == 200
    fast, slow = _both(
        gw, "POST", f"/script-engine/functions/{n}_add/call", json={"args": [2, 3], "task_id": "t1"}
    )
    assert (fast.status_code, fast.json()["result"], slow.json()["result"]) == (200, 5, 5)
    assert {k: v for k, v in fast.headers.items() if k not in _VARYING | {"content-length"}} == {
        k: v for k, v in slow.headers.items() if k not in _VARYING | {"content-length"}
    }  # the body carries its own duration


@pytest.mark.timeout(120)
def test_errors_match_the_handlers(front: tuple[GatewayThread, Path], name: str) -> None:
    gw, _ = front
    n = name
    cases: list[tuple[str, str, dict[str, Any], int, str]] = [
        ("GET", f"/script-api/{n}/nope", {}, 404, "ROUTE_NOT_FOUND"),
        ("GET", f"/script-api/{n}/boom", {}, 500, "HANDLER_ERROR"),
        (
            "GET",
            f"/script-api/{n}/ping",
            {"headers": {"Authorization": "token wrong"}},
            401,
            "UNAUTHORIZED",
        ),
        (
            "GET",
            f"/script-api/{n}/ping",
            {"headers": {"Host": "evil.example"}},
            403,
            "HOST_NOT_ALLOWED",
        ),
        (
            "POST",
            f"/script-engine/functions/{n}_add/call",
            {"content": b"{nope", "headers": {"Content-Type": "application/json"}},
            400,
            "INVALID_JSON",
        ),
        (
            "POST",
            f"/script-engine/functions/{n}_add/call",
            {"content": b"{}", "headers": {"Content-Type": "text/plain"}},
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            "POST",
            f"/script-engine/functions/{n}_add/call",
            {"json": {"timeout": -1}},
            400,
            "BAD_PARAMETER",
        ),
        (
            "POST",
            f"/script-engine/functions/{n}_add/call",
            {"json": {"task_id": []}},
            400,
            "BAD_REQUEST",
        ),
        (
            "POST",
            "/script-engine/functions/nobody_has_it/call",
            {"json": {}},
            404,
            "FUNCTION_NOT_FOUND",
        ),
    ]
    for method, path, kw, status, code in cases:
        fast, slow = _both(gw, method, path, **kw)
        _same(fast, slow, body=False)
        assert (fast.status_code, fast.json()["code"]) == (status, code), fast.text
        fast_body, slow_body = fast.json(), slow.json()
        fast_body.pop("call_id", None), slow_body.pop("call_id", None)
        assert fast_body.keys() == slow_body.keys() and fast_body["error"] == slow_body["error"]


@pytest.mark.timeout(60)
def test_what_the_front_leaves_to_the_application(
    front: tuple[GatewayThread, Path], name: str
) -> None:
    gw, _ = front
    assert gw.gateway is not None and gw.gateway.front is not None
    caller = {"Authorization": f"token {CALLER}"}
    served = gw.gateway.front.served
    # a browser's request (CORS, the cross-site guard), a preflight, a draft, a form body
    r = httpx.post(
        f"{gw.url}/script-api/{name}/echo",
        json={},
        headers={**caller, "Origin": "http://elsewhere.example"},
    )
    assert (r.status_code, r.json()["code"]) == (403, "ORIGIN_NOT_ALLOWED")
    r = httpx.options(f"{gw.url}/script-api/{name}/ping", headers=caller)
    assert r.status_code == 405  # no OPTIONS route registered: the router says so
    r = httpx.get(f"{gw.url}/script-api/drafts/00000000/x", headers=caller)
    assert r.status_code in (403, 404)  # the caller token and drafts: never served
    r = httpx.post(f"{gw.url}/script-api/{name}/echo", data={"a": "1"}, headers=caller)
    assert r.headers["content-type"].startswith("application/json")
    # the rest of the API never reaches the front's code
    r = httpx.get(f"{gw.url}/script-engine/running", headers={"Authorization": f"token {ADMIN}"})
    assert r.status_code == 200
    assert gw.gateway.front.served == served


def test_framing_survives_any_split() -> None:
    messages = [[b"sig", b'{"op":"call"}'], [b"", b"{}", b"x" * 70000, b""], [b"a", b"b"]]
    stream = b"".join(b"".join(framing(m)) for m in messages)
    for step in (1, 3, 7, 4096, len(stream)):
        got: list[list[bytes]] = []
        frames = Frames(got.append)
        for at in range(0, len(stream), step):
            frames.feed(stream[at : at + step])
        assert got == messages, step


def test_a_stream_that_is_not_ours_is_refused() -> None:
    frames = Frames(lambda m: None)
    with pytest.raises(ValueError):
        frames.feed(b"GET / HTTP/1.1\r\n\r\n")
    with pytest.raises(ValueError):
        Frames(lambda m: None).feed(b"\x00\x00\x00\x00")
