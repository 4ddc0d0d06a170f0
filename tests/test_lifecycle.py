"""Start, stop, restart and the running table, with real kernels."""

from __future__ import annotations

import json

import nbformat
import pytest

from conftest import unique, wait_until

COUNTER = """
counter = {{"n": 0}}
SECRET = "{secret}"

def boot():
    VWED.api.register_route("/{name}/bump", "POST", bump)
    VWED.api.register_route("/{name}/peek", "GET", peek)
    VWED.function.register("{name}_pid", pid)

def bump(request):
    counter["n"] += 1
    return counter["n"]

def peek(request):
    import os
    return {{"n": counter["n"], "secret": globals().get("SECRET"),
             "other": globals().get("OTHER_SECRET"), "pid": os.getpid()}}

def pid():
    import os
    return os.getpid()
"""


def test_two_scripts_run_in_two_kernels_and_do_not_share_globals(scripts, client):
    a, b = unique("a"), unique("b")
    sa = scripts.start(f"{a}.py", COUNTER.format(name=a, secret="alpha"))
    sb = scripts.start(f"{b}.py", COUNTER.format(name=b, secret="beta"))
    assert sa["script_id"].startswith(f"{a}.py_")
    assert {x["path"] for x in sa["registrations"]["apis"]} == {f"/{a}/bump", f"/{a}/peek"}

    for _ in range(3):
        assert client.post(f"/script-api/{a}/bump").status_code == 200
    pa = client.get(f"/script-api/{a}/peek").json()
    pb = client.get(f"/script-api/{b}/peek").json()
    assert pa["n"] == 3 and pb["n"] == 0
    assert pa["secret"] == "alpha" and pb["secret"] == "beta"
    assert pa["pid"] != pb["pid"]

    running = {s["script_id"]: s for s in client.get("/script-engine/running").json()["scripts"]}
    assert running[sa["script_id"]]["pid"] == pa["pid"]
    assert running[sb["script_id"]]["pid"] == pb["pid"]
    assert running[sa["script_id"]]["kernel_id"] != running[sb["script_id"]]["kernel_id"]
    assert running[sa["script_id"]]["registrations"] == {
        "apis": 2,
        "functions": 1,
        "events": 0,
        "timers": 0,
        "websockets": 0,
        "tcp": 0,
        "mqtt": 0,
    }
    detail = client.get(f"/script-engine/scripts/{sa['script_id']}").json()
    assert {f["name"] for f in detail["registrations_detail"]["functions"]} == {f"{a}_pid"}


def test_stop_removes_exactly_one_scripts_routes_and_functions(scripts, client):
    a, b = unique("a"), unique("b")
    sa = scripts.start(f"{a}.py", COUNTER.format(name=a, secret="x"))
    scripts.start(f"{b}.py", COUNTER.format(name=b, secret="y"))
    r = client.post("/script-engine/stop", json={"script_id": sa["script_id"]})
    assert r.status_code == 200 and r.json()["status"] == "stopped"

    r = client.get(f"/script-api/{a}/peek")
    assert r.status_code == 404 and r.json()["code"] == "ROUTE_NOT_FOUND"
    r = client.post(f"/script-engine/functions/{a}_pid/call", json={})
    assert r.status_code == 404 and r.json()["code"] == "FUNCTION_NOT_FOUND"
    assert client.get(f"/script-api/{b}/peek").status_code == 200
    assert client.post(f"/script-engine/functions/{b}_pid/call", json={}).status_code == 200
    names = {f["name"] for f in client.get("/script-engine/functions").json()["functions"]}
    assert f"{b}_pid" in names and f"{a}_pid" not in names
    ids = {s["script_id"] for s in client.get("/script-engine/running").json()["scripts"]}
    assert sa["script_id"] not in ids

    r = client.post("/script-engine/stop", json={"script_id": sa["script_id"]})
    assert r.status_code == 404 and r.json()["code"] == "NOT_RUNNING"


