"""The Jupyter debugger (ipykernel's, over the control channel) on a running script's
kernel: a breakpoint in a route handler stops there when the route is called over HTTP."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import queue
import textwrap
import time
import uuid

import httpx
import nbformat
import pytest
from jupyter_client import BlockingKernelClient
from tornado.websocket import websocket_connect

from conftest import unique


def _debug(kc: BlockingKernelClient, command: str, arguments: dict | None = None) -> dict:
    seq = int(time.monotonic_ns() % 1_000_000)
    msg = kc.session.msg(
        "debug_request",
        {"type": "request", "seq": seq, "command": command, "arguments": arguments or {}},
    )
    kc.control_channel.send(msg)
    while True:
        reply = kc.get_control_msg(timeout=30)
        if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            return reply["content"]


def test_a_breakpoint_in_a_route_handler_stops_an_http_call(scripts, client, gw):
    n = unique("dbg")
    started = scripts.start(
        f"{n}.py",
        f"""
def boot():
    VWED.api.register_route("/{n}/speed", "GET", lambda: 1)
""",
    )
    info = client.get(f"/script-engine/kernels/{started['kernel_id']}/connection").json()
    kc = BlockingKernelClient()
    kc.load_connection_info(info)
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=30)
        assert _debug(
            kc,
            "initialize",
            {
                "clientID": "test",
                "adapterID": "python",
                "pathFormat": "path",
                "linesStartAt1": True,
                "columnsStartAt1": True,
            },
        )["success"]
        assert _debug(kc, "attach")["success"]
        # the handler, (re)defined in the attached notebook: the debugger knows its cell
        cell = textwrap.dedent(f"""\
            def speed(request):
                factor = 3
                return 7 * factor

            VWED.api.register_route("/{n}/speed", "GET", speed)
            """)
        path = _debug(kc, "dumpCell", {"code": cell})["body"]["sourcePath"]
        bp = _debug(
            kc,
            "setBreakpoints",
            {"source": {"path": path}, "breakpoints": [{"line": 3}], "sourceModified": False},
        )
        assert bp["body"]["breakpoints"][0]["verified"]
        assert _debug(kc, "configurationDone")["success"]
        reply = kc.execute_interactive(cell, timeout=30)
        assert reply["content"]["status"] == "ok"

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            call = pool.submit(lambda: httpx.get(f"{gw.url}/script-api/{n}/speed", timeout=60))
            stopped = None
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                msg = kc.get_iopub_msg(timeout=30)
                if msg["msg_type"] == "debug_event" and msg["content"].get("event") == "stopped":
                    stopped = msg["content"]
                    break
            assert stopped is not None and stopped["body"]["reason"] == "breakpoint"
            assert not call.done()  # the HTTP call waits at the breakpoint
            thread_id = stopped["body"]["threadId"]
            frames = _debug(kc, "stackTrace", {"threadId": thread_id})["body"]["stackFrames"]
            assert frames[0]["name"] == "speed" and frames[0]["line"] == 3
            assert _debug(kc, "continue", {"threadId": thread_id})["success"]
            answer = call.result(30)
        assert answer.status_code == 200 and answer.json() == 21
        _debug(kc, "disconnect", {"restart": False, "terminateDebuggee": False})
    finally:
        kc.stop_channels()


def _start_debugger(kc: BlockingKernelClient) -> dict:
    """What JupyterLab does when the debugger is switched on: debugInfo, initialize,
    attach, configurationDone. Returns debugInfo's body (the hash parameters)."""
    info = _debug(kc, "debugInfo")["body"]
    assert _debug(
        kc,
        "initialize",
        {
            "clientID": "jupyterlab",
            "adapterID": "python",
            "pathFormat": "path",
            "linesStartAt1": True,
            "columnsStartAt1": True,
        },
    )["success"]
    assert _debug(kc, "attach")["success"]
    assert _debug(kc, "configurationDone")["success"]
    return info


def _code_id(text: str, info: dict) -> str:
    """The path JupyterLab's debugger computes for an editor's text (its getCodeId):
    tmpFilePrefix + murmur2(UTF-8 text, hashSeed) + tmpFileSuffix."""
    from ipykernel.compiler import murmur2_x86

    return f"{info['tmpFilePrefix']}{murmur2_x86(text, info['hashSeed'])}{info['tmpFileSuffix']}"


def _wait_stopped(kc: BlockingKernelClient, timeout: float) -> dict | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        if msg["msg_type"] == "debug_event" and msg["content"].get("event") == "stopped":
            return msg["content"]
    return None


_HANDLER = """\
def speed(request):
    factor = 3
    return 7 * factor


def broken(request):
    return {}["missing"]
"""


