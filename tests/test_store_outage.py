"""The database never stalls the engine, and nothing is lost (issue 12, items 9-13).

A real PostgreSQL behind a small TCP proxy of the test that can be switched to
"accept and forward nothing" (a stalled database), or a real SQLite file locked by
the test; real gateway processes, SIGTERM and kill -9.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from conftest import GatewayProcess, wait_until

PG_HOST, PG_PORT = "127.0.0.1", 5432
PG = f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/test"


class StallProxy:
    """A TCP proxy on 127.0.0.1 (port 0) in front of PostgreSQL; ``stall()`` makes it
    accept connections and forward nothing, in either direction, until ``resume()``."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.flowing = threading.Event()
        self.flowing.set()
        self._flow: asyncio.Event | None = None
        ready = threading.Event()
        self.port = 0

        async def start() -> None:
            self._flow = asyncio.Event()
            self._flow.set()
            server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            ready.set()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(start())
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(PG_HOST, PG_PORT)
        except OSError:
            writer.close()
            return

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    assert self._flow is not None
                    await self._flow.wait()  # stalled: hold everything
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, up_w), pump(up_r, writer))

    def stall(self) -> None:
        assert self._flow is not None
        self.loop.call_soon_threadsafe(self._flow.clear)

    def resume(self) -> None:
        assert self._flow is not None
        self.loop.call_soon_threadsafe(self._flow.set)

    def url(self, schema: str) -> str:
        return (
            f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/test"
            f"?options=-csearch_path%3D{schema}"
        )


@pytest.fixture
def pg_schema() -> Iterator[str]:
    try:
        admin = sa.create_engine(
            PG, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
        )
        with admin.connect():
            pass
    except Exception as exc:
        pytest.skip(f"postgresql not reachable: {type(exc).__name__}")
    name = f"vwed_t_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {name}"))
    try:
        yield name
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {name} CASCADE"))
        admin.dispose()


SERVICE = """
def boot():
    VWED.function.register("say", say)

def say(n, word="line"):
    for i in range(n):
        VWED.log.info("t", f"{word} {i}")
    return n
"""

STEP = """
def vars(x):
    return {"x": x}
"""


def _timed(fn):
    started = time.monotonic()
    value = fn()
    return value, time.monotonic() - started


def test_stalled_database_deadlines_sigterm_and_spill(tmp_path, pg_schema):
    root, data = tmp_path / "scripts", tmp_path / "data"
    root.mkdir()
    (root / "svc.py").write_text(SERVICE)
    (root / "svc2.py").write_text(SERVICE.replace('"say"', '"say2"'))
    (root / "step.py").write_text(STEP)
    proxy = StallProxy()
    url = proxy.url(pg_schema)
    flags = ("--db-url", url, "--db-timeout", "2", "--drain-timeout", "2")
    gw = GatewayProcess(root, data, *flags)
    try:
        c = gw.client
        assert c.post("/script-engine/start", json={"script_path": "svc.py"}).status_code == 200
        step = {
            "script_path": "step.py",
            "function_name": "vars",
            "mode": "SET_TASK_VARIABLES",
            "task_id": "T1",
            "args": {"x": 1},
            "timeout": 5,
        }
        assert c.post("/script-engine/execute", json=step).status_code == 200

        proxy.stall()
        r, took = _timed(lambda: c.post("/script-engine/execute", json={**step, "args": {"x": 2}}))
        assert r.status_code == 503, r.text
        body = r.json()
        assert body["code"] == "STORE_TIMEOUT" and body["success"] is False
        assert isinstance(body["variables_may_be_written"], bool)
        assert "result" in body and body["execution_id"]
        assert took < 6.5, took
        # the step's own timeout bounds it too (timeout + 1 s), below --db-timeout
        r, took = _timed(
            lambda: c.post("/script-engine/execute", json={**step, "args": [3], "timeout": 1})
        )
        assert r.status_code == 503 and r.json()["code"] == "STORE_TIMEOUT", r.text
        assert took < 2.5, took

        r, took = _timed(lambda: c.get("/script-engine/logs"))
        assert r.status_code == 503 and r.json()["code"] == "STORE_TIMEOUT" and took < 4, took
        r, took = _timed(lambda: c.get("/script-engine/tasks/T1/variables"))
        assert r.status_code == 503 and r.json()["code"] == "STORE_TIMEOUT" and took < 4, took

        # start does not hang: the script runs without its run record (said in a record)
        r, took = _timed(lambda: c.post("/script-engine/start", json={"script_path": "svc2.py"}))
        assert r.status_code == 200, r.text
        assert took < 20, took

        r = c.post("/script-engine/functions/say/call", json={"args": [50, "spilled"]})
        assert r.status_code == 200, r.text

        started = time.monotonic()
        gw.proc.send_signal(signal.SIGTERM)
        code = gw.proc.wait(40)
        took = time.monotonic() - started
        out = gw.out.read_text()
        assert code == 0, out[-3000:]
        # drain (2 s) + stopping kernels + a flush bounded by --db-timeout (2 s)
        assert took < 25, (took, out[-3000:])
        spill = data / "spill.jsonl"
        assert spill.exists(), out[-3000:]
        assert spill.stat().st_mode & 0o777 == 0o600
        lines = [json.loads(x) for x in spill.read_text().splitlines()]
        assert sum(1 for x in lines if "spilled" in x["row"].get("message", "")) == 50
    finally:
        gw.finish()

    proxy.resume()
    gw = GatewayProcess(root, data, *flags)
    try:

        def all_back():
            r = gw.client.get(
                "/script-engine/logs", params={"q": "spilled", "limit": 100, "order": "asc"}
            ).json()
            return r["records"] if len(r["records"]) == 50 else None

        back = wait_until(all_back, 30, "the 50 spilled lines")
        assert [r["message"] for r in back] == [f"spilled {i}" for i in range(50)]
        # the executions and the call of the stall came back from the spill file too
        executions = gw.client.get("/script-engine/executions", params={"task_id": "T1"}).json()
        assert executions["count"] == 3, executions
        assert not (data / "spill.jsonl").exists()
        wait_until(
            lambda: gw.client.get(
                "/script-engine/logs", params={"source": "engine", "q": "could not store before"}
            ).json()["records"],
            10,
            "an engine record saying the spill file was stored",
        )
    finally:
        gw.finish()


