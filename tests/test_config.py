"""Settings from flags and env vars, and the token."""

from __future__ import annotations

import httpx
import pytest

from conftest import GatewayThread
from kernel_gateway.config import ConfigError, Settings, parse_settings


def test_flags_win_over_env_and_env_over_defaults(tmp_path):
    env = {"VWED_SCRIPTS_DIR": str(tmp_path), "VWED_POOL_SIZE": "5", "VWED_CALL_TIMEOUT": "2.5"}
    s = parse_settings(["--pool-size", "3"], env)
    assert (s.scripts_dir, s.pool_size, s.call_timeout, s.ip) == (
        str(tmp_path),
        3,
        2.5,
        "127.0.0.1",
    )


def test_bad_values_are_refused_with_a_clear_message(tmp_path):
    with pytest.raises(ConfigError, match="without auth"):
        parse_settings(["--scripts-dir", str(tmp_path), "--ip", "0.0.0.0", "--no-auth"], {})
    assert parse_settings(["--scripts-dir", str(tmp_path)], {}).auth is True  # auth by default
    with pytest.raises(ConfigError, match="not a directory"):
        parse_settings(["--scripts-dir", str(tmp_path / "nope")], {})
    with pytest.raises(ConfigError, match="VWED_PORT"):
        parse_settings([], {"VWED_PORT": "eighty"})
    assert parse_settings(
        ["--scripts-dir", str(tmp_path), "--ip", "0.0.0.0", "--token", "t"], {}
    ).token


def test_tokens_are_generated_and_roles_enforced(tmp_path):
    import stat

    (tmp_path / "s.py").write_text(
        "def boot():\n    VWED.api.register_route('/r/ok', 'GET', lambda: 'ok')\n"
        "    VWED.function.register('f', lambda: 1)\n"
    )
    settings = Settings(
        scripts_dir=str(tmp_path), port=0, data_dir=str(tmp_path / "d"), pool_size=1, workers=1
    ).validated()
    gw = GatewayThread(settings).start()
    try:
        admin_file, caller_file = tmp_path / "d" / "token", tmp_path / "d" / "caller_token"
        assert stat.S_IMODE(admin_file.stat().st_mode) == 0o600
        admin, caller = admin_file.read_text().strip(), caller_file.read_text().strip()
        assert len(admin) >= 32 and admin != caller
        with httpx.Client(base_url=gw.url, timeout=30) as c:

            def as_(tok):
                return {"Authorization": f"token {tok}"}

            assert c.post("/script-engine/start", json={"script_path": "s.py"}).status_code == 401
            r = c.post("/script-engine/start", json={"script_path": "s.py"}, headers=as_(caller))
            assert r.status_code == 403 and r.json()["code"] == "FORBIDDEN"
            assert (
                c.post(
                    "/script-engine/start", json={"script_path": "s.py"}, headers=as_(admin)
                ).status_code
                == 200
            )
            # the caller token calls scripts...
            assert c.get("/script-api/r/ok", headers=as_(caller)).json() == "ok"
            assert (
                c.post("/script-engine/functions/f/call", json={}, headers=as_(caller)).status_code
                == 200
            )
            assert (
                c.post("/script-engine/events/x", json={}, headers=as_(caller)).status_code == 200
            )
            assert c.get("/script-api/r/ok").status_code == 401
            # ...but cannot manage the gateway
            for method, path in (
                ("GET", "/script-engine/files"),
                ("PUT", "/script-engine/files/x.py"),
                ("GET", "/script-engine/logs"),
                ("GET", "/api/kernels"),
                ("GET", "/script-engine/running"),
                ("GET", "/metrics"),
                ("POST", "/script-engine/stop"),
            ):
                r = c.request(method, path, headers=as_(caller), json={})
                assert r.status_code == 403, (method, path, r.status_code)
            assert c.get("/script-engine/health").status_code == 200  # probes need no token
            assert (
                c.get(
                    "/script-engine/running", headers={"Authorization": f"Bearer {admin}"}
                ).status_code
                == 200
            )
    finally:
        gw.stop()
    # the same tokens next time
    assert Settings(scripts_dir=str(tmp_path), data_dir=str(tmp_path / "d")).validated()
    from kernel_gateway.datadir import stored_token as _stored_token

    assert _stored_token(tmp_path / "d" / "token") == admin


