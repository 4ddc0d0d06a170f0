"""Steps over one WebSocket (``/script-engine/execute/ws``): the multiplexed protocol
(several steps in flight, tagged with the client's id; async steps; cancel; errors;
auth) and the legacy protocol of the WebSocket script server this product replaces,
spoken by its own Node.js client and by a Python client."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from conftest import GatewayThread, token_gateway, unique, wait_until

ADMIN = "admin-" + unique("t")
CALLER = "caller-" + unique("t")
FINAL = ("result", "error", "end")

STEPS = """
import os, time

def slow(n, pause):
    for i in range(n):
        print(f"slow {i}", flush=True)
        VWED.progress(i + 1, total=n, message=f"row {i}")
        time.sleep(pause)
    return "slow done"

def echo(x):
    print(f"echo {x}")
    return x

def fast(x):
    print(f"fast {x}", flush=True)
    VWED.progress(1.0, message="fast")
    return x * 2

def forever():
    print("waiting", flush=True)
    while True:
        time.sleep(0.05)

def hold(flag):
    while not os.path.exists(flag):
        time.sleep(0.02)
    return 1
"""

# the legacy scripts: the old server ran a file's execute(); RUN also takes the last
# line the file prints when it has none
LEGACY = {
    "job_exec.py": """
        print("loading")
        def execute():
            return {"ok": 1, "name": __name__}
    """,
    "job_print.py": """
        import json
        print("working")
        print(json.dumps({"count": 3}))
    """,
    "job_raise.py": """
        def execute():
            raise ValueError("sensor offline")
    """,
    "job_forever.py": """
        import time
        def execute():
            while True:
                time.sleep(0.05)
    """,
    "job_slow.py": """
        import time
        def execute():
            time.sleep(0.5)
            return "slow"
    """,
}


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[GatewayThread, Path]]:
    for gw, root in token_gateway(tmp_path_factory, "execute_ws", ADMIN, CALLER, workers=3):
        (root / "steps.py").write_text(textwrap.dedent(STEPS))
        for name, code in LEGACY.items():
            (root / name).write_text(textwrap.dedent(code))
        (root / "notes.txt").write_text("not a script\n")
        (root.parent / "outside.py").write_text("def execute():\n    return 'escaped'\n")
        yield gw, root


def ws_url(gw: GatewayThread, query: str = "") -> str:
    return gw.url.replace("http://", "ws://") + "/script-engine/execute/ws" + query


async def connect(
    gw: GatewayThread, token: str | None = CALLER, *, query: str = ""
) -> WebSocketClientConnection:
    headers = {"Authorization": f"token {token}"} if token else {}
    request = HTTPRequest(ws_url(gw, query), headers=headers)
    return await asyncio.wait_for(websocket_connect(request), 10)


async def send(conn: WebSocketClientConnection, message: Any) -> None:
    await conn.write_message(message if isinstance(message, str) else json.dumps(message))


async def read(conn: WebSocketClientConnection, timeout: float = 20) -> dict[str, Any]:
    text = await asyncio.wait_for(conn.read_message(), timeout)
    assert text is not None, "the server closed the connection"
    return json.loads(text)


async def until_final(
    conn: WebSocketClientConnection, ids: set[Any], timeout: float = 30
) -> list[dict[str, Any]]:
    """Every message until each of ``ids`` has had its last one (result, error, end)."""
    messages: list[dict[str, Any]] = []
    left = set(ids)
    while left:
        message = await read(conn, timeout)
        messages.append(message)
        if message.get("type") in FINAL:
            left.discard(message.get("id"))
    return messages


def of(messages: list[dict[str, Any]], ident: Any) -> list[dict[str, Any]]:
    return [m for m in messages if m.get("id") == ident]


def step(ident: Any, function: str, args: Any = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": ident,
        "script_path": "steps.py",
        "function_name": function,
        "args": args,
        **extra,
    }


def admin_http(gw: GatewayThread) -> httpx.Client:
    return httpx.Client(base_url=gw.url, timeout=30, headers={"Authorization": f"token {ADMIN}"})


# -- the multiplexed protocol --------------------------------------------------------------
@pytest.mark.timeout(90)
def test_sync_steps_in_flight_are_answered_out_of_order_with_their_output(gateway):
    gw, _ = gateway

    async def go() -> list[dict[str, Any]]:
        conn = await connect(gw)
        await send(conn, step("slow-1", "slow", {"n": 4, "pause": 0.3}))
        # the fast one only once the slow one runs: it cannot win by starting first
        first = await read(conn)
        await send(conn, step(2, "fast", [21]))
        messages = [first, *await until_final(conn, {"slow-1", 2})]
        conn.close()
        return messages

    messages = asyncio.run(go())
    finals = [m for m in messages if m["type"] == "result"]
    assert [m["id"] for m in finals] == [2, "slow-1"], messages  # the fast one first
    slow, fast = of(messages, "slow-1"), of(messages, 2)
    assert slow[0]["type"] == "started" and slow[0]["execution_id"] and slow[0]["worker"]
    assert fast[0]["type"] == "started" and fast[0]["worker"] != slow[0]["worker"]
    slow_out = [m["text"] for m in slow if m["type"] == "output"]
    assert slow_out == [f"slow {i}" for i in range(4)], slow  # streamed, in order, tagged
    assert all(m["stream"] == "stdout" for m in slow if m["type"] == "output")
    # a line printed just before the step returns comes before the answer (the kernel
    # flushes a step's output and answers behind it)
    assert [m["text"] for m in fast if m["type"] == "output"] == ["fast 21"], fast
    assert fast[-1]["stdout"] == "fast 21\n"
    assert not any("fast" in m.get("text", "") for m in slow)
    progress = [(m["done"], m["total"], m["message"]) for m in slow if m["type"] == "progress"]
    assert progress == [(i + 1, 4, f"row {i}") for i in range(4)], slow  # VWED.progress
    assert [m["fraction"] for m in slow if m["type"] == "progress"] == [0.25, 0.5, 0.75, 1.0]
    # the last progress of a step precedes its result (the kernel sends it first)
    assert [(m["fraction"], m["message"]) for m in fast if m["type"] == "progress"] == [
        (1.0, "fast")
    ]
    # the answers are POST /script-engine/execute's, without "success"
    assert fast[-1]["result"] == 42 and fast[-1]["variables"] == {"scriptResult": 42}
    assert fast[-1]["execution_id"] == fast[0]["execution_id"] and "success" not in fast[-1]
    assert slow[-1]["result"] == "slow done" and "slow 3" in slow[-1]["stdout"]
    # a step's output reaches it while it runs, before its result
    assert messages.index(slow[1]) < messages.index(fast[-1])


@pytest.mark.timeout(90)
def test_a_line_printed_just_before_the_answer_comes_before_it(gateway):
    """Twenty quick steps that print one line (no flush, no progress) and return: each
    line reaches the socket before its step's result."""
    gw, _ = gateway

    async def go() -> list[dict[str, Any]]:
        conn = await connect(gw)
        try:
            messages: list[dict[str, Any]] = []
            for i in range(20):
                await send(conn, step(i, "echo", [i]))
                messages += await until_final(conn, {i})
            return messages
        finally:
            conn.close()

    messages = asyncio.run(go())
    for i in range(20):
        kinds = [(m["type"], m.get("text")) for m in of(messages, i) if m["type"] != "started"]
        assert kinds == [("output", f"echo {i}"), ("result", None)], of(messages, i)


