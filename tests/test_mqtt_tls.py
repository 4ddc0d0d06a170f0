"""VWED.mqtt over TLS with a login: a Mosquitto broker of the test's own (this machine's
``/usr/sbin/mosquitto``) on a loopback port, with a certificate from a CA the test makes
and a password file; gateways with ``--mqtt-url mqtts://``, ``--mqtt-ca-file``,
``--mqtt-user``/``--mqtt-password``: messages go both ways over TLS, a wrong password is
``MQTT_REFUSED``, a broker whose certificate the CA does not vouch for is refused."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import GatewayThread, Scripts, unique, wait_until
from kernel_gateway.config import Settings

pytestmark = pytest.mark.timeout(120)

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
USER, PASSWORD = "vwedtls", f"pw-{uuid.uuid4().hex}"


def _pem_pair(
    name: str, issuer: Any = None, issuer_key: Any = None, ca: bool = False
) -> tuple[Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer is not None else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    cert = builder.sign(issuer_key if issuer_key is not None else key, hashes.SHA256())
    return cert, key


def _write_pem(path: Path, cert: Any = None, key: Any = None) -> Path:
    from cryptography.hazmat.primitives import serialization

    if cert is not None:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return path


def _free_port() -> int:
    """A port free now; Mosquitto cannot take port 0 (``listener 0`` is a Unix socket), so
    the broker binds this one a moment later and is started again should it have been
    taken meanwhile (another xdist worker's kernels and servers take free ports too)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """Mosquitto with one TLS listener, a password file and certificates of our own CA."""

    def __init__(self, folder: Path) -> None:
        ca, ca_key = _pem_pair("vwed test CA", ca=True)
        server, server_key = _pem_pair("127.0.0.1", ca, ca_key)
        other_ca, _ = _pem_pair("another CA", ca=True)
        self.ca_file = _write_pem(folder / "ca.pem", ca)
        self.other_ca_file = _write_pem(folder / "other-ca.pem", other_ca)
        cert = _write_pem(folder / "server.pem", server)
        key = _write_pem(folder / "server.key", key=server_key)
        passwd = folder / "passwd"
        passwd.touch(mode=0o600)
        subprocess.run([PASSWD, "-b", str(passwd), USER, PASSWORD], check=True, timeout=30)
        for attempt in range(1, 4):
            self.port = _free_port()
            conf = folder / "mosquitto.conf"
            conf.write_text(
                "\n".join(
                    [
                        "user root",  # the test's files are the test user's own (0600)
                        "persistence false",
                        "log_dest stderr",
                        f"listener {self.port} 127.0.0.1",
                        f"cafile {self.ca_file}",
                        f"certfile {cert}",
                        f"keyfile {key}",
                        "allow_anonymous false",
                        f"password_file {passwd}",
                        "",
                    ]
                )
            )
            self.log_path = folder / f"mosquitto-{attempt}.log"
            self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in close()
            self.proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(conf)], stdout=self.log, stderr=self.log
            )
            # its "running" line, not a connection: a connection could reach whoever took
            # the port while this broker fails to bind it
            wait_until(self._started, 15, f"mosquitto on 127.0.0.1:{self.port}")
            if self.proc.poll() is None:
                return
            self.log.close()
            text = self.log_path.read_text(errors="replace")
            if "Address already in use" not in text:
                break
        raise AssertionError(f"mosquitto exited ({self.proc.returncode}): {text[-2000:]}")

    def _started(self) -> bool:
        if self.proc.poll() is not None:
            return True  # stop waiting: it exited
        return " running" in self.log_path.read_text(errors="replace")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    if not Path(MOSQUITTO).exists() or not Path(PASSWD).exists():
        pytest.skip("Mosquitto (mosquitto, mosquitto_passwd) is not installed here")
    b = Broker(tmp_path_factory.mktemp("mqtt-tls"))
    yield b
    b.close()


