"""Two gateways on one PostgreSQL schema with --ha: one active (it holds the advisory
lock), one standby (503 STANDBY, health not ready). The active one is killed -9 under
steady load from a client that retries on connection errors and 503 against both: no
call fails after its retries, the standby takes over within 5 s, and no script runs
twice. An active gateway whose lock connection is cut stops its scripts and becomes a
standby, and takes over again when the other one stops. And --ha is refused without PostgreSQL. Skipped without a PostgreSQL server."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from test_store_outage import pg_schema  # noqa: F401 - the fixture (a schema per test)

from conftest import GatewayProcess, wait_until
from kernel_gateway.config import ConfigError, Settings
from kernel_gateway.ha.lock import lock_key

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SCRIPT = """
import os
import time

def boot():
    VWED.api.register_route("/ha/ping", "GET", lambda: {"pid": os.getpid()})
    # what runs twice shows: each kernel says when it ticks
    VWED.timer.schedule(0.1, lambda: print(f"tick {os.getpid()} {time.time():.3f}"))
"""


def _url(schema: str) -> str:
    return f"{PG}?options=-csearch_path%3D{schema}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/status") as f:
            return "State:\tZ" not in f.read()
    except (ProcessLookupError, FileNotFoundError):
        return False


def _role(gw: GatewayProcess) -> str | None:
    try:
        return gw.client.get("/script-engine/health", timeout=10).json().get("status")
    except httpx.HTTPError:
        return None


def _active(gw: GatewayProcess) -> bool:
    """Active: health is the ordinary one (``"status": "ok"``; a standby says
    ``standby``). Its ``ready`` also wants a warm pool, which a takeover may have
    just used for the restore."""
    return _role(gw) == "ok"


def _ticks(schema: str) -> dict[int, list[float]]:
    """The timer's ticks stored in the log history, by kernel pid."""
    engine = sa.create_engine(_url(schema))
    try:
        with engine.connect() as conn:
            lines = conn.execute(
                sa.text("SELECT message FROM vwed_log_records WHERE message LIKE 'tick %'")
            ).scalars()
            ticks: dict[int, list[float]] = {}
            for line in lines:
                for tick in line.splitlines():
                    _, pid, at = tick.split()
                    ticks.setdefault(int(pid), []).append(float(at))
            return ticks
    finally:
        engine.dispose()


def _open_runs(schema: str) -> list[dict[str, Any]]:
    engine = sa.create_engine(_url(schema))
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT script_path, status, exit_reason, stopped_at FROM vwed_script_runs")
            ).mappings()
            return [dict(r) for r in rows]
    finally:
        engine.dispose()


class RetryingClient:
    """A task flow's client: each call goes to the gateway that answered last; on a
    connection error or a 503 it tries the other, and gives up after ``patience``
    seconds (a failed call)."""

    def __init__(self, urls: list[str], path: str, patience: float = 15.0) -> None:
        self.urls = urls
        self.path = path
        self.patience = patience
        self.ok: list[tuple[float, str, int]] = []  # (when, which url, kernel pid)
        self.failed: list[str] = []
        self.retries = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._clients = [httpx.Client(base_url=u, timeout=5) for u in urls]

    def start(self) -> RetryingClient:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.patience + 10)
        for c in self._clients:
            c.close()

    def _run(self) -> None:
        current = 0
        while not self._stop.is_set():
            give_up = time.monotonic() + self.patience
            while True:
                try:
                    r = self._clients[current].get(self.path)
                    if r.status_code == 200:
                        self.ok.append((time.monotonic(), self.urls[current], r.json()["pid"]))
                        break
                    if r.status_code != 503:  # not a retryable answer: a failed call
                        self.failed.append(f"{r.status_code} {r.text[:200]}")
                        break
                except httpx.TransportError:
                    pass
                self.retries += 1
                if time.monotonic() > give_up:
                    self.failed.append("gave up after retries")
                    break
                current = 1 - current
                time.sleep(0.05)
            time.sleep(0.01)


def _two_gateways(tmp_path: Path, schema: str) -> tuple[GatewayProcess, GatewayProcess, Path]:
    """Active ``a`` with the script running, then standby ``b``; one scripts root (shared,
    as two machines would share it: a restore runs the revision the active recorded)."""
    root = tmp_path / "scripts"
    root.mkdir()
    (root / "ha.py").write_text(SCRIPT)
    args = ("--db-url", _url(schema), "--ha")
    a = GatewayProcess(root, tmp_path / "a", *args)
    wait_until(lambda: _active(a), 30, "the first gateway to become active")
    b = GatewayProcess(root, tmp_path / "b", *args)
    assert _role(b) == "standby"
    return a, b, root