def test_stop_by_path_and_restart_reads_the_file_again(scripts, client):
    name = unique("r")
    code = COUNTER.format(name=name, secret="v1")
    first = scripts.start(f"{name}.py", code)
    # writing a running script's file changes nothing until it is restarted
    r = client.put(f"/script-engine/files/{name}.py", json={"content": code.replace("v1", "v2")})
    assert r.status_code == 200
    assert client.get(f"/script-api/{name}/peek").json()["secret"] == "v1"
    r = client.post("/script-engine/restart", json={"script_path": f"{name}.py"})
    assert r.status_code == 200, r.text
    second = r.json()
    scripts.started.append(second["script_id"])
    assert second["previous_script_id"] == first["script_id"]
    assert second["script_id"] != first["script_id"]
    assert client.get(f"/script-api/{name}/peek").json()["secret"] == "v2"
    r = client.post("/script-engine/stop", json={"script_path": f"{name}.py"})
    assert r.status_code == 200
    r = client.post("/script-engine/restart", json={"script_path": f"{name}.py"})
    assert r.status_code == 404 and r.json()["code"] == "NOT_RUNNING"


def test_start_errors(scripts, client):
    r = client.post("/script-engine/start", json={"script_path": "missing/nothing.py"})
    assert r.status_code == 404 and r.json()["code"] == "SCRIPT_NOT_FOUND"
    r = client.post(
        "/script-engine/start", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["code"] == "INVALID_JSON"
    r = client.post("/script-engine/start", json={})
    assert r.status_code == 400 and r.json()["code"] == "MISSING_FIELD"
    r = client.post("/script-engine/stop", json={})
    assert r.status_code == 400 and r.json()["code"] == "MISSING_FIELD"

    name = unique("dup")
    first = scripts.start(f"{name}.py", COUNTER.format(name=name, secret=""))
    r = client.post("/script-engine/start", json={"script_path": f"{name}.py"})
    assert r.status_code == 409
    assert r.json()["code"] == "ALREADY_RUNNING" and r.json()["script_id"] == first["script_id"]


def test_boot_missing_and_boot_failed_leave_nothing_registered(scripts, client):
    nob = scripts.write(f"{unique('noboot')}.py", "x = 1\n")
    r = client.post("/script-engine/start", json={"script_path": nob})
    assert r.status_code == 422 and r.json()["code"] == "BOOT_MISSING"

    name = unique("bad")
    bad = scripts.write(
        f"{name}.py",
        f"""
def boot():
    VWED.api.register_route("/{name}/half", "GET", lambda r: 1)
    VWED.function.register("{name}_f", lambda: 1)
    raise RuntimeError("no PLC at 10.0.0.9")
""",
    )
    r = client.post("/script-engine/start", json={"script_path": bad})
    body = r.json()
    assert r.status_code == 422 and body["code"] == "BOOT_FAILED"
    assert body["type"] == "RuntimeError" and "no PLC" in body["message"]
    assert "raise RuntimeError" in body["traceback"] and body["phase"] == "boot"
    assert client.get(f"/script-api/{name}/half").json()["code"] == "ROUTE_NOT_FOUND"
    assert client.post(f"/script-engine/functions/{name}_f/call").status_code == 404
    assert all(
        s["script_path"] != bad for s in client.get("/script-engine/running").json()["scripts"]
    )

    load = scripts.write(
        f"{unique('loadfail')}.py", "import no_such_module_here\ndef boot(): pass\n"
    )
    r = client.post("/script-engine/start", json={"script_path": load})
    body = r.json()
    assert r.status_code == 422 and body["code"] == "BOOT_FAILED" and body["phase"] == "load"
    assert body["type"] == "ModuleNotFoundError" and "\x1b[" not in body["traceback"]


def test_registration_conflict_names_the_owner(scripts, client):
    name = unique("own")
    owner = scripts.start(f"{name}.py", COUNTER.format(name=name, secret=""))
    clash = scripts.write(
        f"{unique('clash')}.py",
        f"""
def boot():
    VWED.function.register("{name}_pid", lambda: 0)
""",
    )
    r = client.post("/script-engine/start", json={"script_path": clash})
    body = r.json()
    assert r.status_code == 409 and body["code"] == "REGISTRATION_CONFLICT"
    assert body["owner"] == owner["script_id"]
    assert all(
        s["script_path"] != clash for s in client.get("/script-engine/running").json()["scripts"]
    )
    # the owner still serves
    assert client.post(f"/script-engine/functions/{name}_pid/call").status_code == 200


def test_notebook_script_starts_like_a_py(scripts, client, scripts_dir):
    name = unique("nb")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# A script written in JupyterLab"),
        nbformat.v4.new_code_cell("GREETING = 'from a notebook'"),
        nbformat.v4.new_code_cell(
            f"def boot():\n    VWED.api.register_route('/{name}/hi', 'GET', hi)\n\n"
            "def hi(request):\n    return {'greeting': GREETING, 'file': __file__}"
        ),
    ]
    (scripts_dir / f"{name}.ipynb").write_text(nbformat.writes(nb))
    started = scripts.start(f"{name}.ipynb")
    assert started["registrations"]["apis"][0]["path"] == f"/{name}/hi"
    body = client.get(f"/script-api/{name}/hi").json()
    assert body["greeting"] == "from a notebook"
    assert body["file"].endswith(f"{name}.ipynb")


