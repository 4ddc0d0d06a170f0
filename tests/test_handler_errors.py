"""A handler that raises: the caller gets its error answer, and the script's log gets
one ERROR record with the exception's type, message and traceback, attributed to the
call (and task); the call is counted as failed in the call history."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import httpx
from tornado.websocket import websocket_connect

from conftest import GatewayThread, unique, wait_until
from kernel_gateway.config import Settings

SCRIPT = """
import asyncio


def boot():
    VWED.api.register_route("/{n}/boom", "GET", boom)
    VWED.api.register_route("/{n}/aboom", "POST", aboom)
    VWED.api.register_route("/{n}/nan", "GET", lambda: object())
    VWED.function.register("{n}_fail", fail)
    VWED.event.listen("{n}_evt", bad_listener)
    VWED.event.listen("{n}_evt", good_listener)
    VWED.api.register_websocket("/{n}/ws", bad_ws)


def boom(request):
    raise ValueError("bad pallet 7")


async def aboom(request):
    await asyncio.sleep(0)
    raise KeyError("no such dock")


def fail(order):
    raise RuntimeError("conveyor jammed " + str(order))


def bad_listener(data):
    raise LookupError("no dock for " + str(data))


def good_listener(data):
    return data


def bad_ws(message):
    raise ZeroDivisionError("ws says " + message)
"""

STEPS = """
def explode(box):
    print("about to explode")
    raise OSError("step blew up on " + box)
"""


def records(client, **params):
    r = client.get("/script-engine/logs", params={"order": "asc", "limit": 100, **params})
    assert r.status_code == 200, r.text
    return r.json()["records"]


def the_error_record(client, call_id):
    """The call's ERROR records, once there is one (the log op and the answer travel on
    different channels, so the record may arrive just after the answer)."""
    return wait_until(
        lambda: [r for r in records(client, call_id=call_id) if r["level"] == "ERROR"],
        10,
        f"the ERROR record of call {call_id}",
    )


def only_one(client, call_id):
    recs = the_error_record(client, call_id)
    assert len(recs) == 1, recs
    return recs[0]


def call_row(gw, call_id):
    """The call's row in the call history (vwed_calls, stored in batches)."""
    path = gw.settings.database_url[len("sqlite:///") :]

    def row():
        with sqlite3.connect(path) as db:
            return db.execute(
                "SELECT ok, error_type, kind FROM vwed_calls WHERE call_id = ?", (call_id,)
            ).fetchone()

    return wait_until(row, 10, f"the history row of call {call_id}")


def test_a_route_that_raises_is_a_500_and_one_error_record(scripts, client, gw):
    n = unique("herr")
    sid = scripts.start(f"{n}.py", SCRIPT.format(n=n))["script_id"]
    r = client.get(f"/script-api/{n}/boom", headers={"X-VWED-Task-Id": "T-route"})
    body = r.json()
    assert r.status_code == 500 and body["code"] == "HANDLER_ERROR", body
    assert body["type"] == "ValueError" and "traceback" not in body  # --debug is off
    call_id = body["call_id"]
    rec = only_one(client, call_id)
    assert rec["script_id"] == sid and rec["task_id"] == "T-route"
    assert rec["source"] == "vwed" and rec["tag"] == "route"
    first, _, trace = rec["message"].partition("\n")
    assert first == f"route GET /{n}/boom raised ValueError: bad pallet 7"
    assert trace.startswith("Traceback (most recent call last):")
    assert 'raise ValueError("bad pallet 7")' in trace and "dispatch.py" not in trace
    assert call_row(gw, call_id) == (0, "HANDLER_ERROR", "api")

    # an async handler: the record is sent when its task fails, still with the call id
    r = client.post(f"/script-api/{n}/aboom", json={})
    assert r.status_code == 500 and r.json()["type"] == "KeyError"
    rec = only_one(client, r.json()["call_id"])
    assert rec["message"].startswith(f"route POST /{n}/aboom raised KeyError: 'no such dock'")
    assert "await asyncio.sleep(0)" in rec["message"] or "raise KeyError" in rec["message"]

    # a result that cannot be serialized is the script's failure too
    r = client.get(f"/script-api/{n}/nan")
    assert r.status_code == 500 and r.json()["code"] == "RESULT_NOT_SERIALIZABLE"
    rec = only_one(client, r.json()["call_id"])
    assert "is not JSON-serializable" in rec["message"]
    assert call_row(gw, r.json()["call_id"])[:2] == (0, "RESULT_NOT_SERIALIZABLE")

    # a success writes no ERROR record; the caller's own mistakes are not the script's
    r = client.get(f"/script-api/{n}/nowhere")
    assert r.status_code == 404
    errors = [x for x in records(client, script_id=sid) if x["level"] == "ERROR"]
    assert len(errors) == 3  # one per failure, no duplicate


