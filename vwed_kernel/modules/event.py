"""``VWED.event``: events between scripts, and from task flows."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..calling import call_event_handler, run_to_completion
from ..errors import RegistrationError
from ..registrations import ListenerSpec, check_name
from ..replies import failure_text

if TYPE_CHECKING:
    from ..context import Context

__all__ = ["EventModule"]


class EventModule:
    """Listen to and emit named events.

    An event emitted by any script (or by a task flow with
    ``POST /script-engine/events/{name}``) reaches every listener of every running
    script, higher ``priority`` first. A failing listener is logged and does not
    stop the others. For a script with replicas, an event reaches one replica,
    unless the listener was registered with ``all_replicas=True``.

    The handler receives the event's data (or ``(event_name, data)`` if it takes
    two parameters, or nothing if it takes none).
    """

    def __init__(self, context: Context) -> None:
        self._context = context
        self._ids = itertools.count(1)

    def listen(
        self,
        event_name: str,
        handler: Callable[..., Any] | None = None,
        priority: int = 1,
        all_replicas: bool = False,
    ) -> Any:
        """Call ``handler`` when ``event_name`` is emitted; returns the listener id.
        Without a handler, returns a decorator."""
        check_name("event", event_name)
        if handler is None:
            return lambda h: (self.listen(event_name, h, priority, all_replicas), h)[1]
        if not callable(handler):
            raise RegistrationError(f"listener of {event_name!r} is not callable")
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise RegistrationError("priority must be an integer (higher runs first)")
        spec = ListenerSpec(
            f"{event_name}#{next(self._ids)}", event_name, handler, priority, bool(all_replicas)
        )
        self._context.registrations.listeners[spec.id] = spec
        self._context.link.notify_register("event", spec.describe())
        return spec.id

    def unlisten(self, event_name: str, handler: Callable[..., Any] | str | None = None) -> int:
        """Remove the listeners of ``event_name`` (all, or those of ``handler``, or the one
        with that listener id); returns how many were removed."""
        listeners = self._context.registrations.listeners
        gone = [
            s
            for s in listeners.values()
            if s.event == event_name
            and (handler is None or s.handler is handler or s.id == handler)
        ]
        for spec in gone:
            del listeners[spec.id]
            self._context.link.notify_unregister("event", spec.describe())
        return len(gone)

    def clear_all(self) -> int:
        """Remove every listener of this script, of every event (here and at the gateway);
        returns how many were removed."""
        listeners = self._context.registrations.listeners
        ids = list(listeners)
        for listener_id in ids:
            spec = listeners.pop(listener_id, None)
            if spec is not None:
                self._context.link.notify_unregister("event", spec.describe())
        return len(ids)

    def emit(self, event_name: str, data: Any = None) -> dict[str, Any] | None:
        """Emit an event to every listener of every running script.

        Attached to a gateway, delivery is asynchronous (the listeners run after
        this returns, possibly in this very kernel) and this returns ``None``; use
        ``await VWED.event.aemit(...)`` to wait for the delivery report. In a plain
        notebook, this kernel's listeners run now and the report is returned.
        """
        check_name("event", event_name)
        link = self._context.link
        if link.attached:
            link.notify("event.emit", {"name": event_name, "data": data})
            return None
        return self._local(event_name, data)

    async def aemit(self, event_name: str, data: Any = None) -> dict[str, Any]:
        """Emit and wait for the report ``{"listeners", "delivered", "failed"}``."""
        check_name("event", event_name)
        link = self._context.link
        if link.attached:
            return dict(
                await link.arequest("event.emit", {"name": event_name, "data": data, "wait": True})
            )
        return self._local(event_name, data)

    def _local(self, event_name: str, data: Any) -> dict[str, Any]:
        specs = sorted(
            (s for s in self._context.registrations.listeners.values() if s.event == event_name),
            key=lambda s: -s.priority,
        )
        failed = []
        for spec in specs:
            try:
                run_to_completion(call_event_handler(spec.handler, event_name, data))
            except Exception as exc:
                failed.append(
                    {"listener": spec.id, "type": type(exc).__name__, "message": str(exc)}
                )
                self._context.log("ERROR", "listener", failure_text(f"listener {spec.id}", exc))
        return {
            "event": event_name,
            "listeners": len(specs),
            "delivered": len(specs) - len(failed),
            "failed": failed,
        }

    def list(self) -> list[dict[str, Any]]:
        """This script's listeners."""
        return [s.describe() for s in self._context.registrations.listeners.values()]