def _gateway(tmp: Path, broker: Broker, password: str, ca_file: Path) -> GatewayThread:
    (tmp / "scripts").mkdir()
    return GatewayThread(
        Settings(
            scripts_dir=str(tmp / "scripts"),
            port=0,
            data_dir=str(tmp / "data"),
            pool_size=1,
            call_timeout=20.0,
            boot_timeout=30.0,
            auth=False,
            mqtt_url=f"mqtts://127.0.0.1:{broker.port}",
            mqtt_user=USER,
            mqtt_password=password,
            mqtt_ca_file=str(ca_file),
        ).validated()
    ).start()


ECHO = """
GOT = []

def boot():
    VWED.mqtt.subscribe("{p}/in/#", lambda msg: GOT.append([msg.topic, msg.json()]), qos=1)
    VWED.function.register("{n}_send", send)
    VWED.function.register("{n}_got", lambda: GOT)

def send(n):
    VWED.mqtt.publish("{p}/in/" + str(n), {{"n": n}}, qos=1)
    return True
"""

ATTEMPT = """
def boot():
    VWED.function.register("{n}_try", attempt)

def attempt():
    from vwed_kernel.errors import MqttError
    try:
        VWED.mqtt.publish("{p}/x", "x", qos=1)
    except MqttError as exc:
        return [exc.code, str(exc)]
    return "no error"
"""


def _call(client: httpx.Client, name: str, args: Any = None) -> Any:
    r = client.post(f"/script-engine/functions/{name}/call", json={"args": args})
    assert r.status_code == 200, r.text
    return r.json()["result"]


@contextlib.contextmanager
def _with_gateway(
    tmp: Path, broker: Broker, password: str, ca_file: Path, source: str, n: str
) -> Iterator[httpx.Client]:
    gw = _gateway(tmp, broker, password, ca_file)
    try:
        with httpx.Client(base_url=gw.url, timeout=60) as client:
            scripts = Scripts(tmp / "scripts", client)
            try:
                scripts.start(f"{n}.py", source)
                yield client
            finally:
                scripts.stop_all()
    finally:
        gw.stop()


def test_messages_go_both_ways_over_tls_with_a_login(broker: Broker, tmp_path: Path) -> None:
    p, n = f"vwedtls/{uuid.uuid4().hex[:8]}", unique("tls")
    with _with_gateway(
        tmp_path, broker, PASSWORD, broker.ca_file, ECHO.format(p=p, n=n), n
    ) as client:
        for i in range(3):
            assert _call(client, f"{n}_send", [i]) is True
        got = wait_until(lambda: len(_call(client, f"{n}_got")) >= 3, 20, "3 messages back")
        assert got
        assert sorted(map(tuple, _call(client, f"{n}_got"))) == [
            (f"{p}/in/{i}", {"n": i}) for i in range(3)
        ]


def test_a_wrong_password_is_mqtt_refused(broker: Broker, tmp_path: Path) -> None:
    p, n = f"vwedtls/{uuid.uuid4().hex[:8]}", unique("tlsbad")
    with _with_gateway(
        tmp_path, broker, "not-" + PASSWORD, broker.ca_file, ATTEMPT.format(p=p, n=n), n
    ) as client:
        code, message = _call(client, f"{n}_try")
        assert code == "MQTT_REFUSED", message
        assert PASSWORD not in message


def test_a_broker_our_ca_does_not_vouch_for_is_refused(broker: Broker, tmp_path: Path) -> None:
    p, n = f"vwedtls/{uuid.uuid4().hex[:8]}", unique("tlsca")
    with _with_gateway(
        tmp_path, broker, PASSWORD, broker.other_ca_file, ATTEMPT.format(p=p, n=n), n
    ) as client:
        result = _call(client, f"{n}_try")
        assert result != "no error"
        code, message = result
        assert code in ("MQTT_UNREACHABLE", "MQTT_REFUSED"), message
