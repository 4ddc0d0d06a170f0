"""Redaction: every secret value a kernel was given is written ``***`` in its log records.

Values are remembered per kernel (until it is gone) and per script id of the records
(a step's records carry its file's path), with the forms a value takes in a
traceback or a ``repr`` (quotes, newlines and backslashes escaped)."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["Redactor", "MASK"]

MASK = "***"
MAX_SCRIPTS = 4096  # script ids (one per run) whose values are kept; the oldest go first


MIN_LINE = 8  # a line of a multi-line value masked on its own from this length


def _forms(value: str) -> set[str]:
    forms = {value, repr(value)[1:-1], json.dumps(value)[1:-1]}
    # a multi-line value (a PEM key, JSON) printed line by line: each longer line too
    forms.update(line.strip() for line in value.splitlines() if len(line.strip()) >= MIN_LINE)
    return {f for f in forms if f}


class Redactor:
    def __init__(self) -> None:
        self._by_kernel: dict[str, set[str]] = {}
        self._by_script: dict[str, set[str]] = {}

    def given(self, kernel_id: str | None, script_id: str | None, value: str) -> None:
        """``value`` was handed to a kernel (for records of ``script_id`` too)."""
        forms = _forms(value)
        if not forms:
            return
        if kernel_id:
            self._by_kernel.setdefault(kernel_id, set()).update(forms)
        if script_id:
            if script_id not in self._by_script and len(self._by_script) >= MAX_SCRIPTS:
                del self._by_script[next(iter(self._by_script))]  # a long-gone run's
            self._by_script.setdefault(script_id, set()).update(forms)

    def kernel_gone(self, kernel_id: str) -> None:
        self._by_kernel.pop(kernel_id, None)

    def __bool__(self) -> bool:
        return bool(self._by_kernel or self._by_script)

    def redact(self, text: str, kernel_id: str | None = None, script_id: str | None = None) -> str:
        if not text or not (self._by_kernel or self._by_script):
            return text
        values = self._by_kernel.get(kernel_id or "", set()) | self._by_script.get(
            script_id or "", set()
        )
        if not values:
            return text
        for value in sorted(values, key=len, reverse=True):  # a longer value first
            if value in text:
                text = text.replace(value, MASK)
        return text

    def redact_error(self, exc: Any, kernel_id: str | None, script_id: str | None) -> None:
        """A ``GatewayError`` from a kernel's answer, redacted in place (its message, the
        server log's copy, and the string details: message, traceback, stdout, stderr)."""
        if not self:
            return
        exc.message = self.redact(exc.message, kernel_id, script_id)
        exc.args = (exc.message,)
        if exc.log_message:
            exc.log_message = self.redact(exc.log_message, kernel_id, script_id)
        for key, value in list(exc.details.items()):
            if isinstance(value, str):
                exc.details[key] = self.redact(value, kernel_id, script_id)
