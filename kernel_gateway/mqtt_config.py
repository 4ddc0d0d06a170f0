"""The MQTT broker of ``VWED.mqtt``, as the gateway is configured with it (``--mqtt-url``,
``--mqtt-user``, ``--mqtt-password`` or ``--mqtt-password-file``, ``--mqtt-ca-file``),
served to kernels by the kernel service ``mqtt.config``.

Security: the password reaches a kernel only in the answer to its own request on the
kernel's comm (never in a kernel's environment, never in a log line); the CA file is
read here, at start, and sent as PEM text, so a kernel needs no access to it (a kernel
user, a remote host)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import ServiceUnavailable

__all__ = ["MqttConfig", "mqtt_problems"]

SCHEMES = {"mqtt": (False, 1883), "mqtts": (True, 8883)}


@dataclass(frozen=True)
class MqttConfig:
    host: str = ""
    port: int = 0
    tls: bool = False
    username: str = ""
    password: str = ""
    ca_pem: str = ""
    # the log hub's Redactor: the password is written *** in the records of a kernel given it
    redactor: Any = field(default=None, compare=False)

    def __repr__(self) -> str:  # never the password
        where = f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"
        return f"MqttConfig({where if self.host else 'off'}, user={self.username!r})"

    @property
    def configured(self) -> bool:
        return bool(self.host)

    @classmethod
    def from_settings(cls, settings: Any, redactor: Any = None) -> MqttConfig:
        """From validated settings (:func:`mqtt_problems` found nothing)."""
        if not settings.mqtt_url:
            return cls(redactor=redactor)
        parts = urlsplit(settings.mqtt_url)
        tls, default_port = SCHEMES[parts.scheme]
        password = settings.mqtt_password
        if settings.mqtt_password_file:
            password = _read_password(settings.mqtt_password_file)
        ca = (
            Path(settings.mqtt_ca_file).read_text(encoding="ascii") if settings.mqtt_ca_file else ""
        )
        return cls(
            host=parts.hostname or "",
            port=parts.port or default_port,
            tls=tls,
            username=settings.mqtt_user,
            password=password,
            ca_pem=ca,
            redactor=redactor,
        )

    async def kernel_get(self, kernel: Any, payload: dict[str, Any]) -> bytes:
        """``mqtt.config``: ``{}`` -> ``{"host", "port", "tls", "username", "password",
        "ca_pem"}``; 503 ``MQTT_NOT_CONFIGURED`` without ``--mqtt-url``."""
        if not self.configured:
            raise ServiceUnavailable(
                "no MQTT broker is configured: start the gateway with --mqtt-url mqtt://host:1883",
                "MQTT_NOT_CONFIGURED",
            )
        if self.password and self.redactor is not None:
            self.redactor.given(kernel.kernel_id, kernel.script_id, self.password)
        return json.dumps(
            {
                "host": self.host,
                "port": self.port,
                "tls": self.tls,
                "username": self.username,
                "password": self.password,
                "ca_pem": self.ca_pem,
            }
        ).encode()


def _read_password(path: str) -> str:
    text = Path(path).read_text(encoding="utf-8")
    return text.splitlines()[0] if text else ""


def mqtt_problems(settings: Any) -> list[str]:
    """What is wrong with the MQTT settings (none when off or right)."""
    problems: list[str] = []
    url = settings.mqtt_url
    if not url:
        if settings.mqtt_user or settings.mqtt_password or settings.mqtt_password_file:
            problems.append("mqtt_user/mqtt_password need mqtt_url")
        return problems
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - read to check it
    except ValueError as exc:
        return [f"mqtt_url {url!r} is not a URL: {exc}"]
    if parts.scheme not in SCHEMES or not parts.hostname:
        problems.append(f"mqtt_url must be mqtt://host:port or mqtts://host:port ({url!r})")
    if parts.username or parts.password:
        problems.append("mqtt_url must not hold credentials: use mqtt_user and mqtt_password")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        problems.append(f"mqtt_url takes no path, query or fragment ({url!r})")
    if settings.mqtt_password and settings.mqtt_password_file:
        problems.append("give mqtt_password or mqtt_password_file, not both")
    if settings.mqtt_password_file:
        try:
            _read_password(settings.mqtt_password_file)
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"mqtt_password_file cannot be read: {type(exc).__name__}")
    if settings.mqtt_ca_file:
        if parts.scheme != "mqtts":
            problems.append("mqtt_ca_file needs an mqtts:// mqtt_url")
        try:
            pem = Path(settings.mqtt_ca_file).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"mqtt_ca_file cannot be read: {type(exc).__name__}")
        else:
            if "-----BEGIN CERTIFICATE-----" not in pem:
                problems.append(f"mqtt_ca_file {settings.mqtt_ca_file!r} holds no PEM certificate")
    return problems
