"""Drafts (issue 14, step 4): a kernel started through the gateway's kernels API on its
VWED kernelspec is connected, and what it registers is served under
``/script-api/drafts/<id8>/`` with the admin token only, until the kernel stops.

A real gateway with tokens, real kernels; the notebook is driven through the channels
WebSocket as JupyterLab does."""

from __future__ import annotations

import asyncio
import json
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from tornado.websocket import websocket_connect
from wheels import build_test_wheels

from conftest import GatewayThread, token_gateway, unique, wait_until

ADMIN = "drafts-admin-" + uuid.uuid4().hex
CALLER = "drafts-caller-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def draft_gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayThread, Path]]:
    wheels = build_test_wheels(tmp_path_factory.mktemp("draft-wheels"))
    yield from token_gateway(tmp_path_factory, "drafts", ADMIN, CALLER, deps_find_links=str(wheels))


@pytest.fixture
def admin(draft_gw: tuple[GatewayThread, Path]) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"token {ADMIN}"}
    with httpx.Client(base_url=draft_gw[0].url, timeout=30, headers=headers) as c:
        yield c


@pytest.fixture
def caller(draft_gw: tuple[GatewayThread, Path]) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"token {CALLER}"}
    with httpx.Client(base_url=draft_gw[0].url, timeout=30, headers=headers) as c:
        yield c


def _msg(code: str) -> dict[str, Any]:
    return {
        "header": {
            "msg_id": uuid.uuid4().hex,
            "msg_type": "execute_request",
            "username": "test",
            "session": uuid.uuid4().hex,
            "version": "5.3",
            "date": "",
        },
        "parent_header": {},
        "metadata": {},
        "content": {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
        },
        "channel": "shell",
    }


class Notebook:
    """A notebook's connection to a kernel: the channels WebSocket, one cell at a time."""

    def __init__(self, gw: GatewayThread, kernel_id: str) -> None:
        self.url = f"ws://127.0.0.1:{gw.gateway.port}/api/kernels/{kernel_id}/channels"
        self.loop = asyncio.new_event_loop()
        self.conn = self.loop.run_until_complete(self._connect())

    async def _connect(self) -> Any:
        return await asyncio.wait_for(websocket_connect(f"{self.url}?token={ADMIN}"), 15)

    def run(self, code: str) -> str:
        """Run a cell; its stdout (the cell must succeed)."""
        out, reply = self.loop.run_until_complete(self._run(textwrap.dedent(code)))
        content = reply["content"]
        assert content["status"] == "ok", f"{content.get('ename')}: {content.get('evalue')}"
        return out

    async def _run(self, code: str) -> tuple[str, dict[str, Any]]:
        request = _msg(code)
        await self.conn.write_message(json.dumps(request))
        out, reply, idle = "", None, False
        while reply is None or not idle:
            raw = await asyncio.wait_for(self.conn.read_message(), 30)
            assert raw is not None, "the gateway closed the channels WebSocket"
            msg = json.loads(raw)
            if msg["parent_header"].get("msg_id") != request["header"]["msg_id"]:
                continue
            if msg["msg_type"] == "stream":
                out += msg["content"]["text"]
            elif msg["msg_type"] == "error":
                out += "\n".join(msg["content"]["traceback"])
            elif msg["msg_type"] == "execute_reply":
                reply = msg
            elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                idle = True
        return out, reply

    def send(self, code: str) -> None:
        """Send a cell without waiting for its answer."""

        async def write() -> None:
            await self.conn.write_message(json.dumps(_msg(code)))

        self.loop.run_until_complete(write())

    def close(self) -> None:
        async def close() -> None:
            self.conn.close()

        self.loop.run_until_complete(close())
        self.loop.close()


def _start_script(admin: httpx.Client, root: Path, rel: str, code: str) -> dict[str, Any]:
    (root / rel).write_text(textwrap.dedent(code))
    r = admin.post("/script-engine/start", json={"script_path": rel})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture
