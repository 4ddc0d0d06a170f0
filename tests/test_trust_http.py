"""Browsers used as a weapon, and tokens in logs (issue 12, items 2 and 6): a real
gateway on loopback, real HTTP and WebSocket clients."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from conftest import GatewayThread
from kernel_gateway.config import Settings

ECHO = """
def boot():
    VWED.api.register_route("/echo", "POST", lambda r: {"body": r["body"]})
"""
TOKEN = "trust-admin-token-0123456789"
AUTH = {"Authorization": f"token {TOKEN}"}


def gateway(tmp_path, **kw) -> GatewayThread:
    root = tmp_path / "scripts"
    root.mkdir(exist_ok=True)
    (root / "echo.py").write_text(ECHO)
    settings = Settings(
        scripts_dir=str(root),
        port=0,
        data_dir=str(tmp_path / "data"),
        pool_size=1,
        workers=1,
        **kw,
    ).validated()
    return GatewayThread(settings).start()


def ws_status(url: str, headers: dict[str, str]) -> int:
    async def go() -> int:
        try:
            conn = await asyncio.wait_for(websocket_connect(HTTPRequest(url, headers=headers)), 10)
        except HTTPClientError as exc:
            return exc.code
        conn.close()
        return 101

    return asyncio.run(go())


@pytest.mark.timeout(120)
def test_a_foreign_page_cannot_write_or_start_a_script_without_auth(tmp_path):
    gw = gateway(tmp_path, auth=False, allow_origins="http://dashboard.example")
    port = gw.gateway.port
    try:
        with httpx.Client(base_url=gw.url, timeout=30) as c:
            # what a page can send without a CORS preflight: text/plain (and no type at all)
            evil = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
            body = b'{"content": "import os\\ndef boot(): os.system(\\"id\\")"}'
            r = c.put("/script-engine/files/pwn.py", content=body, headers=evil)
            assert r.status_code == 403 and r.json()["code"] == "ORIGIN_NOT_ALLOWED", r.text
            r = c.put(
                "/script-engine/files/pwn.py", content=body, headers={"Content-Type": "text/plain"}
            )
            assert r.status_code == 415 and r.json()["code"] == "UNSUPPORTED_MEDIA_TYPE", r.text
            r = c.put("/script-engine/files/pwn.py", content=body)  # no Content-Type at all
            assert r.status_code == 415, r.text
            r = c.post(
                "/script-engine/start",
                content=b'{"script_path": "echo.py"}',
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert r.status_code == 415, r.text
            assert not (tmp_path / "scripts" / "pwn.py").exists()
            r = c.post("/script-engine/start", json={"script_path": "echo.py"}, headers=evil)
            assert r.status_code == 403 and r.json()["code"] == "ORIGIN_NOT_ALLOWED"
            assert c.get("/script-engine/running").json()["scripts"] == []

            # curl and task flows (no Origin, JSON) work unchanged
            assert (
                c.post("/script-engine/start", json={"script_path": "echo.py"}).status_code == 200
            )
            # script routes keep their own content types, but not a foreign page's writes
            r = c.post("/script-api/echo", content=b"hi", headers={"Content-Type": "text/plain"})
            assert r.status_code == 200 and r.json()["body"] == "hi"
            r = c.post("/script-api/echo", content=b"hi", headers=evil)
            assert r.status_code == 403 and r.json()["code"] == "ORIGIN_NOT_ALLOWED"
            # the gateway's own origin and listed origins may write; anyone may read
            own = {"Origin": f"http://127.0.0.1:{port}"}
            assert c.post("/script-api/echo", content=b"hi", headers=own).status_code == 200
            listed = {"Origin": "http://dashboard.example"}
            assert c.post("/script-api/echo", content=b"hi", headers=listed).status_code == 200
            assert c.get("/script-engine/running", headers=evil).status_code == 200

            # DNS rebinding: a foreign name that resolves to 127.0.0.1
            rebound = {
                "Host": f"attacker.example:{port}",
                "Origin": f"http://attacker.example:{port}",
            }
            for method, path in [
                ("GET", "/script-engine/running"),
                ("GET", "/script-engine/health"),
                ("GET", "/api/kernels"),
                ("GET", "/no/such/endpoint"),
                ("POST", "/script-api/echo"),
            ]:
                r = c.request(method, path, headers=rebound)
                assert r.status_code == 403 and r.json()["code"] == "HOST_NOT_ALLOWED", (
                    path,
                    r.text,
                )
            for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "127.0.0.2"):
                assert c.get("/script-engine/running", headers={"Host": host}).status_code == 200
            ws = f"ws://127.0.0.1:{port}/script-engine/logs/ws"
            assert ws_status(ws, {"Host": f"attacker.example:{port}"}) == 403
            assert ws_status(ws, {}) == 101
    finally:
        gw.stop()


@pytest.mark.timeout(120)
def test_allow_hosts_and_a_gateway_published_on_a_host_name(tmp_path):
    gw = gateway(tmp_path, token=TOKEN, allow_hosts="vwed.line3.example")
    try:
        with httpx.Client(base_url=gw.url, timeout=30, headers=AUTH) as c:
            ok = c.get("/script-engine/running", headers={"Host": "vwed.line3.example:8765"})
            assert ok.status_code == 200
            bad = c.get("/script-engine/running", headers={"Host": "other.example"})
            assert bad.status_code == 403 and bad.json()["code"] == "HOST_NOT_ALLOWED"
    finally:
        gw.stop()
    # listening beyond loopback, tokens on: the Host is not checked (a published name)
    published = Settings(scripts_dir=str(tmp_path), ip="0.0.0.0", token=TOKEN).validated()
    assert published.host_check is None
    assert Settings(scripts_dir=str(tmp_path)).validated().host_check == ()


@pytest.mark.timeout(120)
def test_tokens_stay_out_of_urls_and_logs(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    gw = gateway(tmp_path, token=TOKEN)
    port = gw.gateway.port
    try:
        with httpx.Client(base_url=gw.url, timeout=30) as c:
            # a token in the query of a plain HTTP request is not accepted...
            r = c.get("/script-engine/running", params={"token": TOKEN})
            assert r.status_code == 401
            assert (
                c.get("/script-engine/logs", params={"token": TOKEN, "level": "LOUD"}).status_code
                == 401
            )
            r = c.get(
                "/script-engine/logs", params={"level": "LOUD", "token": "wrong"}, headers=AUTH
            )
            assert r.status_code == 400
            r = c.post("/script-engine/stop", params={"token": TOKEN}, headers=AUTH, json={})
            assert r.status_code == 400
        # ...but it is on a WebSocket upgrade, where a browser cannot send a header
        assert ws_status(f"ws://127.0.0.1:{port}/script-engine/logs/ws?token={TOKEN}", {}) == 101
        assert ws_status(f"ws://127.0.0.1:{port}/script-engine/logs/ws?token=nope", {}) == 401
    finally:
        gw.stop()
    # the gateway's logs (the test's own HTTP client logs the URLs it sent)
    logged = "\n".join(
        rec.getMessage()
        for rec in caplog.records
        if rec.name.startswith(("kernel_gateway", "tornado"))
    )
    assert "/script-engine/logs?" in logged  # the failed requests were logged...
    assert TOKEN not in logged and "token=wrong" not in logged  # ...without their tokens
    assert "token=[redacted]" in logged