@pytest.mark.timeout(90)
def test_an_async_step_over_the_socket_is_accepted_followed_and_ends(gateway):
    gw, _ = gateway

    async def go() -> list[dict[str, Any]]:
        conn = await connect(gw)
        body = step("job", "slow", {"n": 3, "pause": 0.3}, task_id=unique("task"))
        await send(conn, {**body, "async": True})
        messages = await until_final(conn, {"job"})
        conn.close()
        return messages

    messages = asyncio.run(go())
    assert all(m["id"] == "job" for m in messages)
    kinds = [m["type"] for m in messages]
    assert kinds[0] == "accepted" and kinds[1] == "state" and kinds[-1] == "end", kinds
    accepted = messages[0]
    assert accepted["status_url"] == f"/script-engine/executions/{accepted['execution_id']}"
    assert accepted["duplicate"] is False
    assert "attempt" in kinds and "status" in kinds
    lines = [m["text"] for m in messages if m["type"] == "output"]
    assert lines == [f"slow {i}" for i in range(len(lines))] and len(lines) >= 2, messages
    assert [m["done"] for m in messages if m["type"] == "progress"] == [1, 2, 3], messages
    end = messages[-1]["execution"]
    assert end["status"] == "succeeded" and end["result"] == "slow done"
    with httpx.Client(base_url=gw.url, timeout=30) as c:
        r = c.get(accepted["status_url"], headers={"Authorization": f"token {CALLER}"})
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text


