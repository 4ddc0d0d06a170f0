"""Task-flow steps in warm worker kernels: modes, binding, cache, variables, failures."""

from __future__ import annotations

import concurrent.futures
import json
import os
import time

import httpx

from conftest import GatewayThread, unique, wait_until
from kernel_gateway.config import Settings

STEPS = """
import asyncio, os, sys, time
LOADS = [0]
LOADS[0] += 1
VERSION = "{version}"

def add(a, b=1):
    print(f"adding {{a}}+{{b}}")
    return a + b

def whole(payload):
    return payload

def version():
    return {{"version": VERSION, "loads": LOADS[0]}}

def as_variables(prefix):
    return {{prefix + "_a": 1, prefix + "_b": 2}}

def key(name, value):
    time.sleep(0.01)
    return {{name: value}}

async def twice(x):
    await asyncio.sleep(0.01)
    return 2 * x

def boom():
    print("about to fail", file=sys.stderr)
    raise RuntimeError("conveyor jammed")

def spin():
    while True:
        pass

def nap(seconds):
    time.sleep(seconds)
    return seconds

def die():
    os._exit(9)

def logs(note):
    VWED.log.warning("step", "note " + note)
    return note
"""

OLD_RUNNER = """#!/usr/bin/env python3
import json
import os
import sys

def main():
    variables = {}
    if '--variables-file' in sys.argv:
        idx = sys.argv.index('--variables-file')
        with open(sys.argv[idx + 1], 'r', encoding='utf-8') as f:
            variables = json.load(f)
    print(f"Variables: {list(variables.keys())}", file=sys.stderr)
    items = variables.get('news_data', [])
    print("processing", len(items), "items")
    print(json.dumps({"status": "success", "count": len(items), "argv1": sys.argv[1]}))

if __name__ == "__main__":
    main()
"""

EXECUTE_STYLE = """
TOTAL = 0

def execute():
    global TOTAL
    TOTAL += variables.get("n", 1)
    return {"total": TOTAL, "name": __name__}
"""


def step(client, path, function=None, **kw):
    body = {"script_path": path, **({"function_name": function} if function else {}), **kw}
    return client.post("/script-engine/execute", json=body)


def write_steps(scripts, version="v1"):
    name = unique("steps")
    scripts.write(f"{name}.py", STEPS.format(version=version))
    return f"{name}.py"


def test_modes_and_binding(scripts, client):
    path = write_steps(scripts)
    r = step(client, path, "add", args={"a": 2, "b": 3})
    body = r.json()
    assert r.status_code == 200, r.text
    assert body["result"] == 5 and body["variables"] == {"scriptResult": 5}
    assert "adding 2+3" in body["stdout"] and body["execution_id"] and body["duration_ms"] > 0
    assert step(client, path, "add", args=[4]).json()["result"] == 5
    assert step(client, path, "add", args="[4, 6]").json()["result"] == 10
    assert step(client, path, "add", args="(1, 1)").json()["result"] == 2
    assert step(client, path, "whole", args={"x": 1, "y": 2}).json()["result"] == {"x": 1, "y": 2}
    r = step(client, path, "as_variables", args=["p"], mode="SET_TASK_VARIABLES")
    assert r.json()["variables"] == {"p_a": 1, "p_b": 2}
    r = step(client, path, "add", args=[1], mode="SET_TASK_VARIABLES")
    assert r.json()["variables"] == {"scriptResult": 2}  # not a dict: scriptResult
    assert step(client, path, "twice", args=[21]).json()["result"] == 42


