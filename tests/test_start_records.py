"""A start's run and its desired row are one commit stored before the start answers
(engine/persistence.py ``serving``): a gateway killed right after the answer leaves
both, and the next gateway restores the script from them."""

from __future__ import annotations

import signal
import sqlite3

import pytest

from conftest import GatewayProcess, unique, wait_until

SCRIPT = """
def boot():
    VWED.api.register_route("/recorded/ok", "GET", lambda: "ok")
"""


def _rows(db: str, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute(sql))


@pytest.mark.timeout(180)
def test_a_gateway_killed_right_after_a_start_answered_has_its_run_and_restores_it(tmp_path):
    root, data = tmp_path / "scripts", tmp_path / "data"
    root.mkdir()
    (root / "recorded.py").write_text(SCRIPT)
    first = GatewayProcess(root, data)
    try:
        r = first.client.post("/script-engine/start", json={"script_path": "recorded.py"})
        assert r.status_code == 200, r.text
        first.proc.send_signal(signal.SIGKILL)  # at once: nothing written after the answer
        first.proc.wait(30)
    finally:
        first.finish()
    db = str(data / "vwed.sqlite3")
    runs = _rows(db, "SELECT status, stopped_at, revision FROM vwed_script_runs")
    assert runs == [("running", None, r.json()["revision"])], runs
    desired = _rows(db, "SELECT script_path, revision FROM vwed_desired_scripts")
    assert desired == [("recorded.py", r.json()["revision"])], desired

    second = GatewayProcess(root, data)
    try:
        wait_until(
            lambda: second.running().get("recorded.py", {}).get("status") == "running",
            60,
            "the restored script",
        )
        assert second.client.get("/script-api/recorded/ok").json() == "ok"
        # a restore answers nobody: its run's ``running`` is stored just after the
        # script serves (the list above can show it first)
        sql = "SELECT status, exit_reason FROM vwed_script_runs ORDER BY id"
        wait_until(
            lambda: _rows(db, sql) == [("died", "gateway died"), ("running", None)],
            10,
            "the dead run and the restored one, running, in the database",
        )
    finally:
        second.finish()


@pytest.mark.timeout(120)
def test_a_start_that_fails_leaves_a_failed_run_and_nothing_to_restore(tmp_path):
    root, data = tmp_path / "scripts", tmp_path / "data"
    root.mkdir()
    (root / "broken.py").write_text("def boot():\n    raise RuntimeError('no PLC')\n")
    gw = GatewayProcess(root, data)
    try:
        r = gw.client.post("/script-engine/start", json={"script_path": "broken.py"})
        assert r.status_code == 422 and r.json()["code"] == "BOOT_FAILED", r.text
        db = str(data / "vwed.sqlite3")
        wait_until(
            lambda: _rows(db, "SELECT status FROM vwed_script_runs") == [("failed",)],
            10,
            "the failed run",
        )
        assert _rows(db, "SELECT script_path FROM vwed_desired_scripts") == []
    finally:
        gw.finish()


def test_every_record_of_a_start_carries_its_run_id(scripts, client):
    """The run is recorded while the kernel boots: the records made meanwhile (the
    engine's, what the script prints as it loads, its log in boot()) wait for the run's
    id and carry it."""
    n = unique("runrec")
    started = scripts.start(
        f"{n}.py",
        'print("loading")\n\ndef boot():\n    VWED.log.info("boot", "booting")\n',
    )
    sid = started["script_id"]
    runs = client.get("/script-engine/runs", params={"script_path": f"{n}.py"}).json()["runs"]
    assert len(runs) == 1 and runs[0]["status"] == "running", runs

    def records() -> list[dict] | None:
        got = client.get(
            "/script-engine/logs", params={"script_id": sid, "order": "asc", "limit": 50}
        ).json()["records"]
        kinds = {(r["source"], r["message"].split(" ")[0]) for r in got}
        wanted = {("engine", "starting"), ("stdout", "loading"), ("vwed", "booting")}
        return got if wanted <= kinds and ("engine", "booted") in kinds else None

    got = wait_until(records, 10, "the start's records")
    assert {r["run_id"] for r in got} == {runs[0]["id"]}, got


DIES = """
import os, threading

def boot():
    threading.Timer(0.2, os._exit, (1,)).start()  # dies right after its boot answered
    VWED.api.register_route("/dies/ok", "GET", lambda: "ok")
"""


@pytest.mark.timeout(120)
def test_a_kernel_that_dies_while_its_run_is_recorded_ends_its_run(tmp_path):
    """The run's insert waits (the database is locked by another writer) while the
    kernel boots, answers and dies: its run ends ``died``, never left ``running``."""
    import threading

    root, data = tmp_path / "scripts", tmp_path / "data"
    root.mkdir()
    (root / "dies.py").write_text(DIES)
    gw = GatewayProcess(root, data)
    answers: list = []
    try:
        db = str(data / "vwed.sqlite3")
        lock = sqlite3.connect(db, timeout=30, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")  # the gateway's writes wait (busy timeout)
        try:
            start = threading.Thread(
                target=lambda: answers.append(
                    gw.client.post(
                        "/script-engine/start",
                        json={"script_path": "dies.py", "restart": "never"},
                    )
                )
            )
            start.start()
            wait_until(lambda: ") died" in gw.out.read_text(), 30, "the kernel's death seen")
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        start.join(60)
        assert answers and answers[0].status_code in (200, 503), answers
        wait_until(
            lambda: _rows(db, "SELECT status FROM vwed_script_runs") == [("died",)],
            30,
            "the run ended died",
        )
        assert gw.running().get("dies.py", {}).get("status") in (None, "died")
    finally:
        gw.finish()
