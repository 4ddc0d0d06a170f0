"""Who follows a call as it runs: the progress a step reports (``VWED.progress``) and
the output it prints, delivered to the one listener of its call id (an asynchronous
execution, or a step sent over ``/script-engine/execute/ws``).

Fed from two places: the log hub hands over every record that belongs to a call
(``LogHub.on_call_record``: the step's stdout/stderr and ``VWED.log`` lines, secrets
already masked), and the kernel services hand over each ``progress`` op. Both are one
dictionary lookup when nobody follows the call."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

__all__ = ["CallWatchers", "Listener", "progress_event", "progress_text"]

log = logging.getLogger("kernel_gateway.executions")

# an event: {"type": "progress" | "output", ...} (docs/executions.md, "Events")
Listener = Callable[[dict[str, Any]], None]
_STREAMS = {"stdout": "stdout", "stderr": "stderr"}


def progress_event(data: dict[str, Any]) -> dict[str, Any]:
    """The public form of a ``progress`` op (already checked by the kernel services)."""
    return {
        "type": "progress",
        "fraction": data.get("fraction"),
        "done": data.get("done"),
        "total": data.get("total"),
        "message": data.get("message") or "",
        "ts": data.get("ts"),
    }


def progress_text(event: dict[str, Any]) -> str:
    """``"40% (2/5) row 2"``: a progress update as a log line."""
    parts = []
    if event.get("fraction") is not None:
        parts.append(f"{event['fraction'] * 100:.0f}%")
    if event.get("total") is not None:
        parts.append(f"({event.get('done'):g}/{event['total']:g})")
    if event.get("message"):
        parts.append(str(event["message"]))
    return " ".join(parts) or "progress"


class CallWatchers:
    """Listeners by call id; at most one per call."""

    def __init__(self) -> None:
        self._listeners: dict[str, Listener] = {}

    def __len__(self) -> int:
        return len(self._listeners)

    def add(self, call_id: str, listener: Listener) -> None:
        self._listeners[call_id] = listener

    def remove(self, call_id: str) -> None:
        self._listeners.pop(call_id, None)

    def record(self, record: dict[str, Any]) -> None:
        """A log record of a call (``LogHub.on_call_record``)."""
        listener = self._listeners.get(record.get("call_id") or "")
        if listener is None or record.get("tag") == "progress":
            return
        source = record.get("source")
        self._deliver(
            listener,
            {
                "type": "output",
                "stream": _STREAMS.get(str(source), "log"),
                "level": record.get("level"),
                "tag": record.get("tag") or "",
                "text": record.get("message", ""),
                "ts": record.get("ts"),
            },
        )

    def progress(self, call_id: str, data: dict[str, Any]) -> bool:
        """A progress update of ``call_id``; False when nobody follows that call."""
        listener = self._listeners.get(call_id)
        if listener is None:
            return False
        self._deliver(listener, progress_event(data))
        return True

    @staticmethod
    def _deliver(listener: Listener, event: dict[str, Any]) -> None:
        try:
            listener(event)
        except Exception:  # a listener's bug must not break logging or the kernel's ops
            log.exception("a call listener failed")
