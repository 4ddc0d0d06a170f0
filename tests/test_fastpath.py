"""The fast channel: calls skip ipykernel's shell dispatch, other clients still
see the normal Jupyter protocol, output stays attributed to the call, and the
comm path still works when the fast path is off."""

from __future__ import annotations

import queue
import time

import httpx
from jupyter_client.blocking import BlockingKernelClient

from conftest import GatewayThread, unique, wait_until
from kernel_gateway.config import Settings

SCRIPT = """
import os

def boot():
    VWED.api.register_route("/{n}/ping", "GET", lambda r: "pong")
    VWED.function.register("{n}_say", say)
    VWED.function.register("{n}_spin", spin)
    VWED.function.register("{n}_exit", lambda: os._exit(2))

def say(text):
    print(text)
    return len(text)

def spin():
    while True:
        pass
"""


def attach(gw: GatewayThread, script_id: str) -> BlockingKernelClient:
    """A second client on a running script's kernel, as a notebook would attach."""
    script = gw.gateway.engine.get(script_id)
    kc = BlockingKernelClient()
    kc.load_connection_info(script.kernels[0].km.get_connection_info())
    kc.start_channels()
    kc.wait_for_ready(timeout=30)
    return kc


def test_calls_use_the_fast_channel_and_an_attached_client_sees_its_own_protocol(
    scripts, client, gw
):
    n = unique("fast")
    started = scripts.start(f"{n}.py", SCRIPT.format(n=n))
    summary = client.get(f"/script-engine/scripts/{started['script_id']}").json()
    assert summary["fast_path"] is True
    kc = attach(gw, started["script_id"])
    try:
        while True:  # drain what the handshake produced
            try:
                kc.get_iopub_msg(timeout=0.3)
            except queue.Empty:
                break
        for _ in range(20):
            assert client.get(f"/script-api/{n}/ping").json() == "pong"
        # gateway calls on the fast channel publish no busy/idle status
        seen = []
        try:
            while True:
                seen.append(kc.get_iopub_msg(timeout=0.5)["msg_type"])
        except queue.Empty:  # only silence ends the watch; a broken channel fails the test
            pass
        assert "status" not in seen, seen
        # the attached client's own execution has its busy/idle and output
        msg_id = kc.execute("print(6 * 7)")
        kinds, out = [], ""
        while True:
            msg = kc.get_iopub_msg(timeout=10)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kinds.append(msg["msg_type"] + ":" + str(msg["content"].get("execution_state", "")))
            if msg["msg_type"] == "stream":
                out += msg["content"]["text"]
            if msg["content"].get("execution_state") == "idle":
                break
        assert kinds[0] == "status:busy" and out == "42\n"
    finally:
        kc.stop_channels()


def test_output_during_a_call_is_attributed_to_the_call(scripts, client, gw):
    n = unique("say")
    scripts.start(f"{n}.py", SCRIPT.format(n=n))
    r = client.post(f"/script-engine/functions/{n}_say/call", json={"args": [f"hello {n}"]})
    body = r.json()
    assert body["result"] == len(f"hello {n}")
    records = wait_until(
        lambda: client.get("/script-engine/logs", params={"call_id": body["call_id"]}).json()[
            "records"
        ],
        10,
        "the printed line in the history",
    )
    assert [r["message"] for r in records] == [f"hello {n}"]
    assert records[0]["level"] == "INFO" and records[0]["source"] == "stdout"
    assert records[0]["script_id"] == body["script_id"]


def test_comm_path_when_the_fast_path_is_off(tmp_path):
    n = "commonly"
    (tmp_path / f"{n}.py").write_text(SCRIPT.format(n=n))
    settings = Settings(
        scripts_dir=str(tmp_path),
        port=0,
        data_dir=str(tmp_path / "d"),
        pool_size=1,
        fast_path=False,
        auth=False,
    ).validated()
    gw = GatewayThread(settings).start()
    try:
        with httpx.Client(base_url=gw.url, timeout=30) as c:
            started = c.post("/script-engine/start", json={"script_path": f"{n}.py"}).json()
            assert (
                c.get(f"/script-engine/scripts/{started['script_id']}").json()["fast_path"] is False
            )
            assert c.get(f"/script-api/{n}/ping").json() == "pong"
            r = c.post(f"/script-engine/functions/{n}_spin/call", json={"timeout": 0.5})
            assert r.status_code == 504
            r = c.post(f"/script-engine/functions/{n}_say/call", json={"args": ["x"]})
            assert r.json()["result"] == 1
            r = c.post(f"/script-engine/functions/{n}_exit/call", json={})
            assert r.status_code == 502 and r.json()["code"] == "KERNEL_DIED"
    finally:
        gw.stop()


CUT = """
import gc
import socket
import threading
import time

def boot():
    VWED.api.register_route("/{n}/slow", "GET", slow)
    VWED.api.register_route("/{n}/ping", "GET", lambda r: "pong")

def _cut():
    # the kernel's end of the gateway's fast channel connection, shut down
    for o in gc.get_objects():
        if type(o).__name__ == "_Conn" and type(o).__module__ == "vwed_kernel.fastpath":
            o._sock.shutdown(socket.SHUT_RDWR)

def slow(r):
    threading.Timer(0.3, _cut).start()
    time.sleep(5)
    return "slow"
"""