def test_a_function_that_raises(scripts, client, gw):
    n = unique("ferr")
    sid = scripts.start(f"{n}.py", SCRIPT.format(n=n))["script_id"]
    r = client.post(
        f"/script-engine/functions/{n}_fail/call", json={"args": ["A7"], "task_id": "T-fn"}
    )
    body = r.json()
    assert r.status_code == 500 and body["code"] == "HANDLER_ERROR"
    assert body["type"] == "RuntimeError" and body["message"] == "conveyor jammed A7"
    rec = only_one(client, body["call_id"])
    assert rec["script_id"] == sid and rec["task_id"] == "T-fn" and rec["tag"] == "function"
    assert rec["message"].startswith(f"function {n}_fail raised RuntimeError: conveyor jammed A7")
    assert "Traceback" in rec["message"] and "def fail" not in rec["message"]
    assert "raise RuntimeError" in rec["message"]
    assert call_row(gw, body["call_id"]) == (0, "HANDLER_ERROR", "function")
    # filtered by the task id too
    assert [x["id"] for x in records(client, task_id="T-fn", level="ERROR")] == [rec["id"]]
    # bad arguments are the caller's: 400, no ERROR record of the script
    r = client.post(f"/script-engine/functions/{n}_fail/call", json={"args": [1, 2, 3]})
    assert r.status_code == 400 and r.json()["code"] == "BAD_ARGUMENTS"
    assert records(client, call_id=r.json()["call_id"], level="ERROR") == []


def test_a_listener_and_a_websocket_that_raise(scripts, client, gw):
    n = unique("lerr")
    sid = scripts.start(f"{n}.py", SCRIPT.format(n=n))["script_id"]
    r = client.post(f"/script-engine/events/{n}_evt", json={"data": "D9", "task_id": "T-ev"})
    body = r.json()
    assert body["delivered"] == 1 and len(body["failed"]) == 1, body
    failed = body["failed"][0]
    assert failed["type"] == "LookupError"
    rec = only_one(client, failed["call_id"])
    assert rec["tag"] == "listener" and rec["script_id"] == sid
    assert rec["message"].startswith(
        f"listener {failed['listener']} raised LookupError: no dock for D9"
    )
    # the gateway adds no record of its own for it (one record per failure)
    assert not [
        x for x in records(client, script_id=sid, source="engine") if "failed" in x["message"]
    ]

    async def talk():
        url = gw.url.replace("http", "ws") + f"/script-ws/{n}/ws"
        conn = await asyncio.wait_for(websocket_connect(url), 10)
        try:
            await conn.write_message("hello")
            return json.loads(await asyncio.wait_for(conn.read_message(), 10))
        finally:
            conn.close()

    answer = asyncio.run(talk())
    assert answer["type"] == "error" and answer["code"] == "HANDLER_ERROR"
    recs = wait_until(
        lambda: [
            x for x in records(client, script_id=sid, level="ERROR") if x["tag"] == "websocket"
        ],
        10,
        "the WebSocket handler's ERROR record",
    )
    assert len(recs) == 1 and recs[0]["call_id"]
    assert recs[0]["message"].startswith(
        f"WebSocket /{n}/ws raised ZeroDivisionError: ws says hello"
    )


