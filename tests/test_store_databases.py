"""The store's crash-safety pieces on SQLite, PostgreSQL and MariaDB (real servers,
skipped when not reachable): log id blocks, idempotent batches (a batch sent again
after a timeout, or from the spill file), runs of a dead gateway, driver timeouts."""

from __future__ import annotations

import time

import sqlalchemy as sa
from test_logs_databases import db_url  # noqa: F401 - the fixture (sqlite, postgresql, mariadb)

from kernel_gateway.store.db import Database, timeout_connect_args


def _log(i: int) -> dict:
    return {
        "id": i,
        "ts": time.time(),
        "script_id": "s",
        "run_id": None,
        "level": 20,
        "source": "stdout",
        "tag": "",
        "message": f"line {i}",
        "call_id": None,
        "task_id": None,
    }


def test_id_blocks_batches_and_orphan_runs(db_url):  # noqa: F811
    db = Database(db_url, timeout=3)
    try:
        db.migrate()
        first, last = db.reserve_log_ids(100)
        assert (first, last) == (1, 100)
        # a crash: the next gateway reserves above the whole block, used or not
        assert db.reserve_log_ids(100) == (101, 200)
        # a clean stop gives back the unused rest (only the newest reservation)
        db.release_log_ids(100, 50)  # not the newest: no effect
        db.release_log_ids(200, 120)
        assert db.reserve_log_ids(10) == (121, 130)
        # stored ids above the counter (rows of the spill file) and at_least count too
        db.insert_batch([_log(500)], [], [])
        assert db.reserve_log_ids(10) == (501, 510)
        assert db.reserve_log_ids(10, at_least=900) == (901, 910)

        # a batch stored twice (timed out on our side, yet committed) is not refused
        rows = [_log(i) for i in range(600, 610)]
        execution = {
            "id": "e1",
            "ts": time.time(),
            "script_path": "x.py",
            "function_name": "f",
            "mode": "SCRIPT",
            "task_id": None,
            "duration_ms": 1.0,
            "ok": True,
            "error_type": None,
            "error_message": None,
        }
        db.insert_batch(rows[:5], [], [execution])
        db.insert_batch(rows, [], [execution])
        with db.engine.connect() as conn:
            ids = conn.execute(sa.text("SELECT id FROM vwed_log_records WHERE id >= 600")).scalars()
            assert sorted(ids) == list(range(600, 610))

        run = db.run_started("s_1", "s.py", 1, time.time())
        ended = db.run_started("s_2", "s.py", 1, time.time())
        db.run_ended(ended, "stopped", "gateway shutdown", time.time())
        assert db.end_orphan_runs(time.time()) == 1
        runs = {r["id"]: r for r in db.runs()}
        assert runs[run]["exit_reason"] == "gateway died" and runs[run]["stopped_at"]
        assert runs[ended]["exit_reason"] == "gateway shutdown"
    finally:
        db.close()


def test_driver_timeouts_per_backend():
    pg = timeout_connect_args("postgresql+psycopg://u@h/db?options=-csearch_path%3Dx", 2.5)
    # a second longer than the deadline that answers the caller
    assert pg == {"connect_timeout": 4, "options": "-csearch_path=x -c statement_timeout=3500"}
    my = timeout_connect_args("mysql+pymysql://root@h/db", 2)
    assert my == {"connect_timeout": 3, "read_timeout": 3, "write_timeout": 3}
    lite = timeout_connect_args("sqlite:///x.db", 4)
    assert lite["timeout"] == 5


