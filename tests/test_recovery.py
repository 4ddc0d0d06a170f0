"""Crash recovery: restart policy, calls waiting for a restarting script, crash loops."""

from __future__ import annotations

import httpx

from conftest import GatewayThread, unique, wait_until
from kernel_gateway.config import Settings

CRASHY = """
import os

def boot():
    VWED.api.register_route("/{n}/ok", "GET", lambda: "ok")
    VWED.api.register_route("/{n}/exit", "POST", lambda: os._exit(4))
"""


def test_a_crashed_script_is_restarted_and_calls_wait_for_it(scripts, client):
    n = unique("phoenix")
    started = scripts.start(f"{n}.py", CRASHY.format(n=n))
    r = client.post(f"/script-api/{n}/exit")
    assert r.status_code == 502 and r.json()["code"] == "KERNEL_DIED"
    # a call right after the crash waits for the restart instead of failing
    r = client.get(f"/script-api/{n}/ok")
    assert r.status_code == 200 and r.json() == "ok"
    info = client.get(f"/script-engine/scripts/{started['script_id']}").json()
    assert info["status"] == "running" and info["restarts"] == 1 and info["restart"] == "on-failure"
    assert info["kernel_id"] != started["kernel_id"]
    logs = wait_until(
        lambda: client.get(
            "/script-engine/logs",
            params={
                "script_id": started["script_id"],
                "source": "engine",
                "q": "restarted after a crash",
            },
        ).json()["records"],
        10,
        "the restart record",
    )
    assert logs


def test_a_crash_loop_ends_in_crashed(tmp_path):
    (tmp_path / "loop.py").write_text(
        "import os\n\ndef boot():\n    VWED.timer.delay(0.05, lambda: os._exit(3))\n"
        "    VWED.api.register_route('/loop/ok', 'GET', lambda: 'ok')\n"
    )
    gw = GatewayThread(
        Settings(
            scripts_dir=str(tmp_path),
            port=0,
            data_dir=str(tmp_path / "d"),
            pool_size=2,
            workers=1,
            restart_limit=2,
            restart_backoff=0.05,
            call_timeout=3,
            auth=False,
        ).validated()
    ).start()
    try:
        with httpx.Client(base_url=gw.url, timeout=30) as c:
            sid = c.post("/script-engine/start", json={"script_path": "loop.py"}).json()[
                "script_id"
            ]

            def crashed():
                s = c.get(f"/script-engine/scripts/{sid}").json()
                return s if s["status"] == "crashed" else None

            info = wait_until(crashed, 60, "the crash loop to stop")
            assert info["restarts"] == 2 and "crash loop" in info["exit_reason"]
            assert "kernel died" in info["last_error"]
            r = c.get("/script-api/loop/ok")
            assert r.status_code == 404  # down: its routes are gone, no waiting
            runs = wait_until(
                lambda: [
                    x
                    for x in c.get("/script-engine/runs").json()["runs"]
                    if x["script_id"] == sid and x["status"] == "crashed"
                ],
                10,
                "run row",
            )
            assert "crash loop" in runs[0]["exit_reason"]
            # a crashed script can be started again
            assert (
                c.post("/script-engine/start", json={"script_path": "loop.py"}).status_code == 200
            )
    finally:
        gw.stop()


def test_bad_restart_policy(client, scripts):
    n = unique("pol")
    scripts.write(f"{n}.py", CRASHY.format(n=n))
    r = client.post("/script-engine/start", json={"script_path": f"{n}.py", "restart": "sometimes"})
    assert r.status_code == 400 and "restart" in r.json()["error"]
