"""The Jupyter kernels API: list and attach to a running script's kernel over the
channels WebSocket, interrupt, restart and delete through the script lifecycle."""

from __future__ import annotations

import asyncio
import json
import uuid

from tornado.websocket import websocket_connect

from conftest import unique, wait_until


def _msg(msg_type: str, content: dict, channel: str = "shell") -> dict:
    return {
        "header": {
            "msg_id": uuid.uuid4().hex,
            "msg_type": msg_type,
            "username": "test",
            "session": uuid.uuid4().hex,
            "version": "5.3",
            "date": "",
        },
        "parent_header": {},
        "metadata": {},
        "content": content,
        "channel": channel,
        "buffers": [],
    }


async def _run(conn, code: str) -> tuple[str, dict]:
    """Execute ``code`` on an open channels WebSocket; returns (stdout, execute_reply).

    The execution is done once both its ``execute_reply`` (shell) and its ``idle``
    status (iopub) have arrived, in either order: they travel on different channels,
    and the Jupyter protocol orders messages within a channel only (JupyterLab's
    kernel future waits for both the same way).
    """
    request = _msg(
        "execute_request",
        {
            "code": code,
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
        },
    )
    await conn.write_message(json.dumps(request))
    out, reply, idle = "", None, False
    while reply is None or not idle:
        raw = await asyncio.wait_for(conn.read_message(), 20)
        assert raw is not None
        msg = json.loads(raw)
        if msg["parent_header"].get("msg_id") != request["header"]["msg_id"]:
            continue
        if msg["msg_type"] == "stream":
            out += msg["content"]["text"]
        elif msg["msg_type"] == "execute_reply":
            reply = msg
        elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            idle = True
    return out, reply


async def _execute(url: str, code: str) -> tuple[str, dict]:
    conn = await asyncio.wait_for(websocket_connect(url), 10)
    try:
        return await _run(conn, code)
    finally:
        conn.close()


def test_attach_to_a_running_script(scripts, client, gw):
    n = unique("attach")
    started = scripts.start(
        f"{n}.py",
        f"""
DOCKS = ["D1", "D2"]

def boot():
    VWED.api.register_route("/{n}/docks", "GET", lambda: DOCKS)
""",
    )
    assert client.get("/api").json()["version"]
    specs = client.get("/api/kernelspecs").json()
    assert (
        specs["default"] == "vwed"
        and specs["kernelspecs"]["vwed"]["spec"]["display_name"] == "Python 3 (VWED)"
    )
    # listed under the replica's stable id, with the kernel's own id, which is an alias
    models = {m["vwed"].get("kernel_id"): m for m in client.get("/api/kernels").json()}
    kid = started["kernel_id"]
    assert client.get(f"/api/kernels/{kid}").json()["id"] == kid
    assert models[kid]["vwed"]["script_id"] == started["script_id"]
    assert models[kid]["vwed"]["script_path"] == f"{n}.py"

    url = f"ws://127.0.0.1:{gw.gateway.port}/api/kernels/{kid}/channels"
    out, reply = asyncio.run(_execute(url, "DOCKS.append('D3'); print(DOCKS, VWED.script_id)"))
    assert reply["content"]["status"] == "ok"
    assert out.strip() == f"['D1', 'D2', 'D3'] {started['script_id']}"
    # the attached notebook changed the running script's state
    assert client.get(f"/script-api/{n}/docks").json() == ["D1", "D2", "D3"]

    assert client.post(f"/api/kernels/{kid}/interrupt").status_code == 204
    r = client.post(f"/api/kernels/{kid}/restart")
    assert r.status_code == 200 and r.json()["vwed"]["script_path"] == f"{n}.py"
    new_kid = r.json()["id"]
    scripts.started.append(r.json()["vwed"]["script_id"])
    assert client.get(f"/script-api/{n}/docks").json() == ["D1", "D2"]  # restarted from the file
    assert client.delete(f"/api/kernels/{new_kid}").status_code == 204
    wait_until(
        lambda: client.get(f"/script-api/{n}/docks").status_code == 404, 10, "the script stopped"
    )
    assert client.get(f"/api/kernels/{new_kid}").json()["code"] == "KERNEL_NOT_FOUND"


