"""VWED.event, VWED.timer, VWED.http, VWED.mail against real peers."""

from __future__ import annotations

import http.server
import json
import threading
import time

import httpx
import pytest

from conftest import GatewayThread, unique, wait_until
from kernel_gateway.config import Settings

LISTENER = """
SEEN = []

def boot():
    VWED.event.listen("{event}", on_event, priority={priority})
    VWED.function.register("{name}_seen", lambda: SEEN)
    VWED.function.register("{name}_emit", emit)

def on_event(data):
    SEEN.append(data)
    VWED.function.call("{order}_append", ["{name}"])
    if data == "fail-{name}":
        raise RuntimeError("listener {name} refuses")

def emit(data):
    VWED.event.emit("{event}", data)
    return True
"""

ORDER = """
ORDER = []

def boot():
    VWED.function.register("{order}_append", lambda who: ORDER.append(who))
    VWED.function.register("{order}_get", lambda: ORDER)
    VWED.function.register("{order}_reset", lambda: ORDER.clear())
"""


def call(client, name, args=None):
    r = client.post(f"/script-engine/functions/{name}/call", json={"args": args})
    assert r.status_code == 200, r.text
    return r.json()["result"]


def test_an_event_crosses_three_scripts_by_priority(scripts, client):
    event, order = unique("ev"), unique("order")
    scripts.start(f"{order}.py", ORDER.format(order=order))
    names = {}
    for label, prio in (("low", 1), ("high", 10), ("mid", 5)):
        names[label] = unique(label)
        scripts.start(
            f"{names[label]}.py",
            LISTENER.format(event=event, priority=prio, name=names[label], order=order),
        )
    r = client.post(f"/script-engine/events/{event}", json={"data": {"pallet": 7}})
    body = r.json()
    assert (
        r.status_code == 200
        and body["listeners"] == 3
        and body["delivered"] == 3
        and not body["failed"]
    )
    assert call(client, f"{order}_get") == [names["high"], names["mid"], names["low"]]
    assert call(client, f"{names['low']}_seen") == [{"pallet": 7}]

    # a failing listener is reported and does not stop the others
    call(client, f"{order}_reset")
    body = client.post(
        f"/script-engine/events/{event}", json={"data": f"fail-{names['high']}"}
    ).json()
    assert body["delivered"] == 2 and body["failed"][0]["listener"].startswith(event)
    assert body["failed"][0]["type"] == "RuntimeError"
    assert call(client, f"{order}_get") == [names["high"], names["mid"], names["low"]]

    # an emit from a script reaches the others (delivered after the emitting call returns)
    call(client, f"{order}_reset")
    assert call(client, f"{names['mid']}_emit", ["from-mid"]) is True
    wait_until(lambda: len(call(client, f"{order}_get")) == 3, 10, "the script's event")

    # listeners of a stopped script are gone
    client.post("/script-engine/stop", json={"script_path": f"{names['high']}.py"})
    assert client.post(f"/script-engine/events/{event}", json={"data": 1}).json()["listeners"] == 2
    assert (
        client.post(f"/script-engine/events/{unique('nobody')}", json={}).json()["listeners"] == 0
    )


TIMERS = """
import time
TICKS = {"every": 0, "once": 0, "cron": 0, "bad": 0, "slow": 0, "slow_overlap": 0}
BUSY = [False]

def boot():
    VWED.timer.schedule(0.1, every)
    VWED.timer.delay(0.2, once)
    VWED.timer.cron("* * * * * *", cron_tick)
    VWED.timer.schedule(0.1, bad)
    VWED.timer.schedule(0.05, slow)
    VWED.function.register("{n}_ticks", lambda: TICKS)
    VWED.function.register("{n}_timers", VWED.timer.list)
    VWED.function.register("{n}_cancel_all", VWED.timer.clear_all)

def every():
    TICKS["every"] += 1

def once():
    TICKS["once"] += 1

def cron_tick():
    TICKS["cron"] += 1

def bad():
    TICKS["bad"] += 1
    raise ValueError("sensor offline")

async def slow():
    import asyncio
    if BUSY[0]:
        TICKS["slow_overlap"] += 1
    BUSY[0] = True
    await asyncio.sleep(0.2)
    BUSY[0] = False
    TICKS["slow"] += 1
"""


