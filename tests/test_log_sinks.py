"""Log sinks (issue 20, part 3): ``--log-sink`` file, webhook and syslog destinations
against a real gateway, with receivers this module starts on loopback: records arrive
(redacted), a file rotates, a webhook batch answered 500 is sent again, a dead receiver
neither slows routing nor the other sinks (its drops counted), RFC 5424 over UDP and
TCP, a sink plugin found by its entry point, and bad URLs refused at start."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import socket
import socketserver
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import GatewayProcess, token_gateway, unique, wait_until
from kernel_gateway.config import ConfigError, Settings
from kernel_gateway.logs.sinks import SinkError, make_sink, split_urls

pytestmark = pytest.mark.timeout(120)

ADMIN = "sinks-admin-" + "a" * 24
CALLER = "sinks-caller-" + "c" * 24

SCRIPT = """
def boot():
    VWED.function.register("{n}_say", say)
    VWED.function.register("{n}_spam", spam)
    VWED.function.register("{n}_secret", secret)
    VWED.api.register_route("/{n}/hit", "GET", hit)

def say(marker, count=1):
    for i in range(count):
        VWED.log.warning("sinks", marker + " " + str(i))
    print(marker + " printed")
    return count

def spam(marker, lines, width):
    for i in range(lines):
        print(marker + " " + str(i) + " " + "y" * width, flush=True)
    return lines

def secret(name):
    print("the value is " + VWED.secrets.get(name))
    return True

def hit(request=None):
    VWED.log.info("hit", "one line per call")
    return {{"ok": True}}
"""


# -- loopback receivers -------------------------------------------------------------
class Webhook:
    """An HTTP receiver: each POST's JSON array kept with the status it was answered;
    ``refuse[marker]`` holds the statuses to answer a batch holding a record whose
    message starts with ``marker`` (then 200)."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, list[dict[str, Any]]]] = []
        self.refuse: dict[str, list[int]] = {}
        self.auth: list[str | None] = []
        self.lock = threading.Lock()
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                batch = json.loads(body)
                with hook.lock:
                    status = 200
                    for marker, plan in hook.refuse.items():
                        if plan and any(r["message"].startswith(marker) for r in batch):
                            status = plan.pop(0)
                    hook.batches.append((status, batch))
                    hook.auth.append(self.headers.get("Authorization"))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def delivered(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r for status, batch in self.batches if status == 200 for r in batch]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class SyslogUdp:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.messages: list[bytes] = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                data = self.sock.recv(70_000)
            except OSError:
                return
            self.messages.append(data)

    def close(self) -> None:
        self.sock.close()


