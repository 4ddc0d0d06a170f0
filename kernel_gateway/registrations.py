"""What scripts register, as the gateway knows it: routes, functions, listeners,
timers, WebSockets and TCP ports of one script (``ScriptRegistrations``), parsed
from the snapshot a kernel sends after ``boot()``. (The table of all scripts'
registrations is ``registry.Registry``.)"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .errors import BadRequest

__all__ = [
    "RouteEntry",
    "FunctionEntry",
    "ListenerEntry",
    "ScriptRegistrations",
    "normalize_path",
    "parse_registrations",
    "route_entry",
    "function_entry",
    "listener_entry",
    "mqtt_entry",
    "METHODS",
]

_PARAM = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")


def normalize_path(path: str) -> str:
    p = "/" + str(path).strip().strip("/")
    if p == "/script-api" or p.startswith("/script-api/"):
        p = p[len("/script-api") :] or "/"
    return "/" + "/".join(s for s in p.split("/") if s)


@dataclass(frozen=True)
class RouteEntry:
    script_id: str
    method: str
    path: str
    description: str = ""
    segments: tuple[str, ...] = ()
    params: tuple[str | None, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def shape(self) -> str:
        """Without parameter names: ``/r/{id}`` and ``/r/{rid}`` match alike (a conflict)."""
        segs = ("{}" if p else s for s, p in zip(self.segments, self.params, strict=True))
        return f"{self.method} /" + "/".join(segs)

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "description": self.description,
            "script_id": self.script_id,
        }


@dataclass(frozen=True)
class FunctionEntry:
    script_id: str
    name: str
    description: str = ""
    params: tuple[Any, ...] = ()

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "params": list(self.params),
            "script_id": self.script_id,
        }


@dataclass(frozen=True)
class ListenerEntry:
    script_id: str
    id: str
    event: str
    priority: int = 1
    all_replicas: bool = False

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "event": self.event,
            "priority": self.priority,
            "all_replicas": self.all_replicas,
            "script_id": self.script_id,
        }


@dataclass
class ScriptRegistrations:
    """What one script registered, as the gateway knows it."""

    routes: dict[str, RouteEntry] = field(default_factory=dict)
    functions: dict[str, FunctionEntry] = field(default_factory=dict)
    listeners: dict[str, ListenerEntry] = field(default_factory=dict)
    timers: dict[str, dict[str, Any]] = field(default_factory=dict)
    websockets: dict[str, dict[str, Any]] = field(default_factory=dict)
    tcp: dict[str, dict[str, Any]] = field(default_factory=dict)
    mqtt: dict[str, dict[str, Any]] = field(default_factory=dict)  # VWED.mqtt subscriptions

    def counts(self) -> dict[str, int]:
        return {
            "apis": len(self.routes),
            "functions": len(self.functions),
            "events": len(self.listeners),
            "timers": len(self.timers),
            "websockets": len(self.websockets),
            "tcp": len(self.tcp),
            "mqtt": len(self.mqtt),
        }

    def describe(self) -> dict[str, list[dict[str, Any]]]:
        return {
            "apis": [r.describe() for r in self.routes.values()],
            "functions": [f.describe() for f in self.functions.values()],
            "events": [e.describe() for e in self.listeners.values()],
            "timers": list(self.timers.values()),
            "websockets": list(self.websockets.values()),
            "tcp": list(self.tcp.values()),
            "mqtt": list(self.mqtt.values()),
        }


def route_entry(script_id: str, item: dict[str, Any]) -> RouteEntry:
    method = str(item.get("method", "")).upper()
    if method not in METHODS:
        raise BadRequest(
            f"route method {item.get('method')!r} is not valid", "REGISTRATION_INVALID"
        )
    path = normalize_path(str(item.get("path", "")))
    segs = tuple(s for s in path.split("/") if s)
    params = tuple((m.group(1) if (m := _PARAM.match(s)) else None) for s in segs)
    return RouteEntry(script_id, method, path, str(item.get("description") or ""), segs, params)


def function_entry(script_id: str, item: dict[str, Any]) -> FunctionEntry:
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest("function name must be a non-empty string", "REGISTRATION_INVALID")
    return FunctionEntry(
        script_id, name, str(item.get("description") or ""), tuple(item.get("params") or ())
    )


def listener_entry(script_id: str, item: dict[str, Any]) -> ListenerEntry:
    event, lid = item.get("event"), item.get("id")
    if not isinstance(event, str) or not isinstance(lid, str):
        raise BadRequest("listener needs an event name and an id", "REGISTRATION_INVALID")
    priority = item.get("priority", 1)
    return ListenerEntry(
        script_id,
        lid,
        event,
        priority if isinstance(priority, int) else 1,
        bool(item.get("all_replicas")),
    )


def parse_registrations(script_id: str, snapshot: dict[str, Any]) -> ScriptRegistrations:
    regs = ScriptRegistrations()
    for item in snapshot.get("apis") or []:
        entry = route_entry(script_id, item)
        regs.routes[entry.key] = entry
    for item in snapshot.get("functions") or []:
        fentry = function_entry(script_id, item)
        regs.functions[fentry.name] = fentry
    for item in snapshot.get("events") or []:
        lentry = listener_entry(script_id, item)
        regs.listeners[lentry.id] = lentry
    for item in snapshot.get("timers") or []:
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            regs.timers[item["id"]] = {**item, "script_id": script_id}
    for item in snapshot.get("websockets") or []:
        path = normalize_path(str(item.get("path", "")))
        regs.websockets[path] = {"path": path, "script_id": script_id}
    for item in snapshot.get("tcp") or []:
        regs.tcp[str(item.get("port"))] = {"port": item.get("port"), "script_id": script_id}
    for item in snapshot.get("mqtt") or []:
        sub = mqtt_entry(script_id, item)
        if sub is not None:
            regs.mqtt[sub["id"]] = sub
    return regs


def mqtt_entry(script_id: str, item: Any) -> dict[str, Any] | None:
    """An MQTT subscription as the gateway lists it (the kernel's description, its
    fields checked: the kernel runs the script's code); None when malformed."""
    if not isinstance(item, dict) or not isinstance(item.get("id"), str):
        return None
    topic, qos = item.get("topic"), item.get("qos")
    if not isinstance(topic, str) or qos not in (0, 1, 2):
        return None
    return {
        "id": item["id"],
        "topic": topic,
        "qos": qos,
        "all_replicas": bool(item.get("all_replicas")),
        "active": bool(item.get("active", True)),
        "handler": str(item.get("handler") or ""),
        "script_id": script_id,
    }
