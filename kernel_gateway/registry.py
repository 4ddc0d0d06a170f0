"""The routing table: which running script owns which route and function.

Registrations of a script are committed atomically (all or none) and removed
together. Lookups are on the hot path: static routes are one dict lookup,
parameterised routes are matched segment by segment, static segments winning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .errors import BadRequest, Conflict

__all__ = [
    "Registry",
    "RouteEntry",
    "FunctionEntry",
    "ListenerEntry",
    "ScriptRegistrations",
    "normalize_path",
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

    def counts(self) -> dict[str, int]:
        return {
            "apis": len(self.routes),
            "functions": len(self.functions),
            "events": len(self.listeners),
            "timers": len(self.timers),
            "websockets": len(self.websockets),
            "tcp": len(self.tcp),
        }

    def describe(self) -> dict[str, list[dict[str, Any]]]:
        return {
            "apis": [r.describe() for r in self.routes.values()],
            "functions": [f.describe() for f in self.functions.values()],
            "events": [e.describe() for e in self.listeners.values()],
            "timers": list(self.timers.values()),
            "websockets": list(self.websockets.values()),
            "tcp": list(self.tcp.values()),
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
    return regs


class Registry:
    """All scripts' routes and functions."""

    def __init__(self) -> None:
        self._scripts: dict[str, ScriptRegistrations] = {}
        self._static: dict[str, RouteEntry] = {}  # "METHOD /path" -> entry
        self._dynamic: list[RouteEntry] = []
        self._functions: dict[str, FunctionEntry] = {}
        self._listeners: dict[str, list[ListenerEntry]] = {}
        self._websockets: dict[str, str] = {}  # path -> script_id
        self._tcp: dict[str, str] = {}  # port -> script_id

    # -- changes --------------------------------------------------------------------
    def conflicts(self, script_id: str, regs: ScriptRegistrations) -> list[dict[str, str]]:
        found = []
        for key in regs.routes:
            owner = self._owner_of_route(key)
            if owner is not None and owner != script_id:
                found.append({"kind": "api", "name": key, "owner": owner})
        for name in regs.functions:
            fe = self._functions.get(name)
            if fe is not None and fe.script_id != script_id:
                found.append({"kind": "function", "name": name, "owner": fe.script_id})
        for kind, mine, taken in (
            ("websocket", regs.websockets, self._websockets),
            ("tcp", regs.tcp, self._tcp),
        ):
            for key in mine:
                owner = taken.get(key)
                if owner is not None and owner != script_id:
                    found.append({"kind": kind, "name": key, "owner": owner})
        return found

    def commit(self, script_id: str, regs: ScriptRegistrations) -> None:
        """Install all of a script's registrations, or none (409 on a conflict)."""
        clashes = self.conflicts(script_id, regs)
        if clashes:
            first = clashes[0]
            raise Conflict(
                f"{first['kind']} {first['name']!r} is already registered by script {first['owner']}",
                "REGISTRATION_CONFLICT",
                details={"owner": first["owner"], "conflicts": clashes},
            )
        self.remove(script_id)
        self._scripts[script_id] = regs
        for entry in regs.routes.values():
            self._add_route(entry)
        self._functions.update(regs.functions)
        for lentry in regs.listeners.values():
            self._add_listener(lentry)
        self._websockets.update({p: script_id for p in regs.websockets})
        self._tcp.update({p: script_id for p in regs.tcp})

    def _add_listener(self, entry: ListenerEntry) -> None:
        group = self._listeners.setdefault(entry.event, [])
        group.append(entry)
        group.sort(key=lambda e: -e.priority)  # stable: same priority keeps its order

    def _drop_listener(self, entry: ListenerEntry) -> None:
        group = self._listeners.get(entry.event, [])
        if entry in group:
            group.remove(entry)
        if not group:
            self._listeners.pop(entry.event, None)

    def listeners(self, event: str) -> list[ListenerEntry]:
        """The listeners of ``event``, higher priority first."""
        return list(self._listeners.get(event, ()))

    def add_one(self, script_id: str, kind: str, item: dict[str, Any]) -> None:
        """A registration made after boot (from a running script)."""
        regs = self._scripts.get(script_id)
        if regs is None:
            return
        if kind == "event":
            lentry = listener_entry(script_id, item)
            if lentry.id in regs.listeners:
                self._drop_listener(regs.listeners[lentry.id])
            regs.listeners[lentry.id] = lentry
            self._add_listener(lentry)
            return
        if kind == "timer":
            if isinstance(item.get("id"), str):
                regs.timers[item["id"]] = {**item, "script_id": script_id}
            return
        if kind in ("websocket", "tcp"):
            extra_regs = parse_registrations(
                script_id, {"websockets" if kind == "websocket" else "tcp": [item]}
            )
            clashes = self.conflicts(script_id, extra_regs)
            if clashes:
                raise Conflict(
                    f"{kind} {clashes[0]['name']!r} is owned by {clashes[0]['owner']}",
                    "REGISTRATION_CONFLICT",
                )
            regs.websockets.update(extra_regs.websockets)
            regs.tcp.update(extra_regs.tcp)
            self._websockets.update({p: script_id for p in extra_regs.websockets})
            self._tcp.update({p: script_id for p in extra_regs.tcp})
            return
        extra = parse_registrations(script_id, {"apis" if kind == "api" else "functions": [item]})
        clashes = self.conflicts(script_id, extra)
        if clashes:
            raise Conflict(
                f"{clashes[0]['kind']} {clashes[0]['name']!r} is owned by {clashes[0]['owner']}",
                "REGISTRATION_CONFLICT",
            )
        for key, entry in extra.routes.items():
            if key in regs.routes:
                self._drop_route(regs.routes[key])
            regs.routes[key] = entry
            self._add_route(entry)
        for name, fentry in extra.functions.items():
            regs.functions[name] = fentry
            self._functions[name] = fentry

    def remove_one(self, script_id: str, kind: str, item: dict[str, Any]) -> None:
        regs = self._scripts.get(script_id)
        if regs is None:
            return
        if kind == "api":
            key = (
                f"{str(item.get('method', '')).upper()} {normalize_path(str(item.get('path', '')))}"
            )
            entry = regs.routes.pop(key, None)
            if entry is not None:
                self._drop_route(entry)
        elif kind == "function":
            name = str(item.get("name"))
            if regs.functions.pop(name, None) is not None:
                self._functions.pop(name, None)
        elif kind == "event":
            lentry = regs.listeners.pop(str(item.get("id")), None)
            if lentry is not None:
                self._drop_listener(lentry)
        elif kind == "timer":
            regs.timers.pop(str(item.get("id")), None)

    def remove(self, script_id: str) -> ScriptRegistrations | None:
        """Remove everything a script registered."""
        regs = self._scripts.pop(script_id, None)
        if regs is None:
            return None
        for entry in regs.routes.values():
            self._drop_route(entry)
        for name, fe in regs.functions.items():
            if self._functions.get(name) is fe:
                del self._functions[name]
        for lentry in regs.listeners.values():
            self._drop_listener(lentry)
        for key in regs.websockets:
            if self._websockets.get(key) == script_id:
                del self._websockets[key]
        for key in regs.tcp:
            if self._tcp.get(key) == script_id:
                del self._tcp[key]
        return regs

    def websocket(self, path: str) -> str | None:
        """The script serving WebSocket ``path``."""
        return self._websockets.get(path)

    def _add_route(self, entry: RouteEntry) -> None:
        if any(entry.params):
            self._dynamic.append(entry)
            # more static segments first, so /robots/status wins over /robots/{id}
            self._dynamic.sort(key=lambda e: (len(e.segments), -sum(p is None for p in e.params)))
        else:
            self._static[entry.key] = entry

    def _drop_route(self, entry: RouteEntry) -> None:
        if self._static.get(entry.key) is entry:
            del self._static[entry.key]
        elif entry in self._dynamic:
            self._dynamic.remove(entry)

    def _owner_of_route(self, key: str) -> str | None:
        entry = self._static.get(key)
        if entry is not None:
            return entry.script_id
        for e in self._dynamic:
            if e.key == key:
                return e.script_id
        return None

    # -- lookups -------------------------------------------------------------------
    def match(self, method: str, path: str) -> tuple[RouteEntry, dict[str, str]] | None:
        """The route for ``method path``, with its path parameters."""
        entry = self._static.get(f"{method} {path}")
        if entry is not None:
            return entry, {}
        if not self._dynamic:
            return None
        segs = [s for s in path.split("/") if s]
        for e in self._dynamic:
            if e.method != method or len(e.segments) != len(segs):
                continue
            params: dict[str, str] = {}
            for pattern, name, actual in zip(e.segments, e.params, segs, strict=True):
                if name is not None:
                    params[name] = actual
                elif pattern != actual:
                    break
            else:
                return e, params
        return None

    def methods_for(self, path: str) -> list[str]:
        """Methods registered for a path (to tell 404 from 405)."""
        return sorted({m for m in METHODS if self.match(m, path) is not None})

    def function(self, name: str) -> FunctionEntry | None:
        return self._functions.get(name)

    def functions(self) -> list[FunctionEntry]:
        return sorted(self._functions.values(), key=lambda f: f.name)

    def of(self, script_id: str) -> ScriptRegistrations | None:
        return self._scripts.get(script_id)
