"""The ``result`` message that answers a call, and the ``send`` function of the
channel it goes back on (the comm, or the fast channel of ``fastpath.py``).

Shared by the call runner (``dispatch.py``) and the step runner (``steps.py``).
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from types import TracebackType
from typing import Any

from .debugsource import readable_traceback

__all__ = ["Send", "bases", "error_payload", "failure_text", "reply_ok", "reply_error"]

Send = Callable[[dict[str, Any], "list[bytes] | None"], None]


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _script_frames(tb: TracebackType | None) -> TracebackType | None:
    """The traceback from the first frame outside this package (the script's handler):
    the frames of the call machinery above it say nothing to the script's author. All
    of it when every frame is ours (an error of the machinery itself)."""
    start = tb
    while start is not None and start.tb_frame.f_code.co_filename.startswith(_PACKAGE):
        start = start.tb_next
    return start if start is not None else tb


def bases(cls: type) -> list[str]:
    """The names of ``cls`` and its bases, nearest first, without ``BaseException`` and
    ``object``: a retry rule's ``"on": ["OSError"]`` matches a ``ConnectionRefusedError``
    at the gateway, which never sees the class itself."""
    return [c.__name__ for c in cls.__mro__ if c is not BaseException and c is not object]


def error_payload(exc: BaseException, kind: str) -> dict[str, Any]:
    tb = "".join(traceback.format_exception(type(exc), exc, _script_frames(exc.__traceback__)))
    tb = readable_traceback(tb)  # the script's cells named by its path, not the debugger's
    payload = {
        "type": type(exc).__name__,
        "bases": bases(type(exc)),
        "message": str(exc),
        "traceback": tb,
        "kind": kind,
    }
    if getattr(exc, "exit_code", None) is not None:
        payload["exit_code"] = exc.exit_code  # type: ignore[attr-defined]
    return payload


def failure_text(what: str, exc: BaseException) -> str:
    """``"<what> raised <Type>: <message>"`` and the traceback from the script's frame:
    the text of the ERROR record of a failure that has no caller to answer (a timer's
    tick, a TCP handler)."""
    payload = error_payload(exc, "handler")
    return f"{what} raised {payload['type']}: {payload['message']}\n{payload['traceback'].rstrip()}"


def reply_ok(send: Send, call_id: str, fields: dict[str, Any], buffers: list[bytes]) -> None:
    send({"op": "result", "id": call_id, "ok": True, **fields}, buffers)


def reply_error(send: Send, call_id: str, exc: BaseException, kind: str) -> None:
    send({"op": "result", "id": call_id, "ok": False, "error": error_payload(exc, kind)}, None)
