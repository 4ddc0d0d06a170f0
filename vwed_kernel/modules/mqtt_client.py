"""The one MQTT connection of a kernel (``VWED.mqtt``), on paho-mqtt's threaded client.

paho's network thread reads and writes the socket, answers keep-alives and, when
the connection is lost, reconnects with a doubling delay (1 s up to 30 s); each
(re)connection renews every subscription (``clean_start``: the broker keeps nothing
between two connections). Messages are handed to ``on_message`` on that thread;
``modules/mqtt.py`` moves them to the kernel's event loop. The broker's settings
come from the gateway (service ``mqtt.config``), never from the environment.

MQTT 5: each topic filter is subscribed in its own SUBSCRIBE with a subscription
identifier, so a message that matches two filters of the script says which ones
(whether the broker sends one copy or one per filter), and each handler runs once.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from typing import Any

from ..errors import MqttError

__all__ = ["MqttConnection", "CONNECT_TIMEOUT", "ACK_TIMEOUT"]

CONNECT_TIMEOUT = 10.0  # seconds the first connection (TCP, TLS, CONNACK) may take
ACK_TIMEOUT = 10.0  # seconds a SUBACK, or a PUBACK/PUBCOMP, may take
KEEPALIVE = 30
RECONNECT_MIN, RECONNECT_MAX = 1, 30

# (topic, payload, qos, retain, subscription ids) -> None, on paho's thread
OnMessage = Callable[[str, bytes, int, bool, list[int]], None]
Log = Callable[[str, str], None]


class MqttConnection:
    """A connected paho client; :meth:`open` raises :class:`MqttError` when the first
    connection cannot be made. ``filters()`` gives ``{filter: (qos, id)}``, what to
    subscribe again after a reconnection."""

    def __init__(
        self,
        config: dict[str, Any],
        client_id: str,
        on_message: OnMessage,
        filters: Callable[[], dict[str, tuple[int, int]]],
        log: Log,
    ) -> None:
        self.host = str(config.get("host") or "")
        self.port = int(config.get("port") or 1883)
        self.tls = bool(config.get("tls"))
        self.where = f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"
        self._config = config
        self._client_id = client_id
        self._on_message = on_message
        self._filters = filters
        self._log = log
        self._client: Any = None
        self._first = threading.Event()
        self._refused: str | None = None
        self._lost = False  # a WARNING was logged for the current outage
        self._closing = False
        self.connected = False
        self.ids = True  # the broker supports subscription identifiers
        self.connections = 0
        self._acks: dict[int, list[Any]] = {}
        self._acked = threading.Condition()
        self._network = 0  # paho's thread (its ident): it must never wait for an ack itself

    # -- connection -------------------------------------------------------------------
    def open(self) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self._client_id, protocol=mqtt.MQTTv5
        )
        user = self._config.get("username")
        if user:
            client.username_pw_set(str(user), self._config.get("password") or None)
        if self.tls:
            context = ssl.create_default_context(cadata=self._config.get("ca_pem") or None)
            client.tls_set_context(context)
        client.reconnect_delay_set(RECONNECT_MIN, RECONNECT_MAX)
        client.connect_timeout = CONNECT_TIMEOUT
        client.on_connect = self._connected
        client.on_disconnect = self._disconnected
        client.on_message = self._message
        client.on_subscribe = self._subscribed
        self._client = client
        try:
            client.connect(self.host, self.port, keepalive=KEEPALIVE, clean_start=True)
        except PermissionError:  # the script's policy (network): its own refusal, as it is
            self._client = None
            raise
        except (OSError, ssl.SSLError, ValueError) as exc:
            self._client = None
            raise MqttError(
                f"the MQTT broker {self.where} is unreachable: {exc}", "MQTT_UNREACHABLE"
            ) from exc
        client.loop_start()
        answered = self._first.wait(CONNECT_TIMEOUT)
        if answered and self._refused is None:
            return
        self.close()
        if not answered:
            raise MqttError(
                f"the MQTT broker {self.where} did not answer the connection within "
                f"{CONNECT_TIMEOUT:g} s",
                "MQTT_UNREACHABLE",
            )
        raise MqttError(
            f"the MQTT broker {self.where} refused the connection: {self._refused}",
            "MQTT_REFUSED",
        )

    def close(self) -> None:
        """Disconnect and stop the network thread (no reconnection after this)."""
        self._closing = True
        client, self._client = self._client, None
        self.connected = False
        if client is None:
            return
        try:
            client.disconnect()
        except Exception:  # noqa: BLE001 - closing whatever state it is in
            pass
        client.loop_stop()
        with self._acked:
            self._acked.notify_all()

    # -- paho's callbacks (its network thread) --------------------------------------------
    def _connected(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._network = threading.get_ident()
        if reason.is_failure:
            self.connected = False
            if not self._first.is_set():
                self._refused = str(reason)
                self._first.set()
            elif not self._lost:
                self._lost = True
                self._log("WARNING", f"the MQTT broker {self.where} refused to reconnect: {reason}")
            return
        self.ids = getattr(props, "SubscriptionIdentifierAvailable", 1) != 0
        filters = self._filters()
        for topic, (qos, sub_id) in filters.items():
            self._send_subscribe(client, topic, qos, sub_id)
        self.connected = True
        self.connections += 1
        if self._lost:
            self._lost = False
            self._log(
                "INFO",
                f"reconnected to the MQTT broker {self.where}; "
                f"{len(filters)} subscription(s) renewed",
            )
        self._first.set()

    def _disconnected(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self.connected = False
        if self._closing or not self._first.is_set() or self._lost:
            return
        self._lost = True
        self._log(
            "WARNING",
            f"connection to the MQTT broker {self.where} lost ({reason}); reconnecting "
            f"(every {RECONNECT_MIN}-{RECONNECT_MAX} s)",
        )

    def _message(self, client: Any, userdata: Any, msg: Any) -> None:
        props = getattr(msg, "properties", None)
        ids = getattr(props, "SubscriptionIdentifier", None) or []
        if not isinstance(ids, list):
            ids = [ids]
        self._on_message(msg.topic, bytes(msg.payload), int(msg.qos), bool(msg.retain), ids)

    def _subscribed(self, client: Any, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        with self._acked:
            self._acks[mid] = list(codes)
            self._acked.notify_all()

    # -- operations (any thread) ----------------------------------------------------------
    def _send_subscribe(self, client: Any, topic: str, qos: int, sub_id: int) -> int | None:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties
        from paho.mqtt.subscribeoptions import SubscribeOptions

        props = None
        if self.ids:
            props = Properties(PacketTypes.SUBSCRIBE)
            props.SubscriptionIdentifier = sub_id
        rc, mid = client.subscribe(topic, options=SubscribeOptions(qos=qos), properties=props)
        return mid if rc == 0 else None

    def subscribe(self, topic: str, qos: int, sub_id: int) -> None:
        """Subscribe now and wait for the broker's SUBACK; while disconnected, return:
        the subscription is made at the reconnection (``filters()``)."""
        client = self._client
        if client is None or not self.connected:
            return
        mid = self._send_subscribe(client, topic, qos, sub_id)
        if mid is None or threading.get_ident() == self._network:
            return  # lost meanwhile (renewed at the reconnection), or a handler on paho's thread
        with self._acked:
            if not self._acked.wait_for(
                lambda: mid in self._acks or self._client is None, ACK_TIMEOUT
            ):
                raise MqttError(
                    f"the MQTT broker {self.where} did not acknowledge the subscription to "
                    f"{topic!r} within {ACK_TIMEOUT:g} s",
                    "MQTT_TIMEOUT",
                )
            codes = self._acks.pop(mid, [])
        failed = [c for c in codes if getattr(c, "is_failure", False)]
        if failed:
            raise MqttError(
                f"the MQTT broker {self.where} refused the subscription to {topic!r}: {failed[0]}",
                "MQTT_REFUSED",
            )

    def unsubscribe(self, topic: str) -> None:
        client = self._client
        if client is not None and self.connected:
            client.unsubscribe(topic)

    def publish(
        self, topic: str, payload: bytes, qos: int, retain: bool, timeout: float = ACK_TIMEOUT
    ) -> None:
        """QoS 0: handed to the network thread (``MQTT_NOT_CONNECTED`` while the
        connection is down). QoS 1 and 2: wait for the broker's acknowledgement; while
        the connection is down the message waits in the client and goes out at the
        reconnection (``MQTT_TIMEOUT`` if that takes longer than ``timeout``: the
        message still goes out then)."""
        import paho.mqtt.client as mqtt

        client = self._client
        if client is None:
            raise MqttError("the MQTT connection is closed", "MQTT_NOT_CONNECTED")
        info = client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc == mqtt.MQTT_ERR_NO_CONN and qos == 0:
            raise MqttError(
                f"not connected to the MQTT broker {self.where} (reconnecting): the QoS 0 "
                f"message to {topic!r} was not sent",
                "MQTT_NOT_CONNECTED",
            )
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise MqttError(
                f"the message to {topic!r} was not sent: {mqtt.error_string(info.rc)}",
                "MQTT_ERROR",
            )
        if qos == 0 or threading.get_ident() == self._network:
            return  # (a handler on paho's thread, no event loop: the ack cannot come meanwhile)
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as exc:
            raise MqttError(f"the message to {topic!r} was not sent: {exc}", "MQTT_ERROR") from exc
        if not info.is_published():
            raise MqttError(
                f"the MQTT broker {self.where} did not acknowledge the QoS {qos} message to "
                f"{topic!r} within {timeout:g} s (it is sent when the connection is back)",
                "MQTT_TIMEOUT",
            )
