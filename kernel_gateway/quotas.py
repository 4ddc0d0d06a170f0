"""Calls-per-minute quotas of scripts (docs/security.md, "Quotas").

A script started with ``"rate_limit": {"calls_per_minute": N, "burst": M}`` (or under
the gateway's ``--rate-limit N`` default) gets one :class:`TokenBucket`, shared by its
replicas: it holds at most M calls and refills at N per minute. Every call into the
script takes one token where it is routed (``routing.CallRouter._call``: routes,
function calls from task flows and from other scripts, WebSocket messages; and
``steps.StepService``: steps of the script's file); with none left the call is refused
at once with 429 ``RATE_LIMITED`` and ``Retry-After`` (whole seconds, rounded up), and
counted (``vwed_rate_limited``). The check is a few float operations on the event loop
(one thread: no lock).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import BadRequest, GatewayError, RateLimited

if TYPE_CHECKING:
    from .engine import ScriptTable
    from .scripts import ScriptStore

__all__ = [
    "RateLimit",
    "TokenBucket",
    "StepLimits",
    "parse_rate_limit",
    "rate_limited",
    "MAX_CALLS_PER_MINUTE",
]

MAX_CALLS_PER_MINUTE = 1_000_000_000
_FIELDS = ("calls_per_minute", "burst")
_STEP_BUCKETS = 10_000  # step files with a bucket of the default at most (then forgotten)


@dataclass(frozen=True)
class RateLimit:
    """At most ``burst`` calls in a row, refilled at ``calls_per_minute``."""

    calls_per_minute: int
    burst: int

    def to_json(self) -> dict[str, int]:
        return {"calls_per_minute": self.calls_per_minute, "burst": self.burst}

    def bucket(self) -> TokenBucket:
        return TokenBucket(self)


class TokenBucket:
    """The tokens of one script: ``take()`` one per call."""

    __slots__ = ("limit", "rate", "capacity", "tokens", "stamp")

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self.rate = limit.calls_per_minute / 60.0  # tokens per second
        self.capacity = float(limit.burst)
        self.tokens = self.capacity  # a fresh start may take a whole burst
        self.stamp = time.monotonic()

    def take(self) -> float:
        """Take a token: 0.0 if there was one, else the seconds until there is one."""
        now = time.monotonic()
        tokens = self.tokens + (now - self.stamp) * self.rate
        if tokens > self.capacity:
            tokens = self.capacity
        self.stamp = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return 0.0
        self.tokens = tokens
        return (1.0 - tokens) / self.rate


def parse_rate_limit(value: Any, where: str = "'rate_limit'") -> RateLimit | None:
    """A ``rate_limit`` object of a start body, checked (400 ``BAD_RATE_LIMIT``).
    ``calls_per_minute`` 0 is "no limit" (it turns the gateway's default off for this
    script): returns None then. ``burst`` defaults to ``calls_per_minute`` (a minute's
    worth at once)."""
    if not isinstance(value, dict):
        raise _bad(f"{where} must be an object like {{'calls_per_minute': 60, 'burst': 10}}")
    unknown = sorted(str(k) for k in value if k not in _FIELDS)
    if unknown:
        raise _bad(
            f"unknown field(s) {', '.join(map(repr, unknown))} in {where} "
            f"(known: {', '.join(_FIELDS)})"
        )
    if "calls_per_minute" not in value:
        raise _bad(f"{where} needs 'calls_per_minute' (0: no limit)")
    per_minute = _whole(value["calls_per_minute"], f"{where}.calls_per_minute", 0)
    if per_minute == 0:
        if value.get("burst") is not None:
            _whole(value["burst"], f"{where}.burst", 1)
        return None
    burst = value.get("burst")
    burst = per_minute if burst is None else _whole(burst, f"{where}.burst", 1)
    return RateLimit(per_minute, burst)


def _whole(value: Any, name: str, least: int) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not least <= value <= MAX_CALLS_PER_MINUTE
    ):
        raise _bad(f"{name} must be a whole number from {least} to {MAX_CALLS_PER_MINUTE}")
    return value


def _bad(message: str) -> BadRequest:
    return BadRequest(message, "BAD_RATE_LIMIT")


def rate_limited(who: str, limit: RateLimit, wait: float, script_id: str | None) -> RateLimited:
    """The 429 of a call refused by ``limit`` (``wait``: seconds until a token)."""
    seconds = max(1, math.ceil(wait))
    return RateLimited(
        f"script {who} is over its rate limit of {limit.calls_per_minute} calls per minute "
        f"(burst {limit.burst}); try again in {seconds} s",
        headers={"Retry-After": str(seconds)},
        details={
            "script_id": script_id,
            "retry_after": seconds,
            "rate_limit": limit.to_json(),
        },
    )


class StepLimits:
    """The bucket a step of a file takes from: the running script's of that file (its
    calls and its steps share one), else one of the gateway's default per file."""

    def __init__(
        self,
        scripts: ScriptTable,
        store: ScriptStore,
        default: RateLimit | None,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        self.scripts = scripts
        self.store = store
        self.default = default
        self.on_refused = on_refused  # counts a refusal (metrics), by script path
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def admit(self, script_path: str) -> None:
        """Take a token for a step of ``script_path`` or raise 429 ``RATE_LIMITED``.
        A path that does not resolve is left to the step itself (its own 4xx)."""
        if self.default is None and not any(s.bucket for s in self.scripts.running()):
            return  # no limit anywhere: not even the path is resolved
        try:
            resolved = self.store.resolve(script_path)
            rel = self.store.relative(resolved)
        except GatewayError:
            return
        script = self.scripts.at(rel)
        if script is not None:
            bucket, script_id = script.bucket, script.script_id
        elif self.default is not None:
            bucket, script_id = self._buckets.get(rel), None
            if bucket is None:
                if not resolved.is_file():
                    return  # the step answers 404 itself; no bucket for a made-up path
                bucket = self._buckets[rel] = self.default.bucket()
                while len(self._buckets) > _STEP_BUCKETS:  # the least recently used goes
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(rel)
        else:
            return
        if bucket is None:
            return
        wait = bucket.take()
        if wait:
            if self.on_refused is not None:
                self.on_refused(rel)
            raise rate_limited(rel, bucket.limit, wait, script_id)
