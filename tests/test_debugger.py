"""The Jupyter debugger (ipykernel's, over the control channel) on a running script's
kernel: a breakpoint in a route handler stops there when the route is called over HTTP."""

from __future__ import annotations

import concurrent.futures
import textwrap
import time

import httpx
from jupyter_client import BlockingKernelClient

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