class SqliteLock:
    """Holds an exclusive transaction on the gateway's SQLite file: writes of the
    gateway wait (and time out) until ``release()``; reads go on (WAL)."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, timeout=10, isolation_level=None)
        self.conn.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        self.conn.execute("ROLLBACK")
        self.conn.close()


async def _see_records(url: str, port: int, word: str, n: int) -> list[dict]:
    """Open the live log stream, make ``n`` records, return them as a client saw them."""
    from tornado.websocket import websocket_connect

    conn = await asyncio.wait_for(
        websocket_connect(f"ws://127.0.0.1:{port}/script-engine/logs/ws"), 10
    )
    seen: list[dict] = []
    try:
        call = asyncio.ensure_future(
            asyncio.to_thread(
                httpx.post,
                f"{url}/script-engine/functions/say/call",
                json={"args": [n, word]},
                timeout=30,
            )
        )
        deadline = time.monotonic() + 30
        while sum(word in r.get("message", "") for r in seen) < n:
            raw = await asyncio.wait_for(conn.read_message(), deadline - time.monotonic())
            assert raw is not None, "the stream closed"
            seen.append(json.loads(raw))
        assert (await call).status_code == 200
    finally:
        conn.close()
    return [r for r in seen if r.get("type") == "record"]


def test_kill_9_never_reuses_log_ids_and_ends_its_runs(tmp_path):
    root, data = tmp_path / "scripts", tmp_path / "data"
    root.mkdir()
    (root / "svc.py").write_text(SERVICE)
    gw = GatewayProcess(root, data, "--db-timeout", "1")
    try:
        c = gw.client
        assert c.post("/script-engine/start", json={"script_path": "svc.py"}).status_code == 200
        run_id = c.get("/script-engine/runs", params={"script_path": "svc.py"}).json()["runs"][0][
            "id"
        ]
        lock = SqliteLock(data / "vwed.sqlite3")  # the records below cannot be stored
        try:
            seen = asyncio.run(_see_records(gw.url, gw.port, "seen", 20))
            top_seen = max(r["id"] for r in seen)
            gw.proc.kill()  # kill -9
            gw.proc.wait(10)
        finally:
            lock.release()
    finally:
        gw.finish()
    with sqlite3.connect(data / "vwed.sqlite3") as db:
        stored_top = db.execute("SELECT max(id) FROM vwed_log_records").fetchone()[0] or 0
    assert stored_top < top_seen  # the client saw ids that were never stored

    gw = GatewayProcess(root, data, "--db-timeout", "1")
    try:
        c = gw.client

        def restored() -> bool:
            scripts = c.get("/script-engine/running").json()["scripts"]
            return any(s["script_path"] == "svc.py" and s["status"] == "running" for s in scripts)

        wait_until(restored, 60, "svc.py restored")
        after = asyncio.run(_see_records(gw.url, gw.port, "after", 5))
        assert after and min(r["id"] for r in after) > top_seen, (top_seen, after[:2])
        # cursors go on across the crash: after the highest id seen, only newer records
        newer = wait_until(
            lambda: c.get(
                "/script-engine/logs",
                params={"cursor": top_seen, "order": "asc", "tag": "t", "limit": 100},
            ).json()["records"][4:],
            10,
            "the new records stored",
        )
        newer = c.get(
            "/script-engine/logs",
            params={"cursor": top_seen, "order": "asc", "tag": "t", "limit": 100},
        ).json()["records"]
        assert [r["message"] for r in newer] == [f"after {i}" for i in range(5)]
        assert all(r["id"] > top_seen for r in newer)
        runs = {r["id"]: r for r in c.get("/script-engine/runs").json()["runs"]}
        assert runs[run_id]["exit_reason"] == "gateway died", runs[run_id]
        assert runs[run_id]["stopped_at"] is not None
        second_run = max(runs)
        gw.proc.send_signal(signal.SIGTERM)  # a clean stop ends its runs itself
        assert gw.proc.wait(30) == 0
    finally:
        gw.finish()
    gw = GatewayProcess(root, data, "--db-timeout", "1")
    try:
        run = next(
            r for r in gw.client.get("/script-engine/runs").json()["runs"] if r["id"] == second_run
        )
        assert run["exit_reason"] == "gateway shutdown", run
    finally:
        gw.finish()


def test_history_drops_are_counted_and_reported(tmp_path):
    from conftest import GatewayThread
    from kernel_gateway.config import Settings

    (tmp_path / "noop.py").write_text(
        "def boot():\n    VWED.function.register('noop', lambda: 1)\n"
    )
    gw = GatewayThread(
        Settings(
            scripts_dir=str(tmp_path),
            port=0,
            data_dir=str(tmp_path / "d"),
            pool_size=1,
            workers=1,
            log_queue_max=5,
            db_timeout=1.0,
            auth=False,
        ).validated()
    ).start()
    try:
        with httpx.Client(base_url=gw.url, timeout=30) as c:
            assert (
                c.post("/script-engine/start", json={"script_path": "noop.py"}).status_code == 200
            )
            wait_until(lambda: gw.gateway.db.queued == 0, 10, "the start's records stored")
            lock = SqliteLock(tmp_path / "d" / "vwed.sqlite3")
            try:
                for _ in range(30):
                    assert c.post("/script-engine/functions/noop/call", json={}).status_code == 200
            finally:
                lock.release()

            def note():
                return c.get(
                    "/script-engine/logs",
                    params={"source": "engine", "q": "history rows were not stored"},
                ).json()["records"]

            found = wait_until(note, 20, "the record counting dropped history rows")
            assert found[0]["level"] == "WARNING"
            # 30 calls, a queue of 5 and a batch of up to 5 taken by the writer (which
            # waits on the lock, then puts it back): at least 20 are dropped
            assert int(found[0]["message"].split()[0]) >= 20
            metrics = c.get("/metrics").text
            line = next(
                x
                for x in metrics.splitlines()
                if x.startswith("vwed_history_records_dropped_total")
            )
            assert float(line.split()[-1]) >= 20
    finally:
        gw.stop()


def _spill_line(kind: str, row: dict) -> str:
    return json.dumps({"kind": kind, "row": row}) + "\n"


def _record(i: int, message: str | None) -> dict:
    return {
        "id": i,
        "ts": time.time(),
        "script_id": "old.py_1",
        "run_id": None,
        "level": "INFO",
        "source": "stdout",
        "tag": "spill",
        "message": message,
        "call_id": None,
        "task_id": None,
    }


def test_spill_file_torn_line_and_unstorable_rows(tmp_path):
    from conftest import GatewayThread
    from kernel_gateway.config import Settings

    data = tmp_path / "d"
    data.mkdir()
    spill = data / "spill.jsonl"
    settings = Settings(
        scripts_dir=str(tmp_path), port=0, data_dir=str(data), pool_size=0, workers=1, auth=False
    ).validated()

    # three records and a torn last line (a crash while writing): the records are
    # stored with their ids, the torn line counted, the file removed
    spill.write_text(
        "".join(_spill_line("log", _record(7000 + i, f"kept {i}")) for i in range(3))
        + '{"kind": "log", "row": {"id": 70'
    )
    gw = GatewayThread(settings).start()
    try:
        with httpx.Client(base_url=gw.url, timeout=30) as c:
            got = c.get("/script-engine/logs", params={"tag": "spill", "order": "asc"}).json()
            assert [(r["id"], r["message"]) for r in got["records"]] == [
                (7000 + i, f"kept {i}") for i in range(3)
            ]
            assert not spill.exists()
            note = wait_until(
                lambda: c.get(
                    "/script-engine/logs", params={"source": "engine", "q": "unreadable"}
                ).json()["records"],
                10,
                "the record counting the torn line",
            )
            assert note[0]["level"] == "WARNING" and "1 unreadable line" in note[0]["message"]
            new = c.get("/script-engine/logs", params={"limit": 1}).json()["records"][0]
            assert new["id"] > 7002  # new ids above the spilled ones
    finally:
        gw.stop()

    # a row the database refuses (no message): the file is kept for the next start, and
    # an ERROR record counts what waits in it
    spill.write_text(_spill_line("log", _record(9000, None)))
    gw = GatewayThread(settings).start()
    try:
        with httpx.Client(base_url=gw.url, timeout=30) as c:
            note = wait_until(
                lambda: c.get(
                    "/script-engine/logs",
                    params={"source": "engine", "q": "spill file", "level": "ERROR"},
                ).json()["records"],
                10,
                "the record saying the spill file could not be stored",
            )
            assert note[0]["level"] == "ERROR" and note[0]["message"].startswith("1 records")
            assert spill.exists()
    finally:
        gw.stop()


def test_a_failed_flush_at_shutdown_is_said_and_spilled(tmp_path, caplog):
    """The database does not take the last records at shutdown (a SQLite file locked
    by the test): a line says the flush failed, and one where the records went."""
    import logging

    from kernel_gateway.store import Database
    from kernel_gateway.store.service import StoreService

    db_file, spill = tmp_path / "vwed.sqlite3", tmp_path / "spill.jsonl"

    async def scenario() -> None:
        # interval: the write loop would not store before the close; the close does
        service = StoreService(
            Database(f"sqlite:///{db_file}", timeout=0.5),
            timeout=0.5,
            interval=60,
            spill_path=spill,
        )
        await service.open()
        lock = SqliteLock(db_file)
        try:
            assert service.add_log(_record(1, "the last words"))
            await service.close()
        finally:
            lock.release()

    with caplog.at_level(logging.INFO, logger="kernel_gateway.store"):
        asyncio.run(asyncio.wait_for(scenario(), 30))
    said = [r.getMessage() for r in caplog.records if r.name == "kernel_gateway.store"]
    failed = [m for m in said if m.startswith("the last log records could not be stored: ")]
    assert failed and failed[0].split(": ", 1)[1].strip(), said  # and why
    assert any("1 log records, 0 calls, 0 executions" in m and str(spill) in m for m in said)
    rows = [json.loads(line) for line in spill.read_text().splitlines()]
    assert [(r["kind"], r["row"]["message"]) for r in rows] == [("log", "the last words")]


def test_a_stuck_database_call_is_counted_until_it_ends(tmp_path):
    """A driver call past its deadline: the caller gets StoreTimeout (started, so it
    may still complete), and the call counts as stuck until it returns."""
    from kernel_gateway.errors import StoreTimeout
    from kernel_gateway.store.threads import DbThreads, busy_threads

    release = threading.Event()

    async def scenario() -> None:
        threads = DbThreads(timeout=0.2)
        try:
            with pytest.raises(StoreTimeout) as caught:
                await threads.write(release.wait, 30)
            assert caught.value.details == {"may_still_complete": True}
            assert busy_threads() == 1
            release.set()
            wait_until(lambda: busy_threads() == 0, 10, "the stuck call to end")
        finally:
            release.set()
            threads.shutdown()

    asyncio.run(asyncio.wait_for(scenario(), 30))