def draft(
    draft_gw: tuple[GatewayThread, Path], admin: httpx.Client
) -> Iterator[tuple[str, Notebook]]:
    r = admin.post("/api/kernels", json={"name": "vwed"})
    assert r.status_code == 201, r.text
    model = r.json()
    kid = model["id"]
    assert model["vwed"]["draft"] == f"drafts/{kid[:8]}"
    nb = Notebook(draft_gw[0], kid)
    yield kid, nb
    nb.close()
    admin.delete(f"/api/kernels/{kid}")


def test_a_draft_reaches_running_scripts_and_serves_its_routes(draft_gw, admin, caller, draft):
    gw, root = draft_gw
    kid, nb = draft
    id8 = kid[:8]
    n = unique("stock")
    started = _start_script(
        admin,
        root,
        f"{n}.py",
        f"""
        def boot():
            VWED.function.register("{n}", lambda req: {{"sku": req["sku"], "left": 7}})
        """,
    )
    try:
        # the notebook's VWED is connected: it calls the running script, knows its name
        out = nb.run(
            f'print(VWED.script_id); print(VWED.function.call("{n}", {{"sku": "A1"}})["left"])'
        )
        assert out.split() == [f"drafts/{id8}", "7"]
        names = nb.run("print(sorted(f['name'] for f in VWED.function.list_all()))")
        assert n in names

        # a route it registers is served live under the draft's prefix, admin token only
        nb.run(
            """
            def hello(request):
                return {"hi": request["query_params"].get("who"), "path": request["path"],
                        "draft": VWED.script_id}
            VWED.api.register_route("/hello", "GET", hello)
            VWED.function.register("sq", lambda x: x * x)
            """
        )
        url = f"/script-api/drafts/{id8}/hello?who=ann"
        r = wait_until(
            lambda: (r := admin.get(url)).status_code == 200 and r, 10, "the draft's route"
        )
        assert r.json() == {"hi": "ann", "path": "/hello", "draft": f"drafts/{id8}"}
        r = caller.get(url)
        assert r.status_code == 403 and r.json()["code"] == "FORBIDDEN"
        r = httpx.get(gw.url + url)
        assert r.status_code == 401
        assert admin.post(f"/script-api/drafts/{id8}/hello").status_code == 405
        assert admin.get(f"/script-api/drafts/{id8}/nope").json()["code"] == "ROUTE_NOT_FOUND"
        assert admin.get("/script-api/hello").status_code == 404  # never at the bare path

        # its functions: by their draft name, admin token only; never by the bare name
        fn_url = f"/script-engine/functions/{quote(f'drafts/{id8}/sq', safe='')}/call"
        r = admin.post(fn_url, json={"args": 9})
        assert r.status_code == 200 and r.json()["result"] == 81, r.text
        assert r.json()["script_id"] == f"drafts/{id8}"
        assert caller.post(fn_url, json={"args": 9}).status_code == 403
        r = admin.post("/script-engine/functions/sq/call", json={"args": 9})
        assert r.json()["code"] == "FUNCTION_NOT_FOUND"
        # a running script cannot call a draft's function either
        assert all(
            f["name"] != "sq" for f in admin.get("/script-engine/functions").json()["functions"]
        )

        # the kernels API says where the draft is served
        model = admin.get(f"/api/kernels/{kid}").json()
        assert model["vwed"]["routes_prefix"] == f"/script-api/drafts/{id8}"

        # stopping the kernel removes the draft
        assert admin.delete(f"/api/kernels/{kid}").status_code == 204
        r = admin.get(url)
        assert r.status_code == 404 and r.json()["code"] == "ROUTE_NOT_FOUND"
        assert caller.get(url).status_code == 403  # the caller token learns nothing of drafts
        assert admin.post(fn_url, json={"args": 9}).json()["code"] == "FUNCTION_NOT_FOUND"
    finally:
        admin.post("/script-engine/stop", json={"script_id": started["script_id"]})