@pytest.mark.timeout(90)
def test_cancel_of_a_sync_step_in_flight(gateway):
    gw, _ = gateway

    async def go() -> list[dict[str, Any]]:
        conn = await connect(gw)
        await send(conn, step("c", "forever"))
        messages = [await read(conn)]
        while messages[-1].get("type") != "output":  # it runs (it printed)
            messages.append(await read(conn))
        await send(conn, {"id": "c", "cancel": True})
        messages += await until_final(conn, {"c"})
        # the connection goes on: the same id again, a step that works
        await send(conn, step("c", "fast", [1]))
        messages += await until_final(conn, {"c"})
        conn.close()
        return messages

    messages = asyncio.run(go())
    kinds = [m["type"] for m in messages]
    assert "cancelling" in kinds
    error = next(m for m in messages if m["type"] == "error")
    assert error["id"] == "c" and error["code"] == "CANCELLED" and error["status"] == 409
    assert kinds.index("cancelling") < kinds.index("error")
    assert messages[-1]["type"] == "result" and messages[-1]["result"] == 2
    execution_id = messages[0]["execution_id"]
    with admin_http(gw) as c:
        wait_until(
            lambda: execution_id not in c.get("/script-engine/executions").json()["running"],
            10,
            "the cancelled step to leave the running ones",
        )


@pytest.mark.timeout(90)
def test_cancel_of_an_async_step_in_flight(gateway):
    gw, _ = gateway

    async def go() -> list[dict[str, Any]]:
        conn = await connect(gw)
        await send(conn, {**step("a", "forever"), "async": True})
        messages = [await read(conn)]
        while messages[-1].get("type") != "output":  # it runs (it printed)
            messages.append(await read(conn))
        await send(conn, {"id": "a", "cancel": True})
        messages += await until_final(conn, {"a"})
        conn.close()
        return messages

    messages = asyncio.run(go())
    kinds = [m["type"] for m in messages]
    assert kinds[0] == "accepted" and "cancelling" in kinds and kinds[-1] == "end", kinds
    assert messages[-1]["execution"]["status"] == "cancelled"


@pytest.mark.timeout(90)
def test_closing_the_connection_cancels_sync_steps_and_lets_async_ones_go_on(gateway, tmp_path):
    gw, _ = gateway
    flag = tmp_path / "go"

    async def go() -> tuple[str, str]:
        conn = await connect(gw)
        await send(conn, step("sync", "forever"))
        await send(conn, {**step("async", "hold", [str(flag)]), "async": True})
        seen: dict[str, str] = {}
        started = ""
        while "sync" not in seen or "async" not in seen:
            m = await read(conn)
            if m["type"] == "started":
                started = m["execution_id"]
            if m["type"] == "output" and m["id"] == "sync":  # it runs
                seen["sync"] = started
            if m["type"] == "accepted":
                seen["async"] = m["execution_id"]
        conn.close()
        return seen["sync"], seen["async"]

    sync_id, async_id = asyncio.run(go())
    with admin_http(gw) as c:
        wait_until(
            lambda: (
                c.get(f"/script-engine/executions/{sync_id}").json().get("status") == "cancelled"
            ),
            15,
            "the sync step of the closed connection to be cancelled",
        )
        assert sync_id not in c.get("/script-engine/executions").json()["running"]
        flag.write_text("go")
        r = c.get(f"/script-engine/executions/{async_id}/wait", params={"timeout": 30})
        assert r.json()["status"] == "succeeded" and r.json()["result"] == 1, r.text


