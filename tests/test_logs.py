"""Logs: records from every source, call attribution, history and export (the live
stream: test_logs_stream.py)."""

from __future__ import annotations

import json
import time

from conftest import unique, wait_until

SCRIPT = """
import sys

def boot():
    VWED.log.info("boot", "{n} booting")
    VWED.function.register("{n}_talk", talk)
    VWED.function.register("{n}_partial", partial)
    VWED.function.register("{n}_huge", huge)

def talk(task_note):
    print("out line 1\\nout line 2")
    print("err line", file=sys.stderr)
    VWED.log.debug("dispatch", "debug " + task_note)
    VWED.log.warning("dispatch", "warning " + task_note)
    VWED.log.error("plc", "error " + task_note)
    return "ok"

def partial():
    print("no newline yet", end="")
    return 1

def huge(n):
    print("x" * n)
    return n
"""


def history(client, **params):
    r = client.get("/script-engine/logs", params=params)
    assert r.status_code == 200, r.text
    return r.json()["records"]


def test_each_source_maps_to_its_level_and_calls_carry_ids(scripts, client):
    n = unique("lv")
    started = scripts.start(f"{n}.py", SCRIPT.format(n=n))
    sid = started["script_id"]
    r = client.post(
        f"/script-engine/functions/{n}_talk/call", json={"args": ["T1"], "task_id": "task-42"}
    )
    call_id = r.json()["call_id"]

    def got():
        recs = history(client, script_id=sid, order="asc", limit=100)
        return (
            recs
            if any(x["tag"] == "plc" for x in recs) and any(x["source"] == "stderr" for x in recs)
            else None
        )

    recs = wait_until(got, 10, "the call's records")
    by = {(x["source"], x["message"]): x for x in recs}
    assert by[("stdout", "out line 1\nout line 2")]["level"] == "INFO"
    assert by[("stderr", "err line")]["level"] == "WARNING"
    assert (
        by[("vwed", "debug T1")]["level"] == "DEBUG"
        and by[("vwed", "debug T1")]["tag"] == "dispatch"
    )
    assert by[("vwed", "warning T1")]["level"] == "WARNING"
    assert by[("vwed", "error T1")]["level"] == "ERROR" and by[("vwed", "error T1")]["tag"] == "plc"
    for key in [("stdout", "out line 1\nout line 2"), ("stderr", "err line"), ("vwed", "error T1")]:
        assert by[key]["call_id"] == call_id and by[key]["task_id"] == "task-42"
        assert by[key]["script_id"] == sid and isinstance(by[key]["run_id"], int)
    boot = by[("vwed", f"{n} booting")]
    assert boot["call_id"] is None and boot["tag"] == "boot"
    engine = [x["message"] for x in recs if x["source"] == "engine"]
    assert any(m.startswith("starting") for m in engine) and any(
        m.startswith("booted") for m in engine
    )
    # level means "this level and above"
    assert {x["level"] for x in history(client, script_id=sid, level="warning")} <= {
        "WARNING",
        "ERROR",
    }
    assert [x["message"] for x in history(client, call_id=call_id, tag="plc")] == ["error T1"]
    assert [x["message"] for x in history(client, task_id="task-42", source="stderr")] == [
        "err line"
    ]


def test_load_errors_are_error_records_without_colour(scripts, client):
    path = scripts.write(f"{unique('lerr')}.py", "raise ValueError('bad config in line 1')\n")
    assert client.post("/script-engine/start", json={"script_path": path}).status_code == 422

    def got():
        return [
            x
            for x in history(client, source="error", q="bad config")
            if path in (x["script_id"] or "")
        ]

    rec = wait_until(got, 10, "the error record")[0]
    assert (
        rec["level"] == "ERROR" and "ValueError" in rec["message"] and "\x1b[" not in rec["message"]
    )


def test_partial_lines_are_joined_and_huge_prints_split(scripts, client):
    n = unique("part")
    sid = scripts.start(f"{n}.py", SCRIPT.format(n=n))["script_id"]
    client.post(f"/script-engine/functions/{n}_partial/call", json={})
    rec = wait_until(lambda: history(client, script_id=sid, q="no newline yet"), 10, "partial line")
    assert rec[0]["message"] == "no newline yet"
    client.post(f"/script-engine/functions/{n}_huge/call", json={"args": [40_000]})

    def pieces():
        recs = history(client, script_id=sid, source="stdout", q="xxxx", order="asc")
        return recs if recs and "characters cut" in recs[-1]["message"] else None

    recs = wait_until(pieces, 10, "the huge line")
    assert len(recs[-1]["message"]) <= 16 * 1024
    assert "characters cut" in recs[-1]["message"]


