"""Kernel output to log records.

Every iopub ``stream`` and ``error`` message of a script kernel, every
``VWED.log`` line and every lifecycle event of the engine becomes a record
``{ts, script_id, level, source, tag, message, call_msg_id}``. Records go to the
gateway's Python log (logger ``vwed.script``) and to a bounded in-memory ring.
"""

from __future__ import annotations

import logging
import re
import time
from collections import deque
from typing import Any

__all__ = ["LogHub"]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING,
           "ERROR": logging.ERROR}
MAX_MESSAGE = 64 * 1024


class LogHub:
    def __init__(self, capacity: int = 10_000) -> None:
        self.records: deque[dict[str, Any]] = deque(maxlen=capacity)
        self._py = logging.getLogger("vwed.script")

    def emit(self, script_id: str | None, level: str, source: str, tag: str, message: str,
             call_msg_id: str | None = None) -> None:
        if len(message) > MAX_MESSAGE:
            message = message[:MAX_MESSAGE] + f"... [truncated, {len(message)} chars]"
        record = {"ts": time.time(), "script_id": script_id, "level": level, "source": source,
                  "tag": tag, "message": message, "call_msg_id": call_msg_id}
        self.records.append(record)
        self._py.log(_LEVELS.get(level, logging.INFO), "[%s] %s%s", script_id or "-",
                     f"{tag}: " if tag else "", message)

    def engine(self, script_id: str | None, level: str, message: str) -> None:
        self.emit(script_id, level, "engine", "engine", message)

    def structured(self, script_id: str | None, data: dict[str, Any]) -> None:
        level = str(data.get("level", "INFO")).upper()
        self.emit(script_id, level if level in _LEVELS else "INFO", "vwed",
                  str(data.get("tag", "")), str(data.get("message", "")))

    def on_iopub(self, kernel: Any, msg: dict[str, Any]) -> None:
        kind = msg.get("msg_type")
        content = msg.get("content", {})
        parent = (msg.get("parent_header") or {}).get("msg_id")
        if kind == "stream":
            level = "WARNING" if content.get("name") == "stderr" else "INFO"
            text = str(content.get("text", "")).rstrip("\n")
            if text:
                self.emit(kernel.script_id, level, content.get("name", "stdout"), "", text, parent)
        elif kind == "error":
            tb = _ANSI.sub("", "\n".join(content.get("traceback") or []))
            self.emit(kernel.script_id, "ERROR", "error", "",
                      tb or f"{content.get('ename')}: {content.get('evalue')}", parent)