def test_a_draft_cannot_take_over_production(draft_gw, admin, caller, draft):
    gw, root = draft_gw
    kid, nb = draft
    id8 = kid[:8]
    n = unique("prod")
    started = _start_script(
        admin,
        root,
        f"{n}.py",
        f"""
        def boot():
            VWED.api.register_route("/{n}/x", "GET", lambda: "production")
            VWED.api.register_route("/drafts/{id8}/taken", "GET", lambda: "production too")
            VWED.function.register("{n}", lambda: "production")
        """,
    )
    try:
        nb.run(
            f"""
            VWED.api.register_route("/{n}/x", "GET", lambda: "draft")
            VWED.api.register_route("/taken", "GET", lambda: "draft")
            VWED.function.register("{n}", lambda: "draft")
            VWED.api.register_route("/ping", "GET", lambda: "pong")
            """
        )
        wait_until(
            lambda: admin.get(f"/script-api/drafts/{id8}/ping").status_code == 200,
            10,
            "the draft's registrations",
        )
        # production routes and functions answer as before, for either token
        assert caller.get(f"/script-api/{n}/x").json() == "production"
        assert caller.post(f"/script-engine/functions/{n}/call").json()["result"] == "production"
        # the draft's copy lives under its prefix only
        assert admin.get(f"/script-api/drafts/{id8}/{n}/x").json() == "draft"
        # a production route under the draft prefix wins: the draft's is refused
        assert caller.get(f"/script-api/drafts/{id8}/taken").json() == "production too"
        assert admin.get(f"/script-api/drafts/{id8}/taken").json() == "production too"
        # in the notebook, a function it registered runs there (production callers get
        # production's)
        assert nb.run(f'print(VWED.function.call("{n}"))').strip() == "draft"

        def refused() -> bool:
            records = admin.get(
                "/script-engine/logs", params={"script_id": f"drafts/{id8}", "level": "WARNING"}
            ).json()["records"]
            return any("/taken is served by production" in r["message"] for r in records)

        wait_until(refused, 10, "the refusal in the draft's logs")
    finally:
        admin.post("/script-engine/stop", json={"script_id": started["script_id"]})


def test_events_and_restart(draft_gw, admin, draft):
    kid, nb = draft
    id8 = kid[:8]
    n = unique("ev")
    out = nb.run(
        f"""
        seen = []
        VWED.event.listen("{n}", lambda data: seen.append(data))
        report = await VWED.event.aemit("{n}", {{"k": 1}})
        print(report["delivered"], seen)
        """
    )
    assert out.strip() == "1 [{'k': 1}]"

    nb.run('VWED.api.register_route("/before", "GET", lambda: 1)')
    wait_until(
        lambda: admin.get(f"/script-api/drafts/{id8}/before").status_code == 200, 10, "route"
    )
    r = admin.post(f"/api/kernels/{kid}/restart")
    assert r.status_code == 200 and r.json()["id"] == kid
    # a restart starts the draft afresh: same id, same notebook connection, no routes
    assert admin.get(f"/script-api/drafts/{id8}/before").json()["code"] == "ROUTE_NOT_FOUND"
    wait_until(lambda: _runs(nb, "print(VWED.script_id)") == f"drafts/{id8}", 30, "reconnect")
    nb.run('VWED.api.register_route("/after", "GET", lambda: 2)')
    wait_until(lambda: admin.get(f"/script-api/drafts/{id8}/after").status_code == 200, 10, "route")

    # a kernel that dies takes its routes with it
    nb.send("import os; os._exit(1)")
    wait_until(
        lambda: admin.get(f"/script-api/drafts/{id8}/after").status_code == 404, 10, "removal"
    )


def _runs(nb: Notebook, code: str) -> str:
    try:
        return nb.run(code).strip()
    except (AssertionError, asyncio.TimeoutError):
        return ""


