"""The routing table: which running script owns which route and function.

Registrations of a script (``registrations.py``) are committed atomically (all or
none) and removed together. Lookups are on the hot path: static routes are one
dict lookup, parameterised routes are matched segment by segment, static segments
winning.
"""

from __future__ import annotations

from typing import Any

from .errors import Conflict, MethodNotAllowed, NotFound
from .registrations import (
    METHODS,
    FunctionEntry,
    ListenerEntry,
    RouteEntry,
    ScriptRegistrations,
    listener_entry,
    mqtt_entry,
    normalize_path,
    parse_registrations,
)

__all__ = [
    "Registry",
    "RouteEntry",
    "FunctionEntry",
    "ListenerEntry",
    "ScriptRegistrations",
    "normalize_path",
]


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
        for key, route in regs.routes.items():
            owner = self._owner_of_route(route)
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
        if kind == "mqtt":
            sub = mqtt_entry(script_id, item)
            if sub is not None:
                regs.mqtt[sub["id"]] = sub
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
        elif kind == "mqtt":
            regs.mqtt.pop(str(item.get("id")), None)

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

    def _owner_of_route(self, route: RouteEntry) -> str | None:
        entry = self._static.get(route.key)
        if entry is not None:
            return entry.script_id
        for e in self._dynamic:
            if e.shape == route.shape:
                return e.script_id
        return None

    # -- lookups -------------------------------------------------------------------
    def route(
        self, method: str, path: str, *, shown: str | None = None, missing: str | None = None
    ) -> tuple[RouteEntry, dict[str, str]]:
        """The route for ``method path`` with its path parameters; 405 (with ``Allow``)
        when the path is registered for other methods only, else 404 ``ROUTE_NOT_FOUND``.
        ``shown`` is the path as the caller wrote it after ``/script-api``; ``missing``
        the 404's message."""
        found = self.match(method, path)
        if found is not None:
            return found
        shown = path if shown is None else shown
        allowed = self.methods_for(path)
        if allowed:
            raise MethodNotAllowed(
                f"{method} is not registered for /script-api{shown}",
                details={"allowed": allowed},
                headers={"Allow": ", ".join(allowed)},
            )
        raise NotFound(
            missing or f"no script registered {method} /script-api{shown}", "ROUTE_NOT_FOUND"
        )

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
