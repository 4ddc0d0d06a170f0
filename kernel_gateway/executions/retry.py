"""Retries of a step: ``"retry": {"attempts": 3, "backoff": "exponential", "initial_s": 1,
"max_s": 30, "on": ["DeviceError", "TimeoutError"]}`` (the shape Windmill's retries
have: constant or exponential backoff, capped).

Which failures are retried: a step that raised (``STEP_FAILED``), that ran out of time
(``CALL_TIMEOUT``, matched by ``on`` as ``TimeoutError``), whose worker died
(``KERNEL_DIED``) or found no worker (``KERNEL_START_FAILED``, ``BUSY``). Never: a
cancel, a request the step refused (no such function, bad arguments, a result that is
not JSON) or a gateway-side refusal (no such file, packages not installed), since the
same request would fail the same way. With ``on``, only a step that raised one of
those exception types (or a subclass: the kernel sends the names of the exception's
bases) is retried, and a timeout only when ``on`` names ``TimeoutError``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..errors import BadRequest, GatewayError

__all__ = ["RetryPolicy", "parse_retry", "MAX_ATTEMPTS"]

MAX_ATTEMPTS = 20
MAX_DELAY = 3600.0
_RETRYABLE = frozenset(
    {"STEP_FAILED", "CALL_TIMEOUT", "KERNEL_DIED", "KERNEL_START_FAILED", "BUSY"}
)
_KEYS = frozenset({"attempts", "backoff", "initial_s", "max_s", "on"})


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 1
    backoff: str = "exponential"  # or "constant"
    initial_s: float = 1.0
    max_s: float = 30.0
    on: tuple[str, ...] | None = None

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if self.backoff == "constant":
            return min(self.initial_s, self.max_s)
        return min(self.initial_s * 2 ** (attempt - 1), self.max_s)

    def retries(self, error: GatewayError) -> bool:
        """Whether a failure like ``error`` is worth another attempt."""
        if error.code not in _RETRYABLE:
            return False
        if self.on is None:
            return True
        if error.code == "CALL_TIMEOUT":
            return "TimeoutError" in self.on
        if error.code != "STEP_FAILED":
            return False  # a worker that died or did not start: not an exception of the step
        names = error.details.get("bases") or [error.details.get("type")]
        return any(name in self.on for name in names)

    def public(self) -> dict[str, Any]:
        return {
            "attempts": self.attempts,
            "backoff": self.backoff,
            "initial_s": self.initial_s,
            "max_s": self.max_s,
            "on": None if self.on is None else list(self.on),
        }


def _bad(message: str) -> BadRequest:
    return BadRequest(f"'retry': {message}", "BAD_PARAMETER", details={"parameter": "retry"})


def _seconds(spec: dict[str, Any], name: str, default: float) -> float:
    value = spec.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(f"'{name}' must be a number of seconds")
    if not (math.isfinite(value) and 0 <= value <= MAX_DELAY):
        raise _bad(f"'{name}' must be between 0 and {MAX_DELAY:g} seconds")
    return float(value)


def parse_retry(spec: Any) -> RetryPolicy | None:
    """The policy of a request's ``retry`` field (None: one attempt); 400 on bad input."""
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise _bad('must be an object like {"attempts": 3, "backoff": "exponential"}')
    unknown = sorted(set(spec) - _KEYS)
    if unknown:
        raise _bad(f"unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(_KEYS))})")
    attempts = spec.get("attempts", 3)
    if isinstance(attempts, bool) or not isinstance(attempts, int):
        raise _bad("'attempts' must be a whole number")
    if not 1 <= attempts <= MAX_ATTEMPTS:
        raise _bad(f"'attempts' must be between 1 and {MAX_ATTEMPTS}")
    backoff = spec.get("backoff", "exponential")
    if backoff not in ("constant", "exponential"):
        raise _bad("'backoff' must be 'constant' or 'exponential'")
    initial = _seconds(spec, "initial_s", 1.0)
    maximum = _seconds(spec, "max_s", max(30.0, initial))
    if maximum < initial:
        raise _bad("'max_s' must not be less than 'initial_s'")
    on = spec.get("on")
    if on is not None:
        if not isinstance(on, list) or not all(isinstance(n, str) and n.isidentifier() for n in on):
            raise _bad("'on' must be a list of exception type names, like [\"DeviceError\"]")
        if not on or len(on) > 50:
            raise _bad("'on' must name 1 to 50 exception types (leave it out to retry any failure)")
    return RetryPolicy(attempts, backoff, initial, maximum, None if on is None else tuple(on))
