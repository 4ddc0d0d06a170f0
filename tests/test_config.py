"""Settings from flags and env vars, and the token."""

from __future__ import annotations

import httpx
import pytest

from conftest import GatewayThread
from kernel_gateway.config import ConfigError, Settings, parse_settings


def test_flags_win_over_env_and_env_over_defaults(tmp_path):
    env = {"VWED_SCRIPTS_DIR": str(tmp_path), "VWED_POOL_SIZE": "5", "VWED_CALL_TIMEOUT": "2.5"}
    s = parse_settings(["--pool-size", "3"], env)
    assert (s.scripts_dir, s.pool_size, s.call_timeout, s.ip) == (str(tmp_path), 3, 2.5, "127.0.0.1")


def test_bad_values_are_refused_with_a_clear_message(tmp_path):
    with pytest.raises(ConfigError, match="without a token"):
        parse_settings(["--scripts-dir", str(tmp_path), "--ip", "0.0.0.0"], {})
    with pytest.raises(ConfigError, match="not a directory"):
        parse_settings(["--scripts-dir", str(tmp_path / "nope")], {})
    with pytest.raises(ConfigError, match="VWED_PORT"):
        parse_settings([], {"VWED_PORT": "eighty"})
    assert parse_settings(["--scripts-dir", str(tmp_path), "--ip", "0.0.0.0", "--token", "t"], {}).token


def test_token_is_required_when_set(tmp_path):
    settings = Settings(scripts_dir=str(tmp_path), port=0, data_dir=str(tmp_path / "d"),
                        pool_size=0, token="s3cret").validated()
    gw = GatewayThread(settings).start()
    try:
        with httpx.Client(base_url=gw.url, timeout=10) as c:
            r = c.get("/script-engine/running")
            assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED"
            assert c.get("/script-engine/running", headers={"Authorization": "token wrong"}).status_code == 401
            assert c.get("/script-engine/running", headers={"Authorization": "token s3cret"}).status_code == 200
            assert c.get("/script-engine/running", headers={"Authorization": "Bearer s3cret"}).status_code == 200
            assert c.get("/script-engine/running", params={"token": "s3cret"}).status_code == 200
            assert c.get("/script-api/x").status_code == 401
            assert c.get("/script-engine/health").status_code == 200
    finally:
        gw.stop()
