"""One "boot N replicas, all or nothing" for start, reload and the restart after a
crash: a boot that fails at any step, the commit of its registrations included,
leaves no kernel behind."""

from __future__ import annotations

import os

import httpx
import psutil

from conftest import GatewayThread, wait_until
from kernel_gateway.config import Settings

ROUTE = "def boot():\n    VWED.api.register_route('/same/{n}', 'GET', lambda: {n})\n"


def _kernels() -> set[int]:
    """Kernel processes started by this test process's gateway."""
    found = set()
    for child in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if "vwed_kernel" in " ".join(child.cmdline()):
                found.add(child.pid)
        except psutil.Error:
            continue
    return found


def test_a_start_refused_by_a_conflict_leaves_no_kernel(tmp_path):
    (tmp_path / "first.py").write_text(ROUTE.replace("{n}", "1"))
    (tmp_path / "second.py").write_text(ROUTE.replace("/same/{n}", "/same/1").replace("{n}", "2"))
    gw = GatewayThread(
        Settings(
            scripts_dir=str(tmp_path),
            port=0,
            data_dir=str(tmp_path / "d"),
            pool_size=1,
            workers=1,
            auth=False,
        ).validated()
    ).start()
    try:
        with httpx.Client(base_url=gw.url, timeout=60) as c:
            first = c.post("/script-engine/start", json={"script_path": "first.py"}).json()
            # settled: the pool holds one kernel, one worker, the script's kernel
            wait_until(lambda: len(_kernels()) == 3, 60, "pool, worker and script kernel")
            for replicas in (1, 2):
                r = c.post(
                    "/script-engine/start",
                    json={"script_path": "second.py", "replicas": replicas},
                )
                assert r.status_code == 409, r.text
                assert r.json()["code"] == "REGISTRATION_CONFLICT", r.text
                # the kernels that booted second.py are shut down; the pool refills to one
                wait_until(lambda: len(_kernels()) == 3, 60, "no kernel left by the refused start")
                running = c.get("/script-engine/running").json()
                assert [s["script_path"] for s in running["scripts"]] == ["first.py"]
            assert c.get("/script-api/same/1").json() == 1
            assert first["script_id"] in {s["script_id"] for s in running["scripts"]}
    finally:
        gw.stop()
