"""``VWED.mqtt``: publish to, and subscribe at, the gateway's MQTT broker.

The broker is the gateway's (``--mqtt-url``, user, password, CA file); the kernel
asks the gateway for it (service ``mqtt.config``) at the first use and opens one
connection (``mqtt_client.py``), kept for the kernel's life: reconnected with a
doubling delay when lost, its subscriptions renewed. A subscription is a
registration, as an event listener is: listed in ``VWED.registrations()`` and by the
gateway, gone (unsubscribed, and the connection closed) when the script stops or
reloads. Handlers run on the kernel's event loop, as timers do: a plain function
inline, a coroutine as a task; one that raises is an ERROR record of the script's
log and the others go on. For a script with replicas, a subscription is made in
replica 0 only, unless ``all_replicas=True``.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import inspect
import itertools
import re
import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import GatewayUnavailableError, MqttError, RegistrationError, RemoteCallError
from ..plugin import VwedModule
from ..registrations import SubscriptionSpec
from ..replies import failure_text
from .mqtt_client import ACK_TIMEOUT, MqttConnection
from .mqtt_topics import (
    MqttMessage,
    check_filter,
    check_qos,
    check_topic,
    encode_payload,
    topic_matches,
)

if TYPE_CHECKING:
    from ..context import Context

__all__ = ["MqttModule", "MqttMessage", "check_topic", "check_filter"]

MAX_PENDING = 10_000  # messages waiting for the event loop; more are dropped (counted)
MAX_PENDING_BYTES = 64 * 1024 * 1024  # and their payloads' bytes (1 MB camera frames...)

# (the class below has a method ``list``: these names keep the builtin in annotations)
_Ids = list[int]
_Specs = list[SubscriptionSpec]


def _takes_no_argument(handler: Callable[..., Any]) -> bool:
    try:
        sig = inspect.signature(handler)
    except (TypeError, ValueError):
        return False
    return not any(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
        for p in sig.parameters.values()
    )


class MqttModule(VwedModule):
    """``publish``/``apublish``, ``subscribe``, ``unsubscribe``, ``list``, ``clear_all``,
    ``connected`` (docs/vwed.md, "MQTT")."""

    def __init__(self, context: Context, name: str = "mqtt") -> None:
        super().__init__(context, name)
        self._ids = itertools.count(1)
        self._sub_ids = itertools.count(1)
        self._lock = threading.Lock()  # the filters (read by paho's thread)
        self._opening = threading.Lock()  # one connection is opened at a time
        self._conn: MqttConnection | None = None
        self._filters: dict[str, tuple[int, int]] = {}  # broker subscriptions: (qos, id)
        self._armed = False  # our cleanup is on registrations.on_clear
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: collections.deque[tuple[MqttMessage, list[int]]] = collections.deque()
        self._queued_bytes = 0  # payload bytes in ``_queue`` (under ``_lock``)
        self._draining = False
        self._tasks: set[asyncio.Future[Any]] = set()
        self.dropped = 0

    # -- publishing --------------------------------------------------------------------
    def publish(
        self,
        topic: str,
        payload: Any = None,
        qos: int = 0,
        retain: bool = False,
        timeout: float = ACK_TIMEOUT,
    ) -> None:
        """Publish ``payload`` (bytes; str as UTF-8; anything else as JSON) to ``topic``.

        QoS 0 returns once the message is handed to the connection; QoS 1 and 2 once
        the broker acknowledged it (``MqttError`` code ``MQTT_TIMEOUT`` past
        ``timeout`` seconds). ``MqttError`` when no broker is configured, it cannot be
        reached, or (QoS 0) the connection is down and being re-established."""
        topic, data, qos = check_topic(topic), encode_payload(payload), check_qos(qos)
        self._connection().publish(topic, data, qos, bool(retain), timeout)

    async def apublish(
        self,
        topic: str,
        payload: Any = None,
        qos: int = 0,
        retain: bool = False,
        timeout: float = ACK_TIMEOUT,
    ) -> None:
        """``await`` form of :meth:`publish`: the event loop runs on while it waits."""
        topic, data, qos = check_topic(topic), encode_payload(payload), check_qos(qos)
        conn = self._conn
        if conn is None:
            config = await self._aconfig()
            conn = await asyncio.get_running_loop().run_in_executor(None, self._connection, config)
        if qos == 0:
            conn.publish(topic, data, qos, bool(retain))
            return
        await asyncio.get_running_loop().run_in_executor(
            None, functools.partial(conn.publish, topic, data, qos, bool(retain), timeout)
        )

    # -- subscriptions -----------------------------------------------------------------
    def subscribe(
        self,
        topic_filter: str,
        handler: Callable[..., Any] | None = None,
        qos: int = 0,
        all_replicas: bool = False,
    ) -> Any:
        """Call ``handler(message)`` (an :class:`MqttMessage`) for each message on a
        topic matching ``topic_filter`` (``+`` one level, ``#`` the rest); returns the
        subscription's id. Without a handler, returns a decorator.

        The subscription is made (and acknowledged by the broker) before this returns,
        except while the connection is down: then at the reconnection."""
        check_filter(topic_filter)
        if handler is None:
            return lambda h: (self.subscribe(topic_filter, h, qos, all_replicas), h)[1]
        if not callable(handler):
            raise RegistrationError(
                f"handler of MQTT topic filter {topic_filter!r} is not callable"
            )
        check_qos(qos, RegistrationError)
        active = bool(all_replicas) or self.replica == 0
        spec = SubscriptionSpec(
            f"mqtt_{next(self._ids)}", topic_filter, handler, qos, bool(all_replicas), active
        )
        if active:
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:
                self._loop = None  # no event loop (plain Python): handlers run on paho's thread
            conn = self._connection()
            self.context.registrations.subscriptions[spec.id] = spec
            try:
                self._broker_subscribe(conn, topic_filter)
            except BaseException:
                self.context.registrations.subscriptions.pop(spec.id, None)
                self._broker_unsubscribe_unused(topic_filter)
                raise
        else:
            self.context.registrations.subscriptions[spec.id] = spec
        self.context.link.notify_register("mqtt", spec.describe())
        return spec.id

    def unsubscribe(
        self, topic_filter: str, handler: Callable[..., Any] | str | None = None
    ) -> int:
        """Remove the subscriptions of ``topic_filter`` (all, those of ``handler``, or the
        one with that id); returns how many were removed."""
        subs = self.context.registrations.subscriptions
        gone = [
            s
            for s in list(subs.values())
            if s.topic == topic_filter
            and (handler is None or s.handler is handler or s.id == handler)
        ]
        for spec in gone:
            subs.pop(spec.id, None)
            self.context.link.notify_unregister("mqtt", spec.describe())
        self._broker_unsubscribe_unused(topic_filter)
        return len(gone)

    def clear_all(self) -> int:
        """Remove every subscription of this script; returns how many were removed."""
        topics = {s.topic for s in self.context.registrations.subscriptions.values()}
        return sum(self.unsubscribe(t) for t in topics)

    def list(self) -> list[dict[str, Any]]:
        """This script's subscriptions, with the messages they received and failures."""
        return [s.describe() for s in self.context.registrations.subscriptions.values()]

    @property
    def connected(self) -> bool:
        """Whether the connection to the broker is up now (False before the first use)."""
        conn = self._conn
        return conn is not None and conn.connected

    # -- the connection ----------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        try:
            return dict(self.request("mqtt.config", {}))
        except (GatewayUnavailableError, RemoteCallError) as exc:
            failure = self._config_failure(exc)
            if failure is exc:
                raise
            raise failure from exc

    async def _aconfig(self) -> dict[str, Any]:
        try:
            return dict(await self.arequest("mqtt.config", {}))
        except (GatewayUnavailableError, RemoteCallError) as exc:
            failure = self._config_failure(exc)
            if failure is exc:
                raise
            raise failure from exc

    def _config_failure(self, exc: Exception) -> Exception:
        """What a failed ``mqtt.config`` request raises to the script."""
        if isinstance(exc, RemoteCallError):
            return _config_error(exc)
        if self.context.link.attached:
            return exc  # attached, but this thread cannot wait for the answer: as it says
        return MqttError(
            "no MQTT broker: VWED.mqtt uses the gateway's (--mqtt-url), and this kernel "
            "is not attached to a gateway",
            "MQTT_NOT_CONFIGURED",
        )

    def _connection(self, config: dict[str, Any] | None = None) -> MqttConnection:
        """The kernel's connection, opened (and our cleanup armed) at the first use."""
        conn = self._conn
        if conn is not None:
            return conn
        with self._opening:
            if self._conn is not None:
                return self._conn
            if config is None:
                config = self._config()
            conn = MqttConnection(
                config, self._client_id(), self._received, self._current_filters, self.log
            )
            conn.open()
            self._conn = conn
            if not self._armed:
                self._armed = True
                self.context.registrations.on_clear(self.stop)
            return conn

    def _client_id(self) -> str:
        script = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.script_id or "notebook")[-40:]
        return f"vwed-{script}-r{self.replica}-{uuid.uuid4().hex[:8]}"

    def _current_filters(self) -> dict[str, tuple[int, int]]:
        with self._lock:
            return dict(self._filters)

    def _broker_subscribe(self, conn: MqttConnection, topic_filter: str) -> None:
        """Subscribe at the broker with the highest QoS of the filter's subscriptions."""
        qos = max(
            s.qos
            for s in self.context.registrations.subscriptions.values()
            if s.topic == topic_filter and s.active
        )
        with self._lock:
            old = self._filters.get(topic_filter)
            if old is not None and old[0] >= qos:
                return
            sub_id = old[1] if old is not None else next(self._sub_ids)
            self._filters[topic_filter] = (qos, sub_id)
        conn.subscribe(topic_filter, qos, sub_id)

    def _broker_unsubscribe_unused(self, topic_filter: str) -> None:
        if any(
            s.topic == topic_filter and s.active
            for s in self.context.registrations.subscriptions.values()
        ):
            return
        with self._lock:
            if self._filters.pop(topic_filter, None) is None:
                return
            conn = self._conn
        if conn is not None:
            conn.unsubscribe(topic_filter)

    def stop(self) -> None:
        """The script stops or reloads (``registrations.on_clear``): close the connection;
        messages not handled yet are dropped, no handler runs after this."""
        with self._opening, self._lock:
            conn, self._conn = self._conn, None
            self._filters.clear()
            self._armed = False
            self._queue.clear()
            self._queued_bytes = 0
        if conn is not None:
            conn.close()

    # -- delivery ----------------------------------------------------------------------
    def _received(self, topic: str, payload: bytes, qos: int, retain: bool, ids: _Ids) -> None:
        """A message (paho's thread): queued for the kernel's event loop."""
        loop = self._loop
        message = MqttMessage(topic, payload, qos, retain)
        if loop is None or loop.is_closed():
            self._deliver(message, ids)
            return
        with self._lock:
            full = (
                len(self._queue) >= MAX_PENDING
                or self._queued_bytes + len(payload) > MAX_PENDING_BYTES
            )
            if not full:
                self._queue.append((message, ids))
                self._queued_bytes += len(payload)
        if full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                self.log(
                    "WARNING",
                    f"{self.dropped} MQTT message(s) dropped: {MAX_PENDING} messages or "
                    f"{MAX_PENDING_BYTES // 1048576} MiB were waiting for the script's "
                    "handlers (are they blocking?)",
                )
            return
        if not self._draining:
            self._draining = True
            try:
                loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop is closed: the kernel is ending
                self._draining = False

    def _drain(self) -> None:
        self._draining = False
        while self._queue:
            with self._lock:
                try:
                    message, ids = self._queue.popleft()
                except IndexError:
                    return
                self._queued_bytes -= len(message.payload)
            self._deliver(message, ids)

    def _targets(self, message: MqttMessage, ids: _Ids) -> _Specs:
        subs = list(self.context.registrations.subscriptions.values())
        if ids:
            with self._lock:
                topics = {t for t, (_, i) in self._filters.items() if i in ids}
            return [s for s in subs if s.active and s.topic in topics]
        return [s for s in subs if s.active and topic_matches(s.topic, message.topic)]

    def _deliver(self, message: MqttMessage, ids: _Ids) -> None:
        """Run the handlers of the subscriptions ``message`` matches (still registered)."""
        subs = self.context.registrations.subscriptions
        for spec in self._targets(message, ids):
            if subs.get(spec.id) is not spec:
                continue
            spec.messages += 1
            try:
                value = (
                    spec.handler() if _takes_no_argument(spec.handler) else spec.handler(message)
                )
                if inspect.isawaitable(value):
                    task = asyncio.ensure_future(value)
                    self._tasks.add(task)
                    task.add_done_callback(functools.partial(self._task_done, spec, message))
            except Exception as exc:
                self._failed(spec, message, exc)

    def _task_done(
        self, spec: SubscriptionSpec, message: MqttMessage, task: asyncio.Future[Any]
    ) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            assert exc is not None
            self._failed(spec, message, exc)

    def _failed(self, spec: SubscriptionSpec, message: MqttMessage, exc: BaseException) -> None:
        spec.failures += 1
        self.log(
            "ERROR",
            failure_text(f"MQTT handler {spec.id} of {spec.topic!r} (topic {message.topic})", exc),
        )


def _config_error(exc: RemoteCallError) -> MqttError:
    if exc.code in ("MQTT_NOT_CONFIGURED", "UNKNOWN_SERVICE"):
        return MqttError(
            "no MQTT broker is configured: start the gateway with --mqtt-url mqtt://host:1883",
            "MQTT_NOT_CONFIGURED",
        )
    return MqttError(f"the gateway did not give the MQTT settings: {exc}", exc.code or "MQTT_ERROR")