def test_run_mode_runs_old_scripts_unchanged(scripts, client):
    old = scripts.write(f"{unique('old')}.py", OLD_RUNNER)
    r = step(client, old, mode="RUN", args={"news_data": [{"title": "a"}, {"title": "b"}]})
    body = r.json()
    assert r.status_code == 200, r.text
    assert body["result"]["status"] == "success" and body["result"]["count"] == 2
    assert body["result"]["argv1"] == "--variables-file"
    assert "Variables: ['news_data']" in body["stderr"]
    assert body["variables"] == {"scriptResult": body["result"]}
    ex = scripts.write(f"{unique('exe')}.py", EXECUTE_STYLE)
    r1 = step(client, ex, mode="RUN", args={"n": 5})
    r2 = step(client, ex, mode="RUN", args={"n": 5})
    assert r1.json()["result"] == {"total": 5, "name": "__main__"}
    assert r2.json()["result"]["total"] == 5  # every RUN starts from a fresh namespace
    text = scripts.write(f"{unique('txt')}.py", "print('hello')\nprint('not json')\n")
    assert step(client, text, mode="RUN").json()["result"] == {"result": "hello\nnot json"}
    failing = scripts.write(f"{unique('exit')}.py", "import sys\nprint('bad input')\nsys.exit(3)\n")
    r = step(client, failing, mode="RUN")
    assert r.status_code == 422 and r.json()["code"] == "STEP_FAILED" and r.json()["exit_code"] == 3
    ok_exit = scripts.write(
        f"{unique('exit0')}.py", "import sys\nprint('{\"fine\": 1}')\nsys.exit(0)\n"
    )
    assert step(client, ok_exit, mode="RUN").json()["result"] == {"fine": 1}


def test_module_cache_and_reload_after_edit(scripts, client, scripts_dir):
    path = write_steps(scripts, "v1")
    seen = [step(client, path, "version").json()["result"] for _ in range(6)]
    assert {s["version"] for s in seen} == {"v1"}
    assert {s["loads"] for s in seen} == {1}  # import-time code ran once per worker
    edited = scripts_dir / path
    later = edited.stat().st_mtime_ns + 1_000_000_000  # a new mtime, set rather than waited for
    edited.write_text(STEPS.format(version="v2") + "\n# edited\n")
    os.utime(edited, ns=(later, later))
    seen = [step(client, path, "version").json()["result"] for _ in range(4)]
    assert {s["version"] for s in seen} == {"v2"} and {s["loads"] for s in seen} == {1}


def test_concurrent_steps_of_one_task_merge_variables(scripts, client, gw):
    path = write_steps(scripts)
    task = unique("task")
    with (
        httpx.Client(base_url=gw.url, timeout=60) as c,
        concurrent.futures.ThreadPoolExecutor(8) as pool,
    ):
        answers = list(
            pool.map(
                lambda i: step(
                    c, path, "key", args=[f"k{i}", i], task_id=task, mode="SET_TASK_VARIABLES"
                ),
                range(12),
            )
        )
    assert all(a.status_code == 200 for a in answers), [
        a.text for a in answers if a.status_code != 200
    ]
    r = client.get(f"/script-engine/tasks/{task}/variables")
    assert r.json()["variables"] == {f"k{i}": i for i in range(12)}
    assert (
        client.get("/script-engine/tasks/no-such-task/variables").json()["code"] == "TASK_NOT_FOUND"
    )
    rows = wait_until(
        lambda: (lambda xs: xs if len(xs) == 12 else None)(
            client.get("/script-engine/executions", params={"task_id": task}).json()["executions"]
        ),
        10,
        "the 12 executions to be stored",
    )
    assert all(x["ok"] and x["mode"] == "SET_TASK_VARIABLES" for x in rows)


def test_errors(scripts, client):
    path = write_steps(scripts)
    r = step(client, "no/such/file.py", "f")
    assert r.status_code == 404 and r.json()["code"] == "SCRIPT_NOT_FOUND"
    r = step(client, path, "nothing_here")
    assert r.status_code == 404 and r.json()["code"] == "FUNCTION_NOT_FOUND"
    assert {"add", "version", "boom"} <= set(r.json()["available"])
    r = step(client, path, "add", args={"a": 1, "zz": 1})
    assert (
        r.status_code == 400 and r.json()["code"] == "BAD_ARGUMENTS" and "zz" in r.json()["error"]
    )
    r = step(client, path, "boom", task_id="T-err")
    body = r.json()
    assert r.status_code == 422 and body["code"] == "STEP_FAILED"
    assert body["type"] == "RuntimeError" and body["message"] == "conveyor jammed"
    assert "raise RuntimeError" in body["traceback"] and "about to fail" in body["stderr"]
    rows = wait_until(
        lambda: client.get("/script-engine/executions", params={"task_id": "T-err"}).json()[
            "executions"
        ],
        10,
        "the failed execution",
    )
    assert rows[0]["ok"] is False and rows[0]["error_type"] == "RuntimeError"
    assert step(client, path, "add", mode="FAST").status_code == 400
    assert step(client, path, None).json()["code"] == "MISSING_FIELD"
    assert step(client, path, "add", timeout=-1).status_code == 400
    assert step(client, "../x.py", "f").json()["code"] == "PATH_INVALID"


