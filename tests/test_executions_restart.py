"""Asynchronous executions are never lost (issue 18): a gateway killed with -9 while one
runs and others wait; a gateway stopped cleanly; a database that stalls; records kept
for the retention time."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from test_store_outage import StallProxy, pg_schema  # noqa: F401 - the fixture

from conftest import GatewayProcess, wait_until

pytestmark = pytest.mark.timeout(180)

JOB = """
import time


def nap(seconds):
    time.sleep(seconds)
    return seconds


def quick(x):
    return x
"""


def submit(client: httpx.Client, function: str, args: Any, **extra: Any) -> str:
    body = {"script_path": "job.py", "function_name": function, "args": args, "async": True}
    r = client.post("/script-engine/execute", json={**body, **extra})
    assert r.status_code == 202, r.text
    return str(r.json()["execution_id"])


def status(client: httpx.Client, execution_id: str) -> dict[str, Any]:
    r = client.get(f"/script-engine/executions/{execution_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def wait_end(client: httpx.Client, execution_id: str) -> dict[str, Any]:
    r = client.get(f"/script-engine/executions/{execution_id}/wait", params={"timeout": 60})
    assert r.status_code == 200, r.text
    return dict(r.json())


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "scripts"
    root.mkdir()
    (root / "job.py").write_text(JOB)
    return root


def test_kill_9_with_one_running_and_two_queued(tmp_path: Path, root: Path) -> None:
    data = tmp_path / "data"
    first = GatewayProcess(root, data, "--async-concurrency", "1")
    try:
        running = submit(first.client, "nap", [120])
        queued = [submit(first.client, "quick", [n]) for n in (1, 2)]
        once = submit(first.client, "quick", [3], at_most_once=True)
        wait_until(lambda: status(first.client, running)["status"] == "running", 30, "running")
        assert [status(first.client, q)["status"] for q in queued] == ["queued", "queued"]
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
    finally:
        first.finish()

    second = GatewayProcess(root, data, "--async-concurrency", "1")
    try:
        died = wait_end(second.client, running)
        assert died["status"] == "failed"
        assert died["reason"] == "gateway died"
        assert died["error"]["code"] == "GATEWAY_DIED"
        for n, execution_id in zip((1, 2), queued, strict=True):
            found = wait_end(second.client, execution_id)
            assert found["status"] == "succeeded", found
            assert found["result"] == n
        refused = wait_end(second.client, once)
        assert refused["status"] == "failed" and refused["at_most_once"] is True
        assert refused["reason"].startswith("gateway died before it ran")
        assert refused["attempts"] == []
        logs = second.client.get("/script-engine/logs", params={"q": "gateway died"}).json()
        assert any(running in r["message"] for r in logs["records"])
    finally:
        second.finish()


def test_clean_stop_keeps_queued_and_fails_running(tmp_path: Path, root: Path) -> None:
    data = tmp_path / "data"
    first = GatewayProcess(root, data, "--async-concurrency", "1", "--drain-timeout", "0.5")
    try:
        running = submit(first.client, "nap", [120])
        queued = submit(first.client, "quick", [5])
        # running in its worker (the worker is named once the step has one)
        wait_until(lambda: status(first.client, running)["worker"], 30, "running in a worker")
        first.proc.send_signal(signal.SIGTERM)
        assert first.proc.wait(60) == 0
    finally:
        first.finish()
    second = GatewayProcess(root, data)
    try:
        stopped = wait_end(second.client, running)
        assert stopped["status"] == "failed" and stopped["reason"] == "gateway stopped"
        # its attempt, cut off, is not in the steps history as a success
        attempt = second.client.get(f"/script-engine/executions/{running}-1").json()
        assert attempt["status"] == "cancelled", attempt
        assert wait_end(second.client, queued)["result"] == 5
    finally:
        second.finish()


def test_records_are_kept_for_the_retention_time(tmp_path: Path, root: Path) -> None:
    # 0.0005 h = 1.8 s
    gw = GatewayProcess(root, tmp_path / "data", "--execution-retention-hours", "0.0005")
    try:
        execution_id = submit(gw.client, "quick", [1])
        assert wait_end(gw.client, execution_id)["status"] == "succeeded"
        assert gw.client.get(f"/script-engine/executions/{execution_id}").status_code == 200
        started = time.monotonic()
        wait_until(
            lambda: gw.client.get(f"/script-engine/executions/{execution_id}").status_code == 404,
            30,
            "the record to be pruned",
        )
        assert time.monotonic() - started >= 0.5
    finally:
        gw.finish()


STALLING = """
import time
from pathlib import Path


def wait_for(path):
    deadline = time.monotonic() + 60
    while not Path(path).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.02)
    return "went on"
"""


def test_a_stalled_database_neither_fails_nor_loses_an_execution(
    tmp_path: Path,
    root: Path,
    pg_schema: str,  # noqa: F811
) -> None:
    """Submitting while the database stalls is 503 STORE_TIMEOUT within --db-timeout; an
    execution running while it stalls goes on, and its end is stored once it answers."""
    (root / "stall.py").write_text(STALLING)
    proxy = StallProxy()
    gw = GatewayProcess(
        root, tmp_path / "data", "--db-url", proxy.url(pg_schema), "--db-timeout", "1"
    )
    try:
        go = tmp_path / "go"
        body = {"script_path": "stall.py", "function_name": "wait_for", "args": [str(go)]}
        r = gw.client.post("/script-engine/execute", json={**body, "async": True})
        assert r.status_code == 202, r.text
        execution_id = r.json()["execution_id"]
        wait_until(lambda: status(gw.client, execution_id)["status"] == "running", 30, "running")

        proxy.stall()
        started = time.monotonic()
        late = {**body, "async": True, "args": [str(go)], "idempotency_key": "late-1"}
        r = gw.client.post("/script-engine/execute", json=late)
        assert r.status_code == 503 and r.json()["code"] == "STORE_TIMEOUT", r.text
        assert time.monotonic() - started < 4
        go.write_text("go")  # the step ends while the database stalls
        # the end is known (from memory) although it could not be stored yet
        found = wait_end(gw.client, execution_id)
        assert found["status"] == "succeeded" and found["result"] == "went on"

        proxy.resume()
        engine = sa.create_engine(proxy.url(pg_schema))
        try:

            def stored() -> bool:
                with engine.connect() as conn:
                    row = conn.execute(
                        sa.text("SELECT status FROM vwed_async_executions WHERE id = :i"),
                        {"i": execution_id},
                    ).first()
                return row is not None and row[0] == "succeeded"

            wait_until(stored, 60, "the end to be stored")

            def late_status() -> str | None:
                with engine.connect() as conn:
                    row = conn.execute(
                        sa.text(
                            "SELECT status FROM vwed_async_executions "
                            "WHERE idempotency_key = 'late-1'"
                        )
                    ).first()
                return None if row is None else str(row[0])

            # the submission answered 503 was under way (the writer was idle when the
            # database stalled): written once it answered, it is not left queued
            # forever: this gateway finds it and runs it, nobody resubmitting
            wait_until(lambda: late_status() == "succeeded", 60, "the late submission to run")
        finally:
            engine.dispose()
        # the submission answered 503 was (here: its insert was under way) written all
        # the same once the database answered: it is not left queued forever, it runs,
        # and a resubmission with its key finds it
        r = gw.client.post("/script-engine/execute", json=late)
        assert r.status_code == 202, r.text
        late_id = r.json()["execution_id"]
        assert wait_end(gw.client, late_id)["status"] == "succeeded"
    finally:
        gw.finish()
