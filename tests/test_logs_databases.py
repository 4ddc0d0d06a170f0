"""The same log history queries on SQLite, PostgreSQL and MariaDB (real servers on
this machine; skipped with the reason when one is not reachable)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa

from conftest import GatewayThread, wait_until
from kernel_gateway.config import Settings

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MARIADB = "mysql+pymysql://root@127.0.0.1:3306/test"

SCRIPT = """
def boot():
    VWED.function.register("work", work)

def work(n):
    for i in range(n):
        VWED.log.info("batch", f"item {i} done")
    VWED.log.error("plc", "PLC 7 timeout 100%_sure")
    print("Mixed Case Line")
    return n
"""


def _reachable(url: str) -> str | None:
    try:
        engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
        return None
    except Exception as exc:  # driver missing or server down
        return f"{url.split('://')[0]} not reachable: {type(exc).__name__}: {str(exc)[:120]}"


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def db_url(request, tmp_path) -> Iterator[str]:
    name = f"vwed_t_{uuid.uuid4().hex[:10]}"
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'logs.sqlite3'}"
        return
    admin_url = PG if request.param == "postgresql" else MARIADB
    reason = _reachable(admin_url)
    if reason:
        pytest.skip(reason)
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(
            sa.text(
                f"CREATE SCHEMA {name}"
                if request.param == "postgresql"
                else f"CREATE DATABASE {name}"
            )
        )
    try:
        if request.param == "postgresql":
            yield f"{PG}?options=-csearch_path%3D{name}"
        else:
            yield f"mysql+pymysql://root@127.0.0.1:3306/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(
                sa.text(
                    f"DROP SCHEMA {name} CASCADE"
                    if request.param == "postgresql"
                    else f"DROP DATABASE {name}"
                )
            )
        admin.dispose()


def test_history_queries(db_url, tmp_path):
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "job.py").write_text(SCRIPT)
    settings = Settings(
        scripts_dir=str(tmp_path / "scripts"),
        port=0,
        data_dir=str(tmp_path / "d"),
        pool_size=1,
        db_url=db_url,
        auth=False,
    ).validated()
    gw = GatewayThread(settings).start()
    try:
        with httpx.Client(base_url=gw.url, timeout=30) as c:
            t0 = time.time()
            sid = c.post("/script-engine/start", json={"script_path": "job.py"}).json()["script_id"]
            r = c.post("/script-engine/functions/work/call", json={"args": [25], "task_id": "T-9"})
            call_id = r.json()["call_id"]

            def logs(**params):
                r = c.get("/script-engine/logs", params={"script_id": sid, **params})
                assert r.status_code == 200, r.text
                return r.json()

            wait_until(lambda: logs(q="mixed case")["records"], 10, "records stored")
            # level: this level and above
            assert [x["message"] for x in logs(level="ERROR")["records"]] == [
                "PLC 7 timeout 100%_sure"
            ]
            # tag, task, call
            assert len(logs(tag="batch", limit=100)["records"]) == 25
            assert len(logs(task_id="T-9", limit=100)["records"]) == 27
            assert {x["call_id"] for x in logs(task_id="T-9")["records"]} == {call_id}
            # q: substring, case-insensitive, % and _ taken literally
            assert [x["message"] for x in logs(q="100%_")["records"]] == ["PLC 7 timeout 100%_sure"]
            assert logs(q="100%x")["records"] == []
            assert [x["message"] for x in logs(q="MIXED case")["records"]] == ["Mixed Case Line"]
            # cursor paging, newest first and oldest first
            seen, cursor = [], None
            while True:
                page = logs(tag="batch", limit=10, **({"cursor": cursor} if cursor else {}))
                seen += [x["message"] for x in page["records"]]
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            assert seen == [f"item {i} done" for i in reversed(range(25))]
            page = logs(tag="batch", limit=10, order="asc")
            assert [x["message"] for x in page["records"]] == [f"item {i} done" for i in range(10)]
            page2 = logs(tag="batch", limit=10, order="asc", cursor=page["next_cursor"])
            assert page2["records"][0]["message"] == "item 10 done"
            # since / until
            assert logs(since=t0 - 60, until=time.time() + 60, tag="plc")["records"]
            assert logs(until=t0 - 60)["records"] == []
            iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t0 - 60))
            assert logs(since=iso, tag="plc")["records"]
            # every run of a script, and one run by number
            run_id = logs(tag="plc")["records"][0]["run_id"]
            assert logs(run_id=run_id, tag="plc")["records"]
            assert c.get(
                "/script-engine/logs", params={"script_path": "job.py", "tag": "plc"}
            ).json()["records"]
            # export streams the same
            r = c.get("/script-engine/logs/export", params={"script_id": sid, "tag": "batch"})
            assert len(r.text.splitlines()) == 25
            # stop: the run keeps its exit reason
            assert c.post("/script-engine/stop", json={"script_id": sid}).status_code == 200
            runs = wait_until(
                lambda: [
                    x
                    for x in c.get("/script-engine/runs").json()["runs"]
                    if x["script_id"] == sid and x["status"] == "stopped"
                ],
                10,
                "the stopped run",
            )
            assert runs[0]["exit_reason"] == "stopped"
    finally:
        gw.stop()


def test_retention_prunes_by_age_and_count(db_url):
    from kernel_gateway.store import Database, LogQuery

    db = Database(db_url)
    try:
        db.migrate()
        now = time.time()
        rows = [
            {
                "id": i,
                "ts": now - (40 * 86400 if i <= 10 else 0),
                "script_id": "s.py_1",
                "run_id": None,
                "level": 20,
                "source": "stdout",
                "tag": "",
                "message": f"m{i}",
                "call_id": None,
                "task_id": None,
            }
            for i in range(1, 51)
        ]
        db.insert_logs(rows)
        assert db.prune(now - 30 * 86400, None) == 10  # older than 30 days
        assert db.prune(None, 25) == 15  # keep the newest 25
        left = db.query_logs(LogQuery(limit=1000, newest_first=False))
        assert [r["message"] for r in left] == [f"m{i}" for i in range(26, 51)]
        db.migrate()  # running the migrations again changes nothing
        assert db.max_log_id() == 50
    finally:
        db.close()