@pytest.mark.timeout(90)
def test_errors_keep_the_connection_open(gateway, tmp_path):
    gw, _ = gateway
    flag = tmp_path / "release"

    async def go() -> list[dict[str, Any]]:
        conn = await connect(gw)
        out = []
        await send(conn, step("nf", "no_such_function"))
        out.append((await until_final(conn, {"nf"}))[-1])  # after its "started"
        await send(conn, "{not json")
        out.append(await read(conn))
        await send(conn, "[1, 2]")
        out.append(await read(conn))
        await send(conn, {"script_path": "steps.py", "function_name": "fast"})  # no id
        out.append(await read(conn))
        await send(conn, {"id": True, "script_path": "steps.py"})
        out.append(await read(conn))
        await send(conn, '{"id": 1e999, "script_path": "steps.py"}')
        out.append(await read(conn))
        await send(conn, {"id": "x" * 129, "script_path": "steps.py"})
        out.append(await read(conn))
        await send(conn, {"id": "ghost", "cancel": True})
        out.append(await read(conn))
        await send(conn, step("dup", "hold", [str(flag)]))
        await send(conn, step("dup", "fast", [5]))
        out.append(await read(conn))  # started of the first
        out.append(await read(conn))  # the reuse refused
        flag.write_text("go")
        out += await until_final(conn, {"dup"})
        await send(conn, step(7, "fast", [4]))
        out += await until_final(conn, {7})
        conn.close()
        return out

    out = asyncio.run(go())
    nf = out[0]
    assert nf["id"] == "nf" and nf["type"] == "error", nf
    assert (
        nf["status"] == 404
        and nf["code"] == "FUNCTION_NOT_FOUND"
        and "no_such_function" in nf["error"]
    )
    for bad in out[1:3]:
        assert bad["type"] == "error" and bad["code"] == "INVALID_JSON" and bad["status"] == 400
        assert "id" not in bad
    assert out[3]["code"] == "MISSING_ID" and "id" not in out[3]
    for bad in out[4:7]:
        assert bad["code"] == "BAD_ID" and "id" not in bad, bad
    del out[5:7]
    assert out[5] == {
        **out[5],
        "id": "ghost",
        "type": "error",
        "code": "NOT_IN_FLIGHT",
        "status": 404,
    }
    assert out[6]["type"] == "started" and out[6]["id"] == "dup"
    assert out[7]["code"] == "ID_IN_USE" and out[7]["id"] == "dup" and out[7]["status"] == 409
    assert of(out, "dup")[-1]["type"] == "result" and of(out, "dup")[-1]["result"] == 1
    assert out[-1] == {**out[-1], "id": 7, "type": "result", "result": 8}


@pytest.mark.timeout(120)
def test_too_many_steps_in_flight_get_busy(gateway, tmp_path):
    from kernel_gateway.handlers.execute_ws import MAX_IN_FLIGHT

    gw, _ = gateway
    flag = tmp_path / "release"

    async def go() -> list[dict[str, Any]]:
        conn = await connect(gw)
        for i in range(MAX_IN_FLIGHT):
            await send(conn, step(i, "hold", [str(flag)]))
        await send(conn, step("one-too-many", "fast", [1]))
        busy = None
        messages = []
        while busy is None:
            m = await read(conn)
            if m.get("id") == "one-too-many":
                busy = m
            messages.append(m)
        flag.write_text("go")
        messages += await until_final(
            conn, set(range(MAX_IN_FLIGHT)) - {m["id"] for m in messages if m["type"] in FINAL}
        )
        conn.close()
        return messages

    messages = asyncio.run(go())
    busy = next(m for m in messages if m.get("id") == "one-too-many")
    assert busy["type"] == "error" and busy["code"] == "BUSY" and busy["status"] == 503
    results = [m for m in messages if m["type"] == "result"]
    assert sorted(m["id"] for m in results) == list(range(MAX_IN_FLIGHT))


