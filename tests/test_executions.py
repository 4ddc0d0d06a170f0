"""Asynchronous executions of task-flow steps (issue 18): submitted (202), followed
(progress and output over a WebSocket and in the record), waited for, cancelled (running
and queued), retried with backoff, deduplicated by an idempotency key; what the caller
token may do. Kill -9 and restart: tests/test_executions_restart.py."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import GatewayThread, token_gateway, wait_until
from logclient import collect

pytestmark = pytest.mark.timeout(120)

ADMIN, CALLER = "exec-admin-token", "exec-caller-token"

JOB = """
import time
from pathlib import Path


class DeviceError(Exception):
    pass


def _wait_for(path):
    deadline = time.monotonic() + 30
    while not Path(path).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.02)


def report(n, go):
    _wait_for(go)
    for i in range(1, n + 1):
        VWED.progress(i, total=n, message=f"pallet {i}")
        print(f"moved pallet {i}")
        time.sleep(0.3)
    return {"moved": n}


def nap(seconds):
    time.sleep(seconds)
    return seconds


def nap_reported(seconds):
    VWED.progress(None, message="napping")  # the step runs now (sent at once)
    time.sleep(seconds)
    return seconds


async def nap_blocked(seconds):
    # an async step blocked in synchronous code: cancelling its task does not stop it
    VWED.progress(None, message="napping")
    time.sleep(seconds)
    return seconds


def quick(x):
    return x


def hold_loop(seconds):
    # the worker's event loop is blocked just after this step answers: the next step
    # handed to this worker waits, unread, until it is free again
    import asyncio
    asyncio.get_running_loop().call_soon(time.sleep, seconds)
    return "held"


def flaky(counter, failures):
    path = Path(counter)
    seen = int(path.read_text()) if path.exists() else 0
    path.write_text(str(seen + 1))
    if seen < failures:
        raise DeviceError(f"the lift is busy (try {seen + 1})")
    return {"lift": "ok", "tries": seen + 1}


def broken():
    raise ValueError("not a device problem")
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayThread, Path]]:
    # one asynchronous execution at a time: the second one submitted waits queued
    yield from token_gateway(
        tmp_path_factory, "executions", ADMIN, CALLER, workers=2, async_concurrency=1
    )


@pytest.fixture(scope="module")
def root(env: tuple[GatewayThread, Path]) -> Path:
    (env[1] / "job.py").write_text(JOB)
    return env[1]


@pytest.fixture(scope="module")
def caller(env: tuple[GatewayThread, Path], root: Path) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=env[0].url, timeout=60, headers={"Authorization": f"token {CALLER}"}
    ) as c:
        yield c


@pytest.fixture(scope="module")
def admin(env: tuple[GatewayThread, Path]) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=env[0].url, timeout=60, headers={"Authorization": f"token {ADMIN}"}
    ) as c:
        yield c


def submit(client: httpx.Client, function: str, args: Any = None, **extra: Any) -> str:
    body = {"script_path": "job.py", "function_name": function, "args": args, "async": True}
    r = client.post("/script-engine/execute", json={**body, **extra})
    assert r.status_code == 202, r.text
    answer = r.json()
    assert answer["status_url"] == f"/script-engine/executions/{answer['execution_id']}"
    assert r.headers["Location"] == answer["status_url"]
    return str(answer["execution_id"])


