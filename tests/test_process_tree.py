"""A kernel's processes are its own: the memory limit counts its whole process
tree, and stop kills the tree, children that left the process group (setsid)
included."""

from __future__ import annotations

import contextlib

import httpx
import psutil
import pytest

from conftest import GatewayThread, wait_until
from kernel_gateway.config import Settings

SCRIPT = """
import subprocess, sys

CHILDREN = []

def boot():
    VWED.function.register("detached", detached)
    VWED.function.register("hog", hog)

def detached():
    # its own session and process group: a group kill of the kernel misses it
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                         start_new_session=True)
    CHILDREN.append(p)
    return p.pid

def hog(mib):
    code = "import sys, time; b = b'x' * (%d << 20); sys.stdout.write('ok'); sys.stdout.flush(); time.sleep(600)" % mib
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    CHILDREN.append(p)
    p.stdout.read(2)  # the memory is in use
    return p.pid
"""


@pytest.fixture
def gateway(tmp_path):
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "tree.py").write_text(SCRIPT)
    settings = Settings(
        scripts_dir=str(tmp_path / "scripts"),
        port=0,
        data_dir=str(tmp_path / "data"),
        pool_size=0,
        workers=1,
        call_timeout=30.0,
        auth=False,
    ).validated()
    gw = GatewayThread(settings).start()
    pids: list[int] = []
    yield gw, pids
    gw.stop()
    for pid in pids:  # never leave a sleeper behind, whatever the outcome
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).kill()


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_stop_kills_setsid_children(gateway):
    gw, pids = gateway
    with httpx.Client(base_url=gw.url, timeout=60) as c:
        r = c.post("/script-engine/start", json={"script_path": "tree.py"})
        assert r.status_code == 200, r.text
        sid = r.json()["script_id"]
        r = c.post("/script-engine/functions/detached/call", json={"args": []})
        assert r.status_code == 200, r.text
        pid = r.json()["result"]
        pids.append(pid)
        child = psutil.Process(pid)
        assert child.is_running() and os_getsid(pid) != os_getsid(child.ppid())
        r = c.post("/script-engine/stop", json={"script_id": sid})
        assert r.status_code == 200, r.text
        wait_until(lambda: _gone(pid), 15, "the setsid child to be killed")


def os_getsid(pid: int) -> int:
    import os

    return os.getsid(pid)


def test_memory_limit_counts_children(gateway):
    gw, pids = gateway
    with httpx.Client(base_url=gw.url, timeout=60) as c:
        r = c.post(
            "/script-engine/start",
            json={"script_path": "tree.py", "restart": "never", "memory_limit_mb": 200},
        )
        assert r.status_code == 200, r.text
        sid = r.json()["script_id"]
        kernel_pid = c.get(f"/script-engine/scripts/{sid}").json()["kernels"][0]["pid"]
        # the kernel alone is well under the limit; its child is not
        assert psutil.Process(kernel_pid).memory_info().rss < 200 << 20
        r = c.post("/script-engine/functions/hog/call", json={"args": [300]})
        assert r.status_code in (200, 502), r.text
        if r.status_code == 200:
            pids.append(r.json()["result"])
        info = wait_until(
            lambda: (lambda s: s if s["status"] == "died" else None)(
                c.get(f"/script-engine/scripts/{sid}").json()
            ),
            15,
            "the memory limit",
        )
        assert "memory limit exceeded" in info["last_error"]
        for pid in pids:
            wait_until(lambda pid=pid: _gone(pid), 15, "the hog child to be killed")