@pytest.mark.timeout(60)
def test_auth_is_checked_before_the_upgrade(gateway):
    gw, _ = gateway
    upgrade = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    r = httpx.get(gw.url + "/script-engine/execute/ws", headers=upgrade, timeout=10)
    assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED", r.text
    r = httpx.get(gw.url + "/script-engine/execute/ws", params={"token": "wrong"}, headers=upgrade)
    assert r.status_code == 401 and r.json()["success"] is False

    async def go(token: str | None, query: str = "") -> Any:
        try:
            conn = await connect(gw, token, query=query)
        except HTTPClientError as exc:
            return exc.code
        await send(conn, step("a", "fast", [3]))
        messages = await until_final(conn, {"a"})
        conn.close()
        return messages[-1]["result"]

    assert asyncio.run(go(None)) == 401
    assert asyncio.run(go(CALLER)) == 6  # the caller token is enough
    assert asyncio.run(go(None, f"?token={CALLER}")) == 6  # for clients without headers
    assert asyncio.run(go(ADMIN)) == 6


# -- the legacy protocol --------------------------------------------------------------------
def legacy_cases(root: Path) -> list[tuple[str, dict[str, Any]]]:
    """(script_path sent, the answer the old server's protocol gives), in order: each
    error is followed by a request that works, on the same connection."""
    return [
        ("job_exec.py", {"status": "success", "result": {"ok": 1, "name": "__main__"}}),
        ("job_print.py", {"status": "success", "result": {"count": 3}}),
        ("job_raise.py", {"status": "error", "message": "sensor offline"}),
        ("job_exec.py", {"status": "success", "result": {"ok": 1, "name": "__main__"}}),
        ("missing.py", {"status": "error", "message": "Script file not found"}),
        (
            "../outside.py",
            {"status": "error", "message": "Script must be in the allowed directory"},
        ),
        (
            str(root.parent / "outside.py"),
            {"status": "error", "message": "Script must be in the allowed directory"},
        ),
        ("notes.txt", {"status": "error", "message": "File must be a Python script"}),
        (str(root / "job_print.py"), {"status": "success", "result": {"count": 3}}),
    ]


@pytest.mark.timeout(120)
def test_legacy_protocol_with_a_python_client(gateway):
    gw, root = gateway
    cases = legacy_cases(root)

    async def go() -> list[dict[str, Any]]:
        conn = await connect(gw)
        answers = []
        for path, _ in cases:
            await send(conn, {"script_path": path})
            answers.append(await read(conn))
        await send(conn, "{not json")
        answers.append(await read(conn))
        await send(conn, {})
        answers.append(await read(conn))
        # sent at once: answered one at a time, in order (the slow one first)
        await send(conn, {"script_path": "job_slow.py"})
        await send(conn, "oops")
        await send(conn, {"script_path": "job_exec.py"})
        answers += [await read(conn) for _ in range(3)]
        conn.close()
        return answers

    answers = asyncio.run(go())
    assert answers[: len(cases)] == [expected for _, expected in cases]
    assert answers[len(cases) :] == [
        {"status": "error", "message": "Invalid JSON format"},
        {"status": "error", "message": "script_path is required"},
        {"status": "success", "result": "slow"},
        {"status": "error", "message": "Invalid JSON format"},
        {"status": "success", "result": {"ok": 1, "name": "__main__"}},
    ]