def test_stopped_scripts_logs_stay_with_the_runs_exit_reason(scripts, client):
    n = unique("stopped")
    sid = scripts.start(f"{n}.py", SCRIPT.format(n=n))["script_id"]
    client.post(f"/script-engine/functions/{n}_talk/call", json={"args": ["S"]})
    assert client.post("/script-engine/stop", json={"script_id": sid}).status_code == 200
    recs = wait_until(
        lambda: history(client, script_path=f"{n}.py", source="engine", q="stopped"),
        10,
        "the stop record",
    )
    assert recs[0]["script_id"] == sid
    # The call's line travels on iopub, its answer on the fast channel: the line may be stored
    # a moment after the stop record, but it is stored (nothing of a stopped script is lost).
    wait_until(lambda: history(client, script_id=sid, q="error S"), 10, "the call's log line")
    runs = wait_until(
        lambda: [
            r
            for r in client.get("/script-engine/runs", params={"script_path": f"{n}.py"}).json()[
                "runs"
            ]
            if r["status"] == "stopped"
        ],
        10,
        "the run row",
    )
    assert runs[0]["script_id"] == sid and runs[0]["exit_reason"] == "stopped"
    assert runs[0]["stopped_at"] >= runs[0]["started_at"]


def test_bad_history_parameters_name_the_parameter(client):
    for params, name in (
        ({"level": "LOUD"}, "level"),
        ({"limit": "0"}, "limit"),
        ({"since": "yesterday"}, "since"),
        ({"cursor": "x"}, "cursor"),
        ({"order": "up"}, "order"),
        ({"colour": "red"}, "colour"),
        ({"since": "2026-01-02", "until": "2026-01-01"}, "until"),
    ):
        r = client.get("/script-engine/logs", params=params)
        assert r.status_code == 400 and r.json()["code"] == "BAD_PARAMETER", params
        assert r.json()["parameter"] == name
    r = client.get("/script-engine/logs/export", params={"format": "xml"})
    assert r.status_code == 400 and r.json()["parameter"] == "format"
    r = client.get("/script-engine/logs/ws", params={"tail": "-1"})
    assert r.status_code == 400 and r.json()["parameter"] == "tail"


def test_export_ndjson_and_csv(scripts, client):
    n = unique("exp")
    sid = scripts.start(f"{n}.py", SCRIPT.format(n=n))["script_id"]
    client.post(f"/script-engine/functions/{n}_talk/call", json={"args": ["E"]})
    wait_until(lambda: history(client, script_id=sid, q="error E"), 10, "records")
    r = client.get("/script-engine/logs/export", params={"script_id": sid, "order": "asc"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    assert "attachment" in r.headers["content-disposition"]
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert [x["id"] for x in lines] == sorted(x["id"] for x in lines)
    assert "error E" in [x["message"] for x in lines]
    r = client.get(
        "/script-engine/logs/export", params={"script_id": sid, "format": "csv", "level": "ERROR"}
    )
    assert r.headers["content-type"].startswith("text/csv")
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["message"] for row in rows] == ["error E"] and rows[0]["level"] == "ERROR"
    assert time.time() - float(rows[0]["ts"]) < 600


def test_flood_does_not_stall_routing_and_drops_are_counted(tmp_path):
    import concurrent.futures

    import httpx

    from conftest import GatewayThread
    from kernel_gateway.config import Settings

    (tmp_path / "flood.py").write_text(
        "def boot():\n    VWED.function.register('flood', flood)\n\n"
        "def flood(n):\n    for i in range(n):\n        VWED.log.info('flood', f'line {i}')\n"
        "        print(f'print {i}')\n    return n\n"
    )
    (tmp_path / "calm.py").write_text(
        "def boot():\n    VWED.api.register_route('/calm/ping', 'GET', lambda: 'pong')\n"
    )
    gw = GatewayThread(
        Settings(
            scripts_dir=str(tmp_path),
            port=0,
            data_dir=str(tmp_path / "d"),
            pool_size=2,
            log_queue_max=500,
            auth=False,
        ).validated()
    ).start()
    try:
        with httpx.Client(base_url=gw.url, timeout=60) as c:
            assert (
                c.post("/script-engine/start", json={"script_path": "flood.py"}).status_code == 200
            )
            assert (
                c.post("/script-engine/start", json={"script_path": "calm.py"}).status_code == 200
            )
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                flood = pool.submit(
                    lambda: httpx.post(
                        f"{gw.url}/script-engine/functions/flood/call",
                        json={"args": [40_000]},
                        timeout=120,
                    )
                )
                answers = []
                while not flood.done():
                    answers.append(c.get("/script-api/calm/ping").status_code)
                assert flood.result().status_code == 200
            assert answers and set(answers) == {200}  # routing kept going during the flood

            def drop_note():
                recs = c.get(
                    "/script-engine/logs", params={"source": "engine", "q": "were not stored"}
                ).json()
                return recs["records"]

            note = wait_until(drop_note, 20, "the record counting dropped log records")
            assert note[0]["level"] == "WARNING"
            dropped = int(note[0]["message"].split()[0])
            stored = c.get("/script-engine/logs", params={"tag": "flood", "limit": 1}).json()
            assert dropped > 0 and stored["records"]  # some stored, the rest counted
    finally:
        gw.stop()