def test_a_step_that_raises_is_attributed_to_its_task(scripts, client):
    n = unique("serr")
    path = scripts.write(f"steps/{n}.py", STEPS)
    r = client.post(
        "/script-engine/execute",
        json={
            "script_path": path,
            "function_name": "explode",
            "args": ["B1"],
            "task_id": f"T-{n}",
        },
    )
    body = r.json()
    assert r.status_code == 422 and body["code"] == "STEP_FAILED", body
    rec = only_one(client, body["execution_id"])
    assert rec["task_id"] == f"T-{n}" and rec["tag"] == "step"
    assert rec["message"].startswith("step explode of ")
    assert "raised OSError: step blew up on B1" in rec["message"]
    assert "Traceback" in rec["message"]
    rows = wait_until(
        lambda: client.get("/script-engine/executions", params={"task_id": f"T-{n}"}).json()[
            "executions"
        ],
        10,
        "the failed execution",
    )
    assert rows[0]["ok"] is False and rows[0]["error_type"] == "OSError"


def test_debug_decides_only_what_the_answer_carries(tmp_path):
    """With --debug the 500 carries the traceback; the log gets the same one record
    either way (without --debug: the tests above)."""
    (tmp_path / "dbg.py").write_text(SCRIPT.format(n="dbg"))
    gw = GatewayThread(
        Settings(
            scripts_dir=str(tmp_path),
            port=0,
            data_dir=str(tmp_path / "d"),
            pool_size=1,
            workers=1,
            auth=False,
            debug=True,
        ).validated()
    ).start()
    try:
        with httpx.Client(base_url=gw.url, timeout=60) as c:
            assert c.post("/script-engine/start", json={"script_path": "dbg.py"}).status_code == 200
            body = c.get("/script-api/dbg/boom").json()
            assert body["code"] == "HANDLER_ERROR"
            assert 'raise ValueError("bad pallet 7")' in body["traceback"]
            rec = only_one(c, body["call_id"])
            assert rec["message"].split("\n", 1)[1] == body["traceback"].rstrip()
    finally:
        gw.stop()


def test_a_step_sent_again_after_a_cache_miss_keeps_its_execution_id(tmp_path):
    """A worker that dropped a file's module (it keeps 64) answers ``cache_miss`` and
    the step is sent again with the source: its ERROR record still carries the
    execution id and the task id."""
    from vwed_kernel.steps import MAX_CACHED

    for i in range(MAX_CACHED + 1):
        (tmp_path / f"s{i}.py").write_text(STEPS)
    gw = GatewayThread(
        Settings(
            scripts_dir=str(tmp_path),
            port=0,
            data_dir=str(tmp_path / "d"),
            pool_size=0,
            workers=1,
            auth=False,
        ).validated()
    ).start()
    try:
        wait_until(lambda: gw.gateway.workers.idle == 1, 60, "the worker")
        with httpx.Client(base_url=gw.url, timeout=60) as c:

            def run(i, task):
                body = {"script_path": f"s{i}.py", "function_name": "explode", "args": ["X"]}
                return c.post("/script-engine/execute", json={**body, "task_id": task}).json()

            for i in range(MAX_CACHED + 1):  # s0 is the oldest of the worker's modules
                assert run(i, f"T-fill-{i}")["code"] == "STEP_FAILED"
            body = run(0, "T-again")
            assert body["code"] == "STEP_FAILED"
            rec = only_one(c, body["execution_id"])
            assert rec["task_id"] == "T-again" and "s0.py raised OSError" in rec["message"]
    finally:
        gw.stop()


def test_without_a_gateway_a_failing_listener_prints_its_traceback(capsys):
    from vwed_kernel.vwed import VWED

    vwed = VWED()

    def bad(data):
        raise LookupError("no dock for " + data)

    vwed.event.listen("arrived", bad)
    report = vwed.event.emit("arrived", "D4")
    assert report["delivered"] == 0 and report["failed"][0]["type"] == "LookupError"
    err = capsys.readouterr().err
    assert "[ERROR] listener: listener arrived#1 raised LookupError: no dock for D4" in err
    assert 'raise LookupError("no dock for " + data)' in err
