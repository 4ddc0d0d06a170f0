"""The ``result`` message that answers a call, and the ``send`` function of the
channel it goes back on (the comm, or the fast channel of ``fastpath.py``).

Shared by the call runner (``dispatch.py``) and the step runner (``steps.py``).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

__all__ = ["Send", "error_payload", "reply_ok", "reply_error"]

Send = Callable[[dict[str, Any], "list[bytes] | None"], None]


def error_payload(exc: BaseException, kind: str) -> dict[str, Any]:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    payload = {"type": type(exc).__name__, "message": str(exc), "traceback": tb, "kind": kind}
    if getattr(exc, "exit_code", None) is not None:
        payload["exit_code"] = exc.exit_code  # type: ignore[attr-defined]
    return payload


def reply_ok(send: Send, call_id: str, fields: dict[str, Any], buffers: list[bytes]) -> None:
    send({"op": "result", "id": call_id, "ok": True, **fields}, buffers)


def reply_error(send: Send, call_id: str, exc: BaseException, kind: str) -> None:
    send({"op": "result", "id": call_id, "ok": False, "error": error_payload(exc, kind)}, None)