@pytest.mark.parametrize("kind", ["py", "ipynb"])
def test_a_breakpoint_in_the_script_file_stops_code_that_booted_before_the_debugger(
    scripts, client, gw, kind
):
    """Issue 14, step 3: the author opens the script in JupyterLab, connects it to the
    script's kernel, clicks a line of the route handler; the handler was defined
    when the script booted, long before the debugger attached."""
    n = unique("dbgfile")
    boot = (
        "def boot():\n"
        f'    VWED.api.register_route("/{n}/speed", "GET", speed)\n'
        f'    VWED.api.register_route("/{n}/broken", "GET", broken)\n'
    )
    if kind == "py":
        # leading empty lines, as an f-string script often has: IPython used to drop
        # them, so the compiled lines were one off the file's and never stopped
        text = "\n\n" + _HANDLER + "\n\n" + boot
        rel, cell, line = f"{n}.py", text, 5  # "return 7 * factor"
        (scripts.root / rel).write_text(text)
        name = rel
    else:
        nb = nbformat.v4.new_notebook()
        nb.cells = [
            nbformat.v4.new_markdown_cell("# a flow"),
            nbformat.v4.new_code_cell("LIMIT = 3"),
            nbformat.v4.new_code_cell("\n" + _HANDLER),
            nbformat.v4.new_code_cell(boot),
        ]
        rel, cell, line = f"{n}.ipynb", "\n" + _HANDLER, 4
        (scripts.root / rel).write_text(nbformat.writes(nb))
        name = f"{rel} [code cell 2]"
    started = scripts.start(rel)
    speed_url = f"{gw.url}/script-api/{n}/speed"
    assert httpx.get(speed_url, timeout=30).json() == 21  # the handler ran before attach

    info = client.get(f"/script-engine/kernels/{started['kernel_id']}/connection").json()
    kc = BlockingKernelClient()
    kc.load_connection_info(info)
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=30)
        dbg = _start_debugger(kc)
        # the path a file editor (or a notebook cell) gets for the file's text
        path = _debug(kc, "dumpCell", {"code": cell})["body"]["sourcePath"]
        assert path == _code_id(cell, dbg)

        # the Kernel Sources panel lists the script under its own name; opening it works
        modules = _debug(kc, "modules")["body"]["modules"]
        assert {"id": path, "name": name, "path": path} in modules
        assert _debug(kc, "source", {"source": {"path": path}})["body"]["content"] == cell

        bp = _debug(
            kc,
            "setBreakpoints",
            {"source": {"path": path}, "breakpoints": [{"line": line}], "sourceModified": False},
        )
        assert bp["body"]["breakpoints"][0]["verified"]

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            call = pool.submit(lambda: httpx.get(speed_url, timeout=60))
            stopped = _wait_stopped(kc, 30)
            assert stopped is not None and stopped["body"]["reason"] == "breakpoint"
            assert not call.done()  # the HTTP call waits at the breakpoint
            thread_id = stopped["body"]["threadId"]
            frames = _debug(kc, "stackTrace", {"threadId": thread_id})["body"]["stackFrames"]
            top = frames[0]
            assert (top["name"], top["line"]) == ("speed", line)
            assert top["source"]["path"] == path and top["source"]["name"] == name
            scopes = _debug(kc, "scopes", {"frameId": top["id"]})["body"]["scopes"]
            local = next(s for s in scopes if s["name"] == "Locals")
            variables = _debug(kc, "variables", {"variablesReference": local["variablesReference"]})
            values = {v["name"]: v["value"] for v in variables["body"]["variables"]}
            assert "request" in values and values["factor"] == "3"
            assert _debug(kc, "continue", {"threadId": thread_id})["success"]
            answer = call.result(30)
        assert answer.status_code == 200 and answer.json() == 21
        _debug(kc, "disconnect", {"restart": False, "terminateDebuggee": False})

        # tracebacks name the script, not the debugger's file name
        out: list[str] = []
        reply = kc.execute_interactive(
            "from vwed_kernel.replies import error_payload\n"
            "try:\n    broken({})\nexcept KeyError as e:\n"
            "    print(error_payload(e, 'handler')['traceback'])\n",
            timeout=30,
            output_hook=lambda m: out.append(m["content"].get("text", "")),
        )
        assert reply["content"]["status"] == "ok"
        tb = "".join(out)
        real = str(scripts.root / rel) + ("" if kind == "py" else " [code cell 2]")
        assert f'File "{real}", line {line + 4}, in broken' in tb, tb
        assert path not in tb
    finally:
        kc.stop_channels()


