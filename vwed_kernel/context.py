"""What the parts of ``VWED`` share, handed to each of them when ``VWED`` builds them.

A module (``VWED.api``, ``VWED.timer``, ...) gets a :class:`Context`: the script's
:class:`~vwed_kernel.registrations.Registrations`, the :class:`Link` to the gateway
(registrations and log lines out, platform services in) and :meth:`Context.log`,
the line a module writes when something of the script's fails (a timer's tick, a
TCP handler). No module reaches into ``VWED`` itself.
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

from .errors import GatewayUnavailableError
from .registrations import Registrations

__all__ = ["Context", "Link", "DetachedLink"]


class Link:
    """What the ``VWED`` modules need from the outside world.

    This base is the detached behaviour (no gateway); ``bridge.GatewayLink`` is the
    kernel's end of the gateway's comm.
    """

    script_id: str | None = None
    replica: int = 0
    replicas: int = 1

    @property
    def attached(self) -> bool:
        return False

    def can_request(self) -> bool:
        return False

    def notify_register(self, kind: str, description: dict[str, Any]) -> None:
        """A route/function was registered (the gateway updates its routing table)."""

    def notify_unregister(self, kind: str, description: dict[str, Any]) -> None:
        """A route/function was removed."""

    def notify_log(self, level: str, tag: str, message: str) -> bool:
        """Send a structured log line; False when nobody is listening."""
        return False

    def request(self, service: str, payload: dict[str, Any], timeout: float | None = None) -> Any:
        raise GatewayUnavailableError(f"{service!r} needs a gateway, and none is attached")

    def notify(self, service: str, payload: dict[str, Any]) -> None:
        """Ask the gateway for a service without waiting for (or getting) an answer."""
        raise GatewayUnavailableError(f"{service!r} needs a gateway, and none is attached")

    async def arequest(
        self, service: str, payload: dict[str, Any], timeout: float | None = None
    ) -> Any:
        return self.request(service, payload, timeout)


class DetachedLink(Link):
    """No gateway: a plain notebook. Registrations stay local."""


class Context:
    """The registrations, the link and the log line of one ``VWED`` object."""

    def __init__(self, registrations: Registrations, link: Link) -> None:
        self.registrations = registrations
        self.link = link

    def log(self, level: str, tag: str, text: str) -> None:
        """One log line (``level`` already checked): sent to the gateway when one is
        attached, else printed with a time stamp (stderr for WARNING and ERROR)."""
        if not self.link.notify_log(level, tag, text):
            stamp = datetime.now().strftime("%H:%M:%S")
            stream = sys.stderr if level in ("WARNING", "ERROR") else sys.stdout
            print(f"{stamp} [{level}] {tag}: {text}", file=stream)
