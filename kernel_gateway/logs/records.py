"""Log records and the turning of kernel output into them.

A record is a dict ``{id, ts, script_id, run_id, level, source, tag, message,
call_id, task_id}``; ``level`` is one of DEBUG, INFO, WARNING, ERROR and
``source`` one of ``stdout``, ``stderr``, ``error``, ``vwed`` (``VWED.log``) and
``engine`` (lifecycle of the script, decided by the gateway).

Output lines: ipykernel sends stdout/stderr in chunks that may end in the middle
of a line; a partial line is kept until its end arrives (or the call that wrote
it is over, or half a second passed). The complete lines of one chunk make one
record (they are coalesced, not one record per line); a record's message is at
most ``MAX_MESSAGE_CHARS`` characters: longer output is split at line ends into
several records, and a single line longer than that is cut, the record saying
how many characters were left out. Nothing is dropped without a record saying so.
"""

from __future__ import annotations

import re
import time
from typing import Any

from ..store.models import LEVELS

__all__ = [
    "LEVELS",
    "MAX_MESSAGE_CHARS",
    "level_number",
    "StreamJoiner",
    "split_message",
    "strip_ansi",
]

MAX_MESSAGE_CHARS = 16 * 1024
PARTIAL_LINE_SECONDS = 0.5
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def level_number(name: str) -> int:
    """``"warning"`` -> 30; raises ``ValueError`` for an unknown level."""
    key = str(name).strip().upper()
    if key == "WARN":
        key = "WARNING"
    if key not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}")
    return LEVELS[key]


def split_message(text: str, limit: int = MAX_MESSAGE_CHARS) -> list[str]:
    """Split ``text`` into pieces of at most ``limit`` characters, at line ends;
    a line longer than ``limit`` is cut with a note of what was left out."""
    if len(text) <= limit:
        return [text]
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    for line in text.split("\n"):
        if len(line) > limit:
            cut = len(line) - limit + 64
            line = line[: limit - 64] + f" ... [{cut} characters cut]"
        if size + len(line) + 1 > limit and current:
            pieces.append("\n".join(current))
            current, size = [], 0
        current.append(line)
        size += len(line) + 1
    if current:
        pieces.append("\n".join(current))
    return pieces


class StreamJoiner:
    """Joins the chunks of one output stream (one kernel's stdout or stderr) into
    complete lines, per call (the chunk's parent message)."""

    def __init__(self) -> None:
        self._partial: dict[tuple[str, str | None], tuple[str, float]] = {}

    def feed(self, stream: str, parent: str | None, text: str) -> list[tuple[str | None, str]]:
        """Add a chunk; returns ``(parent, complete text)`` pieces ready to become records."""
        out: list[tuple[str | None, str]] = []
        # output of another call on the same stream ends this stream's partial line
        for key in [k for k in self._partial if k[0] == stream and k[1] != parent]:
            out.append((key[1], self._partial.pop(key)[0]))
        key = (stream, parent)
        before = self._partial.pop(key, ("", 0.0))[0]
        text = before + text
        head, sep, tail = text.rpartition("\n")
        if sep:
            out.append((parent, head))
        if tail:
            self._partial[key] = (tail, time.monotonic())
        return [(p, t) for p, t in out if t]

    def expired(self, max_age: float = PARTIAL_LINE_SECONDS) -> list[tuple[str, str | None, str]]:
        """Partial lines older than ``max_age``: ``(stream, parent, text)``, removed."""
        now = time.monotonic()
        old = [k for k, (_, t) in self._partial.items() if now - t >= max_age]
        return [(k[0], k[1], self._partial.pop(k)[0]) for k in old]

    def drain(self) -> list[tuple[str, str | None, str]]:
        items = [(k[0], k[1], v[0]) for k, v in self._partial.items()]
        self._partial.clear()
        return items


def make_record(
    record_id: int,
    script_id: str | None,
    run_id: int | None,
    level: str,
    source: str,
    tag: str,
    message: str,
    call_id: str | None,
    task_id: str | None,
) -> dict[str, Any]:
    return {
        "id": record_id,
        "ts": time.time(),
        "script_id": script_id,
        "run_id": run_id,
        "level": level,
        "source": source,
        "tag": tag,
        "message": message,
        "call_id": call_id,
        "task_id": task_id,
    }