@pytest.mark.timeout(240)
def test_kill_9_the_active_one_under_load(tmp_path, pg_schema):  # noqa: F811
    a, b, _ = _two_gateways(tmp_path, pg_schema)
    client = None
    try:
        r = a.client.post("/script-engine/start", json={"script_path": "ha.py"})
        assert r.status_code == 200, r.text
        old_pids = [s["pid"] for s in a.running().values()]

        # the standby: health says so (not ready); every other call is 503 STANDBY
        health = b.client.get("/script-engine/health").json()
        assert health["status"] == "standby" and health["ready"] is False
        for path in ("/script-engine/running", "/script-api/ha/ping"):
            r = b.client.get(path)
            assert r.status_code == 503 and r.json()["code"] == "STANDBY", r.text
            assert r.headers["Retry-After"] == "1"
        r = b.client.post("/script-engine/start", json={"script_path": "ha.py"})  # a body
        assert r.status_code == 503 and r.json()["code"] == "STANDBY", r.text

        client = RetryingClient([a.url, b.url], "/script-api/ha/ping").start()
        wait_until(lambda: len(client.ok) >= 50, 30, "steady calls to the active gateway")
        killed = time.monotonic()
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(30)
        wait_until(lambda: any(url == b.url for _, url, _ in client.ok), 30, "calls answered by b")
        first_on_b = min(t for t, url, _ in client.ok if url == b.url)
        served = len(client.ok)
        wait_until(lambda: len(client.ok) >= served + 50, 30, "steady calls to b")
        client.stop()
        takeover = first_on_b - killed
        print(
            f"takeover {takeover:.2f} s; calls ok {len(client.ok)}, failed "
            f"{len(client.failed)}, retries {client.retries}"
        )
        assert client.failed == []
        assert takeover < 5.0, f"takeover took {takeover:.2f} s"

        # no script runs twice: a's kernels died with it, b runs one replica, and the
        # database has one open run (b's), a's marked ended by the takeover
        wait_until(lambda: not any(_alive(p) for p in old_pids), 30, "a's kernels to exit")
        running = b.running()
        assert list(running) == ["ha.py"] and running["ha.py"]["status"] == "running"
        new_pids = {pid for _, url, pid in client.ok if url == b.url}
        assert len(new_pids) == 1 and not new_pids & set(old_pids)
        runs = _open_runs(pg_schema)
        assert [r["script_path"] for r in runs if r["stopped_at"] is None] == ["ha.py"]
        assert [r["exit_reason"] for r in runs if r["stopped_at"] is not None] == ["gateway died"]
    finally:
        if client is not None:
            client.stop()
        a.finish()
        b.finish()


@pytest.mark.timeout(240)
def test_an_active_one_that_loses_its_lock_stops_its_scripts(tmp_path, pg_schema):  # noqa: F811
    a, b, _ = _two_gateways(tmp_path, pg_schema)
    try:
        r = a.client.post("/script-engine/start", json={"script_path": "ha.py"})
        assert r.status_code == 200, r.text
        old_pids = [s["pid"] for s in a.running().values()]
        # a's kernel has ticked (and its tick is stored) before the cut: a cut within the
        # first 0.1 s of the script left no tick of a's to compare with b's
        wait_until(lambda: _ticks(pg_schema).get(old_pids[0]), 30, "a tick of a's kernel")
        # cut the lock's connection, as a network failure between a and the database
        # would: the server ends the session, and the lock with it. Only this schema's
        # lock: other runs on the same server (another test worker, another checkout)
        # hold their own schemas' locks. A bigint advisory lock is classid (high 32 bits)
        # and objid (low 32 bits), objsubid 1.
        key = lock_key("test", pg_schema) & 0xFFFFFFFFFFFFFFFF
        admin = sa.create_engine(PG, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                cut = conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_locks "
                        "WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
                        "AND classid::bigint = :hi AND objid::bigint = :lo"
                    ),
                    {"hi": key >> 32, "lo": key & 0xFFFFFFFF},
                ).all()
        finally:
            admin.dispose()
        assert len(cut) == 1
        wait_until(lambda: _active(b), 30, "b to take over")
        # a stopped its scripts (it must not run them beside b) and is a standby again
        wait_until(lambda: not any(_alive(p) for p in old_pids), 30, "a's kernels to stop")
        wait_until(lambda: _role(a) == "standby", 60, "a to be a standby again")
        assert a.proc.poll() is None
        r = a.client.get("/script-api/ha/ping")
        assert r.status_code == 503 and r.json()["code"] == "STANDBY"
        assert b.client.get("/script-api/ha/ping").status_code == 200
        assert list(b.running()) == ["ha.py"]
        runs = _open_runs(pg_schema)
        assert [r["script_path"] for r in runs if r["stopped_at"] is None] == ["ha.py"]
        # the timer never ran in both: a's kernel's last tick is before b's kernel's first
        new_pid = b.running()["ha.py"]["pid"]
        ticks = wait_until(
            lambda: (t := _ticks(pg_schema)).get(new_pid) and t.get(old_pids[0]) and t,
            30,
            "the ticks of both kernels in the log history",
        )
        gap = min(ticks[new_pid]) - max(ticks[old_pids[0]])
        print(f"the old kernel's last tick {gap:.2f} s before the new one's first")
        assert gap > 0

        # a clean stop of the active one hands over: it releases the lock last, and the
        # first one, a standby again, takes over
        b.proc.send_signal(signal.SIGTERM)
        assert b.proc.wait(60) == 0
        wait_until(lambda: _active(a), 30, "a to take over again")
        assert a.client.get("/script-api/ha/ping").status_code == 200
        runs = _open_runs(pg_schema)
        assert [r["script_path"] for r in runs if r["stopped_at"] is None] == ["ha.py"]
    finally:
        a.finish()
        b.finish()


@pytest.mark.timeout(30)
def test_ha_needs_postgresql(tmp_path):
    (tmp_path / "s").mkdir()
    for url in ("", "sqlite:///x.db", "mysql+pymysql://u@127.0.0.1/x"):
        with pytest.raises(ConfigError, match="ha needs a PostgreSQL"):
            Settings(scripts_dir=str(tmp_path / "s"), db_url=url, ha=True).validated()
    Settings(scripts_dir=str(tmp_path / "s"), db_url=_url("x"), ha=True).validated()
