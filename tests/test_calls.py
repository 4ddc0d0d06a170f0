"""Calls into scripts: routes, functions, errors, timeouts, kernel death."""

from __future__ import annotations

import concurrent.futures
import time

import httpx

from conftest import unique, wait_until

HANDLERS = """
import asyncio, os, time

def boot():
    VWED.api.register_route("/{n}/echo", "POST", echo)
    VWED.api.register_route("/{n}/raw", "GET", raw)
    VWED.api.register_route("/{n}/boom", "GET", boom)
    VWED.api.register_route("/{n}/unserializable", "GET", lambda r: {{"when": object()}})
    VWED.api.register_route("/{n}/spin", "GET", spin)
    VWED.api.register_route("/{n}/nap", "GET", nap)
    VWED.api.register_route("/{n}/ok", "GET", lambda: {{"ok": True}})
    VWED.function.register("{n}_add", add)
    VWED.function.register("{n}_one", one)
    VWED.function.register("{n}_spin", spin_fn)
    VWED.function.register("{n}_exit", lambda: os._exit(1))
    VWED.function.register("{n}_anap", anap)

def echo(request):
    return {{"json": request["json"], "query": request["query_params"],
             "body": request["body"], "ctype": request["headers"].get("Content-Type"),
             "auth": request["headers"].get("Authorization"),
             "script_id": request["script_id"]}}

def raw(request):
    return VWED.api.Response(b"\\x00\\x01binary", status=201, headers={{"X-Robot": "7"}},
                             content_type="application/octet-stream")

def boom(request):
    raise KeyError("no such pallet")

def spin(request):
    while True:
        pass

def spin_fn():
    while True:
        pass

async def nap(request):
    await asyncio.sleep(0.2)
    return {{"slept": 0.2}}

async def anap(seconds):
    await asyncio.sleep(seconds)
    return seconds

def add(a, b=0):
    return a + b

def one(payload):
    return payload
"""


def start_handlers(scripts):
    n = unique("h")
    scripts.start(f"{n}.py", HANDLERS.format(n=n))
    return n


