"""Attaching a Jupyter client to a script's kernel leaves a trace: attach (token
role, kernel, script), every execute_request (sha256 and first line of the code,
even when silent) and detach are ``engine`` records of that script."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid

import httpx
import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from conftest import token_gateway, unique, wait_until

ADMIN = "audit-admin-" + uuid.uuid4().hex
CALLER = "audit-caller-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def audit_gw(tmp_path_factory):
    yield from token_gateway(tmp_path_factory, "audit", ADMIN, CALLER, call_timeout=5.0)


def _execute_request(code: str) -> dict:
    return {
        "header": {
            "msg_id": uuid.uuid4().hex,
            "msg_type": "execute_request",
            "username": "test",
            "session": uuid.uuid4().hex,
            "version": "5.3",
            "date": "",
        },
        "parent_header": {},
        "metadata": {},
        "content": {
            "code": code,
            "silent": True,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
        },
        "channel": "shell",
    }


async def _attach_and_run(url: str, code: str) -> dict:
    conn = await asyncio.wait_for(websocket_connect(url), 10)
    request = _execute_request(code)
    await conn.write_message(json.dumps(request))
    try:
        while True:
            raw = await asyncio.wait_for(conn.read_message(), 20)
            assert raw is not None, "the gateway closed the channels WebSocket"
            msg = json.loads(raw)
            if (
                msg["msg_type"] == "execute_reply"
                and msg["parent_header"].get("msg_id") == request["header"]["msg_id"]
            ):
                return msg
    finally:
        conn.close()


async def _refused(url: str) -> int:
    try:
        conn = await asyncio.wait_for(websocket_connect(HTTPRequest(url)), 10)
    except HTTPClientError as exc:
        return exc.code
    conn.close()
    return 101


@pytest.mark.timeout(120)
def test_attach_execute_detach_are_recorded(audit_gw):
    gw, root = audit_gw
    n = unique("audited")
    (root / f"{n}.py").write_text(
        "STATE = {'mode': 'auto'}\n\n"
        "def boot():\n"
        f"    VWED.api.register_route('/{n}/mode', 'GET', lambda: STATE['mode'])\n"
    )
    auth = {"Authorization": f"token {ADMIN}"}
    with httpx.Client(base_url=gw.url, headers=auth, timeout=30) as client:
        r = client.post("/script-engine/start", json={"script_path": f"{n}.py"})
        assert r.status_code == 200, r.text
        sid, kid = r.json()["script_id"], r.json()["kernel_id"]
        ws = f"ws://127.0.0.1:{gw.gateway.port}/api/kernels/{kid}/channels"

        # the caller token may not attach (and leaves no attach record)
        assert asyncio.run(_refused(f"{ws}?token={CALLER}")) == 403

        first = "STATE['mode'] = 'manual'  # " + "x" * 300
        code = f"{first}\nprint('not shown: silent')\n"
        reply = asyncio.run(_attach_and_run(f"{ws}?token={ADMIN}", code))
        assert reply["content"]["status"] == "ok"
        # the silent execution did change the running script's state
        assert client.get(f"/script-api/{n}/mode").json() == "manual"

        def engine_records() -> list[dict]:
            r = client.get(
                "/script-engine/logs",
                params={"script_id": sid, "source": "engine", "order": "asc", "limit": 100},
            )
            assert r.status_code == 200, r.text
            return r.json()["records"]

        def audit() -> list[dict] | None:
            records = [r for r in engine_records() if "Jupyter client" in r["message"]]
            return records if any("detached" in r["message"] for r in records) else None

        attach, execute, detach = wait_until(audit, 20, "attach, execute and detach records")
        for record in (attach, execute, detach):
            assert record["source"] == "engine" and record["script_id"] == sid
            assert ADMIN not in record["message"] and CALLER not in record["message"]

        assert attach["level"] == "WARNING" and "attached" in attach["message"]
        assert kid in attach["message"] and f"{n}.py" in attach["message"]
        assert "token role: admin" in attach["message"]

        assert execute["level"] == "WARNING"
        assert hashlib.sha256(code.encode()).hexdigest() in execute["message"]
        assert "silent=True" in execute["message"] and "2 line(s)" in execute["message"]
        assert "STATE['mode'] = 'manual'  # xxx" in execute["message"]
        assert "x" * 200 not in execute["message"]  # the first line is cut
        assert "not shown" not in execute["message"]  # only the first line

        assert detach["level"] == "INFO" and "detached" in detach["message"]
        assert kid in detach["message"] and "1 execute request(s)" in detach["message"]

        # the connection info carries the kernel's key: a client using it talks to the
        # kernel directly, so at least the hand-out is on record (without the key)
        info = client.get(f"/script-engine/kernels/{kid}/connection").json()

        def handed_out() -> dict | None:
            found = [r for r in engine_records() if "connection info" in r["message"]]
            return found[0] if found else None

        record = wait_until(handed_out, 20, "the connection-info record")
        assert record["level"] == "WARNING" and kid in record["message"]
        assert "token role: admin" in record["message"]
        assert info["key"] not in record["message"] and ADMIN not in record["message"]

        client.post("/script-engine/stop", json={"script_id": sid})
