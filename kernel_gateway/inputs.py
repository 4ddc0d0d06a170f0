"""Checks of values that come from outside and steer the gateway itself.

A caller's ``timeout`` becomes an asyncio timer: NaN would corrupt the order of the
loop's timer heap (every comparison with it is false), ``Infinity`` or ``1e308``
would turn the deadline off, and a 400-digit integer overflows the conversion to a
float. So a timeout is a finite, positive number of seconds up to a configured
maximum (``--max-timeout``), or the request is a 400 ``BAD_PARAMETER`` at once.
"""

from __future__ import annotations

import math
from typing import Any

from .errors import BadRequest

__all__ = ["parse_timeout"]


def parse_timeout(value: Any, maximum: float, *, name: str = "timeout") -> float | None:
    """``value`` as seconds in (0, maximum]; None stays None (the default applies)."""
    if value is None:
        return None
    problem = ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        problem = f"must be a number of seconds, not {type(value).__name__}"
    else:
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
        if not (math.isfinite(seconds) and 0 < seconds <= maximum):
            problem = f"must be a finite number of seconds in (0, {maximum:g}]"
    if problem:
        raise BadRequest(f"'{name}' {problem}", "BAD_PARAMETER", details={"parameter": name})
    return seconds
