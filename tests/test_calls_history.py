"""``GET /script-engine/calls``: the calls scripts served (``vwed_calls``, written in
batches by the store queue), with their script path, outcome, error and task id;
filters, cursor paging, bad parameters and the caller token (403). And migration
0007 on a database that already holds calls."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import text
from test_logs_databases import db_url  # noqa: F401 - the fixture (sqlite, postgresql, mariadb)

from conftest import token_gateway, unique, wait_until

ADMIN = "calls-admin-" + uuid.uuid4().hex
CALLER = "calls-caller-" + uuid.uuid4().hex

SCRIPT = """
def ok(request):
    return {{"ok": True}}

def fail(args):
    raise ValueError(f"no pallet for order {{args['order']}}")

def boot():
    VWED.api.register_route("/{n}/ok", "GET", ok)
    VWED.function.register("{n}_fail", fail)
"""


@pytest.fixture(scope="module")
def calls_gw(tmp_path_factory):
    yield from token_gateway(tmp_path_factory, "calls", ADMIN, CALLER)


@pytest.fixture
def admin(calls_gw):
    gw, _ = calls_gw
    with httpx.Client(
        base_url=gw.url, timeout=30, headers={"Authorization": f"token {ADMIN}"}
    ) as c:
        yield c


@pytest.fixture
def started(calls_gw, admin):
    """A script with a route and a failing function; stopped after the test."""
    _, root = calls_gw
    n = unique("hist")
    (root / f"{n}.py").write_text(SCRIPT.format(n=n))
    r = admin.post("/script-engine/start", json={"script_path": f"{n}.py"})
    assert r.status_code == 200, r.text
    yield n, r.json()["script_id"]
    admin.post("/script-engine/stop", json={"script_id": r.json()["script_id"]})


def calls(client: httpx.Client, **params: object) -> dict:
    r = client.get("/script-engine/calls", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def wait_calls(client: httpx.Client, count: int, **params: object) -> list[dict]:
    """The calls matching ``params`` once there are ``count`` (stored in batches)."""
    return wait_until(
        lambda: (lambda c: c if len(c) >= count else None)(calls(client, **params)["calls"]),
        15,
        f"{count} calls matching {params}",
    )


def test_calls_are_recorded_with_their_details_and_filtered(admin, started):
    n, sid = started
    path = f"{n}.py"
    for i in range(3):
        r = admin.get(f"/script-api/{n}/ok", headers={"X-VWED-Task-Id": f"T-{n}-{i}"})
        assert r.status_code == 200, r.text
    r = admin.post(
        f"/script-engine/functions/{n}_fail/call",
        json={"args": {"order": 42}, "task_id": f"T-{n}-f"},
    )
    assert r.status_code == 500 and r.json()["code"] == "HANDLER_ERROR", r.text
    failed_call_id = r.json()["call_id"]

    rows = wait_calls(admin, 4, script_path=path)
    assert len(rows) == 4
    assert [row["id"] for row in rows] == sorted((row["id"] for row in rows), reverse=True)
    newest = rows[0]  # the function call came last
    assert newest == {
        "id": newest["id"],
        "ts": newest["ts"],
        "script_id": sid,
        "script_path": path,
        "kind": "function",
        "name": f"{n}_fail",
        "ok": False,
        "duration_ms": newest["duration_ms"],
        "error_type": "HANDLER_ERROR",
        "error_message": newest["error_message"],
        "call_id": failed_call_id,
        "task_id": f"T-{n}-f",
    }
    assert "ValueError: no pallet for order 42" in newest["error_message"]
    assert newest["duration_ms"] > 0 and newest["ts"] > 0
    route_calls = rows[1:]
    assert {c["kind"] for c in route_calls} == {"api"}
    assert {c["name"] for c in route_calls} == {f"GET /{n}/ok"}
    assert all(c["ok"] and c["error_type"] is None and c["error_message"] is None for c in rows[1:])
    assert [c["task_id"] for c in route_calls] == [f"T-{n}-2", f"T-{n}-1", f"T-{n}-0"]
    assert all(c["call_id"] for c in route_calls)

    # filters
    assert [c["id"] for c in calls(admin, script_path=path, kind="api")["calls"]] == [
        c["id"] for c in route_calls
    ]
    assert [c["id"] for c in calls(admin, script_path=path, ok="false")["calls"]] == [newest["id"]]
    assert len(calls(admin, script_path=path, ok="true")["calls"]) == 3
    assert [c["id"] for c in calls(admin, call_id=failed_call_id)["calls"]] == [newest["id"]]
    assert [c["id"] for c in calls(admin, task_id=f"T-{n}-1")["calls"]] == [route_calls[1]["id"]]
    assert len(calls(admin, script_id=sid)["calls"]) == 4
    assert len(calls(admin, script_path=path, name=f"{n}_fail")["calls"]) == 1
    assert len(calls(admin, script_path=path, error_type="HANDLER_ERROR")["calls"]) == 1
    assert calls(admin, script_path=path, since=newest["ts"] + 3600)["calls"] == []
    assert len(calls(admin, script_path=path, since="2020-01-01T00:00:00Z")["calls"]) == 4
    assert calls(admin, script_path="no/such.py") == {
        "success": True,
        "calls": [],
        "next_cursor": None,
    }

    # paging: newest first, next_cursor while a page is full
    seen: list[int] = []
    cursor = None
    for _ in range(5):
        params: dict[str, object] = {"script_path": path, "limit": 3}
        if cursor is not None:
            params["cursor"] = cursor
        page = calls(admin, **params)
        seen += [c["id"] for c in page["calls"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert cursor == page["calls"][-1]["id"]
    assert seen == [c["id"] for c in rows]
    assert cursor is None


@pytest.mark.parametrize(
    "params",
    [
        {"nope": "1"},
        {"ok": "maybe"},
        {"kind": "event"},
        {"limit": "0"},
        {"limit": "1001"},
        {"limit": "ten"},
        {"cursor": "-1"},
        {"since": "yesterday"},
        {"since": "2026-01-02", "until": "2026-01-01"},
        {"call_id": "x" * 65},
    ],
)
def test_bad_parameters_are_400(admin, params):
    r = admin.get("/script-engine/calls", params=params)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == "BAD_PARAMETER" and body["success"] is False
    assert "Traceback" not in r.text
    assert list(params)[-1] in body["error"]


def test_the_caller_token_is_refused(calls_gw):
    gw, _ = calls_gw
    r = httpx.get(
        f"{gw.url}/script-engine/calls", headers={"Authorization": f"token {CALLER}"}, timeout=10
    )
    assert r.status_code == 403 and r.json()["code"] == "FORBIDDEN", r.text
    r = httpx.get(f"{gw.url}/script-engine/calls", timeout=10)
    assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED", r.text


def test_migration_0007_keeps_the_calls_stored_before(db_url):  # noqa: F811
    """A database at 0006 with calls in it (SQLite, and PostgreSQL and MariaDB when
    reachable): the gateway's migration adds the columns (null for the old rows); a
    call spilled by an older gateway (without them) is stored."""
    from alembic import command
    from alembic.config import Config

    from kernel_gateway.store import CallQuery, Database
    from kernel_gateway.store.db import MIGRATIONS

    db = Database(db_url)
    try:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0006")
        with db.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO vwed_calls (ts, script_id, kind, name, duration_ms, ok, "
                    "error_type, call_id) VALUES (1.5, 'old.py_1', 'api', 'GET /old', 2.0, "
                    ":ok, NULL, 'c-old')"
                ),
                {"ok": True},
            )
        db.migrate()
        old_style = {
            "ts": 2.5,
            "script_id": "old.py_1",
            "kind": "function",
            "name": "f",
            "ok": False,
            "duration_ms": 1.0,
            "error_type": "HANDLER_ERROR",
            "call_id": "c-spilled",
        }
        new_style = {
            **old_style,
            "ts": 3.5,
            "call_id": "c-new",
            "script_path": "old.py",
            "error_message": "f raised ValueError: x",
            "task_id": "T9",
        }
        db.insert_batch([], [new_style, old_style])
        rows = db.query_calls(CallQuery())
        assert [r["call_id"] for r in rows] == ["c-spilled", "c-new", "c-old"]
        assert rows[2]["script_path"] is None and rows[2]["task_id"] is None
        assert rows[2]["ok"] is True and rows[0]["ok"] is False
        assert db.query_calls(CallQuery(task_id="T9"))[0]["error_message"] == (
            "f raised ValueError: x"
        )
        db.migrate()  # again: nothing to do
    finally:
        db.close()
