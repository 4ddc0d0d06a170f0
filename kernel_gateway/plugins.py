"""Gateway-side plugins: services kernels ask for, from the entry points of group
``vwed.services`` (docs/extending.md, "Gateway services").

A distribution declares, in its ``pyproject.toml``::

    [project.entry-points."vwed.services"]
    counter = "vwed_counter.service:CounterService"

and the gateway builds ``CounterService(context, "counter")`` once at start, the
way jupyter_client builds a kernel provisioner from its entry point. Its
:meth:`GatewayPlugin.services` names handlers; each is served to kernels as
``<plugin>:<service>`` (``counter:add``): the colon, which no built-in service
name has, keeps a plugin from replacing a built-in one (``event.emit``,
``secret.get``, ...). A module plugin asks for it with
``self.request("counter:add", {...})`` (vwed_kernel/plugin.py).

A plugin that fails to import, is not a :class:`GatewayPlugin`, raises while
built, names a bad service or takes a name another plugin has is an ERROR record in
the gateway's log naming it and its distribution; the gateway starts anyway.
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import logging
import re
import traceback
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import BadRequest, GatewayError

__all__ = [
    "GROUP",
    "GatewayPlugin",
    "PluginContext",
    "ServiceRequest",
    "ServiceError",
    "ServicePlugins",
    "LoadedService",
]

GROUP = "vwed.services"
log = logging.getLogger("kernel_gateway.plugins")
_PLUGIN_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_SERVICE_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class ServiceRequest:
    """What a plugin's handler receives: the JSON payload the kernel sent, and who
    sent it (the script may be ``None``: a step worker or a notebook's draft)."""

    payload: dict[str, Any]
    script_id: str | None
    kernel_id: str
    replica: int = 0


class ServiceError(GatewayError):
    """Raise it in a handler: the kernel's ``request`` raises ``RemoteCallError``
    with this message and ``code``."""

    status = 400
    code = "SERVICE_ERROR"


Handler = Callable[[ServiceRequest], Awaitable[Any]]
LogFunction = Callable[[str | None, str, str], None]


class PluginContext:
    """What the gateway hands a plugin: a way to write records in its log."""

    def __init__(self, name: str, log_function: LogFunction) -> None:
        self.name = name
        self._log = log_function

    def log(self, level: str, message: str, script_id: str | None = None) -> None:
        """A record in the gateway's log (the script's, given ``script_id``), naming
        the plugin; ``level``: DEBUG, INFO, WARNING or ERROR."""
        level = level.upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError(f"unknown log level {level!r}")
        self._log(script_id, level, f"[{self.name}] {message}")


class GatewayPlugin:
    """Subclass this; the entry point's name namespaces the services.

    - ``__init__(context, name)``: built once, when the gateway starts (no event
      loop work here: open connections lazily, in a handler);
    - :meth:`services`: ``{"add": self.add, ...}``, each an ``async def
      handler(request: ServiceRequest)`` returning a JSON-serializable value (the
      kernel's answer), or raising :class:`ServiceError`;
    - :meth:`close`: the gateway stops.
    """

    def __init__(self, context: PluginContext, name: str) -> None:
        self.context = context
        self.name = name

    def services(self) -> Mapping[str, Handler]:
        return {}

    async def close(self) -> None:
        """The gateway stops: close what the plugin opened."""


@dataclass
class LoadedService:
    """One plugin: its entry point, and what became of it."""

    name: str
    value: str
    distribution: str
    version: str
    plugin: GatewayPlugin | None = None
    services: list[str] = field(default_factory=list)
    error: str | None = None

    def describe(self) -> str:
        return f"{self.distribution} {self.version}, entry point {self.value}"


def _error_text(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


class ServicePlugins:
    """The gateway's service plugins, found once at start."""

    def __init__(self) -> None:
        self.plugins: dict[str, LoadedService] = {}
        self.failed: list[LoadedService] = []
        self.handlers: dict[str, Handler] = {}
        self._log: LogFunction = self._python_log
        self._unsaid: list[str] = []  # ERROR records made before the log was ready

    @staticmethod
    def _python_log(script_id: str | None, level: str, message: str) -> None:
        log.log(logging.getLevelName(level), "%s", message)

    def load(self, taken: set[str] | frozenset[str] = frozenset()) -> None:
        """Find and build every plugin of the group; ``taken``: the built-in service
        names (none has a colon; checked anyway)."""
        try:
            points = list(metadata.entry_points(group=GROUP))
        except Exception as exc:  # noqa: BLE001 - a broken dist-info elsewhere
            self._error(f"service plugins could not be listed: {_error_text(exc)}")
            return
        for ep in points:
            dist = getattr(ep, "dist", None)
            entry = LoadedService(
                ep.name,
                ep.value,
                str(dist.metadata["Name"]) if dist is not None else "?",
                str(dist.version) if dist is not None else "?",
            )
            problem = self._build(ep, entry, taken)
            if problem is not None:
                entry.error = problem
                entry.plugin = None
                self.failed.append(entry)
                self._error(f"service plugin {entry.name!r} ({entry.describe()}) {problem}")
            else:
                self.plugins[entry.name] = entry

    def _build(self, ep: Any, entry: LoadedService, taken: set[str] | frozenset[str]) -> str | None:
        """None when built and its services registered; else what went wrong."""
        if not _PLUGIN_NAME.match(entry.name):
            return "was not loaded: its name must be lower case letters, digits and '_'"
        other = self.plugins.get(entry.name)
        if other is not None:
            return f"was not loaded: the name is taken by the plugin of {other.distribution}"
        try:
            cls = ep.load()
        except BaseException as exc:  # noqa: BLE001 - SystemExit in an import too
            return f"was not loaded: import failed: {_error_text(exc)}"
        if not (isinstance(cls, type) and issubclass(cls, GatewayPlugin)):
            return (
                f"was not loaded: {entry.value} is not a subclass of "
                "kernel_gateway.plugins.GatewayPlugin"
            )
        context = PluginContext(entry.name, lambda *args: self._log(*args))
        try:
            plugin = cls(context, entry.name)
            services = dict(plugin.services())
        except BaseException as exc:  # noqa: BLE001
            return f"was not loaded: building it failed: {_error_text(exc)}"
        handlers: dict[str, Handler] = {}
        for service, handler in services.items():
            key = f"{entry.name}:{service}"
            if not isinstance(service, str) or not _SERVICE_NAME.match(service):
                return f"was not loaded: service name {service!r} is not valid"
            if not callable(handler):
                return f"was not loaded: service {service!r} is not callable"
            if key in taken:
                return f"was not loaded: service {key!r} is built in"
            handlers[key] = handler
        entry.plugin = plugin
        entry.services = sorted(handlers)
        self.handlers.update(handlers)
        return None

    def _error(self, message: str) -> None:
        self._unsaid.append(message)
        log.error("%s", message)

    def attach_log(self, log_function: LogFunction) -> None:
        """The gateway's log is open: the plugins' records go there from now on, the
        load failures first (as ERROR records)."""
        self._log = log_function
        unsaid, self._unsaid = self._unsaid, []
        for message in unsaid:
            log_function(None, "ERROR", message)

    def kernel_service(self, key: str) -> Callable[[Any, dict[str, Any]], Awaitable[bytes]]:
        """``handler`` as a service of the gateway's table (kernel_services.py): it
        gets who asked, and its answer is JSON."""
        handler = self.handlers[key]

        async def serve(kernel: Any, payload: dict[str, Any]) -> bytes:
            if not isinstance(payload, dict):
                raise BadRequest(f"{key}: the payload must be a JSON object", "BAD_REQUEST")
            request = ServiceRequest(
                payload,
                getattr(kernel, "script_id", None),
                str(getattr(kernel, "kernel_id", "")),
                int(getattr(kernel, "replica", 0) or 0),
            )
            value = await handler(request)
            try:
                return json.dumps(value).encode()
            except (TypeError, ValueError) as exc:
                raise ServiceError(
                    f"{key} answered a value that is not JSON: {exc}", "RESULT_NOT_SERIALIZABLE"
                ) from None

        return serve

    async def close(self) -> None:
        for entry in self.plugins.values():
            if entry.plugin is None:
                continue
            try:
                await entry.plugin.close()
            except Exception:  # noqa: BLE001 - the others still close
                log.exception("service plugin %r: close() failed", entry.name)

    def describe(self) -> list[dict[str, Any]]:
        rows = []
        for entry in [*self.plugins.values(), *self.failed]:
            rows.append(
                {
                    "name": entry.name,
                    "distribution": entry.distribution,
                    "version": entry.version,
                    "entry_point": entry.value,
                    "loads": entry.error is None,
                    "services": entry.services,
                    "error": entry.error,
                }
            )
        return rows