@pytest.mark.timeout(90)
def test_closing_a_legacy_connection_cancels_its_request(gateway):
    gw, _ = gateway

    def running(c: httpx.Client) -> list[str]:
        return c.get("/script-engine/executions").json()["running"]

    async def go(c: httpx.Client) -> list[str]:
        conn = await connect(gw)
        await send(conn, {"script_path": "job_forever.py"})
        ids = await asyncio.to_thread(wait_until, lambda: running(c), 15, "the request to run")
        conn.close()
        return ids

    with admin_http(gw) as c:
        ids = asyncio.run(go(c))
        wait_until(lambda: not set(ids) & set(running(c)), 15, "its worker to be freed")
        record = c.get(f"/script-engine/executions/{ids[0]}")
        wait_until(
            lambda: (
                c.get(f"/script-engine/executions/{ids[0]}").json().get("status") == "cancelled"
            ),
            15,
            f"the request to be recorded cancelled ({record.text})",
        )


@pytest.mark.timeout(10)
def test_the_outbox_drops_output_for_a_slow_reader_never_a_result():
    from kernel_gateway.handlers.execute_ws import Outbox

    box = Outbox(maximum=2)
    box.put({"id": 1, "type": "started"}, "1")
    box.put({"id": 1, "type": "output", "text": "a"}, "1")
    for text in "bcd":
        box.put({"id": 1, "type": "output", "text": text}, "1")  # full: dropped
    box.put({"id": 1, "type": "result", "result": 5}, "1")  # kept, after the count

    async def drain() -> list[Any]:
        return [await box.get() for _ in range(4)]

    assert asyncio.run(drain()) == [
        {"id": 1, "type": "started"},
        {"id": 1, "type": "output", "text": "a"},
        {"id": 1, "type": "dropped", "count": 3},
        {"id": 1, "type": "result", "result": 5},
    ]


# The seed's Node.js client (PythonProcessManager.executeScript), its code as it is.
# Node 20 has no global WebSocket without --experimental-websocket and the ``ws``
# package is not installed here (nor installable offline): the client gets Node's
# WebSocket behind the two methods of the ``ws`` API it uses (send, once('message')).
NODE_CLIENT = r"""
class NodeWebSocket {
    constructor(url) {
        this.sock = new WebSocket(url);
        this.opened = new Promise((ok, fail) => {
            this.sock.addEventListener('open', ok, { once: true });
            this.sock.addEventListener('error', fail, { once: true });
        });
    }
    send(text) { this.sock.send(text); }
    once(event, fn) { this.sock.addEventListener(event, (e) => fn(e.data), { once: true }); }
    close() { this.sock.close(); }
}

class PythonProcessManager {
    constructor(url) {
        this.ws = new NodeWebSocket(url);
    }

    async executeScript(scriptPath) {
        return new Promise((resolve, reject) => {
            // スクリプトパスを送信
            this.ws.send(JSON.stringify({
                script_path: scriptPath
            }));

            // 結果を受信
            this.ws.once('message', (data) => {
                const result = JSON.parse(data);
                if (result.status === 'success') {
                    resolve(result.result);
                } else {
                    reject(new Error(result.message));
                }
            });
        });
    }
}

(async () => {
    const [url, paths] = process.argv.slice(2);
    const manager = new PythonProcessManager(url);
    await manager.ws.opened;
    for (const path of JSON.parse(paths)) {
        try {
            const result = await manager.executeScript(path);
            console.log(JSON.stringify({ status: 'success', result }));
        } catch (e) {
            console.log(JSON.stringify({ status: 'error', message: e.message }));
        }
    }
    manager.ws.close();
})().catch((e) => { console.error(e); process.exit(1); });
"""


@pytest.mark.timeout(120)
def test_legacy_protocol_with_the_old_node_client(gateway, tmp_path):
    node = shutil.which("node") or ("/usr/bin/node" if Path("/usr/bin/node").exists() else None)
    if node is None:
        pytest.skip("node is not installed: the old Node.js client cannot run")
    gw, root = gateway
    cases = legacy_cases(root)
    client = tmp_path / "client.js"
    client.write_text(NODE_CLIENT)
    # the only change the old client needs: the URL (?token=, it cannot send headers)
    url = ws_url(gw, f"?token={CALLER}")
    done = subprocess.run(
        [node, "--experimental-websocket", str(client), url, json.dumps([p for p, _ in cases])],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    answers = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert answers == [expected for _, expected in cases], done.stdout + done.stderr