def test_scratch_kernels_have_vwed(client, gw):
    r = client.post("/api/kernels", json={"name": "vwed"})
    assert r.status_code == 201
    kid = r.json()["id"]
    try:
        url = f"ws://127.0.0.1:{gw.gateway.port}/api/kernels/{kid}/channels"
        out, reply = asyncio.run(
            _execute(
                url,
                "VWED.function.register('sq', lambda x: x * x)\n"
                "print(VWED.function.call('sq', [9]))",
            )
        )
        assert reply["content"]["status"] == "ok" and out.strip() == "81"
    finally:
        assert client.delete(f"/api/kernels/{kid}").status_code == 204
    assert client.post("/api/kernels", json={"name": "no-such-spec"}).status_code == 400


async def _many_kernel_infos(url: str, n: int) -> tuple[int, int]:
    """Send ``n`` kernel_info_requests on one channels WebSocket, each as soon as the
    previous reply arrived or a little later, so sends and incoming replies interleave;
    returns (replies received, n)."""
    conn = await asyncio.wait_for(websocket_connect(url), 10)
    pending: set[str] = set()
    got = 0
    try:
        for i in range(n):
            req = _msg("kernel_info_request", {})
            pending.add(req["header"]["msg_id"])
            await conn.write_message(json.dumps(req))
            # let the reply of the previous request be on its way while this one is sent
            while True:
                try:
                    raw = await asyncio.wait_for(conn.read_message(), 0.001 * (i % 4))
                except asyncio.TimeoutError:
                    break
                msg = json.loads(raw)
                if msg["msg_type"] == "kernel_info_reply":
                    pending.discard(msg["parent_header"]["msg_id"])
                    got += 1
        while pending:
            raw = await asyncio.wait_for(conn.read_message(), 10)
            msg = json.loads(raw)
            if msg["msg_type"] == "kernel_info_reply":
                pending.discard(msg["parent_header"]["msg_id"])
                got += 1
    except asyncio.TimeoutError:
        pass
    finally:
        conn.close()
    return got, n


def test_channels_deliver_every_shell_reply_while_sending(client, gw):
    """A send on a kernel socket must not swallow the wake-up of a reply that just
    reached it (kernel_gateway/zmqsend.py); before the fix the proxy's shell reader
    stalled for good within a few hundred sends."""
    r = client.post("/api/kernels", json={"name": "vwed"})
    kid = r.json()["id"]
    try:
        url = f"ws://127.0.0.1:{gw.gateway.port}/api/kernels/{kid}/channels"
        got, n = asyncio.run(_many_kernel_infos(url, 300))
        assert got == n
    finally:
        client.delete(f"/api/kernels/{kid}")


async def _run_many(url: str, n: int) -> list[str]:
    conn = await asyncio.wait_for(websocket_connect(url), 10)
    try:
        return [(await _run(conn, f"print({i})"))[0].strip() for i in range(n)]
    finally:
        conn.close()


def test_an_execution_is_done_when_reply_and_idle_arrived_in_any_order(client, gw):
    """The idle status (iopub) overtakes the execute_reply (shell) in a few percent of
    executions; a client that waited for an idle after the reply then waited forever
    (the flaky test_scratch_kernels_have_vwed, issue 12 item 14)."""
    kid = client.post("/api/kernels", json={"name": "vwed"}).json()["id"]
    try:
        url = f"ws://127.0.0.1:{gw.gateway.port}/api/kernels/{kid}/channels"
        assert asyncio.run(_run_many(url, 200)) == [str(i) for i in range(200)]
    finally:
        assert client.delete(f"/api/kernels/{kid}").status_code == 204
