"""Logs: records from every source, call attribution, live stream, history."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest

from conftest import unique, wait_until
from logclient import collect, records

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


def test_tail_replay_then_live_records(scripts, client, gw):
    n = unique("tail")
    sid = scripts.start(f"{n}.py", SCRIPT.format(n=n))["script_id"]
    for i in range(5):
        client.post(f"/script-engine/functions/{n}_talk/call", json={"args": [f"R{i}"]})
    wait_until(lambda: history(client, script_id=sid, q="error R4"), 10, "stored records")
    url = f"ws://127.0.0.1:{gw.gateway.port}/script-engine/logs/ws?script_id={sid}&tag=plc&tail=3"

    async def scenario():
        replayed = asyncio.Event()

        def done(messages):
            if len(records(messages)) >= 3:
                replayed.set()
            return len(records(messages)) >= 5

        reader = asyncio.ensure_future(collect(url, done, 20))
        # live records only once the replay of the last 3 has arrived
        await asyncio.wait_for(replayed.wait(), 20)
        loop = asyncio.get_running_loop()
        for tag in ("L1", "L2"):
            await loop.run_in_executor(
                None,
                lambda t=tag: client.post(
                    f"/script-engine/functions/{n}_talk/call", json={"args": [t]}
                ),
            )
        return await reader

    got = [r["message"] for r in records(asyncio.run(scenario()))]
    assert got == ["error R2", "error R3", "error R4", "error L1", "error L2"]


def test_two_subscribers_get_exactly_theirs(scripts, client, gw):
    a, b = unique("subA"), unique("subB")
    sa = scripts.start(f"{a}.py", SCRIPT.format(n=a))["script_id"]
    sb = scripts.start(f"{b}.py", SCRIPT.format(n=b))["script_id"]
    base = f"ws://127.0.0.1:{gw.gateway.port}/script-engine/logs/ws"

    async def scenario():
        ea, eb = asyncio.Event(), asyncio.Event()
        want_a = {"out line 1\nout line 2", "err line", "debug A", "warning A", "error A"}
        ra = asyncio.ensure_future(
            collect(
                f"{base}?script_id={sa}",
                lambda m: want_a <= {r["message"] for r in records(m)},
                20,
                ea,
            )
        )
        rb = asyncio.ensure_future(
            collect(
                f"{base}?script_id={sb}&level=ERROR",
                lambda m: any("error B" in r["message"] for r in records(m)),
                20,
                eb,
            )
        )
        await ea.wait()
        await eb.wait()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            None,
            lambda: client.post(f"/script-engine/functions/{a}_talk/call", json={"args": ["A"]}),
        )
        await loop.run_in_executor(
            None,
            lambda: client.post(f"/script-engine/functions/{b}_talk/call", json={"args": ["B"]}),
        )
        return await ra, await rb

    ma, mb = asyncio.run(scenario())
    assert {r["script_id"] for r in records(ma)} == {sa}
    assert {"out line 1\nout line 2", "err line", "debug A", "warning A", "error A"} <= {
        r["message"] for r in records(ma)
    }
    assert [r["message"] for r in records(mb)] == ["error B"]


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


@pytest.mark.timeout(240)
def test_a_slow_subscriber_is_cut_off_while_a_fast_one_keeps_up(tmp_path):
    # The gateway runs as its own process here, so the fast reader (in this process)
    # does not share an interpreter lock with it.
    import os
    import subprocess
    import sys

    import httpx

    (tmp_path / "flood.py").write_text(
        "def boot():\n    VWED.function.register('flood', flood)\n\n"
        "def flood(n):\n    for i in range(n):\n        print(f'{i:06d} ' + 'y' * 100)\n    return n\n"
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kernel_gateway",
            "--scripts-dir",
            str(tmp_path),
            "--data-dir",
            str(tmp_path / "d"),
            "--port",
            str(port),
            "--pool-size",
            "1",
            "--workers",
            "1",
            # 12 MiB of ring: room for a fast reader on a loaded machine, and still well
            # under the 21 MB flood, so the reader that never reads is cut off
            "--log-buffer-mb",
            "12",
            "--call-timeout",
            "180",
            "--no-auth",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ),
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def up():
            try:
                return httpx.get(f"{base}/script-engine/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, 60, "the gateway")
        with httpx.Client(base_url=base, timeout=180) as c:
            sid = c.post("/script-engine/start", json={"script_path": "flood.py"}).json()[
                "script_id"
            ]
            url = f"ws://127.0.0.1:{port}/script-engine/logs/ws?script_id={sid}"
            slow = _raw_ws(port, f"/script-engine/logs/ws?script_id={sid}")
            lines_total = 200_000

            async def scenario():
                opened = asyncio.Event()
                fast = asyncio.ensure_future(
                    collect(
                        url,
                        lambda m: bool(m) and f"{lines_total - 1:06d} " in m[-1].get("message", ""),
                        180,
                        opened,
                    )
                )
                await opened.wait()
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(
                    None,
                    lambda: c.post(
                        "/script-engine/functions/flood/call", json={"args": [lines_total]}
                    ),
                )
                return await fast

            fast_messages = asyncio.run(scenario())
            assert not [m for m in fast_messages if m.get("type") == "notice"]
            lines = "\n".join(r["message"] for r in records(fast_messages)).split("\n")
            assert len(lines) == lines_total  # the fast subscriber got every line
            # the slow one was told and disconnected
            slow.setblocking(True)
            slow.settimeout(30)
            data = b""
            while True:
                chunk = slow.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
            assert b"SLOW_CONSUMER" in data
    finally:
        proc.terminate()
        proc.wait(30)


def _raw_ws(port: int, path: str) -> socket.socket:
    """A WebSocket client that completes the handshake and then does not read."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


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
