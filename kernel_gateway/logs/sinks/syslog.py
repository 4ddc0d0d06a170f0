"""``syslog://host:port``: records as RFC 5424 syslog messages, over UDP (RFC 5426,
the default) or TCP with octet-counting framing (RFC 6587: ``LEN SP MSG``).

A record becomes::

    <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD-ID id="..." script="..." ...] BOM MSG

PRI is ``facility * 8 + severity`` (DEBUG 7, INFO 6, WARNING 4, ERROR 3); MSGID the
record's source (``stdout``, ``stderr``, ``error``, ``vwed``, ``engine``); the structured
data carries the record's id, script, run, tag, call and task ids.

Options: ``transport`` (``udp`` or ``tcp``), ``facility`` (a name, ``user`` by default,
or ``local0``..``local7``, ...), ``app`` (APP-NAME, default ``vwed``), ``sd_id`` (the
structured data's id, default ``vwed@32473``: 32473 is the enterprise number reserved
for examples, RFC 5612; put your organisation's), ``max_size`` (bytes of one message at
most, longer ones are cut; default 8192 over UDP, 65536 over TCP), ``timeout``,
``retries``, ``backoff`` (TCP: connecting and sending, as the HTTP sink).
"""

from __future__ import annotations

import os
import re
import select
import socket
import time
from typing import Any

from .base import LogSink, SinkError

__all__ = ["SyslogSink", "format_rfc5424", "FACILITIES", "SEVERITIES"]

FACILITIES = {
    "kern": 0,
    "user": 1,
    "mail": 2,
    "daemon": 3,
    "auth": 4,
    "syslog": 5,
    "lpr": 6,
    "news": 7,
    "uucp": 8,
    "cron": 9,
    "authpriv": 10,
    "ftp": 11,
    **{f"local{n}": 16 + n for n in range(8)},
}
SEVERITIES = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3}
_SD_FIELDS = (
    ("id", "id"),
    ("script", "script_id"),
    ("run", "run_id"),
    ("tag", "tag"),
    ("call", "call_id"),
    ("task", "task_id"),
)
_NAME = re.compile(r"^[!-~]{1,48}$")  # printable US-ASCII, no space
_SD_NAME = re.compile(r"^[!#-<>-\\^-~]{1,32}$")  # ... nor '=', ']', '"'
BOM = "\ufeff".encode()


def _header_field(value: str, limit: int) -> str:
    value = "".join(c for c in value if "!" <= c <= "~")[:limit]
    return value or "-"


def _sd_value(value: Any) -> str:
    text = str(value)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def format_rfc5424(
    record: dict[str, Any],
    *,
    facility: int,
    hostname: str,
    app: str,
    procid: str,
    sd_id: str,
    max_size: int,
) -> bytes:
    """One record as an RFC 5424 message (UTF-8), at most ``max_size`` bytes."""
    pri = facility * 8 + SEVERITIES.get(record["level"], 6)
    ts = record["ts"]
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1e6):06d}Z"
    params = " ".join(
        f'{name}="{_sd_value(record[key])}"'
        for name, key in _SD_FIELDS
        if record.get(key) not in (None, "")
    )
    sd = f"[{sd_id} {params}]" if params else "-"
    msgid = _header_field(str(record.get("source") or ""), 32)
    head = f"<{pri}>1 {stamp} {hostname} {app} {procid} {msgid} {sd} ".encode()
    message = BOM + str(record["message"]).encode()
    data = head + message
    if len(data) > max_size:  # cut, at a character's boundary
        data = data[:max_size].decode("utf-8", "ignore").encode()
    return data


def _closed_by_peer(sock: socket.socket) -> bool:
    """Whether the server closed the connection (a send would seem to succeed once)."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class SyslogSink(LogSink):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.transport = self.option("transport", "udp").lower()
        if self.transport not in ("udp", "tcp"):
            raise SinkError(f"log sink {self.name}: transport must be udp or tcp")
        facility = self.option("facility", "user").lower()
        if facility not in FACILITIES:
            raise SinkError(
                f"log sink {self.name}: facility must be one of {', '.join(FACILITIES)}"
            )
        self.facility = FACILITIES[facility]
        self.app = self.option("app", "vwed")
        self.sd_id = self.option("sd_id", "vwed@32473")
        if not _NAME.match(self.app):
            raise SinkError(f"log sink {self.name}: app must be 1-48 printable ASCII characters")
        if not _SD_NAME.match(self.sd_id):
            raise SinkError(f"log sink {self.name}: sd_id must be an SD-ID (name@number)")
        tcp = self.transport == "tcp"
        self.max_size = self.option("max_size", 65536 if tcp else 8192, minimum=480)
        self.timeout = self.option("timeout", 5.0, minimum=0.001)
        self.retries = self.option("retries", 5, minimum=0)
        self.backoff = self.option("backoff", 0.5, minimum=0.0)
        if not self.parts.hostname or self.parts.port is None:
            raise SinkError(f"log sink {self.name}: give a host and a port (syslog://host:514)")
        if self.parts.path not in ("", "/"):
            raise SinkError(f"log sink {self.name}: a syslog URL has no path")
        self.address = (self.parts.hostname, self.parts.port)
        self._hostname = _header_field(socket.gethostname(), 255)
        self._procid = str(os.getpid())
        self._sock: socket.socket | None = None
        self._udp_target: Any = None

    def _format(self, record: dict[str, Any]) -> bytes:
        return format_rfc5424(
            record,
            facility=self.facility,
            hostname=self._hostname,
            app=self.app,
            procid=self._procid,
            sd_id=self.sd_id,
            max_size=self.max_size,
        )

    def open(self) -> None:
        if self.transport == "udp":
            try:
                family, kind, proto, _, target = socket.getaddrinfo(
                    *self.address, type=socket.SOCK_DGRAM
                )[0]
            except OSError as exc:
                raise SinkError(f"log sink {self.name}: {exc}") from None
            self._sock = socket.socket(family, kind, proto)
            self._udp_target = target
        # TCP: connected in send(), so a syslog server down at start is retried later

    def send(self, records: list[dict[str, Any]]) -> None:
        messages = [self._format(r) for r in records]
        if self.transport == "udp":
            assert self._sock is not None
            for data in messages:
                self._sock.sendto(data, self._udp_target)
            return
        frame = b"".join(b"%d " % len(m) + m for m in messages)
        self.retrying(
            lambda: self._send_tcp(frame), self.retries, self.backoff, retry_on=(OSError,)
        )

    def _send_tcp(self, frame: bytes) -> None:
        if self._sock is not None and _closed_by_peer(self._sock):
            self._sock.close()
            self._sock = None
        if self._sock is None:
            self._sock = socket.create_connection(self.address, timeout=self.timeout)
        try:
            self._sock.sendall(frame)
        except OSError:
            self._sock.close()  # a connection the server closed: a new one next attempt
            self._sock = None
            raise

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