def test_a_call_in_flight_on_a_lost_fast_channel_fails_at_once(scripts, client):
    # Its answer would never come: it waited its whole timeout (5 s here), then the kernel
    # was interrupted, whatever ran then. Now: a retryable 503 at once.
    n = unique("cut")
    started = scripts.start(f"{n}.py", CUT.format(n=n))
    sid = started["script_id"]
    assert client.get(f"/script-engine/scripts/{sid}").json()["fast_path"] is True
    begun = time.monotonic()
    r = client.get(f"/script-api/{n}/slow", timeout=60)
    took = time.monotonic() - begun
    assert r.status_code == 503, r.text
    assert r.json()["code"] == "KERNEL_UNAVAILABLE"
    assert r.headers["Retry-After"] == "1"
    assert took < 3.0, took  # the handler sleeps 5 s, the route call timeout is 5 s
    # later calls go on the comm (once the handler's sleep is over)
    assert client.get(f"/script-api/{n}/ping", timeout=30).json() == "pong"
    assert client.get(f"/script-engine/scripts/{sid}").json()["fast_path"] is False


def test_connections_that_never_sign_are_capped_and_the_gateways_stays(scripts, client, gw):
    """Anyone on the host can connect to a kernel's fast channel (only a signed message
    does anything): past 8 connections the oldest one that never sent a signed message
    is closed, so such connections cannot pile up, and the gateway's own (signed) one
    stays: calls go on on the fast channel."""
    import socket

    n = unique("cap")
    started = scripts.start(f"{n}.py", SCRIPT.format(n=n))
    kernel = gw.gateway.engine.get(started["script_id"]).kernels[0]
    port = int(kernel.info["fastpath"]["port"])
    assert client.get(f"/script-api/{n}/ping").json() == "pong"  # the gateway's is signed
    strangers = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(20)]
    try:

        def closed(sock: socket.socket) -> bool:
            sock.setblocking(False)
            try:
                return sock.recv(1) == b""
            except BlockingIOError:
                return False
            except ConnectionResetError:
                return True

        # 1 signed + 7 strangers fit: the 13 oldest strangers are closed, the newest 7 stay
        wait_until(lambda: sum(closed(s) for s in strangers) >= 13, 10, "strangers closed")
        assert not any(closed(s) for s in strangers[-7:])
        for _ in range(10):
            assert client.get(f"/script-api/{n}/ping").json() == "pong"
        assert kernel.bridge.fast
    finally:
        for sock in strangers:
            sock.close()


COUNTER = """
COUNT = []

def boot():
    VWED.function.register("{n}_bump", bump)

def bump():
    COUNT.append(1)
    return len(COUNT)
"""


def test_a_replayed_message_is_refused(scripts, client, gw):
    """A message signed with the kernel's key and sent again byte for byte (someone who
    read the traffic to a kernel on another host) is refused, on the connection it came
    on and on a new one: the handler ran once (vwed_kernel/replay.py). Fresh messages
    still run."""
    import asyncio

    from kernel_gateway.fastpath import FastClient

    n = unique("replay")
    started = scripts.start(f"{n}.py", COUNTER.format(n=n))
    kernel = gw.gateway.engine.get(started["script_id"]).kernels[0]
    port = int(kernel.info["fastpath"]["port"])
    key = kernel.km.session.key

    async def run() -> list[tuple[str, bool, object]]:
        results: list[tuple[str, bool, object]] = []
        done = asyncio.Event()

        def on_result(data, buffers):
            results.append((data["id"], data["ok"], data.get("error") or buffers))
            if len(results) == 4:
                done.set()

        fast = await FastClient.connect("127.0.0.1", port, key, on_result)
        wrote: list[bytes] = []
        transport = fast._transport
        write, writelines = transport.write, transport.writelines
        transport.write = lambda b: (wrote.append(bytes(b)), write(b))[1]
        transport.writelines = lambda bs: (wrote.extend(bytes(b) for b in bs), writelines(bs))[1]
        call = {"op": "call", "kind": "function", "name": f"{n}_bump", "args": {}}
        fast.send({**call, "id": "replay-1"})
        captured = b"".join(wrote)
        assert captured
        write(captured)  # the same bytes again, on the same connection
        other = await FastClient.connect("127.0.0.1", port, key, on_result)
        other._transport.write(captured)  # and on a new one
        fast.send({**call, "id": "replay-2"})
        await asyncio.wait_for(done.wait(), 30)
        fast.close()
        other.close()
        return results

    results = asyncio.run(run())
    by_id: dict[str, list] = {}
    for call_id, ok, detail in results:
        by_id.setdefault(call_id, []).append((ok, detail))
    assert sorted(ok for ok, _ in by_id["replay-1"]) == [False, False, True], by_id
    assert all("replayed" in str(d) for ok, d in by_id["replay-1"] if not ok), by_id
    assert [ok for ok, _ in by_id["replay-2"]] == [True], by_id
    # the handler ran twice in all (replay-1 once, replay-2), not four times
    r = client.post(f"/script-engine/functions/{n}_bump/call", json={})
    assert r.status_code == 200 and r.json()["result"] == 3, r.text
