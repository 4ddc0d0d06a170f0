"""A caller cannot stall or confuse a script with its arguments (issue 12, item 5):
every such input is a 400 with a code, at once, and the kernel keeps serving."""

from __future__ import annotations

import concurrent.futures
import time

import pytest

from conftest import unique

SCRIPT = """
def boot():
    VWED.function.register("{n}_echo", lambda value: value)
    VWED.function.register("{n}_pair", lambda a, b: [a, b])
    VWED.api.register_route("/{n}/body", "POST", lambda r: {{"json": r["json"] is not None}})
"""
STEP = "def echo(value):\n    return value\n"
JSON = {"Content-Type": "application/json"}


def call(client, name, body: bytes | dict):
    if isinstance(body, dict):
        return client.post(f"/script-engine/functions/{name}/call", json=body)
    return client.post(f"/script-engine/functions/{name}/call", content=body, headers=JSON)


@pytest.mark.timeout(120)
def test_hostile_arguments_are_400_at_once(scripts, client, gw):
    n = unique("args")
    scripts.start(f"{n}.py", SCRIPT.format(n=n))
    deep = "[" * 100000
    # a string argument that is too deep to parse as JSON: bound as the string itself
    t0 = time.monotonic()
    r = call(client, f"{n}_echo", {"args": [deep]})
    assert r.status_code == 200 and r.json()["result"] == deep, r.text[:200]
    r = call(client, f"{n}_echo", {"args": deep})
    assert r.status_code == 200 and r.json()["result"] == deep
    # a string that must be *bound* (a function of two parameters): 400 BAD_ARGUMENTS
    r = call(client, f"{n}_pair", {"args": deep})
    assert r.status_code == 400 and r.json()["code"] == "BAD_ARGUMENTS", r.text[:300]
    assert time.monotonic() - t0 < 4, "answered at once, not after the call timeout"

    # 64 such calls at once do not fill the in-flight slots: each is answered
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        codes = list(
            pool.map(lambda _: call(client, f"{n}_pair", {"args": deep}).status_code, range(64))
        )
    assert codes == [400] * 64

    # timeouts: finite, positive, at most --max-timeout; else 400 BAD_PARAMETER
    for raw in (
        b"NaN",
        b"Infinity",
        b"-Infinity",
        b"1e308",
        b"0",
        b"-1",
        b"1" + b"0" * 400,
        b'"5"',
        b"true",
    ):
        r = call(client, f"{n}_echo", b'{"args": [1], "timeout": ' + raw + b"}")
        assert r.status_code == 400, (raw[:20], r.text)
        assert r.json()["code"] in ("BAD_PARAMETER", "INVALID_JSON"), (raw[:20], r.text)
    assert call(client, f"{n}_echo", {"args": [1], "timeout": 2.5}).json()["result"] == 1
    # a 400-digit integer as an argument is data, not a crash
    big = int("9" * 400)
    r = call(client, f"{n}_echo", {"args": [big]})
    assert r.status_code == 200 and r.json()["result"] == big

    # a body nested 100,000 deep: 400 INVALID_JSON, no traceback
    r = call(client, f"{n}_echo", b'{"args": ' + b"[" * 100000 + b"]" * 100000 + b"}")
    assert r.status_code == 400 and r.json()["code"] == "INVALID_JSON", r.text[:300]
    r = client.post("/script-engine/start", content=b"[" * 100000, headers=JSON)
    assert r.status_code == 400 and r.json()["code"] == "INVALID_JSON"
    # a script route's deep JSON body reaches the handler as the raw body, not a crash
    r = client.post(f"/script-api/{n}/body", content=b"[" * 100000, headers=JSON)
    assert r.status_code == 200 and r.json() == {"json": False}

    # steps: the same rules
    step = scripts.write(f"{n}_steps.py", STEP)
    body = {"script_path": step, "function_name": "echo"}
    r = client.post("/script-engine/execute", json={**body, "args": [1], "timeout": 1e308})
    assert r.status_code == 400 and r.json()["code"] == "BAD_PARAMETER"
    r = client.post(
        "/script-engine/execute",
        content=b'{"script_path": "%s", "function_name": "echo", "timeout": NaN}' % step.encode(),
        headers=JSON,
    )
    assert r.status_code == 400 and r.json()["code"] == "INVALID_JSON"

    # and the script still serves
    assert call(client, f"{n}_echo", {"args": ["ok"]}).json()["result"] == "ok"