def record(client: httpx.Client, execution_id: str) -> dict[str, Any]:
    r = client.get(f"/script-engine/executions/{execution_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def wait_end(client: httpx.Client, execution_id: str, timeout: float = 60) -> dict[str, Any]:
    r = client.get(f"/script-engine/executions/{execution_id}/wait", params={"timeout": timeout})
    assert r.status_code == 200, r.text
    found = dict(r.json())
    assert found["status"] not in ("queued", "running"), found
    return found


def test_progress_reaches_the_stream_and_the_record(
    env: tuple[GatewayThread, Path], caller: httpx.Client, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    execution_id = submit(caller, "report", {"n": 5, "go": str(go)}, task_id="T-progress")
    url = env[0].url.replace("http", "ws") + f"/script-engine/executions/{execution_id}/ws"

    async def follow() -> list[dict[str, Any]]:
        connected = asyncio.Event()
        reader = asyncio.ensure_future(
            collect(
                f"{url}?token={CALLER}",
                lambda ms: bool(ms) and ms[-1]["type"] == "end",
                60,
                connected,
            )
        )
        await connected.wait()
        go.write_text("go")  # the step starts reporting once we listen
        return await reader

    events = asyncio.run(follow())
    assert events[0]["type"] == "state"
    assert events[0]["execution"]["execution_id"] == execution_id
    progress = [e for e in events if e["type"] == "progress"]
    assert [(p["done"], p["total"]) for p in progress] == [(i, 5) for i in range(1, 6)]
    assert [p["message"] for p in progress] == [f"pallet {i}" for i in range(1, 6)]
    assert progress[-1]["fraction"] == 1.0
    output = [e["text"] for e in events if e["type"] == "output" and e["stream"] == "stdout"]
    assert output == [f"moved pallet {i}" for i in range(1, 6)]
    end = events[-1]["execution"]
    assert end["status"] == "succeeded"
    assert end["result"] == {"moved": 5}
    assert end["variables"] == {"scriptResult": {"moved": 5}}

    found = record(caller, execution_id)
    assert found["status"] == "succeeded" and found["result"] == {"moved": 5}
    assert found["progress"]["done"] == 5 and found["progress"]["message"] == "pallet 5"
    assert "moved pallet 5" in found["stdout_tail"]
    assert found["attempts"][0]["ok"] is True and len(found["attempts"]) == 1
    assert found["worker"] and found["duration_ms"] >= 1500
    assert found["usage"]["cpu_ms"] is not None
    assert found["started_at"] >= found["submitted_at"]
    assert found["finished_at"] >= found["started_at"]
    r = caller.get("/script-engine/tasks/T-progress/variables")
    assert r.json()["variables"] == {"scriptResult": {"moved": 5}}


def test_wait_short_then_long(caller: httpx.Client) -> None:
    execution_id = submit(caller, "nap", [1.5])
    started = time.monotonic()
    r = caller.get(f"/script-engine/executions/{execution_id}/wait", params={"timeout": 0.2})
    assert r.status_code == 200
    assert r.json()["status"] in ("queued", "running")
    assert time.monotonic() - started < 1.4
    found = wait_end(caller, execution_id)
    assert found["status"] == "succeeded" and found["result"] == 1.5, (
        found["error"],
        found["reason"],
    )
    # bad timeouts are 400s that say why
    for bad in ("soon", "-1", "100000"):
        r = caller.get(f"/script-engine/executions/{execution_id}/wait", params={"timeout": bad})
        assert r.status_code == 400, bad
        assert r.json()["code"] == "BAD_PARAMETER"


def test_cancel_running_and_queued(env: tuple[GatewayThread, Path], caller: httpx.Client) -> None:
    running = submit(caller, "nap_reported", [30])
    queued = submit(caller, "quick", [1])
    # "running" is set when the step is handed to its worker: wait until its code runs
    # (a cancel before that waits for the worker to be replaced, about 10 s: in the note)
    wait_until(
        lambda: (record(caller, running).get("progress") or {}).get("message") == "napping",
        30,
        "the step's code running",
    )
    assert record(caller, queued)["status"] == "queued"  # one at a time here

    r = caller.post(f"/script-engine/executions/{queued}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled" and r.json()["cancelled"] is True
    assert record(caller, queued)["attempts"] == []  # it never ran

    started = time.monotonic()
    r = caller.post(f"/script-engine/executions/{running}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    assert time.monotonic() - started < 10  # the worker was interrupted, not waited for
    found = record(caller, running)
    assert found["error"]["code"] == "CANCELLED"
    assert found["finished_at"] is not None

    r = caller.post(f"/script-engine/executions/{running}/cancel")
    assert r.status_code == 409 and r.json()["code"] == "EXECUTION_FINISHED"
    # the worker serves again
    assert wait_end(caller, submit(caller, "quick", [2]))["result"] == 2


GRACE = 5.0  # the gateway's step_grace (its default)


def cancel_and_time(caller: httpx.Client, execution_id: str) -> float:
    """Cancel a running execution: the seconds until it is recorded cancelled."""
    started = time.monotonic()
    r = caller.post(f"/script-engine/executions/{execution_id}/cancel")
    assert r.status_code == 200, r.text
    found = wait_end(caller, execution_id)
    took = time.monotonic() - started
    assert found["status"] == "cancelled", found
    assert found["error"]["code"] == "CANCELLED"
    return took


def test_cancel_as_soon_as_running(caller: httpx.Client) -> None:
    # "running" is set before the step has its worker: a cancel then cancels the
    # attempt's task, which a store write (asyncio.wait_for before Python 3.12) could
    # swallow, and the step ran on to its timeout (10 s here) instead
    for _ in range(5):
        execution_id = submit(caller, "nap", [30])
        wait_until(lambda e=execution_id: record(caller, e)["status"] == "running", 30, "running")
        assert cancel_and_time(caller, execution_id) < GRACE / 2
    assert wait_end(caller, submit(caller, "quick", [3]))["result"] == 3


def test_cancel_async_step_blocked_in_sync_code(caller: httpx.Client) -> None:
    # The kernel answers "task" (the asyncio task is cancelled), but the step sits in
    # time.sleep and would run its 30 s out: the gateway interrupts it after 1 s
    execution_id = submit(caller, "nap_blocked", [30])
    wait_until(
        lambda: (record(caller, execution_id).get("progress") or {}).get("message") == "napping",
        30,
        "the step's code running",
    )
    took = cancel_and_time(caller, execution_id)
    assert took < GRACE, took
    assert wait_end(caller, submit(caller, "quick", [5]))["result"] == 5


@pytest.fixture(scope="module")
def solo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A gateway of its own with one step worker (the step after a held one gets it)."""
    for gw, scripts in token_gateway(tmp_path_factory, "executions-solo", ADMIN, CALLER):
        (scripts / "job.py").write_text(JOB)
        with httpx.Client(
            base_url=gw.url, timeout=60, headers={"Authorization": f"token {CALLER}"}
        ) as c:
            yield c


def test_cancel_before_the_worker_reads_the_step(solo: httpx.Client) -> None:
    # The worker's event loop is blocked for 1.5 s right after a step answers; the next
    # step is handed to it and waits, unread. The cancel reaches the worker's service
    # subshell, which marks the step: it is answered cancelled without running once the
    # loop is free. (The interrupt sent before came while no code ran, was ignored, and
    # the step ran on to its timeout: 10 s here.)
    assert wait_end(solo, submit(solo, "hold_loop", [1.5]))["result"] == "held"
    execution_id = submit(solo, "nap", [30])
    wait_until(lambda: record(solo, execution_id)["worker"], 30, "the step has its worker")
    took = cancel_and_time(solo, execution_id)
    assert took < 3.0, took  # the worker's 1.5 s busy loop included; the grace is 5 s
    attempts = record(solo, execution_id)["attempts"]
    assert [a["code"] for a in attempts] == ["CANCELLED"], attempts
    assert attempts[0]["error_type"] == "CancelledError"  # skipped: nap never ran
    assert wait_end(solo, submit(solo, "quick", [4]))["result"] == 4


def test_retries_with_backoff(caller: httpx.Client, tmp_path: Path) -> None:
    counter = tmp_path / "tries"
    retry = {
        "attempts": 3,
        "backoff": "exponential",
        "initial_s": 0.2,
        "max_s": 1,
        "on": ["DeviceError"],
    }
    execution_id = submit(
        caller,
        "flaky",
        {"counter": str(counter), "failures": 2},
        retry=retry,
        task_id="T-retry",
    )
    found = wait_end(caller, execution_id)
    assert found["status"] == "succeeded", found
    assert found["result"] == {"lift": "ok", "tries": 3}
    attempts = found["attempts"]
    assert [a["ok"] for a in attempts] == [False, False, True]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert attempts[0]["error_type"] == "DeviceError"
    assert "the lift is busy (try 1)" in attempts[0]["message"]
    # the backoff: 0.2 s, then 0.4 s between the attempts
    assert attempts[1]["started_at"] - attempts[0]["finished_at"] >= 0.19
    assert attempts[2]["started_at"] - attempts[1]["finished_at"] >= 0.39
    assert found["retry"]["attempts"] == 3
    # the variables are those of the attempt that succeeded, stored once
    r = caller.get("/script-engine/tasks/T-retry/variables")
    assert r.json()["variables"] == {"scriptResult": {"lift": "ok", "tries": 3}}
    # each attempt is also a row of the steps history
    for attempt in attempts:
        wait_until(
            lambda a=attempt: (
                caller.get(f"/script-engine/executions/{a['execution_id']}").status_code == 200
            ),
            10,
            "the attempt's history row",
        )
        row = record(caller, attempt["execution_id"])
        assert row["async_id"] == execution_id and row["attempt"] == attempt["attempt"]
        assert row["status"] == ("succeeded" if attempt["ok"] else "failed")


def test_retry_only_on_the_named_errors(caller: httpx.Client) -> None:
    retry = {"attempts": 3, "initial_s": 0.05, "on": ["OSError"]}
    found = wait_end(caller, submit(caller, "broken", retry=retry))
    assert found["status"] == "failed"
    assert len(found["attempts"]) == 1  # ValueError is not an OSError
    assert found["error"]["code"] == "STEP_FAILED"
    assert found["error"]["details"]["type"] == "ValueError"


def test_a_timeout_ends_timed_out(caller: httpx.Client) -> None:
    found = wait_end(caller, submit(caller, "nap", [20], timeout=0.5))
    assert found["status"] == "timed_out"
    assert found["error"]["code"] == "CALL_TIMEOUT"


def test_idempotency_key_runs_once(caller: httpx.Client) -> None:
    key = f"pallet-move-{uuid.uuid4().hex}"
    body = {
        "script_path": "job.py",
        "function_name": "quick",
        "args": [7],
        "async": True,
        "idempotency_key": key,
    }
    first = caller.post("/script-engine/execute", json=body)
    second = caller.post("/script-engine/execute", json=body)
    assert first.status_code == second.status_code == 202
    assert first.json()["duplicate"] is False and second.json()["duplicate"] is True
    assert first.json()["execution_id"] == second.json()["execution_id"]
    found = wait_end(caller, first.json()["execution_id"])
    assert found["idempotency_key"] == key and len(found["attempts"]) == 1
    third = caller.post("/script-engine/execute", json=body)
    assert third.json()["execution_id"] == found["execution_id"]
    assert third.json()["status"] == "succeeded"
    # the same key for another step is refused
    other = caller.post("/script-engine/execute", json={**body, "args": [8]})
    assert other.status_code == 409, other.text
    assert other.json()["code"] == "IDEMPOTENCY_KEY_REUSED"


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        ({"async": "yes"}, "BAD_PARAMETER"),
        ({"retry": {"attempts": 0}}, "BAD_PARAMETER"),
        ({"retry": {"attempts": 2, "backoff": "fibonacci"}}, "BAD_PARAMETER"),
        ({"retry": {"tries": 2}}, "BAD_PARAMETER"),
        ({"retry": {"on": "DeviceError"}}, "BAD_PARAMETER"),
        ({"at_most_once": 1}, "BAD_PARAMETER"),
        ({"idempotency_key": ""}, "BAD_PARAMETER"),
        ({"script_path": "missing.py"}, "SCRIPT_NOT_FOUND"),
        ({"function_name": None}, "MISSING_FIELD"),
        ({"idempotencyKey": "k"}, "UNKNOWN_FIELD"),
        ({"task_id": "T" * 200}, "BAD_PARAMETER"),
        ({"function_name": "f" * 300}, "BAD_PARAMETER"),
    ],
)
def test_bad_submissions_are_refused_before_they_are_queued(
    caller: httpx.Client, extra: dict[str, Any], code: str
) -> None:
    body = {"script_path": "job.py", "function_name": "quick", "async": True, **extra}
    r = caller.post("/script-engine/execute", json=body)
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["code"] == code, r.text
    assert "Traceback" not in r.text


def test_unknown_execution(caller: httpx.Client) -> None:
    for path in ("", "/wait"):
        r = caller.get(f"/script-engine/executions/{'0' * 32}{path}")
        assert r.status_code == 404 and r.json()["code"] == "EXECUTION_NOT_FOUND"
    r = caller.post(f"/script-engine/executions/{'0' * 32}/cancel")
    assert r.status_code == 404


def test_caller_token_reads_its_executions_not_the_admin_endpoints(
    env: tuple[GatewayThread, Path], caller: httpx.Client, admin: httpx.Client
) -> None:
    execution_id = submit(caller, "quick", [3])
    assert wait_end(caller, execution_id)["result"] == 3
    for path in ("/script-engine/executions", "/script-engine/running", "/script-engine/files"):
        r = caller.get(path)
        assert r.status_code == 403, path
    listing = admin.get("/script-engine/executions").json()
    assert execution_id in [e["execution_id"] for e in listing["async"]]
    done = admin.get("/script-engine/executions", params={"status": "succeeded"}).json()
    assert all(e["status"] == "succeeded" for e in done["async"])
    assert admin.get("/script-engine/executions", params={"status": "x"}).status_code == 400
    metrics = admin.get("/metrics").text
    assert 'vwed_async_executions_total{status="succeeded"}' in metrics
    assert 'vwed_async_executions_live{status="queued"}' in metrics
    # no token at all: nothing
    with httpx.Client(base_url=env[0].url, timeout=10) as anonymous:
        assert anonymous.get(f"/script-engine/executions/{execution_id}").status_code == 401


def test_sync_steps_record_their_worker_and_usage(caller: httpx.Client) -> None:
    r = caller.post(
        "/script-engine/execute",
        json={"script_path": "job.py", "function_name": "nap", "args": [0.05]},
    )
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["worker"] and "cpu_ms" in answer["usage"]
    found = wait_until(
        lambda: (
            caller.get(f"/script-engine/executions/{answer['execution_id']}").json()
            if caller.get(f"/script-engine/executions/{answer['execution_id']}").status_code == 200
            else None
        ),
        10,
        "the history row",
    )
    assert found["async"] is False and found["status"] == "succeeded"
    assert found["worker"] == answer["worker"]
    assert found["duration_ms"] >= 50


def test_a_running_synchronous_step_is_not_followed_over_the_execution_socket(
    env: tuple[GatewayThread, Path], caller: httpx.Client, admin: httpx.Client
) -> None:
    """Its events go to whoever sent it: the execution socket refuses it (409 NOT_ASYNC)
    rather than staying open with nothing to send."""
    done: list[httpx.Response] = []
    body = {"script_path": "job.py", "function_name": "nap", "args": [3]}
    thread = threading.Thread(
        target=lambda: done.append(caller.post("/script-engine/execute", json=body))
    )
    thread.start()
    try:
        running = wait_until(
            lambda: admin.get("/script-engine/executions").json()["running"], 30, "a running step"
        )
        url = env[0].url + f"/script-engine/executions/{running[0]}/ws"
        r = caller.get(
            url,
            headers={
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            },
        )
        assert r.status_code == 409, r.text
        assert r.json()["code"] == "NOT_ASYNC"
    finally:
        thread.join(30)
    assert done and done[0].status_code == 200