def test_async_boot_and_decorator_forms(scripts, client):
    name = unique("deco")
    scripts.start(
        f"{name}.py",
        f"""
import asyncio

async def boot():
    await asyncio.sleep(0.01)

    @VWED.api.route("/{name}/robots/{{robot_id}}", methods=["GET", "PUT"])
    def robot(request):
        return {{"id": request["path_params"]["robot_id"], "method": request["method"]}}

    @VWED.function.register("{name}_twice")
    def twice(x):
        return x * 2
""",
    )
    assert client.get(f"/script-api/{name}/robots/7").json() == {"id": "7", "method": "GET"}
    assert client.put(f"/script-api/{name}/robots/8").json() == {"id": "8", "method": "PUT"}
    r = client.delete(f"/script-api/{name}/robots/8")
    assert r.status_code == 405 and r.json()["code"] == "METHOD_NOT_ALLOWED"
    r = client.post(f"/script-engine/functions/{name}_twice/call", json={"args": [21]})
    assert r.json()["result"] == 42


def test_a_dead_kernel_marks_the_script_died_and_it_can_start_again(scripts, client, gw):
    name = unique("die")
    scripts.write(
        f"{name}.py",
        f"""
import os
def boot():
    VWED.api.register_route("/{name}/exit", "POST", lambda r: os._exit(3))
    VWED.api.register_route("/{name}/ok", "GET", lambda r: "ok")
""",
    )
    started = client.post(
        "/script-engine/start", json={"script_path": f"{name}.py", "restart": "never"}
    ).json()
    scripts.started.append(started["script_id"])
    r = client.post(f"/script-api/{name}/exit")
    assert r.status_code == 502 and r.json()["code"] == "KERNEL_DIED"

    def status():
        for s in client.get("/script-engine/running").json()["scripts"]:
            if s["script_id"] == started["script_id"]:
                return s["status"]
        return None

    wait_until(lambda: status() == "died", 10, "status died")
    assert client.get(f"/script-api/{name}/ok").status_code == 404
    again = scripts.start(f"{name}.py")
    assert again["script_id"] != started["script_id"]
    assert client.get(f"/script-api/{name}/ok").json() == "ok"


@pytest.mark.parametrize("path", ["../outside.py", "/etc/passwd", "a/../../b.py", "bad\x00.py"])
def test_start_refuses_paths_outside_the_root(client, path):
    r = client.post(
        "/script-engine/start",
        content=json.dumps({"script_path": path}),
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["code"] == "PATH_INVALID"


def test_a_script_that_kills_its_kernel_in_boot_fails_with_kernel_died(scripts, client):
    path = scripts.write(f"{unique('exitboot')}.py", "import os\ndef boot():\n    os._exit(7)\n")
    r = client.post("/script-engine/start", json={"script_path": path})
    assert r.status_code == 502 and r.json()["code"] == "KERNEL_DIED"
    assert all(
        s["script_path"] != path for s in client.get("/script-engine/running").json()["scripts"]
    )


def test_boot_timeout(tmp_path):
    from conftest import GatewayThread
    from kernel_gateway.config import Settings

    (tmp_path / "slow.py").write_text("def boot():\n    while True:\n        pass\n")
    gw = GatewayThread(
        Settings(
            scripts_dir=str(tmp_path),
            port=0,
            data_dir=str(tmp_path / "d"),
            pool_size=0,
            boot_timeout=2.0,
            auth=False,
        ).validated()
    ).start()
    try:
        import httpx

        with httpx.Client(base_url=gw.url, timeout=60) as c:
            r = c.post("/script-engine/start", json={"script_path": "slow.py"})
            assert r.status_code == 504 and r.json()["code"] == "BOOT_TIMEOUT"
            assert c.get("/script-engine/running").json()["count"] == 0
    finally:
        gw.stop()
