"""What one script registered, kept inside its kernel.

The kernel is the source of truth for the *handlers* (Python objects); the
gateway keeps a copy of the *descriptions* (path, method, name) in its routing
table, sent as ``register`` messages (docs/protocol.md).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import RegistrationError

__all__ = [
    "Registrations",
    "RouteSpec",
    "FunctionSpec",
    "ListenerSpec",
    "TimerSpec",
    "SubscriptionSpec",
    "normalize_route_path",
    "HTTP_METHODS",
]

log = logging.getLogger("vwed_kernel")
HTTP_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")
_PARAM = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_SEGMENT = re.compile(r"^[A-Za-z0-9._~!$&'()*+,;=:@-]+$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,199}$")


def normalize_route_path(path: str) -> str:
    """Canonical form of a route path: ``/a/{b}``, without the ``/script-api`` prefix."""
    if not isinstance(path, str) or not path.strip():
        raise RegistrationError("route path must be a non-empty string")
    p = "/" + path.strip().strip("/")
    if p == "/script-api" or p.startswith("/script-api/"):
        p = p[len("/script-api") :] or "/"
    segments = [s for s in p.split("/") if s]
    seen: set[str] = set()
    for seg in segments:
        m = _PARAM.match(seg)
        if m:
            if m.group(1) in seen:
                raise RegistrationError(f"route path {path!r} repeats parameter {m.group(1)!r}")
            seen.add(m.group(1))
        elif seg in (".", "..") or not _SEGMENT.match(seg):
            raise RegistrationError(f"route path {path!r} has an invalid segment {seg!r}")
    return "/" + "/".join(segments)


def normalize_method(method: str) -> str:
    m = str(method).strip().upper()
    if m not in HTTP_METHODS:
        raise RegistrationError(f"HTTP method {method!r} is not one of {', '.join(HTTP_METHODS)}")
    return m


def check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise RegistrationError(
            f"{kind} name {name!r} must start with a letter or '_' and use letters, digits, '_.:-'"
        )
    return name


@dataclass
class RouteSpec:
    method: str
    path: str
    handler: Callable[..., Any]
    description: str = ""

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "description": self.description,
            "handler": _handler_name(self.handler),
        }


@dataclass
class FunctionSpec:
    name: str
    handler: Callable[..., Any]
    description: str = ""
    params: list[Any] | None = None
    # params given at registration (they change the binding: calling.bind_function),
    # not read from the signature; and whether the one-key WARNING was logged
    declared: bool = False
    warned: bool = False

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "params": self.params,
            "handler": _handler_name(self.handler),
        }


def _handler_name(handler: Callable[..., Any]) -> str:
    return (
        getattr(handler, "__qualname__", None)
        or getattr(handler, "__name__", None)
        or repr(handler)
    )


@dataclass
class ListenerSpec:
    id: str
    event: str
    handler: Callable[..., Any]
    priority: int = 1
    all_replicas: bool = False

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "event": self.event,
            "priority": self.priority,
            "all_replicas": self.all_replicas,
            "handler": _handler_name(self.handler),
        }


@dataclass
class TimerSpec:
    id: str
    kind: str  # interval | delay | cron
    handler: Callable[..., Any]
    interval: float | None = None
    expression: str | None = None
    all_replicas: bool = False
    active: bool = True
    runs: int = 0
    failures: int = 0
    last_run: float | None = None
    task: Any = None

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "interval": self.interval,
            "expression": self.expression,
            "all_replicas": self.all_replicas,
            "active": self.active,
            "runs": self.runs,
            "failures": self.failures,
            "last_run": self.last_run,
            "handler": _handler_name(self.handler),
        }


@dataclass
class SubscriptionSpec:
    """An MQTT subscription of the script (``VWED.mqtt.subscribe``)."""

    id: str
    topic: str  # the topic filter, wildcards included
    handler: Callable[..., Any]
    qos: int = 0
    all_replicas: bool = False
    active: bool = True  # False in replicas other than 0 without all_replicas
    messages: int = 0
    failures: int = 0

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "topic": self.topic,
            "qos": self.qos,
            "all_replicas": self.all_replicas,
            "active": self.active,
            "messages": self.messages,
            "failures": self.failures,
            "handler": _handler_name(self.handler),
        }


@dataclass
class SocketSpec:
    """A WebSocket route (``path``) or a TCP server (``port``) of the script."""

    kind: str  # websocket | tcp
    key: str
    handler: Callable[..., Any]
    server: Any = None

    def describe(self) -> dict[str, Any]:
        field_name = "path" if self.kind == "websocket" else "port"
        value: Any = self.key if self.kind == "websocket" else int(self.key)
        return {field_name: value, "handler": _handler_name(self.handler)}


@dataclass
class Registrations:
    """Routes, functions, event listeners and timers of the script in this kernel."""

    routes: dict[str, RouteSpec] = field(default_factory=dict)
    functions: dict[str, FunctionSpec] = field(default_factory=dict)
    listeners: dict[str, ListenerSpec] = field(default_factory=dict)
    timers: dict[str, TimerSpec] = field(default_factory=dict)
    websockets: dict[str, SocketSpec] = field(default_factory=dict)
    tcp: dict[str, SocketSpec] = field(default_factory=dict)
    # MQTT subscriptions (VWED.mqtt; the module puts its cleanup on on_clear)
    subscriptions: dict[str, SubscriptionSpec] = field(default_factory=dict)
    # cleanups of modules (built-in or plugins) that registered something of their
    # own: each runs once at the next :meth:`clear` (the script stops or reloads)
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def on_clear(self, cleanup: Callable[[], None]) -> None:
        """Run ``cleanup`` when the script's registrations are cleared."""
        self.cleanups.append(cleanup)

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        return {
            "apis": [r.describe() for r in self.routes.values()],
            "functions": [f.describe() for f in self.functions.values()],
            "events": [e.describe() for e in self.listeners.values()],
            "timers": [t.describe() for t in self.timers.values()],
            "websockets": [w.describe() for w in self.websockets.values()],
            "tcp": [t.describe() for t in self.tcp.values()],
            "mqtt": [m.describe() for m in self.subscriptions.values()],
        }

    def clear(self) -> None:
        self.routes.clear()
        self.functions.clear()
        self.listeners.clear()
        for timer in self.timers.values():
            if timer.task is not None:
                timer.task.cancel()
        self.timers.clear()
        self.websockets.clear()
        for server in self.tcp.values():
            if server.server is not None:
                server.server.close()
        self.tcp.clear()
        self.subscriptions.clear()
        cleanups, self.cleanups = self.cleanups, []
        for cleanup in cleanups:
            try:
                cleanup()
            except Exception:  # noqa: BLE001 - one module's failure does not stop the others
                log.exception("a module's cleanup failed")

    def match_route(self, method: str, path: str) -> tuple[RouteSpec, dict[str, str]] | None:
        """Find the route for a concrete path (used for local test calls)."""
        method = method.upper()
        wanted = [s for s in path.split("?")[0].split("/") if s]
        best: tuple[int, RouteSpec, dict[str, str]] | None = None
        for spec in self.routes.values():
            if spec.method != method:
                continue
            segs = [s for s in spec.path.split("/") if s]
            if len(segs) != len(wanted):
                continue
            params: dict[str, str] = {}
            static = 0
            for pattern, actual in zip(segs, wanted, strict=True):
                m = _PARAM.match(pattern)
                if m:
                    params[m.group(1)] = actual
                elif pattern == actual:
                    static += 1
                else:
                    break
            else:
                if best is None or static > best[0]:
                    best = (static, spec, params)
        return None if best is None else (best[1], best[2])
