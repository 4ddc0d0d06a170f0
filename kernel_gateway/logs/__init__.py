"""Logs: every iopub message of every script kernel, every ``VWED.log`` line and
every lifecycle event becomes a record, streamed to WebSocket subscribers and
stored in the database (DESIGN.md §4)."""

from .hub import LogHub
from .records import LEVELS, MAX_MESSAGE_CHARS, level_number
from .subscribers import LogFilter, Subscriber

__all__ = ["LogHub", "LogFilter", "Subscriber", "LEVELS", "MAX_MESSAGE_CHARS", "level_number"]