def test_deploy_saves_the_draft_as_a_script_and_starts_it(draft_gw, admin, caller, draft):
    _, root = draft_gw
    _, nb = draft
    n = unique("dep")
    started: list[str] = []
    try:
        # one call: write the code as a script and start it ...
        out = nb.run(
            f"""
            src = '''def boot():
                VWED.api.register_route("/{n}/v", "GET", lambda: "v1")
            '''
            r = VWED.deploy("{n}/app.py", src)
            print(r["action"], r["script_id"])
            """
        )
        action, sid = out.split()
        started.append(sid)
        assert action == "started" and (root / n / "app.py").is_file()
        assert caller.get(f"/script-api/{n}/v").json() == "v1"
        # ... and again: the running script is reloaded with the new code
        out = nb.run(f'print(VWED.deploy("{n}/app.py", src.replace("v1", "v2"))["action"])')
        assert out.strip() == "reloaded"
        assert caller.get(f"/script-api/{n}/v").json() == "v2"
        # each deploy's write is a commit of the scripts repository (issue 17)
        entries = admin.get(f"/script-engine/files/{n}/app.py/history").json()["history"]
        assert [(e["author"], e["message"]) for e in entries] == [
            ("draft (admin)", f"deploy {n}/app.py")
        ] * 2

        # a saved notebook: exported beside it (skip-tagged cells left out), started;
        # the deploy line itself is a no-op in the deployed script
        cells = [
            {"cell_type": "markdown", "id": "c0", "metadata": {}, "source": "# Dock"},
            {
                "cell_type": "code",
                "id": "c1",
                "metadata": {},
                "execution_count": None,
                "outputs": [],
                "source": f'def boot():\n    VWED.api.register_route("/{n}/nb", "GET", lambda: 1)',
            },
            {
                "cell_type": "code",
                "id": "c2",
                "metadata": {"tags": ["skip"]},
                "execution_count": None,
                "outputs": [],
                "source": "print(VWED.function.call('no-such-function'))",
            },
            {
                "cell_type": "code",
                "id": "c3",
                "metadata": {},
                "execution_count": None,
                "outputs": [],
                "source": f'VWED.deploy("{n}/dock.ipynb")',
            },
        ]
        notebook = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
        r = admin.put(
            f"/script-engine/files/{n}/dock.ipynb", json={"content": json.dumps(notebook)}
        )
        assert r.status_code == 200, r.text
        out = nb.run(f'r = VWED.deploy("{n}/dock.ipynb"); print(r["action"], r["script_id"])')
        action, sid = out.split()
        started.append(sid)
        assert action == "started" and r_path(sid) == f"{n}/dock.py"
        assert caller.get(f"/script-api/{n}/nb").json() == 1
        assert "no-such-function" not in (root / n / "dock.py").read_text()
        entries = admin.get(f"/script-engine/files/{n}/dock.py/history").json()["history"]
        assert entries[0]["message"] == f"deploy {n}/dock.ipynb"
    finally:
        for sid in started:
            admin.post("/script-engine/stop", json={"script_id": sid})


def test_deploy_lists_the_packages_before_installing_them(draft_gw, admin, caller, draft):
    """Installing packages runs their code: a deploy of a script whose packages are not
    installed names them and starts nothing, until the author says install=True."""
    _, nb = draft
    n = unique("pkgs")
    src = (
        "# /// script\n"
        '# dependencies = ["vwedtiny==1.0"]\n'
        "# ///\n"
        "import vwedtiny\n"
        "def boot():\n"
        f'    VWED.api.register_route("/{n}/v", "GET", lambda: vwedtiny.VERSION)\n'
    )
    started: list[str] = []
    try:
        out = nb.run(
            f"""
            src = {src!r}
            try:
                VWED.deploy("{n}/app.py", src)
            except Exception as exc:
                print(exc.code, "|", exc)
            """
        )
        code, _, message = out.partition("|")
        assert code.strip() == "DEPENDENCIES_NOT_READY", out
        assert "vwedtiny==1.0" in message and "install=True" in message
        running = admin.get("/script-engine/running").json()["scripts"]
        assert not [s for s in running if s["script_path"] == f"{n}/app.py"]

        out = nb.run(
            f'r = VWED.deploy("{n}/app.py", src, install=True); print(r["action"], r["script_id"])'
        )
        action, sid = out.split()
        started.append(sid)
        assert action == "started"
        assert caller.get(f"/script-api/{n}/v").json() == "1.0"
        # installed now: a redeploy needs no consent
        out = nb.run(f'print(VWED.deploy("{n}/app.py", src)["action"])')
        assert out.strip() == "reloaded"
    finally:
        for sid in started:
            admin.post("/script-engine/stop", json={"script_id": sid})


def r_path(script_id: str) -> str:
    return script_id.rsplit("_", 1)[0]