def test_timers(scripts, client):
    n = unique("tm")
    started = scripts.start(f"{n}.py", TIMERS.replace("{n}", n))
    assert len(started["registrations"]["timers"]) == 5
    ticks = wait_until(
        lambda: (lambda t: t if t["cron"] >= 2 and t["every"] >= 10 else None)(
            call(client, f"{n}_ticks")
        ),
        15,
        "timer ticks",
    )
    assert ticks["once"] == 1 and ticks["bad"] >= 5  # a failing tick keeps its timer going
    assert ticks["slow"] >= 3 and ticks["slow_overlap"] == 0  # slow ticks never overlap
    listed = {t["kind"] for t in call(client, f"{n}_timers")}
    assert listed == {"interval", "cron"}  # the delay timer is done
    errors = wait_until(
        lambda: client.get(
            "/script-engine/logs",
            params={"script_id": started["script_id"], "tag": "timer", "level": "ERROR"},
        ).json()["records"],
        10,
        "the failing tick's log",
    )
    assert errors[0]["message"].startswith("timer timer_4 raised ValueError: sensor offline\n")
    assert 'raise ValueError("sensor offline")' in errors[0]["message"]  # the traceback
    assert call(client, f"{n}_cancel_all") == 4
    before = call(client, f"{n}_ticks")["every"]
    time.sleep(0.3)  # nothing to wait for: checking that no tick happens
    assert call(client, f"{n}_ticks")["every"] == before


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        body = json.dumps({"path": self.path, "agent": self.headers.get("X-Robot")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802
        data = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(201)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_peer():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_http(scripts, client, http_peer):
    n = unique("http")
    scripts.start(
        f"{n}.py",
        f"""
def boot():
    VWED.function.register("{n}_get", get)
    VWED.function.register("{n}_post", post)
    VWED.function.register("{n}_aget", aget)
    VWED.function.register("{n}_down", down)

def get(url):
    r = VWED.http.get(url + "/robots?id=7", headers={{"X-Robot": "AMR-7"}})
    return {{"status": r.status, "json": r.json(), "ctype": r.headers["content-type"]}}

def post(url):
    r = VWED.http.post(url + "/orders", json={{"sku": "A1"}})
    return {{"status": r.status, "text": r.text}}

async def aget(url):
    r = await VWED.http.aget(url + "/async")
    return r.json()["path"]

def down(port):
    try:
        VWED.http.get(f"http://127.0.0.1:{{port}}/", timeout=2)
    except Exception as exc:
        return type(exc).__name__
""",
    )
    assert call(client, f"{n}_get", [http_peer]) == {
        "status": 200,
        "json": {"path": "/robots?id=7", "agent": "AMR-7"},
        "ctype": "application/json",
    }
    posted = call(client, f"{n}_post", [http_peer])
    assert posted["status"] == 201 and json.loads(posted["text"]) == {"sku": "A1"}
    assert call(client, f"{n}_aget", [http_peer]) == "/async"
    assert call(client, f"{n}_down", [1]) == "ConnectError"


def test_mail_through_a_real_smtp_server(tmp_path):
    from aiosmtpd.controller import Controller

    received = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802
            received.append(envelope)
            return "250 OK"

    class OnPortZero(Controller):
        """aiosmtpd 1.4's Controller on port 0: its start() connects to ``self.port`` to
        see the server answer, so that must be the port the OS gave (aio-libs/aiosmtpd
        issue 388, pull request 381, not released). A port picked here and bound later
        could be taken by another xdist worker's process in between."""

        def _trigger_server(self):
            self.port = self.server.sockets[0].getsockname()[1]
            super()._trigger_server()

    smtp = OnPortZero(Handler(), hostname="127.0.0.1", port=0)
    smtp.start()
    port = smtp.port
    assert port != 0
    try:
        (tmp_path / "report.txt").write_text("pallets: 12\n")
        (tmp_path / "mailer.py").write_text(f"""
def boot():
    VWED.function.register("notify", notify)
    VWED.function.register("report", report)

def notify():
    return VWED.mail.send("ops@example.com", "conveyor 3 stopped", "please check")

def report():
    return VWED.mail.send_with_attachment(["a@example.com", "b@example.com"], "daily report",
                                          "see attached", {str(tmp_path / "report.txt")!r})
""")
        gw = GatewayThread(
            Settings(
                scripts_dir=str(tmp_path),
                port=0,
                data_dir=str(tmp_path / "d"),
                pool_size=1,
                workers=1,
                smtp_host="127.0.0.1",
                smtp_port=port,
                smtp_from="vwed@plant.example",
                auth=False,
            ).validated()
        ).start()
        try:
            with httpx.Client(base_url=gw.url, timeout=30) as c:
                assert (
                    c.post("/script-engine/start", json={"script_path": "mailer.py"}).status_code
                    == 200
                )
                assert call(c, "notify") == {"sent": True, "to": ["ops@example.com"], "refused": []}
                assert call(c, "report")["to"] == ["a@example.com", "b@example.com"]
        finally:
            gw.stop()
        wait_until(lambda: len(received) == 2, 10, "two mails")
        first, second = received
        assert first.mail_from == "vwed@plant.example" and first.rcpt_tos == ["ops@example.com"]
        assert b"Subject: conveyor 3 stopped" in first.content
        assert second.rcpt_tos == ["a@example.com", "b@example.com"]
        assert b'filename="report.txt"' in second.content
    finally:
        smtp.stop()


def test_mail_without_smtp_settings_is_a_clear_error(scripts, client):
    n = unique("nomail")
    scripts.start(
        f"{n}.py",
        f"""
def boot():
    VWED.function.register("{n}_try", attempt)

def attempt():
    try:
        VWED.mail.send("x@example.com", "s", "b")
    except Exception as exc:
        return {{"type": type(exc).__name__, "code": exc.code}}
""",
    )
    assert call(client, f"{n}_try") == {"type": "RemoteCallError", "code": "MAIL_NOT_CONFIGURED"}


@pytest.fixture
def modbus_server():
    """pymodbus's own Modbus TCP server on loopback port 0 (the port the OS gave read back from
    its listening socket), in a thread with its own loop."""
    import asyncio
    from concurrent.futures import Future

    from pymodbus.datastore import (
        ModbusDeviceContext,
        ModbusSequentialDataBlock,
        ModbusServerContext,
    )
    from pymodbus.server import ModbusTcpServer

    device = ModbusDeviceContext(
        hr=ModbusSequentialDataBlock(1, [0] * 200),
        ir=ModbusSequentialDataBlock(1, [7] * 200),
        co=ModbusSequentialDataBlock(1, [False] * 200),
        di=ModbusSequentialDataBlock(1, [True] * 200),
    )
    context = ModbusServerContext(devices={1: device}, single=False)
    loop = asyncio.new_event_loop()
    holder: dict[str, ModbusTcpServer] = {}
    listening: Future[int] = Future()

    async def serve() -> None:
        try:
            server = holder["server"] = ModbusTcpServer(context, address=("127.0.0.1", 0))
            await server.serve_forever(background=True)  # returns once it listens
            listening.set_result(server.transport.sockets[0].getsockname()[1])
        except BaseException as exc:
            listening.set_exception(exc)
            raise
        await server.serving

    thread = threading.Thread(target=lambda: loop.run_until_complete(serve()), daemon=True)
    thread.start()
    yield listening.result(10)
    asyncio.run_coroutine_threadsafe(holder["server"].shutdown(), loop).result(10)
    thread.join(10)


def test_modbus_against_a_real_server(scripts, client, modbus_server):
    n = unique("plc")
    scripts.start(
        f"{n}.py",
        f"""
def boot():
    VWED.function.register("{n}_run", run)
    VWED.function.register("{n}_down", down)
    VWED.function.register("{n}_bad_unit", bad_unit)

def run(port):
    VWED.device.modbus("127.0.0.1", port, register=10, value=1234)
    single = VWED.device.modbus("127.0.0.1", port, register=10)
    c = VWED.device.modbus_client("127.0.0.1", port)
    c.write_registers(20, [1, 2, 3])
    c.write_coil(5, True)
    c.write_coils(6, [True, False, True])
    return {{"single": single, "regs": c.read_holding_registers(20, 3),
            "inputs": c.read_input_registers(0, 2), "coils": c.read_coils(5, 4),
            "discrete": c.read_discrete_inputs(0, 2),
            "same_client": c is VWED.device.modbus_client("127.0.0.1", port)}}

def down():
    try:
        VWED.device.modbus("127.0.0.1", 1, register=0)
    except Exception as exc:
        return {{"type": type(exc).__name__, "message": str(exc)}}

def bad_unit(port):
    try:
        VWED.device.modbus_client("127.0.0.1", port).read_holding_registers(500, 10)
    except Exception as exc:
        return {{"type": type(exc).__name__, "code": exc.exception_code}}
""",
    )
    assert call(client, f"{n}_run", [modbus_server]) == {
        "single": 1234,
        "regs": [1, 2, 3],
        "inputs": [7, 7],
        "coils": [True, True, False, True],
        "discrete": [True, True],
        "same_client": True,
    }
    down = call(client, f"{n}_down")
    assert down["type"] == "DeviceError" and "not reachable" in down["message"]
    assert call(client, f"{n}_bad_unit", [modbus_server]) == {"type": "DeviceError", "code": 2}


def test_opc_and_plc_name_their_extra(scripts, client):
    n = unique("extra")
    scripts.start(
        f"{n}.py",
        f"""
def boot():
    VWED.function.register("{n}_try", attempt)

def attempt():
    out = []
    for f in (lambda: VWED.device.opc("opc.tcp://127.0.0.1:4840", "ns=2;i=2"),
              lambda: VWED.device.plc("127.0.0.1")):
        try:
            f()
        except Exception as exc:
            out.append(str(exc))
    return out
""",
    )
    messages = call(client, f"{n}_try")
    assert "'opc' extra" in messages[0] and "'plc' extra" in messages[1]


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


SOCKETS = """
def boot():
    VWED.api.register_websocket("/{n}/echo", echo)
    VWED.api.register_websocket("/{n}/who", lambda cid, msg: {{"connection": cid, "got": msg}})
    VWED.api.register_websocket("/{n}/bad", bad)
    VWED.api.register_tcp({port}, tcp)
    VWED.timer.schedule(60, lambda: None)
    VWED.event.listen("{n}_ev", lambda data: None)
    VWED.function.register("{n}_tcp_ports", tcp_ports)

def tcp_ports():  # a port the kernel could not open is dropped from its registrations
    return [t["port"] for t in VWED.registrations()["tcp"]]

def echo(message):
    return message.upper()

def bad(message):
    raise ValueError("no " + message)

def tcp(data):
    return b"ACK " + data
"""


def _start_with_tcp(scripts, client):
    """The socket script started, its TCP server answering. ``register_tcp`` takes a port
    1-65535, not 0, so the port is picked here and the kernel binds it a moment later; should
    another process (another xdist worker's kernel or server) take it in between, the kernel
    cannot open it and drops the registration, and the script starts again on another port."""
    import socket

    for _attempt in range(3):
        n, port = unique("sock"), _free_port()
        started = scripts.start(f"{n}.py", SOCKETS.format(n=n, port=port))

        def state(n=n, port=port):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                    s.sendall(b"hello")
                    if s.recv(100) == b"ACK hello":
                        return "answers"
            except OSError:  # refused: not listening yet; or whoever took the port
                pass
            return None if call(client, f"{n}_tcp_ports") == [port] else "taken"

        if wait_until(state, 20, f"the script's TCP server on port {port}") == "answers":
            return n, port, started
        client.post("/script-engine/stop", json={"script_id": started["script_id"]})
        scripts.started.remove(started["script_id"])
    raise AssertionError("three ports picked were taken before the kernel bound them")


def test_websocket_and_tcp_endpoints_and_cleanup(scripts, client, gw):
    import asyncio
    import socket

    from tornado.websocket import websocket_connect

    n, port, started = _start_with_tcp(scripts, client)
    counts = client.get(f"/script-engine/scripts/{started['script_id']}").json()["registrations"]
    assert counts == {
        "apis": 0,
        "functions": 1,
        "events": 1,
        "timers": 1,
        "websockets": 3,
        "tcp": 1,
        "mqtt": 0,
    }
    base = f"ws://127.0.0.1:{gw.gateway.port}/script-ws/{n}"

    async def talk():
        conn = await websocket_connect(f"{base}/echo")
        await conn.write_message("pallet 7")
        first = await asyncio.wait_for(conn.read_message(), 10)
        who = await websocket_connect(f"{base}/who")
        await who.write_message("hi")
        second = json.loads(await asyncio.wait_for(who.read_message(), 10))
        bad = await websocket_connect(f"{base}/bad")
        await bad.write_message("luck")
        third = json.loads(await asyncio.wait_for(bad.read_message(), 10))
        return conn, first, second, third

    async def closed_after_stop(conn):
        await asyncio.get_running_loop().run_in_executor(
            None,
            lambda: client.post("/script-engine/stop", json={"script_id": started["script_id"]}),
        )
        return await asyncio.wait_for(conn.read_message(), 10)

    async def scenario():
        conn, first, second, third = await talk()

        # TCP inside the kernel (answering since _start_with_tcp)
        def tcp_roundtrip():
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"hello")
                return s.recv(100)

        tcp_reply = await asyncio.get_running_loop().run_in_executor(None, tcp_roundtrip)
        after = await closed_after_stop(conn)
        return first, second, third, tcp_reply, after

    first, second, third, tcp_reply, after = asyncio.run(scenario())
    assert first == "PALLET 7"
    assert second["got"] == "hi" and len(second["connection"]) == 12
    assert (
        third["type"] == "error"
        and third["code"] == "HANDLER_ERROR"
        and "no luck" in third["error"]
    )
    assert tcp_reply == b"ACK hello"
    assert after is None  # the script stopped: its WebSocket connection was closed
    scripts.started.remove(started["script_id"])

    def port_closed():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return False
        except OSError:
            return True

    wait_until(port_closed, 10, "the TCP server to close with its script")
    r = httpx.get(f"http://127.0.0.1:{gw.gateway.port}/script-ws/{n}/echo")
    assert r.status_code == 404 and r.json()["code"] == "ROUTE_NOT_FOUND"


CLEAR = """
def boot():
    VWED.api.register_route("/{n}/a", "GET", lambda: "a")
    VWED.api.register_route("/{n}/b", "POST", lambda: "b")
    VWED.event.listen("{n}_ev", lambda data: None)
    VWED.event.listen("{n}_other", lambda data: None, priority=3)
    VWED.function.register("{n}_clear", clear)
    VWED.function.register("{n}_mine", lambda: VWED.registrations())


def clear():
    return {{"routes": VWED.api.clear_all(), "listeners": VWED.event.clear_all()}}
"""


def test_clear_all_removes_routes_and_listeners_here_and_at_the_gateway(scripts, client):
    n = unique("clr")
    sid = scripts.start(f"{n}.py", CLEAR.format(n=n))["script_id"]
    assert client.get(f"/script-api/{n}/a").json() == "a"
    assert client.post(f"/script-engine/events/{n}_ev", json={}).json()["listeners"] == 1
    assert call(client, f"{n}_clear") == {"routes": 2, "listeners": 2}
    # the gateway's routing table: the routes are gone (404) and so are the listeners
    # (each route's unregister reaches the gateway on its own; meanwhile the kernel itself
    # answers a call to a route it no longer has with 404 NOT_REGISTERED)
    wait_until(lambda: client.get(f"/script-api/{n}/a").status_code == 404, 10, "the route removed")
    wait_until(
        lambda: client.post(f"/script-api/{n}/b").json().get("code") == "ROUTE_NOT_FOUND",
        10,
        "the second route removed at the gateway",
    )
    r = client.post(f"/script-api/{n}/b")
    assert r.status_code == 404 and r.json()["code"] == "ROUTE_NOT_FOUND"
    # the listeners' unregisters reach the gateway on their own too
    wait_until(
        lambda: client.get(f"/script-engine/scripts/{sid}").json()["registrations"]["events"] == 0,
        10,
        "the listeners removed at the gateway",
    )
    for event in (f"{n}_ev", f"{n}_other"):
        assert client.post(f"/script-engine/events/{event}", json={}).json()["listeners"] == 0
    counts = client.get(f"/script-engine/scripts/{sid}").json()["registrations"]
    assert counts["apis"] == 0 and counts["events"] == 0 and counts["functions"] == 2
    # the kernel's own registrations
    mine = call(client, f"{n}_mine")
    assert mine["apis"] == [] and mine["events"] == [] and len(mine["functions"]) == 2
    assert call(client, f"{n}_clear") == {"routes": 0, "listeners": 0}  # nothing left