def test_token_is_required_when_set(tmp_path):
    settings = Settings(
        scripts_dir=str(tmp_path), port=0, data_dir=str(tmp_path / "d"), pool_size=0, token="s3cret"
    ).validated()
    gw = GatewayThread(settings).start()
    try:
        with httpx.Client(base_url=gw.url, timeout=10) as c:
            r = c.get("/script-engine/running")
            assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED"
            assert (
                c.get(
                    "/script-engine/running", headers={"Authorization": "token wrong"}
                ).status_code
                == 401
            )
            assert (
                c.get(
                    "/script-engine/running", headers={"Authorization": "token s3cret"}
                ).status_code
                == 200
            )
            assert (
                c.get(
                    "/script-engine/running", headers={"Authorization": "Bearer s3cret"}
                ).status_code
                == 200
            )
            # ?token= is for WebSocket upgrades only (a URL ends up in logs): tests/test_trust_http.py
            assert c.get("/script-engine/running", params={"token": "s3cret"}).status_code == 401
            assert c.get("/script-api/x").status_code == 401
            assert c.get("/script-engine/health").status_code == 200
    finally:
        gw.stop()


def test_cors_and_websocket_origins(tmp_path, gw):
    import asyncio

    from tornado.httpclient import HTTPClientError, HTTPRequest
    from tornado.websocket import websocket_connect

    # the session gateway has no allowed origins: no CORS headers, cross-origin WebSockets refused
    with httpx.Client(base_url=gw.url, timeout=10) as c:
        r = c.get("/script-engine/running", headers={"Origin": "http://dashboard.example"})
        assert "access-control-allow-origin" not in r.headers

    async def ws(url, origin):
        """101 when the WebSocket opens, else the refusal's status (only a refusal: any
        other failure is the test's error, not a pass)."""
        try:
            conn = await asyncio.wait_for(
                websocket_connect(HTTPRequest(url, headers={"Origin": origin})), 10
            )
        except HTTPClientError as exc:
            return exc.code
        conn.close()
        return 101

    assert (
        asyncio.run(
            ws(f"ws://127.0.0.1:{gw.gateway.port}/script-engine/logs/ws", "http://evil.example")
        )
        == 403
    )

    settings = Settings(
        scripts_dir=str(tmp_path),
        port=0,
        data_dir=str(tmp_path / "d"),
        pool_size=0,
        workers=1,
        auth=False,
        allow_origins="http://dashboard.example",
    ).validated()
    other = GatewayThread(settings).start()
    try:
        with httpx.Client(base_url=other.url, timeout=10) as c:
            r = c.options(
                "/script-engine/running",
                headers={
                    "Origin": "http://dashboard.example",
                    "Access-Control-Request-Method": "GET",
                },
            )
            assert (
                r.status_code == 204
                and "Authorization" in r.headers["access-control-allow-headers"]
            )
            r = c.get("/script-engine/running", headers={"Origin": "http://dashboard.example"})
            assert r.headers["access-control-allow-origin"] == "http://dashboard.example"
            r = c.get("/script-engine/running", headers={"Origin": "http://evil.example"})
            assert "access-control-allow-origin" not in r.headers
        url = f"ws://127.0.0.1:{other.gateway.port}/script-engine/logs/ws"
        assert asyncio.run(ws(url, "http://dashboard.example")) == 101
        assert asyncio.run(ws(url, "http://evil.example")) == 403
    finally:
        other.stop()
