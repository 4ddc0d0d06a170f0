"""A script's policy (network hosts, subprocess, writable paths), enforced in its
real kernel by an audit hook, kept across a gateway restart, and refused with 400
when it cannot be understood."""

from __future__ import annotations

import socket
import threading

import httpx
import pytest

from conftest import GatewayThread, wait_until
from kernel_gateway.config import ConfigError, Settings

SCRIPT = """
import os, socket, subprocess

HERE = os.path.dirname(__file__)

def boot():
    for f in (spawn, write, connect, caught, ping):
        VWED.function.register(f.__name__, f)

def spawn():
    return subprocess.run(["true"]).returncode

def write(rel):
    with open(os.path.join(HERE, rel), "w") as fh:
        fh.write("x")
    return rel

def connect(host, port):
    socket.create_connection((host, port), 5).close()
    return "connected"

def caught():
    try:
        os.system("true")
    except PermissionError as exc:
        return str(exc)
    return "ran"

def ping():
    return "pong"
"""


@pytest.fixture
def listener():
    """A TCP server on loopback that accepts and closes: a host the policy allows."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                conn.close()
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(5)
    server.close()


def _settings(tmp_path):
    return Settings(
        scripts_dir=str(tmp_path / "scripts"),
        port=0,
        data_dir=str(tmp_path / "data"),
        pool_size=1,
        call_timeout=10.0,
        auth=False,
    ).validated()


def _call(c: httpx.Client, name: str, *args):
    return c.post(f"/script-engine/functions/{name}/call", json={"args": list(args)})


def test_policy_enforced_and_restored(tmp_path, listener):
    (tmp_path / "scripts" / "out").mkdir(parents=True)
    (tmp_path / "scripts" / "guarded.py").write_text(SCRIPT)
    other = socket.create_server(("127.0.0.1", 0))  # reachable, but not in the policy
    policy = {"network": [f"127.0.0.1:{listener}"], "subprocess": False, "write": ["out"]}
    gw = GatewayThread(_settings(tmp_path)).start()
    try:
        with httpx.Client(base_url=gw.url, timeout=30) as c:
            r = c.post("/script-engine/start", json={"script_path": "guarded.py", "policy": policy})
            assert r.status_code == 200, r.text
            sid = r.json()["script_id"]
            _check_enforced(c, tmp_path, listener, other.getsockname()[1])
            # a refusal the script caught is still seen: a WARNING line tagged "policy"
            assert "forbids starting a process" in _call(c, "caught").json()["result"]
            records = wait_until(
                lambda: c.get(
                    "/script-engine/logs", params={"script_id": sid, "q": "forbids"}
                ).json()["records"],
                10,
                "the policy log line",
            )
            assert any(rec["level"] == "WARNING" for rec in records)
            running = c.get("/script-engine/running").json()
            assert [s["policy"] for s in running["scripts"]] == [policy]

            # each refusal is counted (spawn, write x2, connect x2, caught: at least 6); the
            # reports travel on the comm, not with the calls' answers: waited for
            def refusals() -> float:
                metrics = c.get("/metrics").text
                line = next(
                    (
                        x
                        for x in metrics.splitlines()
                        if x.startswith('vwed_policy_refusals_total{script="guarded.py"}')
                    ),
                    "- 0",
                )
                return float(line.split()[-1])

            wait_until(lambda: refusals() >= 6, 10, "six refusals counted")
    finally:
        gw.stop()
    # the gateway starts again: the script is restored with the same policy, enforced
    gw = GatewayThread(_settings(tmp_path)).start()
    try:
        with httpx.Client(base_url=gw.url, timeout=30) as c:
            wait_until(lambda: _call(c, "ping").status_code == 200, 60, "the restored script")
            running = c.get("/script-engine/running").json()
            assert [s["policy"] for s in running["scripts"]] == [policy]
            _check_enforced(c, tmp_path, listener, other.getsockname()[1])
    finally:
        gw.stop()
        other.close()


def _check_enforced(c: httpx.Client, tmp_path, allowed_port: int, other_port: int) -> None:
    assert _call(c, "ping").json()["result"] == "pong"
    r = _call(c, "spawn")
    assert r.status_code == 500 and r.json()["type"] == "PolicyViolation", r.text
    assert "starting a process" in r.json()["message"]
    assert _call(c, "write", "out/ok.txt").status_code == 200
    assert (tmp_path / "scripts" / "out" / "ok.txt").read_text() == "x"
    r = _call(c, "write", "escaped.txt")
    assert r.status_code == 500 and "not under a writable path" in r.json()["message"], r.text
    assert not (tmp_path / "scripts" / "escaped.txt").exists()
    r = _call(c, "write", "out/../escaped.txt")  # resolved before it is checked
    assert r.status_code == 500 and not (tmp_path / "scripts" / "escaped.txt").exists()
    assert _call(c, "connect", "127.0.0.1", allowed_port).json()["result"] == "connected"
    r = _call(c, "connect", "127.0.0.1", other_port)
    assert r.status_code == 500 and "not in its network list" in r.json()["message"], r.text
    r = _call(
        c, "connect", "localhost", allowed_port
    )  # a name not listed, even if it resolves there
    assert r.status_code == 500 and "localhost" in r.json()["message"]


def test_policy_refused_when_not_understood(tmp_path):
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "guarded.py").write_text(SCRIPT)
    gw = GatewayThread(_settings(tmp_path)).start()
    try:
        with httpx.Client(base_url=gw.url, timeout=30) as c:
            for bad in (
                "all",
                {"network": "plc"},
                {"network": ["no such host!"]},
                {"network": ["plc:99999"]},
                {"subprocess": "no"},
                {"files": []},
            ):
                r = c.post(
                    "/script-engine/start", json={"script_path": "guarded.py", "policy": bad}
                )
                assert r.status_code == 400 and r.json()["code"] == "BAD_POLICY", (bad, r.text)
            assert c.get("/script-engine/running").json()["scripts"] == []
            # no policy at all: nothing is restricted
            r = c.post("/script-engine/start", json={"script_path": "guarded.py"})
            assert r.status_code == 200, r.text
            assert _call(c, "spawn").json()["result"] == 0
            assert c.get("/script-engine/running").json()["scripts"][0]["policy"] is None
    finally:
        gw.stop()


def test_default_policy_from_the_gateway_settings(tmp_path):
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "guarded.py").write_text(SCRIPT)
    (tmp_path / "policy.json").write_text('{"subprocess": false}')
    settings = Settings(
        scripts_dir=str(tmp_path / "scripts"),
        port=0,
        data_dir=str(tmp_path / "data"),
        pool_size=1,
        auth=False,
        policy=str(tmp_path / "policy.json"),
    ).validated()
    gw = GatewayThread(settings).start()
    try:
        with httpx.Client(base_url=gw.url, timeout=30) as c:
            assert (
                c.post("/script-engine/start", json={"script_path": "guarded.py"}).status_code
                == 200
            )
            assert c.get("/script-engine/running").json()["scripts"][0]["policy"] == {
                "subprocess": False
            }
            assert _call(c, "spawn").status_code == 500
            assert "forbids starting a process" in _call(c, "caught").json()["result"]
    finally:
        gw.stop()
    (tmp_path / "policy.json").write_text("[1]")
    with pytest.raises(ConfigError, match="must hold a JSON object"):
        Settings(
            scripts_dir=str(tmp_path / "scripts"), policy=str(tmp_path / "policy.json")
        ).validated()