class SyslogTcp:
    """A TCP syslog receiver that splits RFC 6587 octet-counted frames."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.connections = 0
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                outer.connections += 1
                buf = b""
                while True:
                    chunk = self.request.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                    while True:
                        length, sep, rest = buf.partition(b" ")
                        if not sep or not length.isdigit() or len(rest) < int(length):
                            break
                        outer.messages.append(rest[: int(length)])
                        buf = rest[int(length) :]

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


_SD_PARAM = r'[^=\s\]"]+="(?:[^"\\]|\\.)*"'
_RFC5424 = re.compile(
    r"^<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) (?P<procid>\S+) "
    r"(?P<msgid>\S+) (?P<sd>-|(?:\[[^\s\]]+(?: " + _SD_PARAM + r")*\])+) \ufeff(?P<msg>.*)$",
    re.S,
)


def parse_5424(data: bytes) -> dict[str, Any]:
    """An RFC 5424 message's parts (a failing assertion if it is not one)."""
    found = _RFC5424.match(data.decode("utf-8"))
    assert found, data[:200]
    sd = {
        k: re.sub(r"\\(.)", r"\1", v)
        for k, v in re.findall(r'([^=\s\[\]"]+)="((?:[^"\\]|\\.)*)"', found["sd"])
    }
    pri = int(found["pri"])
    return {**found.groupdict(), "facility": pri // 8, "severity": pri % 8, "params": sd}


def file_records(path: Path) -> list[dict[str, Any]]:
    """The records of the sink's file and its rotated ones, read while no rotation
    happened (read again, for up to 10 s, when the sink rotated meanwhile)."""

    def listing() -> list[tuple[str, int]]:
        return [(p.name, p.stat().st_ino) for p in sorted(path.parent.glob(path.name + "*"))]

    deadline = time.monotonic() + 10
    while True:
        out: list[dict[str, Any]] = []
        try:
            before = listing()
            for name, _ in before:
                text = (path.parent / name).read_text()
                out.extend(json.loads(line) for line in text.splitlines())
            if listing() == before:
                return sorted(out, key=lambda r: r["id"])
        except FileNotFoundError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("the sink's files kept rotating while they were read")


def metric(client: httpx.Client, name: str, sink: str) -> float:
    text = client.get("/metrics").text
    found = re.search(rf'^{name}\{{sink="{re.escape(sink)}"\}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else -1.0


# -- the gateway with all three at once -------------------------------------------
@pytest.fixture(scope="module")
def receivers() -> Iterator[dict[str, Any]]:
    made = {"http": Webhook(), "udp": SyslogUdp(), "tcp": SyslogTcp()}
    yield made
    for r in made.values():
        r.close()


@pytest.fixture(scope="module")
def sinked(tmp_path_factory, receivers) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("sinkfiles")
    path = folder / "vwed.jsonl"
    os.environ["VWED_TEST_SINK_TOKEN"] = "hook-token-" + uuid.uuid4().hex
    urls = [
        f"file://{path}?max_bytes=20000&keep=2",
        f"http://127.0.0.1:{receivers['http'].port}/hook?backoff=0.05&token_env=VWED_TEST_SINK_TOKEN",
        f"syslog://127.0.0.1:{receivers['udp'].port}?facility=local3",
        f"syslog://127.0.0.1:{receivers['tcp'].port}?transport=tcp",
    ]
    for gw, root in token_gateway(
        tmp_path_factory, "sinks", ADMIN, CALLER, log_sink=",".join(urls)
    ):
        with httpx.Client(
            base_url=gw.url, headers={"Authorization": f"token {ADMIN}"}, timeout=60
        ) as client:
            n = unique("sk")
            (root / f"{n}.py").write_text(textwrap.dedent(SCRIPT.format(n=n)))
            r = client.post("/script-engine/start", json={"script_path": f"{n}.py"})
            assert r.status_code == 200, r.text
            yield {"gw": gw, "client": client, "n": n, "path": path, "sid": r.json()["script_id"]}


def call(client: httpx.Client, fn: str, *args: Any) -> Any:
    r = client.post(f"/script-engine/functions/{fn}/call", json={"args": list(args)})
    assert r.status_code == 200, r.text
    return r.json()


def hook_name(port: int, path: str = "/hook") -> str:
    """How logs and metrics name a webhook sink: its path hashed (a webhook's secret may
    be in it)."""
    return f"http://127.0.0.1:{port}/#" + hashlib.sha256(path.encode()).hexdigest()[:8]


def test_records_reach_every_sink_at_once(sinked, receivers):
    client, n = sinked["client"], sinked["n"]
    marker = "m-" + uuid.uuid4().hex[:10]
    call_id = call(client, f"{n}_say", marker, 3)["call_id"]
    wanted = {f"{marker} 0", f"{marker} 1", f"{marker} 2", f"{marker} printed"}

    def in_file() -> list[dict[str, Any]]:
        found = [r for r in file_records(sinked["path"]) if r["message"] in wanted]
        return found if len(found) == 4 else []

    from_file = wait_until(in_file, 10, "the records in the JSON lines file")

    def in_database() -> dict[int, dict[str, Any]]:
        stored = client.get(
            "/script-engine/logs", params={"script_id": sinked["sid"], "limit": 500}
        ).json()["records"]
        found = {r["id"]: r for r in stored}
        return found if all(r["id"] in found for r in from_file) else {}

    by_id = wait_until(in_database, 10, "the records in the database")
    for record in from_file:  # the very records the database got
        assert {k: by_id[record["id"]][k] for k in record if k != "ts"} == {
            k: v for k, v in record.items() if k != "ts"
        }
        assert record["call_id"] == call_id and record["script_id"] == sinked["sid"]
    by_message = {r["message"]: r for r in from_file}
    assert by_message[f"{marker} 1"]["level"] == "WARNING"
    assert by_message[f"{marker} 1"]["source"] == "vwed"
    assert by_message[f"{marker} 1"]["tag"] == "sinks"

    hook = receivers["http"]
    wait_until(
        lambda: wanted <= {r["message"] for r in hook.delivered()}, 10, "the webhook's batches"
    )
    assert {r["id"]: r for r in hook.delivered() if r["message"] in wanted} == {
        r["id"]: r for r in from_file
    }
    assert hook.auth[-1] == f"Bearer {os.environ['VWED_TEST_SINK_TOKEN']}"

    for kind, facility in (("udp", 19), ("tcp", 1)):  # local3, user
        receiver = receivers[kind]

        def got(receiver: Any = receiver) -> list[dict[str, Any]]:
            parsed = [parse_5424(m) for m in list(receiver.messages)]
            mine = [p for p in parsed if p["msg"] in wanted]
            return mine if len(mine) == 4 else []

        lines = wait_until(got, 10, f"the syslog messages over {kind}")
        one = next(p for p in lines if p["msg"] == f"{marker} 1")
        record = by_message[f"{marker} 1"]
        assert one["facility"] == facility and one["severity"] == 4  # warning
        assert one["app"] == "vwed" and one["msgid"] == "vwed" and one["procid"].isdigit()
        assert one["params"]["id"] == str(record["id"])
        assert one["params"]["script"] == sinked["sid"] and one["params"]["call"] == call_id
        assert one["params"]["tag"] == "sinks"
        assert one["ts"].endswith("Z") and one["ts"].startswith(time.strftime("%Y-", time.gmtime()))
        printed = next(p for p in lines if p["msg"] == f"{marker} printed")
        assert printed["msgid"] == "stdout" and printed["severity"] == 6
    assert receivers["tcp"].connections == 1  # one connection, kept

    for sink in ("file://" + str(sinked["path"]), hook_name(hook.port)):
        assert metric(client, "vwed_log_sink_records_sent_total", sink) >= 4
        assert metric(client, "vwed_log_sink_records_dropped_total", sink) == 0
        assert metric(client, "vwed_log_sink_queue_depth", sink) >= 0


def test_file_rotates_and_keeps_n_files(sinked):
    client, n, path = sinked["client"], sinked["n"], sinked["path"]
    marker = "rot-" + uuid.uuid4().hex[:8]
    # about 120 KB of output: the 20 KB file rotates several times, two old ones kept
    call(client, f"{n}_spam", marker, 240, 480)

    def rotated() -> bool:
        last = [r for r in file_records(path) if f"{marker} 239 " in r["message"]]
        return bool(last)

    wait_until(rotated, 15, "the last line in the file")
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["vwed.jsonl", "vwed.jsonl.1", "vwed.jsonl.2"], files
    for p in path.parent.iterdir():
        assert p.stat().st_size <= 20000, (p.name, p.stat().st_size)
        assert p.stat().st_mode & 0o777 == 0o600
    # what is kept is the newest records, in order, none missing in between
    ids = [r["id"] for r in file_records(path)]
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    newest = [json.loads(line) for line in path.read_text().splitlines()]
    older = [json.loads(line) for line in (path.parent / "vwed.jsonl.1").read_text().splitlines()]
    assert older[-1]["id"] + 1 == newest[0]["id"]


def test_webhook_answered_500_gets_the_batch_again(sinked, receivers):
    client, n = sinked["client"], sinked["n"]
    hook = receivers["http"]
    marker = "retry-" + uuid.uuid4().hex[:8]
    with hook.lock:
        hook.refuse[marker] = [500, 503]
        seen = len(hook.batches)
    call(client, f"{n}_say", marker, 1)
    wait_until(
        lambda: any(r["message"] == f"{marker} 0" for r in hook.delivered()), 10, "the retry"
    )
    with hook.lock:
        tries = [
            (s, b) for s, b in hook.batches[seen:] if any(r["message"] == f"{marker} 0" for r in b)
        ]
    # refused, then sent again (the same batch) until accepted
    assert [s for s, _ in tries] == [500, 503, 200], tries
    assert tries[0][1] == tries[1][1] == tries[2][1]
    assert metric(client, "vwed_log_sink_records_dropped_total", hook_name(hook.port)) == 0


def test_secrets_are_redacted_in_what_sinks_get(sinked, receivers):
    client, n = sinked["client"], sinked["n"]
    name, value = unique("sinkpw"), "pw-" + uuid.uuid4().hex
    r = client.put(f"/script-engine/secrets/{name}", json={"value": value})
    assert r.status_code == 201, r.text
    call(client, f"{n}_secret", name)

    def in_all() -> bool:
        file_ok = any(r["message"] == "the value is ***" for r in file_records(sinked["path"]))
        hook_ok = any(r["message"] == "the value is ***" for r in receivers["http"].delivered())
        udp_ok = any(b"the value is ***" in m for m in list(receivers["udp"].messages))
        return file_ok and hook_ok and udp_ok

    wait_until(in_all, 10, "the redacted line in every sink")
    assert value not in sinked["path"].read_text()
    assert value not in json.dumps(receivers["http"].delivered())
    assert all(
        value.encode() not in m for m in receivers["udp"].messages + receivers["tcp"].messages
    )


def test_webhook_answered_4xx_drops_the_batch_without_retrying(sinked, receivers):
    client, n = sinked["client"], sinked["n"]
    hook = receivers["http"]
    sink = hook_name(hook.port)
    before = metric(client, "vwed_log_sink_records_dropped_total", sink)
    marker = "refused-" + uuid.uuid4().hex[:8]
    with hook.lock:
        hook.refuse[marker] = [400]
        seen = len(hook.batches)
    call(client, f"{n}_say", marker, 1)
    wait_until(
        lambda: metric(client, "vwed_log_sink_records_dropped_total", sink) > before,
        10,
        "the refused batch counted as dropped",
    )
    # the next record goes through: the sink carries on
    after = "after-" + uuid.uuid4().hex[:8]
    call(client, f"{n}_say", after, 1)
    wait_until(lambda: any(r["message"] == f"{after} 0" for r in hook.delivered()), 10, "more")
    with hook.lock:
        tries = [s for s, b in hook.batches[seen:] if any(r["message"] == f"{marker} 0" for r in b)]
    assert tries == [400]  # never sent again


def test_syslog_tcp_connects_again_after_the_server_closed(tmp_path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    server.settimeout(10)
    sink = make_sink(f"syslog://127.0.0.1:{server.getsockname()[1]}?transport=tcp&backoff=0.01")
    sink.open()
    record = {
        "id": 1,
        "ts": time.time(),
        "script_id": "a.py_1",
        "run_id": 1,
        "level": "ERROR",
        "source": "error",
        "tag": 'x"]\\y',
        "message": "boom\nline 2",
        "call_id": None,
        "task_id": None,
    }
    try:
        sink.send([record])
        first, _ = server.accept()
        first.settimeout(10)
        data = first.recv(65536)
        length, _, message = data.partition(b" ")
        assert int(length) == len(message)
        parsed = parse_5424(message)
        assert parsed["severity"] == 3 and parsed["msg"] == "boom\nline 2"
        assert parsed["params"]["tag"] == 'x"]\\y' and "call" not in parsed["params"]
        first.close()  # the server goes away; the next batch comes on a new connection
        sink.send([{**record, "id": 2, "message": "again"}])
        second, _ = server.accept()
        second.settimeout(10)
        assert parse_5424(second.recv(65536).partition(b" ")[2])["msg"] == "again"
        second.close()
    finally:
        sink.close()
        server.close()


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vwed test receiver")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_https_webhook_checked_against_its_ca(tmp_path):
    import ssl

    cert, key = _self_signed(tmp_path)
    hook = Webhook()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    hook.server.socket = context.wrap_socket(hook.server.socket, server_side=True)
    record = {"id": 7, "ts": time.time(), "level": "INFO", "message": "over tls"}
    url = f"https://127.0.0.1:{hook.port}/hook?retries=0&timeout=5"
    trusted, untrusted = make_sink(f"{url}&ca={cert}"), make_sink(url)
    try:
        trusted.open()
        trusted.send([record])
        assert hook.delivered() == [record]
        untrusted.open()  # the usual authorities: the self-signed receiver is refused
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            untrusted.send([record])
        assert len(hook.delivered()) == 1
    finally:
        trusted.close()
        untrusted.close()
        hook.close()
    with pytest.raises(SinkError, match="is not a file"):
        make_sink(f"{url}&ca={tmp_path / 'nope.pem'}")


# -- a dead receiver ----------------------------------------------------------------
def test_dead_webhook_slows_neither_routing_nor_the_other_sinks(tmp_path_factory, tmp_path):
    # accepts connections (the kernel's backlog) and never answers: the worst receiver
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead.listen(64)
    dead_url = f"http://127.0.0.1:{dead.getsockname()[1]}/hook"
    dead_name = hook_name(dead.getsockname()[1])
    path = tmp_path / "ok.jsonl"
    urls = f"{dead_url}?queue=20&batch=5&timeout=0.3&retries=1&backoff=0.05&flush_timeout=1,file://{path}"
    gen = token_gateway(tmp_path_factory, "deadsink", ADMIN, CALLER, log_sink=urls)
    try:
        for gw, root in gen:
            headers = {"Authorization": f"token {ADMIN}"}
            with httpx.Client(base_url=gw.url, headers=headers, timeout=60) as client:
                n = unique("dead")
                (root / f"{n}.py").write_text(textwrap.dedent(SCRIPT.format(n=n)))
                r = client.post("/script-engine/start", json={"script_path": f"{n}.py"})
                assert r.status_code == 200, r.text
                caller = httpx.Client(
                    base_url=gw.url, headers={"Authorization": f"token {CALLER}"}, timeout=30
                )
                took = []
                for _ in range(200):  # one record per call: far more than the queue of 20
                    t0 = time.perf_counter()
                    assert caller.get(f"/script-api/{n}/hit").status_code == 200
                    took.append(time.perf_counter() - t0)
                caller.close()
                # routing is as fast as ever: no call waits for the dead receiver (0.3 s
                # per attempt)
                took.sort()
                assert took[100] < 0.05 and took[190] < 0.2, (took[100], took[190])
                wait_until(
                    lambda: len([r for r in file_records(path) if r["tag"] == "hit"]) == 200,
                    10,
                    "every record in the file sink",
                )
                dropped = wait_until(
                    lambda: metric(client, "vwed_log_sink_records_dropped_total", dead_name) > 100,
                    10,
                    "the dead sink's drops counted",
                )
                assert dropped
                assert metric(client, "vwed_log_sink_records_dropped_total", f"file://{path}") == 0
                assert metric(client, "vwed_log_sink_queue_depth", dead_name) <= 20

                # once its queue has room again, a record says how many were not sent
                def said() -> str:
                    records = client.get(
                        "/script-engine/logs", params={"source": "engine", "q": "log sink"}
                    ).json()["records"]
                    return "\n".join(r["message"] for r in records if dead_name in r["message"])

                assert "were not sent to the log sink" in wait_until(said, 15, "the drop record")
            t0 = time.monotonic()
            gw.stop()  # bounded: flush_timeout=1 s for the dead one, then it is left
            assert time.monotonic() - t0 < 20
    finally:
        gen.close()
        dead.close()


def test_stop_flushes_what_is_queued(tmp_path_factory, tmp_path):
    path = tmp_path / "flush.jsonl"
    gen = token_gateway(tmp_path_factory, "flushsink", ADMIN, CALLER, log_sink=f"file://{path}")
    try:
        gw, _ = next(gen)
        assert gw.gateway is not None
        marker = "bye-" + uuid.uuid4().hex[:8]
        for i in range(50):  # straight into the hub, then the gateway stops at once
            gw.loop.call_soon_threadsafe(gw.gateway.logs.engine, None, "INFO", f"{marker} {i}")
        with pytest.raises(StopIteration):
            next(gen)  # stops the gateway
    finally:
        gen.close()
    messages = [r["message"] for r in file_records(path)]
    assert [m for m in messages if m.startswith(marker)] == [f"{marker} {i}" for i in range(50)]


# -- a plugin, found by its entry point ---------------------------------------------
PLUGIN = '''
import json
from kernel_gateway.logs.sinks import LogSink

class MemoSink(LogSink):
    """memo:///path: each batch appended to a file as one JSON array per line."""

    def __init__(self, url):
        super().__init__(url)
        self.prefix = self.option("prefix", "")

    def send(self, records):
        with open(self.parts.path, "a") as f:
            f.write(self.prefix + json.dumps([r["message"] for r in records]) + "\\n")
'''


def test_a_plugin_sink_is_found_by_its_scheme(tmp_path, monkeypatch):
    site = tmp_path / "site"
    dist = site / "vwed_memo_sink-0.1.dist-info"
    dist.mkdir(parents=True)
    (site / "vwed_memo_sink.py").write_text(PLUGIN)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: vwed-memo-sink\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[vwed.log_sinks]\nmemo = vwed_memo_sink:MemoSink\n")
    monkeypatch.setenv("PYTHONPATH", str(site))
    out = tmp_path / "memo.txt"
    root = tmp_path / "scripts"
    root.mkdir()
    gw = GatewayProcess(root, tmp_path / "data", "--log-sink", f"memo://{out}?prefix=M:")
    try:
        (root / "memo.py").write_text('def boot():\n    VWED.log.info("memo", "hello memo")\n')
        assert gw.client.post("/script-engine/start", json={"script_path": "memo.py"}).is_success
        wait_until(
            lambda: out.exists() and '"hello memo"' in out.read_text(), 30, "the plugin's batch"
        )
        assert out.read_text().startswith("M:[")
        assert gw.client.get("/metrics").text.count(f'sink="memo://{out}"') == 3
    finally:
        gw.finish()


# -- bad URLs -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("ftp://example/x", "no log sink for the scheme 'ftp'"),
        ("file://vwed.jsonl", "relative path is refused"),
        ("file:vwed.jsonl", "must be an absolute file path"),
        ("file:///no/such/folder/vwed.jsonl", "does not exist"),
        ("file:///tmp/vwed.jsonl?keep=0", "keep must be >= 1"),
        ("file:///tmp", "is a folder"),
        ("file:///tmp/vwed.jsonl?max_byte=10", "unknown option(s) max_byte"),
        ("syslog://127.0.0.1", "give a host and a port"),
        ("syslog://127.0.0.1:514?transport=sctp", "transport must be udp or tcp"),
        ("http://u:hunter2@127.0.0.1:1/x?timeout=soon", "timeout='soon' is not a float"),
        ("https:///nohost", "the URL has no host"),
        ("not a url", "is not a URL"),
    ],
)
def test_a_bad_url_is_a_clear_startup_error(url, said, tmp_path):
    with pytest.raises(SinkError, match=re.escape(said)) as caught:
        make_sink(url)
    assert "hunter2" not in str(caught.value)


def test_the_gateway_refuses_to_start_with_a_bad_sink(tmp_path):
    (tmp_path / "scripts").mkdir()
    args = [
        sys.executable,
        "-m",
        "kernel_gateway",
        "--scripts-dir",
        str(tmp_path / "scripts"),
        "--data-dir",
        str(tmp_path / "data"),
        "--no-auth",
        "--log-sink",
        "syslog://127.0.0.1:514",
        "--log-sink",
        "file://relative.jsonl",
        "--log-sink",
        "kafka://broker:9092/logs",
    ]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "relative path is refused" in done.stderr and "'kafka'" in done.stderr
    assert "Traceback" not in done.stderr
    # a destination that cannot be opened is refused at start too, when the sink opens
    args[-1] = "file:///proc/vwed-sink-test.jsonl"
    del args[-4:-2]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "cannot open the file" in done.stderr and "Traceback" not in done.stderr


def test_urls_split_and_settings_check(tmp_path):
    assert split_urls("file:///a.jsonl?keep=2, http://h:1/x?a=1,2,syslog://h:5") == [
        "file:///a.jsonl?keep=2",
        "http://h:1/x?a=1,2",
        "syslog://h:5",
    ]
    settings = Settings(scripts_dir=str(tmp_path), log_sink=f"file://{tmp_path}/v.jsonl")
    assert settings.validated().log_sink_urls == [f"file://{tmp_path}/v.jsonl"]
    with pytest.raises(ConfigError, match="no log sink for the scheme 'nope'"):
        Settings(scripts_dir=str(tmp_path), log_sink="nope://x").validated()
