"""Logs: every iopub message of every script kernel, every ``VWED.log`` line and
every lifecycle event becomes a record, streamed to WebSocket subscribers,
stored in the database (DESIGN.md §4) and sent to the log sinks (``--log-sink``:
:mod:`.sinks`)."""

from .hub import LogHub
from .records import LEVELS, MAX_MESSAGE_CHARS, level_number
from .subscribers import LogFilter, Subscriber

__all__ = ["LogHub", "LogFilter", "Subscriber", "LEVELS", "MAX_MESSAGE_CHARS", "level_number"]