class _WsDebug:
    """The Jupyter debug protocol over the gateway's channels WebSocket, as JupyterLab
    speaks it through Jupyter Server in gateway mode (control channel, iopub events)."""

    def __init__(self, conn) -> None:
        self.conn = conn
        self.events: list[dict] = []

    async def _read(self, timeout: float) -> dict:
        raw = await asyncio.wait_for(self.conn.read_message(), timeout)
        assert raw is not None, "the WebSocket closed"
        msg = json.loads(raw)
        if msg["msg_type"] == "debug_event":
            self.events.append(msg["content"])
        return msg

    async def request(self, command: str, arguments: dict | None = None) -> dict:
        msg = _ws_msg(
            "debug_request",
            {"type": "request", "seq": 1, "command": command, "arguments": arguments or {}},
            "control",
        )
        await self.conn.write_message(json.dumps(msg))
        deadline = time.monotonic() + 30
        while True:
            reply = await self._read(max(0.1, deadline - time.monotonic()))
            if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
                if reply["msg_type"] == "debug_reply":
                    return reply["content"]

    async def stopped(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("event") == "stopped":
                    return event
            await self._read(max(0.1, deadline - time.monotonic()))


def _ws_msg(msg_type: str, content: dict, channel: str) -> dict:
    header = {
        "msg_id": uuid.uuid4().hex,
        "msg_type": msg_type,
        "username": "lab",
        "session": uuid.uuid4().hex,
        "version": "5.3",
        "date": "",
    }
    return {
        "header": header,
        "parent_header": {},
        "metadata": {},
        "content": content,
        "channel": channel,
        "buffers": [],
    }


def test_the_debugger_through_the_gateway_channels_websocket(scripts, gw):
    """The same loop through ``/api/kernels/{id}/channels`` (JupyterLab's way): the
    attached client's control channel is its own, the script keeps answering."""
    n = unique("dbgws")
    text = (
        _HANDLER
        + "\n\ndef boot():\n"
        + (f'    VWED.api.register_route("/{n}/speed", "GET", speed)\n')
    )
    (scripts.root / f"{n}.py").write_text(text)
    started = scripts.start(f"{n}.py")
    speed_url = f"{gw.url}/script-api/{n}/speed"
    url = f"ws://127.0.0.1:{gw.gateway.port}/api/kernels/{started['kernel_id']}/channels"

    async def session() -> tuple[dict, dict]:
        conn = await asyncio.wait_for(websocket_connect(url), 10)
        try:
            dbg = _WsDebug(conn)
            info = (await dbg.request("debugInfo"))["body"]
            for command, arguments in (
                ("initialize", {"clientID": "jupyterlab", "adapterID": "python"}),
                ("attach", {}),
                ("configurationDone", {}),
            ):
                assert (await dbg.request(command, arguments))["success"], command
            path = _code_id(text, info)  # what JupyterLab computes for the editor's text
            assert (await dbg.request("dumpCell", {"code": text}))["body"]["sourcePath"] == path
            bp = await dbg.request(
                "setBreakpoints", {"source": {"path": path}, "breakpoints": [{"line": 3}]}
            )
            assert bp["body"]["breakpoints"][0]["verified"]
            call = asyncio.ensure_future(asyncio.to_thread(httpx.get, speed_url, timeout=60))
            stopped = await dbg.stopped(30)
            assert not call.done()
            thread_id = stopped["body"]["threadId"]
            frames = (await dbg.request("stackTrace", {"threadId": thread_id}))["body"]
            assert (await dbg.request("continue", {"threadId": thread_id}))["success"]
            answer = await asyncio.wait_for(call, 30)
            await dbg.request("disconnect", {"restart": False, "terminateDebuggee": False})
            return frames["stackFrames"][0], {"status": answer.status_code, "body": answer.json()}
        finally:
            conn.close()

    top, answer = asyncio.run(session())
    assert (top["name"], top["line"], top["source"]["name"]) == ("speed", 3, f"{n}.py")
    assert answer == {"status": 200, "body": 21}


def test_a_breakpoint_in_a_shared_module_set_from_kernel_sources(scripts, client, gw):
    """A module of the scripts root (``import common.x``) keeps its real path as its
    code's file name: the Kernel Sources panel lists it, opening it shows its text,
    and a breakpoint set in that view stops there."""
    n = unique("dbgmod")
    helper = "def double(x):\n    y = x * 2\n    return y\n"
    scripts.write(f"common_{n}/helpers.py", helper)
    started = scripts.start(
        f"{n}/main.py",
        f"from common_{n}.helpers import double\n\n\ndef boot():\n"
        f'    VWED.api.register_route("/{n}/double", "GET", lambda: double(4))\n',
    )
    info = client.get(f"/script-engine/kernels/{started['kernel_id']}/connection").json()
    kc = BlockingKernelClient()
    kc.load_connection_info(info)
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=30)
        _start_debugger(kc)
        modules = _debug(kc, "modules")["body"]["modules"]
        module = next(m for m in modules if m["name"] == f"common_{n}.helpers")
        path = module["path"]
        assert path.endswith(f"common_{n}/helpers.py")
        assert _debug(kc, "source", {"source": {"path": path}})["body"]["content"] == helper
        bp = _debug(kc, "setBreakpoints", {"source": {"path": path}, "breakpoints": [{"line": 3}]})
        assert bp["body"]["breakpoints"][0]["verified"]
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            call = pool.submit(lambda: httpx.get(f"{gw.url}/script-api/{n}/double", timeout=60))
            stopped = _wait_stopped(kc, 30)
            assert stopped is not None
            thread_id = stopped["body"]["threadId"]
            top = _debug(kc, "stackTrace", {"threadId": thread_id})["body"]["stackFrames"][0]
            assert (top["name"], top["line"], top["source"]["path"]) == ("double", 3, path)
            assert _debug(kc, "continue", {"threadId": thread_id})["success"]
            assert call.result(30).json() == 8
        _debug(kc, "disconnect", {"restart": False, "terminateDebuggee": False})
    finally:
        kc.stop_channels()
