"""VWED.mqtt against the Mosquitto broker of this machine (127.0.0.1:1883): scripts in
real kernels behind a real gateway exchanging messages, wildcards, a reconnection
after the broker connection is cut (a TCP proxy of the test's own in between),
cleanup at stop, the MqttError cases, bad arguments. The broker is shared with
other people: every test uses its own topic prefix."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from conftest import GatewayThread, Scripts, unique, wait_until
from kernel_gateway.config import ConfigError, Settings
from vwed_kernel.context import Link
from vwed_kernel.errors import MqttError, RegistrationError
from vwed_kernel.vwed import VWED

pytestmark = pytest.mark.timeout(120)

BROKER_HOST, BROKER_PORT = "127.0.0.1", 1883
PASSWORD = f"pw-{uuid.uuid4().hex}"  # the proxy gateway's: must never reach a kernel's env


def _broker_up() -> bool:
    try:
        with socket.create_connection((BROKER_HOST, BROKER_PORT), timeout=2):
            return True
    except OSError:
        return False


needs_broker = pytest.mark.skipif(
    not _broker_up(), reason=f"no MQTT broker answers on {BROKER_HOST}:{BROKER_PORT}"
)


def prefix() -> str:
    return f"vwedtest/{uuid.uuid4().hex[:12]}"


class Peer:
    """The test's own MQTT client (paho), straight to the broker."""

    def __init__(self) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.received: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"vwedtest-{uuid.uuid4().hex[:8]}"
        )
        self.client.on_message = self._on_message
        self.client.connect(BROKER_HOST, BROKER_PORT)
        self.client.loop_start()
        wait_until(self.client.is_connected, 10, "the test's MQTT client")

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._lock:
            self.received.append((msg.topic, bytes(msg.payload)))

    def subscribe(self, topic: str) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *a: done.set()
        self.client.subscribe(topic, qos=1)
        assert done.wait(10), "no SUBACK"

    def publish(self, topic: str, payload: Any, qos: int = 1) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.client.publish(topic, data, qos=qos).wait_for_publish(10)

    def on(self, topic: str) -> list[bytes]:
        with self._lock:
            return [p for t, p in self.received if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def peer() -> Iterator[Peer]:
    p = Peer()
    yield p
    p.close()


class CutProxy:
    """A TCP proxy on 127.0.0.1 in front of the broker: ``cut()`` closes its listening
    socket and every connection through it (the broker is unreachable), ``restore()``
    listens again on the same port."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self._call(self._listen())

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(BROKER_HOST, BROKER_PORT)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_w}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, up_w), pump(up_r, writer))

    async def _cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()

    def cut(self) -> None:
        self._call(self._cut())

    def restore(self) -> None:
        self._call(self._listen())

    def close(self) -> None:
        self._call(self._cut())
        self.loop.call_soon_threadsafe(self.loop.stop)


def _gateway(tmp: Path, **settings: Any) -> GatewayThread:
    (tmp / "scripts").mkdir()
    return GatewayThread(
        Settings(
            scripts_dir=str(tmp / "scripts"),
            port=0,
            data_dir=str(tmp / "data"),
            pool_size=2,
            call_timeout=15.0,
            boot_timeout=30.0,
            auth=False,
            **settings,
        ).validated()
    ).start()


@pytest.fixture(scope="module")
def mqgw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayThread, Path]]:
    if not _broker_up():
        pytest.skip(f"no MQTT broker answers on {BROKER_HOST}:{BROKER_PORT}")
    tmp = tmp_path_factory.mktemp("mqtt")
    gw = _gateway(tmp, mqtt_url=f"mqtt://{BROKER_HOST}:{BROKER_PORT}")
    yield gw, tmp / "scripts"
    gw.stop()


@pytest.fixture
def mq(mqgw: tuple[GatewayThread, Path]) -> Iterator[tuple[httpx.Client, Scripts]]:
    gw, root = mqgw
    with httpx.Client(base_url=gw.url, timeout=30) as c:
        s = Scripts(root, c)
        yield c, s
        s.stop_all()


@pytest.fixture(scope="module")
def proxied(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[GatewayThread, Path, CutProxy]]:
    """A gateway whose broker is behind a :class:`CutProxy`, with a user and password."""
    if not _broker_up():
        pytest.skip(f"no MQTT broker answers on {BROKER_HOST}:{BROKER_PORT}")
    proxy = CutProxy()
    tmp = tmp_path_factory.mktemp("mqttproxy")
    gw = _gateway(
        tmp,
        mqtt_url=f"mqtt://127.0.0.1:{proxy.port}",
        mqtt_user="vwedtest",
        mqtt_password=PASSWORD,
    )
    yield gw, tmp / "scripts", proxy
    gw.stop()
    proxy.close()


def call(client: httpx.Client, name: str, args: Any = None) -> Any:
    r = client.post(f"/script-engine/functions/{name}/call", json={"args": args})
    assert r.status_code == 200, r.text
    return r.json()["result"]


def logs(client: httpx.Client, script_id: str, **params: Any) -> list[dict[str, Any]]:
    r = client.get("/script-engine/logs", params={"script_id": script_id, "limit": 200, **params})
    assert r.status_code == 200, r.text
    return list(r.json()["records"])


# -- scripts -----------------------------------------------------------------------------

RESPONDER = """
def boot():
    VWED.mqtt.subscribe("{p}/ping/+", answer, qos=1)

def answer(msg):
    who = msg.topic.rsplit("/", 1)[1]
    VWED.mqtt.publish("{p}/pong/" + who, {{"echo": msg.json(), "by": "responder"}}, qos=1)
"""

ASKER = """
GOT = []

def boot():
    VWED.mqtt.subscribe("{p}/pong/#", lambda m: GOT.append([m.topic, m.json(), m.qos]))
    VWED.function.register("{n}_ask", ask)
    VWED.function.register("{n}_got", lambda: GOT)

async def ask(who, n):
    await VWED.mqtt.apublish("{p}/ping/" + who, {{"n": n}}, qos=1)
    return True
"""


@needs_broker
def test_two_scripts_exchange_messages_through_the_broker(mq: Any) -> None:
    client, scripts = mq
    p, n = prefix(), unique("mq")
    scripts.start(f"{n}_responder.py", RESPONDER.format(p=p))
    asker = scripts.start(f"{n}_asker.py", ASKER.format(p=p, n=n))
    for i in range(3):
        assert call(client, f"{n}_ask", {"who": f"a{i}", "n": i}) is True
    got = wait_until(
        lambda: len(call(client, f"{n}_got")) >= 3 and call(client, f"{n}_got"), 20, "3 pongs"
    )
    assert sorted(got) == [
        [f"{p}/pong/a{i}", {"echo": {"n": i}, "by": "responder"}, 0] for i in range(3)
    ]
    # the subscription is a registration: in the start's answer and the gateway's view
    subs = asker["registrations"]["mqtt"]
    assert [(s["topic"], s["qos"], s["all_replicas"]) for s in subs] == [(f"{p}/pong/#", 0, False)]
    running = {s["script_id"]: s for s in client.get("/script-engine/running").json()["scripts"]}
    assert running[asker["script_id"]]["registrations"]["mqtt"] == 1


WILDCARDS = """
SEEN = []

def boot():
    VWED.mqtt.subscribe("{p}/w/+/temp", lambda m: SEEN.append(["plus", m.topic, m.text]))
    VWED.mqtt.subscribe("{p}/w/#", lambda m: SEEN.append(["hash", m.topic, m.text]))
    VWED.mqtt.subscribe("{p}/w/fail", boom)
    VWED.function.register("{n}_seen", lambda: SEEN)
    VWED.function.register("{n}_list", lambda: VWED.mqtt.list())
    VWED.function.register("{n}_drop", lambda: VWED.mqtt.unsubscribe("{p}/w/#"))

def boom(msg):
    raise RuntimeError("handler refuses " + msg.text)
"""


@needs_broker
def test_wildcards_each_handler_once_and_a_failing_handler_is_an_error_record(
    mq: Any, peer: Peer
) -> None:
    client, scripts = mq
    p, n = prefix(), unique("wild")
    started = scripts.start(f"{n}.py", WILDCARDS.format(p=p, n=n))
    peer.publish(f"{p}/w/fail", b"x1")  # matches "#" and the failing handler
    for topic in ("w/a/temp", "w/b/hum", "w/a/b/temp", "other/a/temp"):
        peer.publish(f"{p}/{topic}", topic.encode())
    peer.publish(f"{p}/w/end", b"end")

    def seen() -> Any:
        s = call(client, f"{n}_seen")
        return s if ["hash", f"{p}/w/end", "end"] in s else None

    got = sorted(wait_until(seen, 20, "the last message"))
    assert got == sorted(
        [
            ["plus", f"{p}/w/a/temp", "w/a/temp"],
            ["hash", f"{p}/w/a/temp", "w/a/temp"],  # matches both: each handler once
            ["hash", f"{p}/w/b/hum", "w/b/hum"],
            ["hash", f"{p}/w/a/b/temp", "w/a/b/temp"],
            ["hash", f"{p}/w/fail", "x1"],
            ["hash", f"{p}/w/end", "end"],
        ]
    )
    # the failing handler: an ERROR record with the traceback, and the subscription goes on
    records = wait_until(
        lambda: logs(client, started["script_id"], tag="mqtt", level="ERROR"), 20, "the ERROR"
    )
    assert "RuntimeError: handler refuses x1" in records[0]["message"]
    assert "boom" in records[0]["message"]  # the traceback names the handler
    listed = {s["topic"]: s for s in call(client, f"{n}_list")}
    assert listed[f"{p}/w/fail"]["failures"] == 1 and listed[f"{p}/w/#"]["messages"] == 5
    # unsubscribe: gone in the kernel and in the gateway's view
    assert call(client, f"{n}_drop") == 1

    def gateway_topics() -> list[str]:
        r = client.get(f"/script-engine/scripts/{started['script_id']}")
        return sorted(s["topic"] for s in r.json()["registrations_detail"]["mqtt"])

    # (the unregister op reaches the gateway after the call's answer)
    wanted = [f"{p}/w/+/temp", f"{p}/w/fail"]
    wait_until(lambda: gateway_topics() == wanted, 20, "the gateway's view")
    peer.publish(f"{p}/w/a/temp", b"again")
    wait_until(lambda: ["plus", f"{p}/w/a/temp", "again"] in call(client, f"{n}_seen"), 20, "again")
    assert ["hash", f"{p}/w/a/temp", "again"] not in call(client, f"{n}_seen")


ECHO = """
import os

def boot():
    VWED.mqtt.subscribe("{p}/in/#", lambda m: VWED.mqtt.publish("{p}/echo", m.payload, qos=1))
    VWED.function.register("{n}_pid", lambda: os.getpid())
"""


@needs_broker
def test_stop_unsubscribes_no_handler_runs_after_it(mq: Any, peer: Peer) -> None:
    client, scripts = mq
    p, n = prefix(), unique("stop")
    peer.subscribe(f"{p}/echo")
    peer.subscribe(f"{p}/sentinel")
    started = scripts.start(f"{n}.py", ECHO.format(p=p, n=n))
    pid = call(client, f"{n}_pid")
    peer.publish(f"{p}/in/1", b"one")
    wait_until(lambda: peer.on(f"{p}/echo") == [b"one"], 20, "the echo")
    r = client.post("/script-engine/stop", json={"script_id": started["script_id"]})
    assert r.status_code == 200, r.text
    scripts.started.remove(started["script_id"])
    # the registration is gone from the gateway
    r = client.get(f"/script-engine/scripts/{started['script_id']}")
    assert r.status_code == 404 and r.json()["code"] == "NOT_RUNNING"
    wait_until(lambda: not psutil.pid_exists(pid), 20, "the kernel's end")
    peer.publish(f"{p}/in/2", b"two")
    peer.publish(f"{p}/sentinel", b"s")  # the broker routed "two" before this
    wait_until(lambda: peer.on(f"{p}/sentinel"), 20, "the sentinel")
    assert peer.on(f"{p}/echo") == [b"one"]


REPLICAS = """
def echo(kind):
    return lambda m: VWED.mqtt.publish("{p}/rep/echo", f"{{kind}}-{{VWED.replica}}", qos=1)

def boot():
    VWED.mqtt.subscribe("{p}/rep/one", echo("one"))
    VWED.mqtt.subscribe("{p}/rep/all", echo("all"), all_replicas=True)
"""


@needs_broker
def test_with_replicas_a_subscription_runs_in_replica_0_unless_all_replicas(
    mq: Any, peer: Peer
) -> None:
    client, scripts = mq
    p, n = prefix(), unique("rep")
    peer.subscribe(f"{p}/rep/echo")
    scripts.write(f"{n}.py", REPLICAS.format(p=p))
    r = client.post("/script-engine/start", json={"script_path": f"{n}.py", "replicas": 2})
    assert r.status_code == 200, r.text
    scripts.started.append(r.json()["script_id"])
    listed = {s["topic"]: s for s in r.json()["registrations"]["mqtt"]}
    assert listed[f"{p}/rep/all"]["all_replicas"] is True
    assert listed[f"{p}/rep/one"]["all_replicas"] is False
    peer.publish(f"{p}/rep/one", b"1")
    peer.publish(f"{p}/rep/all", b"1")
    wait_until(
        lambda: sorted(peer.on(f"{p}/rep/echo")) == [b"all-0", b"all-1", b"one-0"], 20, "echoes"
    )
    peer.publish(f"{p}/rep/all", b"2")  # after the echoes a replica 1 "one" would have sent
    wait_until(lambda: len(peer.on(f"{p}/rep/echo")) >= 5, 20, "the second round")
    assert sorted(peer.on(f"{p}/rep/echo")) == [b"all-0", b"all-0", b"all-1", b"all-1", b"one-0"]


class _ConfigLink(Link):
    """In-process: a link that answers ``mqtt.config`` as the gateway would."""

    def __init__(self, port: int) -> None:
        self.port = port

    def request(self, service: str, payload: dict[str, Any], timeout: float | None = None) -> Any:
        assert service == "mqtt.config"
        return {"host": "127.0.0.1", "port": self.port, "tls": False}


@needs_broker
def test_cleared_registrations_stop_the_handlers_at_once(peer: Peer) -> None:
    """``Registrations.clear`` (a script reloaded in its kernel, a draft run again):
    a burst in flight stops reaching the old handler the moment clear() returns."""
    p = prefix()

    async def scenario() -> None:
        vwed = VWED(_ConfigLink(BROKER_PORT))
        old: list[bytes] = []
        at_clear: list[int] = []
        cleared = asyncio.Event()

        def handler(msg: Any) -> None:
            old.append(msg.payload)
            if len(old) == 5:  # in the middle of the burst
                vwed._context.registrations.clear()
                at_clear.append(len(old))
                cleared.set()

        vwed.mqtt.subscribe(f"{p}/burst", handler)
        assert vwed.mqtt.connected
        for i in range(200):
            peer.client.publish(f"{p}/burst", str(i).encode(), qos=0)
        await asyncio.wait_for(cleared.wait(), 20)
        assert vwed.registrations()["mqtt"] == [] and not vwed.mqtt.connected
        # the module opens a new connection at the next use
        new: list[bytes] = []
        vwed.mqtt.subscribe(f"{p}/burst", lambda m: new.append(m.payload))
        peer.publish(f"{p}/burst", b"sentinel")
        while b"sentinel" not in new:
            await asyncio.sleep(0.02)
        assert len(old) == at_clear[0] == 5
        vwed._context.registrations.clear()

    asyncio.run(asyncio.wait_for(scenario(), 60))


@needs_broker
def test_without_an_event_loop_handlers_run_on_the_network_thread(peer: Peer) -> None:
    """Plain Python (no kernel, no running loop): a handler that publishes with QoS 1
    does not wait for an ack its own thread would have to read."""
    p = prefix()
    peer.subscribe(f"{p}/echo")
    vwed = VWED(_ConfigLink(BROKER_PORT))
    try:
        vwed.mqtt.subscribe(f"{p}/in", lambda m: vwed.mqtt.publish(f"{p}/echo", m.payload, qos=1))
        peer.publish(f"{p}/in", b"hello")
        wait_until(lambda: peer.on(f"{p}/echo") == [b"hello"], 20, "the echo")
    finally:
        vwed._context.registrations.clear()


RECONNECT = """
GOT = []

def boot():
    VWED.mqtt.subscribe("{p}/r/#", lambda m: GOT.append(m.text), qos=1)
    VWED.function.register("{n}_got", lambda: GOT)
    VWED.function.register("{n}_connected", lambda: VWED.mqtt.connected)
    VWED.function.register("{n}_pub", pub)
    VWED.function.register("{n}_env", env_has_password)
    VWED.function.register("{n}_leak", lambda: VWED.log.info("leak", VWED.mqtt._conn._config["password"]))

def pub(text, qos):
    from vwed_kernel.errors import MqttError
    try:
        VWED.mqtt.publish("{p}/out", text, qos=qos)
        return "sent"
    except MqttError as exc:
        return exc.code

def env_has_password(pw):
    import os
    return [k for k, v in os.environ.items() if pw in v or "MQTT" in k]
"""


@needs_broker
def test_reconnect_after_the_broker_connection_is_cut(proxied: Any, peer: Peer) -> None:
    gw, root, proxy = proxied
    p, n = prefix(), unique("rc")
    peer.subscribe(f"{p}/out")
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        scripts = Scripts(root, client)
        try:
            started = scripts.start(f"{n}.py", RECONNECT.format(p=p, n=n))
            sid = started["script_id"]
            peer.publish(f"{p}/r/1", b"before")
            wait_until(lambda: call(client, f"{n}_got") == ["before"], 20, "before")
            assert call(client, f"{n}_pub", {"text": "p1", "qos": 1}) == "sent"
            wait_until(lambda: peer.on(f"{p}/out") == [b"p1"], 20, "p1")

            proxy.cut()
            wait_until(lambda: call(client, f"{n}_connected") is False, 30, "the loss")
            # QoS 0 while down: a clear error, not a message silently dropped
            assert call(client, f"{n}_pub", {"text": "lost", "qos": 0}) == "MQTT_NOT_CONNECTED"
            peer.publish(f"{p}/r/2", b"while-down")  # no subscriber session: not for us

            proxy.restore()
            wait_until(lambda: call(client, f"{n}_connected") is True, 60, "the reconnection")

            # the subscription was renewed: sent with the reconnection, it may reach the
            # broker after a message published at once (lost, as for any subscriber not
            # yet subscribed), so the message is published until one arrives
            def renewed() -> bool:
                peer.publish(f"{p}/r/3", b"after")
                return "after" in call(client, f"{n}_got")

            wait_until(renewed, 20, "after")
            assert call(client, f"{n}_pub", {"text": "p2", "qos": 1}) == "sent"
            wait_until(lambda: b"p2" in peer.on(f"{p}/out"), 20, "p2")
            assert b"lost" not in peer.on(f"{p}/out")

            def logged() -> bool:
                messages = [r["message"] for r in logs(client, sid, tag="mqtt")]
                return any("lost" in m and "reconnecting" in m for m in messages) and any(
                    "reconnected" in m and "1 subscription(s) renewed" in m for m in messages
                )

            wait_until(logged, 20, "the WARNING of the loss and the INFO of the reconnection")
            # the password went to the kernel over its comm, not its environment, nor a log
            assert call(client, f"{n}_env", [PASSWORD]) == []
            # a script that logs it (reaching into the module): *** in its record
            call(client, f"{n}_leak")
            leaked = wait_until(lambda: logs(client, sid, tag="leak"), 20, "the leak record")
            assert leaked[0]["message"] == "***"
            everything = client.get("/script-engine/logs", params={"limit": 1000}).text
            assert PASSWORD not in everything
        finally:
            scripts.stop_all()


UNREACHABLE = """
def boot():
    VWED.function.register("{n}_try", attempt)

def attempt():
    from vwed_kernel.errors import MqttError
    try:
        VWED.mqtt.publish("{p}/x", "x")
    except MqttError as exc:
        return [exc.code, str(exc)]
    try:
        VWED.mqtt.subscribe("{p}/x", print)
    except MqttError as exc:
        return [exc.code, str(exc)]
    return "no error"
"""


@needs_broker
def test_an_unreachable_broker_is_a_clear_mqtt_error(proxied: Any) -> None:
    gw, root, proxy = proxied
    p, n = prefix(), unique("unr")
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        scripts = Scripts(root, client)
        try:
            scripts.start(f"{n}.py", UNREACHABLE.format(p=p, n=n))
            proxy.cut()
            try:
                code, message = call(client, f"{n}_try")
            finally:
                proxy.restore()
            assert code == "MQTT_UNREACHABLE"
            assert f"mqtt://127.0.0.1:{proxy.port} is unreachable" in message
            # once the broker is back, the same kernel connects at its next use
            assert call(client, f"{n}_try") == "no error"
        finally:
            scripts.stop_all()


POLICED = """
def boot():
    VWED.function.register("{n}_try", attempt)

def attempt():
    try:
        VWED.mqtt.publish("{p}/x", "x")
    except Exception as exc:
        return [type(exc).__name__, isinstance(exc, PermissionError), str(exc)]
    return "no error"
"""


@needs_broker
def test_the_scripts_network_policy_applies_to_the_broker(mq: Any) -> None:
    client, scripts = mq
    p, n = prefix(), unique("pol")
    scripts.write(f"{n}.py", POLICED.format(p=p, n=n))
    body = {"script_path": f"{n}.py", "policy": {"network": ["10.9.9.9"]}}
    r = client.post("/script-engine/start", json=body)
    assert r.status_code == 200, r.text
    scripts.started.append(r.json()["script_id"])
    kind, is_permission, message = call(client, f"{n}_try")
    assert is_permission and "127.0.0.1" in message, (kind, message)


def test_no_broker_configured_is_a_clear_mqtt_error(scripts: Scripts, client: httpx.Client) -> None:
    """The session gateway has no --mqtt-url."""
    p, n = prefix(), unique("nocfg")
    scripts.start(f"{n}.py", UNREACHABLE.format(p=p, n=n))
    code, message = call(client, f"{n}_try")
    assert code == "MQTT_NOT_CONFIGURED"
    assert "--mqtt-url" in message
    # a subscription in boot() that cannot be made fails the start, with the reason
    scripts.write(f"{n}_boot.py", "def boot():\n    VWED.mqtt.subscribe('a/b', print)\n")
    r = client.post("/script-engine/start", json={"script_path": f"{n}_boot.py"})
    assert r.status_code >= 400 and "MqttError" in r.text and "--mqtt-url" in r.text, r.text


def test_detached_vwed_has_no_broker() -> None:
    with pytest.raises(MqttError) as err:
        VWED().mqtt.publish("a/b", "x")
    assert err.value.code == "MQTT_NOT_CONFIGURED"


def test_unreachable_broker_in_process() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
        with pytest.raises(MqttError) as err:
            VWED(_ConfigLink(port)).mqtt.publish("a/b", "x")
    assert err.value.code == "MQTT_UNREACHABLE"


@pytest.mark.parametrize(
    ("args", "kind", "text"),
    [
        (("a/+/b", "x"), ValueError, "wildcard"),
        (("a/#", "x"), ValueError, "wildcard"),
        (("", "x"), ValueError, "empty"),
        ((7, "x"), TypeError, "str"),
        (("a\x00b", "x"), ValueError, "NUL"),
        (("a/b", object()), TypeError, "JSON"),
        (("a/b", float("nan")), TypeError, "JSON"),
    ],
)
def test_bad_publish_arguments(args: tuple[Any, ...], kind: type[Exception], text: str) -> None:
    with pytest.raises(kind, match=text):
        VWED().mqtt.publish(*args)


@pytest.mark.parametrize("qos", [3, -1, True, "1", 1.0])
def test_bad_qos(qos: Any) -> None:
    with pytest.raises(ValueError, match="qos"):
        VWED().mqtt.publish("a/b", "x", qos=qos)
    with pytest.raises(RegistrationError, match="qos"):
        VWED().mqtt.subscribe("a/b", print, qos=qos)


@pytest.mark.parametrize("topic_filter", ["a/#/b", "a/b#", "a/+b", "", "x\x00"])
def test_bad_topic_filters(topic_filter: str) -> None:
    with pytest.raises(RegistrationError):
        VWED().mqtt.subscribe(topic_filter, print)


def test_a_handler_must_be_callable() -> None:
    with pytest.raises(RegistrationError, match="not callable"):
        VWED().mqtt.subscribe("a/b", "print")
    assert VWED().registrations()["mqtt"] == []


@pytest.mark.parametrize(
    ("settings", "text"),
    [
        ({"mqtt_url": "http://h:1883"}, "mqtt://host:port"),
        ({"mqtt_url": "mqtt://u:secretpw@h:1883"}, "must not hold credentials"),
        ({"mqtt_url": "mqtt://h:99999"}, "not a URL"),
        ({"mqtt_url": "mqtt://h/topic"}, "no path"),
        ({"mqtt_user": "u"}, "need mqtt_url"),
        ({"mqtt_url": "mqtt://h", "mqtt_ca_file": __file__}, "needs an mqtts://"),
        ({"mqtt_url": "mqtts://h", "mqtt_ca_file": __file__}, "no PEM certificate"),
        ({"mqtt_url": "mqtt://h", "mqtt_password_file": "/nonexistent/pw"}, "cannot be read"),
        (
            {"mqtt_url": "mqtt://h", "mqtt_password": "secretpw", "mqtt_password_file": __file__},
            "not both",
        ),
    ],
)
def test_bad_mqtt_settings(tmp_path: Path, settings: dict[str, Any], text: str) -> None:
    with pytest.raises(ConfigError, match=text) as err:
        Settings(scripts_dir=str(tmp_path), **settings).validated()
    assert "secretpw" not in str(err.value)


def test_password_file_and_defaults(tmp_path: Path) -> None:
    from kernel_gateway.mqtt_config import MqttConfig

    pw = tmp_path / "pw"
    pw.write_text("from-file\n")
    os.chmod(pw, 0o600)
    s = Settings(
        scripts_dir=str(tmp_path), mqtt_url="mqtts://broker.local", mqtt_password_file=str(pw)
    ).validated()
    cfg = MqttConfig.from_settings(s)
    assert (cfg.host, cfg.port, cfg.tls, cfg.password) == ("broker.local", 8883, True, "from-file")
    assert "from-file" not in repr(cfg)
    assert MqttConfig.from_settings(Settings(scripts_dir=str(tmp_path))).configured is False
