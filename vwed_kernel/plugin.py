"""The base class of a ``VWED`` module plugin (entry-point group ``vwed.modules``).

A distribution installed where the kernel runs declares, in its ``pyproject.toml``::

    [project.entry-points."vwed.modules"]
    counter = "vwed_counter:CounterModule"

and every script kernel then has ``VWED.counter``: an instance of that class, built
once per kernel with the kernel's :class:`~vwed_kernel.context.Context`, the way
jupyter_client builds a kernel provisioner from its entry point. docs/extending.md
shows a whole plugin (``plugins/vwed-counter``).

What a module receives, what it may do and what it must undo:

- ``self.context.registrations``: the script's routes, functions, listeners, timers;
  a module that registers something of its own puts a cleanup on
  ``registrations.on_clear`` (it runs when the script stops or reloads);
- ``self.request(service, payload)`` / ``await self.arequest(...)``: ask the gateway
  for a service (a gateway-side plugin registers services under the entry-point
  group ``vwed.services``); ``GatewayUnavailableError`` in a plain notebook;
- ``self.log(level, message)``: a record in the script's log, tagged with the module's
  name;
- :meth:`stop`: called when the script stops or reloads (the registrations are
  cleared): close connections, stop threads. The kernel may also just exit.
"""

from __future__ import annotations

from typing import Any

from .context import Context

__all__ = ["VwedModule"]


class VwedModule:
    """Subclass this; the entry point's name becomes ``VWED.<name>``."""

    def __init__(self, context: Context, name: str) -> None:
        self.context = context
        self.name = name

    @property
    def script_id(self) -> str | None:
        return self.context.link.script_id

    @property
    def replica(self) -> int:
        return self.context.link.replica

    def log(self, level: str, message: str) -> None:
        """One record in the script's log, tagged with the module's name."""
        level = level.upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError(f"unknown log level {level!r}")
        self.context.log(level, self.name, message)

    def request(self, service: str, payload: dict[str, Any], timeout: float | None = None) -> Any:
        """Ask the gateway for ``service`` and wait for its JSON answer."""
        return self.context.link.request(service, payload, timeout)

    async def arequest(
        self, service: str, payload: dict[str, Any], timeout: float | None = None
    ) -> Any:
        """``await`` form of :meth:`request`."""
        return await self.context.link.arequest(service, payload, timeout)

    def stop(self) -> None:
        """The script stops or reloads: undo what :meth:`__init__` and the script's
        calls started. The default does nothing."""