def test_timeout_interrupts_and_the_worker_serves_again(scripts, client):
    path = write_steps(scripts)
    t0 = time.monotonic()
    r = step(client, path, "spin", timeout=1)
    assert r.status_code == 504 and r.json()["code"] == "CALL_TIMEOUT"
    assert time.monotonic() - t0 < 10
    for _ in range(4):  # every worker answers
        assert step(client, path, "add", args=[1]).json()["result"] == 2


def test_a_step_that_kills_its_worker(scripts, client, gw):
    path = write_steps(scripts)
    t0 = time.monotonic()
    r = step(client, path, "die")
    assert r.status_code == 502 and r.json()["code"] == "KERNEL_DIED"
    assert time.monotonic() - t0 < 5
    target = gw.gateway.workers.size
    wait_until(
        lambda: client.get("/script-engine/health").json()["workers"]["workers"] == target,
        60,
        "the replacement worker",
    )
    assert step(client, path, "add", args=[2]).json()["result"] == 3


def test_cancel_a_running_step(scripts, client, gw):
    path = write_steps(scripts)
    with (
        concurrent.futures.ThreadPoolExecutor(1) as pool,
        httpx.Client(base_url=gw.url, timeout=60) as c,
    ):
        fut = pool.submit(lambda: step(c, path, "spin", timeout=60))
        running = wait_until(
            lambda: client.get("/script-engine/executions").json()["running"], 10, "the step to run"
        )
        r = client.post(f"/script-engine/executions/{running[0]}/cancel")
        assert r.status_code == 200 and r.json()["cancelled"] is True
        answer = fut.result(30)
    assert answer.status_code == 409 and answer.json()["code"] == "CANCELLED"
    assert (
        client.post("/script-engine/executions/nope/cancel").json()["code"] == "EXECUTION_NOT_FOUND"
    )


def test_step_logs_carry_task_and_execution(scripts, client):
    path = write_steps(scripts)
    r = step(client, path, "logs", args=["N1"], task_id="T-logs")
    eid = r.json()["execution_id"]
    recs = wait_until(
        lambda: client.get("/script-engine/logs", params={"call_id": eid}).json()["records"],
        10,
        "the step's log",
    )
    assert recs[0]["task_id"] == "T-logs" and recs[0]["message"] == "note N1"
    assert recs[0]["tag"] == "step" and recs[0]["script_id"] == path


def test_a_full_queue_answers_busy(tmp_path):
    (tmp_path / "s.py").write_text("import time\ndef nap(s):\n    time.sleep(s)\n    return s\n")
    gw = GatewayThread(
        Settings(
            scripts_dir=str(tmp_path),
            port=0,
            data_dir=str(tmp_path / "d"),
            pool_size=0,
            workers=1,
            step_queue=1,
            auth=False,
        ).validated()
    ).start()
    try:
        wait_until(lambda: gw.gateway.workers.idle == 1, 60, "the worker")
        with (
            httpx.Client(base_url=gw.url, timeout=60) as c,
            concurrent.futures.ThreadPoolExecutor(2) as pool,
        ):
            first = pool.submit(lambda: step(c, "s.py", "nap", args=[1.5]))
            wait_until(lambda: gw.gateway.steps.running, 10, "the first step")
            second = pool.submit(lambda: step(c, "s.py", "nap", args=[0]))
            wait_until(lambda: gw.gateway.workers.waiting == 1, 10, "the second step to wait")
            r = step(c, "s.py", "nap", args=[0])
            assert r.status_code == 503 and r.json()["code"] == "BUSY"
            assert r.headers["retry-after"] == "1"
            assert first.result(30).status_code == 200 and second.result(30).status_code == 200
    finally:
        gw.stop()


def test_execute_is_documented_in_json_errors(client):
    r = client.post(
        "/script-engine/execute", content=b"not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and json.loads(r.text)["code"] == "INVALID_JSON"
