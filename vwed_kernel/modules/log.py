"""``VWED.log``: structured log lines with a level and a tag."""

from __future__ import annotations

from typing import Any

from ..context import Context

__all__ = ["LogModule", "LEVELS"]

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class LogModule:
    """``VWED.log.info("dispatch", "robot 7 sent to A-01")``.

    Attached to a gateway, each call is sent as a structured ``log`` message
    (level and tag kept, attributed to the call being served). In a plain
    notebook the line is printed.
    """

    def __init__(self, context: Context) -> None:
        self._context = context

    def log(self, level: str, tag: str, message: Any = None) -> None:
        """Log ``message`` at ``level`` (DEBUG, INFO, WARNING or ERROR) under ``tag``."""
        level = str(level).upper()
        if level == "WARN":
            level = "WARNING"
        if level not in LEVELS:
            raise ValueError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
        if message is None:
            tag, message = "script", tag
        text = message if isinstance(message, str) else repr(message)
        self._context.log(level, str(tag), text)

    def debug(self, tag: str, message: Any = None) -> None:
        """Log at DEBUG level."""
        self.log("DEBUG", tag, message)

    def info(self, tag: str, message: Any = None) -> None:
        """Log at INFO level."""
        self.log("INFO", tag, message)

    def warning(self, tag: str, message: Any = None) -> None:
        """Log at WARNING level."""
        self.log("WARNING", tag, message)

    warn = warning

    def error(self, tag: str, message: Any = None) -> None:
        """Log at ERROR level."""
        self.log("ERROR", tag, message)
