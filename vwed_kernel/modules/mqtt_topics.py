"""``VWED.mqtt``'s messages and the checks of its arguments: topics, topic filters,
QoS, payloads (``modules/mqtt.py``)."""

from __future__ import annotations

import json
from typing import Any

from ..errors import RegistrationError

__all__ = [
    "MqttMessage",
    "check_topic",
    "check_filter",
    "check_qos",
    "encode_payload",
    "topic_matches",
]

MAX_TOPIC_BYTES = 65535


class MqttMessage:
    """What a subscription's handler receives: ``topic``, ``payload`` (bytes), ``qos``,
    ``retain``; ``text`` (the payload as UTF-8) and ``json()`` (parsed)."""

    __slots__ = ("topic", "payload", "qos", "retain")

    def __init__(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain

    @property
    def text(self) -> str:
        """The payload decoded as UTF-8 (undecodable bytes replaced)."""
        return self.payload.decode("utf-8", "replace")

    def json(self) -> Any:
        """The payload parsed as JSON (``ValueError`` if it is not)."""
        return json.loads(self.payload)

    def __repr__(self) -> str:
        return f"<MqttMessage {self.topic} qos={self.qos} {len(self.payload)} bytes>"


def _topic_common(kind: str, topic: Any) -> str:
    if not isinstance(topic, str):
        raise TypeError(f"MQTT {kind} must be a str, not {type(topic).__name__}")
    if not topic:
        raise ValueError(f"MQTT {kind} must not be empty")
    if "\x00" in topic:
        raise ValueError(f"MQTT {kind} {topic!r} contains a NUL character")
    if len(topic.encode("utf-8", "surrogatepass")) > MAX_TOPIC_BYTES:
        raise ValueError(f"MQTT {kind} is longer than {MAX_TOPIC_BYTES} bytes")
    return topic


def check_topic(topic: Any) -> str:
    """A topic to publish to: a non-empty str without the wildcards ``+`` and ``#``."""
    _topic_common("topic", topic)
    if "+" in topic or "#" in topic:
        raise ValueError(f"MQTT topic {topic!r} has a wildcard (+ or #): publish to a topic")
    return str(topic)


def check_filter(topic_filter: Any) -> str:
    """A topic filter: ``+`` alone in a level, ``#`` alone in the last level."""
    try:
        _topic_common("topic filter", topic_filter)
    except (TypeError, ValueError) as exc:
        raise RegistrationError(str(exc)) from exc
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if ("+" in level and level != "+") or ("#" in level and level != "#"):
            raise RegistrationError(
                f"MQTT topic filter {topic_filter!r}: a wildcard must be a whole level "
                "('a/+/c', 'a/#')"
            )
        if level == "#" and i != len(levels) - 1:
            raise RegistrationError(
                f"MQTT topic filter {topic_filter!r}: '#' must be the last level"
            )
    return str(topic_filter)


def check_qos(qos: Any, error: type[Exception] = ValueError) -> int:
    if not isinstance(qos, int) or isinstance(qos, bool) or qos not in (0, 1, 2):
        raise error(f"MQTT qos must be 0, 1 or 2, not {qos!r}")
    return qos


def encode_payload(payload: Any) -> bytes:
    """bytes as they are, str as UTF-8, ``None`` as empty, anything else as JSON."""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode("utf-8")
    if payload is None:
        return b""
    try:
        return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"MQTT payload must be bytes, str or JSON-serializable ({type(payload).__name__}: "
            f"{exc})"
        ) from exc


def topic_matches(topic_filter: str, topic: str) -> bool:
    from paho.mqtt.client import topic_matches_sub

    if topic_filter.startswith("$share/"):  # $share/<group>/<filter>
        topic_filter = topic_filter.split("/", 2)[2] if topic_filter.count("/") >= 2 else ""
    return bool(topic_filter) and topic_matches_sub(topic_filter, topic)
