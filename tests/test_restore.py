"""Restore after restart: kill -9 the gateway (no kernel outlives it), start it again
(the scripts come back, each on its own); SIGTERM drains calls in flight."""

from __future__ import annotations

import os
import signal
import threading

import httpx
import pytest

from conftest import GatewayProcess, wait_until


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purpose
        with open(f"/proc/{pid}/status") as f:
            return "State:\tZ" not in f.read()
    except FileNotFoundError:
        return False


SCRIPT = """
import time

def boot():
    VWED.api.register_route("/{n}/ok", "GET", lambda: "{n}")
    VWED.api.register_route("/{n}/slow", "GET", slow)

def slow():
    time.sleep(1.5)
    return "done"
"""


@pytest.mark.timeout(240)
def test_kill_9_then_restore_then_sigterm_drains(tmp_path):
    root, data = tmp_path / "scripts", tmp_path / "data"
    root.mkdir()
    for n in ("one", "two", "gone", "broken"):
        (root / f"{n}.py").write_text(SCRIPT.format(n=n))
    (root / "broken.cfg").write_text("config\n")
    (root / "broken.py").write_text(
        "import os\n\n"
        "def boot():\n"
        "    open(os.path.join(os.path.dirname(__file__), 'broken.cfg')).read()\n"
        "    VWED.api.register_route('/broken/ok', 'GET', lambda: 'broken')\n"
    )
    first = GatewayProcess(root, data)
    for n in ("one", "two", "gone", "broken"):
        assert (
            first.client.post("/script-engine/start", json={"script_path": f"{n}.py"}).status_code
            == 200
        )
    assert (
        first.client.post("/script-engine/stop", json={"script_path": "gone.py"}).status_code == 200
    )
    pids = [s["pid"] for s in first.running().values()]
    assert len(pids) == 3 and all(_alive(p) for p in pids)

    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(30)
    first.finish()
    wait_until(
        lambda: not any(_alive(p) for p in pids), 30, "the kernels to exit with their gateway"
    )

    # a script that no longer boots does not keep the others from coming back (a restore
    # runs the revision that was running, not the file's newer content: what breaks it
    # here is what it reads at boot, a file beside it that is gone)
    (root / "broken.cfg").unlink()
    second = GatewayProcess(root, data)
    try:

        def restored():
            now = second.running()
            return "broken.py" not in now and all(
                now.get(p, {}).get("status") == "running" for p in ("one.py", "two.py")
            )

        wait_until(restored, 60, "the restored scripts")
        assert "gone.py" not in second.running() and "broken.py" not in second.running()
        assert second.client.get("/script-api/one/ok").json() == "one"
        assert second.client.get("/script-api/two/ok").json() == "two"
        wait_until(
            lambda: any(
                "could not restore broken.py" in r["message"]
                for r in second.client.get(
                    "/script-engine/logs", params={"source": "engine", "q": "restore"}
                ).json()["records"]
            ),
            10,
            "the record of the failed restore",
        )

        # SIGTERM: a call in flight finishes, then the gateway stops its kernels and exits
        new_pids = [s["pid"] for s in second.running().values()]
        answer: dict = {}
        caller = threading.Thread(
            target=lambda: answer.update(
                r=httpx.get(f"{second.url}/script-api/one/slow", timeout=60)
            )
        )
        caller.start()
        wait_until(lambda: any(s["in_flight"] for s in second.running().values()), 10, "the call")
        second.proc.send_signal(signal.SIGTERM)
        caller.join(30)
        assert answer["r"].status_code == 200 and answer["r"].json() == "done"
        assert second.proc.wait(60) == 0
        wait_until(lambda: not any(_alive(p) for p in new_pids), 30, "the kernels to stop")
    finally:
        second.finish()
