"""One "boot N replicas, all or nothing" for start, reload and the restart after a
crash: a boot that fails at any step, the commit of its registrations included,
leaves no kernel behind."""

from __future__ import annotations

import signal
import time

import psutil

from conftest import GatewayProcess, wait_until

ROUTE = "def boot():\n    VWED.api.register_route('/same/1', 'GET', lambda: {n})\n"


def _kernels(gateway_pid: int) -> set[int]:
    """The kernel processes of the gateway process ``gateway_pid``."""
    found = set()
    for child in psutil.Process(gateway_pid).children(recursive=True):
        try:
            cmdline = " ".join(child.cmdline())
            # the fork server (a child of the gateway) is no kernel; the kernels it forked
            # (its children) carry its command line
            server = child.ppid() == gateway_pid and "vwed_kernel.forkserver" in cmdline
            if "vwed_kernel" in cmdline and not server:
                found.add(child.pid)
        except psutil.Error:
            continue
    return found


def test_a_start_refused_by_a_conflict_leaves_no_kernel(tmp_path):
    root = tmp_path / "scripts"
    root.mkdir()
    (root / "first.py").write_text(ROUTE.format(n=1))
    (root / "second.py").write_text(ROUTE.format(n=2))
    gw = GatewayProcess(root, tmp_path / "data")  # pool 1, workers 1
    try:
        c = gw.client
        first = c.post("/script-engine/start", json={"script_path": "first.py"}).json()
        # settled: the pool's kernel, the worker, the script's kernel
        wait_until(lambda: len(_kernels(gw.proc.pid)) == 3, 60, "pool, worker, script kernel")
        for replicas in (1, 2):
            r = c.post(
                "/script-engine/start", json={"script_path": "second.py", "replicas": replicas}
            )
            assert r.status_code == 409, r.text
            assert r.json()["code"] == "REGISTRATION_CONFLICT", r.text
            # the kernels that booted second.py are shut down; the pool refills to one
            wait_until(
                lambda: len(_kernels(gw.proc.pid)) == 3, 60, "no kernel left by the refused start"
            )
            running = c.get("/script-engine/running").json()["scripts"]
            assert [s["script_id"] for s in running] == [first["script_id"]]
        assert c.get("/script-api/same/1").json() == 1
    finally:
        gw.finish()


def test_a_stop_during_restore_cancels_it_and_leaves_no_kernel(tmp_path):
    """The engine owns the restore task: SIGTERM while a desired script still boots
    cancels its boot, the gateway exits at once, and the kernel it booted is gone."""
    root = tmp_path / "scripts"
    root.mkdir()
    # slow when a flag file is beside it: a restore runs the revision that was running
    # (not a newer content of the file), so what changes its boot is outside the code
    (root / "slow.py").write_text(
        "import os, time\n\ndef boot():\n"
        "    if os.path.exists(os.path.join(os.path.dirname(__file__), 'slow.flag')):\n"
        "        time.sleep(60)\n" + ROUTE.format(n=1).split("\n", 1)[1]
    )
    first = GatewayProcess(root, tmp_path / "data")
    try:
        assert first.client.post("/script-engine/start", json={"script_path": "slow.py"}).is_success
        first.proc.send_signal(signal.SIGKILL)  # slow.py stays desired
        first.proc.wait(30)
    finally:
        first.finish()
    # the next gateway restores it, and now its boot takes long
    (root / "slow.flag").write_text("")
    second = GatewayProcess(root, tmp_path / "data", "--boot-timeout", "120")
    seen: set[int] = set()
    try:

        def booting() -> bool:
            seen.update(_kernels(second.proc.pid))
            return second.running().get("slow.py", {}).get("status") == "starting"

        wait_until(booting, 60, "the restore of slow.py under way")
        wait_until(lambda: seen.update(_kernels(second.proc.pid)) or len(seen) >= 3, 30, "kernels")
        began = time.monotonic()
        second.proc.send_signal(signal.SIGTERM)
        assert second.proc.wait(30) == 0
        assert time.monotonic() - began < 20  # not the 60 s boot
        wait_until(lambda: not any(psutil.pid_exists(p) for p in seen), 30, "no kernel left")
        assert "restored slow.py" not in second.out.read_text()
    finally:
        second.finish()
