"""One script in several kernels: least-busy routing, replacement of a dead replica."""

from __future__ import annotations

import concurrent.futures

import httpx

from conftest import unique, wait_until

SCRIPT = """
import asyncio, os

def boot():
    VWED.api.register_route("/{n}/who", "GET", who)
    VWED.api.register_route("/{n}/slow", "GET", slow)
    VWED.function.register("{n}_exit", lambda: os._exit(5))

def who(request):
    return {{"pid": os.getpid(), "replica": VWED.replica, "replicas": VWED.replicas}}

async def slow(request):
    await asyncio.sleep(0.3)
    return os.getpid()
"""


def start(client, scripts, n, replicas):
    scripts.write(f"{n}.py", SCRIPT.format(n=n))
    r = client.post("/script-engine/start", json={"script_path": f"{n}.py", "replicas": replicas})
    assert r.status_code == 200, r.text
    scripts.started.append(r.json()["script_id"])
    return r.json()


def test_calls_spread_over_replicas(scripts, client, gw):
    n = unique("rep")
    started = start(client, scripts, n, 3)
    assert started["replicas"] == 3 and [k["replica"] for k in started["kernels"]] == [0, 1, 2]
    pids = {k["pid"] for k in started["kernels"]}
    assert len(pids) == 3
    seen = [client.get(f"/script-api/{n}/who").json() for _ in range(6)]
    assert {s["pid"] for s in seen} == pids  # idle replicas take calls in turn
    assert {s["replica"] for s in seen} == {0, 1, 2} and {s["replicas"] for s in seen} == {3}
    with (
        httpx.Client(base_url=gw.url, timeout=30) as c,
        concurrent.futures.ThreadPoolExecutor(6) as pool,
    ):
        busy = list(pool.map(lambda _: c.get(f"/script-api/{n}/slow").json(), range(6)))
    assert set(busy) == pids  # the least busy replica gets the next call


def test_a_dead_replica_is_replaced_and_others_keep_serving(scripts, client):
    n = unique("repdie")
    started = start(client, scripts, n, 2)
    old_pids = {k["pid"] for k in started["kernels"]}
    r = client.post(f"/script-engine/functions/{n}_exit/call", json={})
    assert r.status_code == 502 and r.json()["code"] == "KERNEL_DIED"
    # the other replica answers at once, while the replacement boots
    for _ in range(5):
        assert client.get(f"/script-api/{n}/who").status_code == 200

    def kernels():
        s = client.get(f"/script-engine/scripts/{started['script_id']}").json()
        return s["kernels"] if len(s["kernels"]) == 2 else None

    now = wait_until(kernels, 30, "the replacement replica")
    assert sorted(k["replica"] for k in now) == [0, 1]
    assert len({k["pid"] for k in now} - old_pids) == 1
    assert (
        client.get(f"/script-engine/scripts/{started['script_id']}").json()["status"] == "running"
    )


def test_bad_replicas_value(client, scripts):
    n = unique("repbad")
    scripts.write(f"{n}.py", SCRIPT.format(n=n))
    for bad in (0, -1, 17, "2", 1.5, True):
        r = client.post("/script-engine/start", json={"script_path": f"{n}.py", "replicas": bad})
        assert r.status_code == 400, bad
