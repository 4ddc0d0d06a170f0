"""Jupyter Server in gateway mode against our gateway: it lists our kernels and runs
code in a running script's kernel through its own gateway client (what
``jupyter lab --gateway-url=...`` does)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import httpx
import pytest
from tornado.websocket import websocket_connect

from conftest import unique, wait_until


@pytest.fixture
def jupyter_server(gw, tmp_path):
    # port 0: the server takes a free port and writes it to its runtime file (a port
    # picked here and bound later could be taken by another xdist worker's process in
    # between); should its own pick-then-bind still lose the port, it starts again
    token = uuid.uuid4().hex
    env = {
        **os.environ,
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"),
    }
    headers = {"Authorization": f"token {token}"}
    for attempt in range(1, 4):
        output = tmp_path / f"jupyter-server-{attempt}.log"
        with open(output, "w") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "jupyter_server",
                    "--ServerApp.port=0",
                    "--ServerApp.port_retries=0",
                    "--ServerApp.ip=127.0.0.1",
                    f"--IdentityProvider.token={token}",
                    "--ServerApp.open_browser=False",
                    f"--GatewayClient.url={gw.url}",
                    f"--ServerApp.root_dir={tmp_path}",
                    "--allow-root",
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=out,
            )
        info = tmp_path / "rt" / f"jpserver-{proc.pid}.json"

        def up(proc=proc, info=info):
            if proc.poll() is not None:
                return True  # stop waiting: it died
            if not info.exists():
                return False
            try:
                port = json.loads(info.read_text())["port"]
            except (ValueError, KeyError):
                return False  # being written
            try:
                answer = httpx.get(
                    f"http://127.0.0.1:{port}/api/status", headers=headers, timeout=2
                )
            except httpx.HTTPError:
                return False
            return answer.status_code == 200

        wait_until(up, 60, "jupyter server")
        if proc.poll() is None:
            break
        text = output.read_text()
        if "already in use" not in text or attempt == 3:
            raise AssertionError(text[-2000:])
    base = f"http://127.0.0.1:{json.loads(info.read_text())['port']}"
    yield base, token
    proc.terminate()
    proc.wait(30)


def test_jupyter_server_attaches_to_a_running_script(scripts, jupyter_server):
    base, token = jupyter_server
    n = unique("jsgw")
    started = scripts.start(
        f"{n}.py",
        f"""
def boot():
    VWED.api.register_route("/{n}/ping", "GET", lambda: "pong")
    VWED.function.register("{n}_f", lambda: 1)
""",
    )
    headers = {"Authorization": f"token {token}"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as js:
        specs = js.get("/api/kernelspecs").json()
        assert "vwed" in specs["kernelspecs"]
        # Jupyter Server lists only the kernels it manages: a session naming the script's
        # kernel id attaches to it (what docs/debugging.md shows)
        r = js.post(
            "/api/sessions",
            json={
                "path": f"{n}.ipynb",
                "type": "notebook",
                "name": "",
                "kernel": {"id": started["kernel_id"]},
            },
        )
        assert r.status_code == 201, r.text
        assert r.json()["kernel"]["id"] == started["kernel_id"]
        kernels = {k["id"]: k for k in js.get("/api/kernels").json()}
        assert started["kernel_id"] in kernels  # listed through Jupyter Server's gateway client

        async def run_code():
            url = f"ws://{base[len('http://') :]}/api/kernels/{started['kernel_id']}/channels?token={token}"
            conn = await asyncio.wait_for(websocket_connect(url), 20)
            msg_id = uuid.uuid4().hex
            await conn.write_message(
                json.dumps(
                    {
                        "header": {
                            "msg_id": msg_id,
                            "msg_type": "execute_request",
                            "username": "t",
                            "session": uuid.uuid4().hex,
                            "version": "5.3",
                            "date": "",
                        },
                        "parent_header": {},
                        "metadata": {},
                        "channel": "shell",
                        "content": {
                            "code": "print(sorted(f['name'] for f in VWED.registrations()['functions']))",
                            "silent": False,
                            "store_history": False,
                            "user_expressions": {},
                            "allow_stdin": False,
                        },
                    }
                )
            )
            out = ""
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                raw = await asyncio.wait_for(conn.read_message(), 30)
                msg = json.loads(raw)
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                if msg["msg_type"] == "stream":
                    out += msg["content"]["text"]
                if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    break
            conn.close()
            return out

        assert asyncio.run(run_code()).strip() == f"['{n}_f']"  # the script's registrations, live
        assert js.post(f"/api/kernels/{started['kernel_id']}/interrupt").status_code == 204


async def _ws_execute(conn, code: str, timeout: float = 30) -> str:
    msg_id = uuid.uuid4().hex
    await conn.write_message(
        json.dumps(
            {
                "header": {
                    "msg_id": msg_id,
                    "msg_type": "execute_request",
                    "username": "t",
                    "session": uuid.uuid4().hex,
                    "version": "5.3",
                    "date": "",
                },
                "parent_header": {},
                "metadata": {},
                "channel": "shell",
                "content": {
                    "code": code,
                    "silent": False,
                    "store_history": False,
                    "user_expressions": {},
                    "allow_stdin": False,
                },
            }
        )
    )
    out = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = await asyncio.wait_for(conn.read_message(), deadline - time.monotonic())
        assert raw is not None, "the WebSocket closed"
        msg = json.loads(raw)
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            out += msg["content"]["text"]
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return out
    raise TimeoutError(code)


def test_a_replica_keeps_its_kernel_id_and_socket_across_a_crash(scripts, client, gw):
    """The gateway's own channels WebSocket, under a replica's stable id, follows the
    script to the kernel that replaces a dead one; the kernel id stays listed."""
    n = unique("crash")
    scripts.start(f"{n}.py", "import uuid\nBOOT = uuid.uuid4().hex\n\ndef boot():\n    pass\n")
    listed = [
        k
        for k in client.get("/api/kernels").json()
        if k.get("vwed", {}).get("script_path") == f"{n}.py"
    ]
    assert len(listed) == 1
    stable, kernel_id = listed[0]["id"], listed[0]["vwed"]["kernel_id"]
    assert stable != kernel_id
    assert client.get(f"/api/kernels/{kernel_id}").json()["id"] == kernel_id  # an alias

    async def scenario() -> tuple[str, str]:
        url = f"ws://127.0.0.1:{gw.gateway.port}/api/kernels/{stable}/channels"
        conn = await asyncio.wait_for(websocket_connect(url), 20)
        try:
            before = (await _ws_execute(conn, "print(BOOT)")).strip()
            pid = next(
                s
                for s in client.get("/script-engine/running").json()["scripts"]
                if s["script_path"] == f"{n}.py"
            )["kernels"][0]["pid"]
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    after = (await _ws_execute(conn, "print(BOOT)", timeout=3)).strip()
                except (TimeoutError, asyncio.TimeoutError):
                    continue
                if after and after != before:
                    return before, after
            raise AssertionError("the WebSocket did not follow the script to its new kernel")
        finally:
            conn.close()

    before, after = asyncio.run(scenario())
    assert len(before) == len(after) == 32
    ids = [k["id"] for k in client.get("/api/kernels").json()]
    assert stable in ids and kernel_id not in ids