def test_route_request_dict_and_json_result(scripts, client):
    n = start_handlers(scripts)
    r = client.post(
        f"/script-api/{n}/echo?x=1&y=a&y=b",
        json={"goods": "box"},
        headers={"Authorization": "token secret"},
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["json"] == {"goods": "box"}
    assert body["query"] == {"x": "1", "y": ["a", "b"]}
    assert body["ctype"] == "application/json"
    assert body["auth"] is None  # the gateway's credentials never reach scripts
    assert body["script_id"].startswith(f"{n}.py_")
    r = client.post(
        f"/script-api/{n}/echo", content=b"plain text", headers={"Content-Type": "text/plain"}
    )
    assert r.json()["json"] is None and r.json()["body"] == "plain text"
    assert client.get(f"/script-api/{n}/ok").json() == {"ok": True}


def test_response_object_with_bytes_status_and_headers(scripts, client):
    n = start_handlers(scripts)
    r = client.get(f"/script-api/{n}/raw")
    assert r.status_code == 201
    assert r.content == b"\x00\x01binary"
    assert r.headers["x-robot"] == "7"
    assert r.headers["content-type"] == "application/octet-stream"


def test_handler_error_and_unserializable_result(scripts, client):
    n = start_handlers(scripts)
    r = client.get(f"/script-api/{n}/boom")
    body = r.json()
    assert r.status_code == 500 and body["code"] == "HANDLER_ERROR"
    assert body["type"] == "KeyError" and "no such pallet" in body["message"]
    assert "traceback" not in body  # only with --debug
    r = client.get(f"/script-api/{n}/unserializable")
    assert r.status_code == 500 and r.json()["code"] == "RESULT_NOT_SERIALIZABLE"
    assert "object" in r.json()["error"]
    r = client.get("/script-api/no/such/route")
    assert r.status_code == 404 and r.json()["code"] == "ROUTE_NOT_FOUND"


def test_function_argument_binding(scripts, client):
    n = start_handlers(scripts)

    def call(args):
        return client.post(f"/script-engine/functions/{n}_add/call", json={"args": args})

    assert call({"a": 2, "b": 3}).json()["result"] == 5
    assert call([4, 5]).json()["result"] == 9
    assert call("[1, 2]").json()["result"] == 3  # JSON string
    assert call("(10, 20)").json()["result"] == 30  # Python literal
    r = call({"a": 1, "zz": 2})
    assert r.status_code == 400 and r.json()["code"] == "BAD_ARGUMENTS"
    one = client.post(
        f"/script-engine/functions/{n}_one/call", json={"args": {"payload": 1, "k": 2}}
    )
    assert one.json()["result"] == {"payload": 1, "k": 2}  # one parameter gets the dict
    s = client.post(f"/script-engine/functions/{n}_one/call", json={"args": "__import__('os')"})
    assert s.json()["result"] == "__import__('os')"  # never eval'd
    r = client.post(
        f"/script-engine/functions/{n}_one/call",
        content=b"[",
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["code"] == "INVALID_JSON"


def test_kernel_death_fails_fast_and_gateway_keeps_serving(scripts, client):
    n = start_handlers(scripts)
    other = start_handlers(scripts)
    t0 = time.monotonic()
    r = client.post(f"/script-engine/functions/{n}_exit/call", json={})
    took = time.monotonic() - t0
    assert r.status_code == 502 and r.json()["code"] == "KERNEL_DIED"
    assert took < 2.0, f"KERNEL_DIED took {took:.2f} s"
    assert client.get(f"/script-api/{other}/ok").json() == {"ok": True}


def test_infinite_loop_times_out_and_the_kernel_still_serves(scripts, client):
    n = start_handlers(scripts)
    t0 = time.monotonic()
    r = client.post(f"/script-engine/functions/{n}_spin/call", json={"timeout": 1})
    assert r.status_code == 504 and r.json()["code"] == "CALL_TIMEOUT"
    assert 1.0 <= time.monotonic() - t0 < 4.0
    # interrupted: the same kernel answers the next call
    assert (
        client.post(f"/script-engine/functions/{n}_add/call", json={"args": [1, 1]}).json()[
            "result"
        ]
        == 2
    )
    # a route past the gateway's call timeout (5 s in tests)
    r = client.get(f"/script-api/{n}/spin")
    assert r.status_code == 504 and r.json()["code"] == "CALL_TIMEOUT"
    assert client.get(f"/script-api/{n}/ok").json() == {"ok": True}


def test_async_timeout_cancels_the_task(scripts, client):
    n = start_handlers(scripts)
    r = client.post(f"/script-engine/functions/{n}_anap/call", json={"args": [30], "timeout": 0.5})
    assert r.status_code == 504
    r = client.post(f"/script-engine/functions/{n}_anap/call", json={"args": [0.01]})
    assert r.status_code == 200 and r.json()["result"] == 0.01


def test_async_handlers_run_concurrently(scripts, gw):
    n = start_handlers(scripts)
    with httpx.Client(base_url=gw.url, timeout=30) as c:
        c.get(f"/script-api/{n}/ok")  # warm
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            results = list(pool.map(lambda _: c.get(f"/script-api/{n}/nap"), range(10)))
        took = time.monotonic() - t0
    assert all(r.status_code == 200 and r.json() == {"slept": 0.2} for r in results)
    assert took < 1.0, f"10 concurrent 0.2 s async calls took {took:.2f} s"


def test_function_call_between_scripts_through_the_gateway(scripts, client):
    provider = start_handlers(scripts)
    caller = unique("caller")
    scripts.start(
        f"{caller}.py",
        f"""
def boot():
    VWED.api.register_route("/{caller}/sync", "GET", sync_call)
    VWED.api.register_route("/{caller}/async", "GET", async_call)
    VWED.api.register_route("/{caller}/local", "GET", lambda r: VWED.function.call("{caller}_sq", [7]))
    VWED.api.register_route("/{caller}/missing", "GET", missing)
    VWED.function.register("{caller}_sq", lambda x: x * x)

def sync_call(request):
    return VWED.function.call("{provider}_add", {{"a": 40, "b": 2}})

async def async_call(request):
    return await VWED.function.acall("{provider}_add", [1, 2])

def missing(request):
    try:
        VWED.function.call("no_such_function_anywhere", {{}})
    except Exception as exc:
        return {{"type": type(exc).__name__, "code": exc.code}}
""",
    )
    assert client.get(f"/script-api/{caller}/sync").json() == 42
    assert client.get(f"/script-api/{caller}/async").json() == 3
    assert client.get(f"/script-api/{caller}/local").json() == 49
    assert client.get(f"/script-api/{caller}/missing").json() == {
        "type": "RemoteCallError",
        "code": "FUNCTION_NOT_FOUND",
    }


def test_stop_fails_calls_in_flight(scripts, client, gw):
    n = start_handlers(scripts)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        with httpx.Client(base_url=gw.url, timeout=30) as c2:
            fut = pool.submit(
                lambda: c2.post(f"/script-engine/functions/{n}_anap/call", json={"args": [20]})
            )
            wait_until(
                lambda: any(
                    s["in_flight"]
                    for s in client.get("/script-engine/running").json()["scripts"]
                    if s["script_path"] == f"{n}.py"
                ),
                10,
                "the call to be in flight",
            )
            r = client.post("/script-engine/stop", json={"script_path": f"{n}.py"})
            assert r.status_code == 200
            answer = fut.result(10)
    assert answer.status_code == 503 and answer.json()["code"] == "SCRIPT_STOPPING"


def test_large_payloads_in_and_out(scripts, client):
    n = start_handlers(scripts)
    doc = {"items": [{"sku": f"SKU-{i:07d}", "note": "x" * 40} for i in range(12_000)]}
    r = client.post(f"/script-api/{n}/echo", json=doc)
    assert r.status_code == 200 and r.json()["json"] == doc
    blob = bytes(range(256)) * 4096  # 1 MiB of binary, not UTF-8
    r = client.post(
        f"/script-api/{n}/echo", content=blob, headers={"Content-Type": "application/octet-stream"}
    )
    assert r.status_code == 500 and r.json()["code"] == "RESULT_NOT_SERIALIZABLE"  # bytes in a dict


def test_header_injection_through_a_response_is_refused(scripts, client):
    n = unique("inj")
    scripts.start(
        f"{n}.py",
        f"""
def boot():
    VWED.api.register_route("/{n}/inject", "GET", lambda: VWED.api.Response(
        "x", headers={{"X-Robot": "7\\r\\nSet-Cookie: admin=1"}}))
    VWED.api.register_route("/{n}/badname", "GET", lambda: VWED.api.Response("x", headers={{"Bad Name": "1"}}))
""",
    )
    for path in ("inject", "badname"):
        r = client.get(f"/script-api/{n}/{path}")
        assert r.status_code == 500 and r.json()["code"] == "HANDLER_ERROR"
        assert "unsafe HTTP header" in r.json()["message"]
        assert "set-cookie" not in r.headers