def test_ids_cross_blocks_without_reuse(tmp_path):
    """A hub with small id blocks on a real SQLite store: ids go on across blocks
    (the next one reserved ahead), and the database's counter stays above them."""
    import asyncio

    from kernel_gateway.logs import LogHub
    from kernel_gateway.store.service import StoreService

    class CountedStore(StoreService):
        """The real store; it counts the id reservations under way."""

        in_flight = reserved = 0

        async def reserve_ids(self, at_least: int = 0) -> tuple[int, int]:
            self.in_flight += 1
            self.reserved += 1
            try:
                return await super().reserve_ids(at_least)
            finally:
                self.in_flight -= 1

    async def scenario() -> tuple[list[int], int, list[int]]:
        url = f"sqlite:///{tmp_path / 'ids.sqlite3'}"
        database = Database(url, timeout=3)
        store = CountedStore(database, id_block=10, interval=0.05)
        hub = LogHub(store)
        await hub.start()
        ids = []
        for i in range(35):
            hub.engine(None, "INFO", f"r{i}")
            ids.append(hub.last_id)
            # the reservation ahead this record may have asked for starts, and is done
            # before the next record (records come at a pace the database keeps up with)
            await asyncio.sleep(0)
            deadline = time.monotonic() + 10
            while store.in_flight:
                assert time.monotonic() < deadline, "the reservation ahead did not finish"
                await asyncio.sleep(0.005)
        await hub.close()
        with database.engine.connect() as conn:
            counter = conn.execute(
                sa.text("SELECT value FROM vwed_counters WHERE name = 'log_id'")
            ).scalar()
        # a second gateway on the same file after the clean stop
        hub2 = LogHub(StoreService(Database(url, timeout=3), id_block=10))
        await hub2.start()
        hub2.engine(None, "INFO", "next")
        after = [hub2.last_id]
        await hub2.close()
        assert store.reserved >= 3  # 35 ids in blocks of 10: reserved ahead, not on open
        return ids, counter, after

    ids, counter, after = asyncio.run(scenario())
    assert ids == list(range(ids[0], ids[0] + 35))  # no gap between blocks reserved ahead
    assert counter >= max(ids)
    assert after == [max(ids) + 1]  # a clean stop gave the unused rest of its block back


def test_async_executions_table(db_url):  # noqa: F811
    """Issue 18's table on each database: an idempotency key taken once, updates, the
    unfinished rows a starting gateway takes over, a late progress write that must not undo
    an end, retention."""
    from kernel_gateway.executions.record import AsyncExecution

    db = Database(db_url, timeout=3)
    try:
        db.migrate()
        req = {"mode": "SCRIPT", "path": "a.py", "function": "f", "args": [1], "task_id": "T"}
        first = AsyncExecution("x" * 32, {**req, "timeout": 5.0}, admin=False, idempotency_key="k1")
        row, created = db.insert_async(first.row())
        assert created and row["id"] == first.id
        again = AsyncExecution("y" * 32, {**req, "timeout": 5.0}, admin=False, idempotency_key="k1")
        row, created = db.insert_async(again.row())
        assert not created and row["id"] == first.id  # the key's first execution
        plain = AsyncExecution("z" * 32, {**req, "timeout": 5.0}, admin=True)
        assert db.insert_async(plain.row())[1]
        assert [r["id"] for r in db.unfinished_async()] == [first.id, plain.id]

        first.status, first.started_at = "running", time.time()
        first.progress = {"fraction": 0.5, "done": None, "total": None, "message": "half"}
        db.update_async(first.id, first.changes())
        first.status, first.finished_at = "succeeded", time.time() - 10
        first.outcome = {"result": {"ok": 1}, "variables": {"scriptResult": {"ok": 1}}}
        db.update_async(first.id, first.changes())
        first.progress = {"fraction": 0.1, "done": None, "total": None, "message": "late"}
        db.update_async(first.id, first.progress_changes(), True)  # ended: not written
        stored = AsyncExecution.from_row(db.async_execution(first.id))
        assert stored.status == "succeeded" and stored.outcome == first.outcome
        assert stored.progress["message"] == "half"
        assert stored.req["args"] == [1] and stored.admin is False
        assert [r["id"] for r in db.unfinished_async()] == [plain.id]
        assert [r["id"] for r in db.list_async(status="succeeded")] == [first.id]

        assert db.prune_async(time.time() - 5) == 1  # ended 10 s ago
        assert db.async_execution(first.id) is None
        assert db.async_execution(plain.id) is not None  # unfinished rows are never pruned
    finally:
        with db.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM vwed_async_executions"))
        db.close()
