"""``VWED.progress``: a call's progress, reported to the gateway while the call runs.

A long step (moving a pallet, waiting on a PLC, a three-minute report) tells its
caller how far it got. The call runner (``dispatch.Calls``) puts a :class:`Reporter`
for the call in a context variable around the call's code, so ``VWED.progress``
finds the call it is in without being told (asyncio tasks created from there
inherit it); outside a call (boot, a notebook cell, a thread the script started
without copying the context) there is none and nothing is sent.

Why coalesce here: a loop may call ``VWED.progress`` ten thousand times a second,
and each ``progress`` op is a comm message (JSON, HMAC, the IOPub thread). The first
update of a call is sent at once, then at most one every :data:`INTERVAL` seconds;
an update that comes sooner is kept (the newest wins) and sent when its interval is
up, by a daemon thread (:class:`Flusher`), so a step that blocks its thread right
after ``progress(0.5)`` still has 0.5 reach the gateway. When the call answers, what
is pending is sent first (:meth:`Reporter.finish`), so the last progress precedes
the result.

Threads: ``report`` runs on whatever thread the script's code runs on, the flush on
the flusher's thread, ``finish`` on the thread that sends the result. One lock per
call orders them; an op is handed to the comm under that lock, and ipykernel's
comm publishes through the IOPub thread's queue (safe from any thread, in the
order it was called).
"""

from __future__ import annotations

import contextvars
import heapq
import itertools
import logging
import math
import numbers
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["CURRENT", "Flusher", "Reporter", "report", "INTERVAL", "MAX_MESSAGE"]

log = logging.getLogger("vwed_kernel")

INTERVAL = 0.2  # seconds between two progress ops of one call
MAX_MESSAGE = 500  # characters of a progress message kept

# sends one progress op; False when no gateway listens
Emit = Callable[[dict[str, Any]], bool]

# the running call's reporter, set by the call runner (dispatch.Calls) around its code
CURRENT: contextvars.ContextVar[Reporter | None] = contextvars.ContextVar(
    "vwed_progress", default=None
)


class Flusher:
    """One daemon thread that sends the updates kept back by coalescing when their
    interval is up. Started at the first update kept back; idle (waiting on a
    condition) when nothing is due."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: list[tuple[float, int, Reporter]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def schedule(self, when: float, reporter: Reporter) -> None:
        """Call ``reporter.flush_due()`` at ``when`` (``time.monotonic``)."""
        with self._cond:
            heapq.heappush(self._due, (when, next(self._order), reporter))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._main, name="vwed-progress", daemon=True
                )
                self._thread.start()
            elif self._due[0][2] is reporter:
                self._cond.notify()

    def _main(self) -> None:
        while True:
            with self._cond:
                while not self._due:
                    self._cond.wait()
                when, _, reporter = self._due[0]
                delay = when - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                heapq.heappop(self._due)
            try:
                reporter.flush_due()
            except Exception:  # the thread serves every call: it must not die
                log.debug("a progress update could not be sent", exc_info=True)


class Reporter:
    """The progress of one call: coalesces its updates and sends them with ``emit``."""

    __slots__ = ("call_id", "sent", "_emit", "_flusher", "_lock", "_next", "_pending", "_closed")

    def __init__(self, call_id: str, emit: Emit, flusher: Flusher) -> None:
        self.call_id = call_id
        self.sent = False  # whether any progress op of this call went out
        self._emit = emit
        self._flusher = flusher
        self._lock = threading.Lock()
        self._next = 0.0  # when the next op may be sent (time.monotonic)
        # (fraction, done, total, message, ts) kept back by coalescing
        self._pending: tuple[Any, ...] | None = None
        self._closed = False

    def report(self, update: tuple[Any, ...]) -> bool:
        """Send ``update`` now, or keep it until this call's interval is up;
        False once the call has answered (the update is dropped)."""
        now = time.monotonic()
        with self._lock:
            if self._closed:
                return False
            scheduled = self._pending is not None
            self._pending = update
            if scheduled:
                return True  # a flush is due already: it sends the newest
            if now >= self._next:
                self._send(now)
            else:
                self._flusher.schedule(self._next, self)
        return True

    def flush_due(self) -> None:
        """The interval is up (the flusher's thread): send what is pending."""
        with self._lock:
            if not self._closed and self._pending is not None:
                self._send(time.monotonic())

    def finish(self) -> bool:
        """The call is answering: send what is pending, take no more updates.
        Returns whether any progress op of this call was sent."""
        with self._lock:
            if self._closed:
                return self.sent
            self._closed = True
            if self._pending is not None:
                self._send(time.monotonic())
            return self.sent

    def _send(self, now: float) -> None:
        fraction, done, total, message, ts = self._pending or (None,) * 5
        self._pending = None
        self._next = now + INTERVAL
        if self._emit(
            {
                "op": "progress",
                "id": self.call_id,
                "fraction": fraction,
                "done": done,
                "total": total,
                "message": message,
                "ts": ts,
            }
        ):
            self.sent = True


def report(fraction_or_done: Any, total: Any = None, message: Any = "") -> bool:
    """``VWED.progress``: check the update, hand it to the running call's reporter.
    True inside a call, False outside one (nothing is sent)."""
    update = _update(fraction_or_done, total, message)
    reporter = CURRENT.get()
    if reporter is None:
        return False
    return reporter.report(update)


def _update(value: Any, total: Any, message: Any) -> tuple[Any, ...]:
    """``(fraction, done, total, message, ts)`` from the arguments, or TypeError /
    ValueError saying what is wrong (a bug its author sees on the first run)."""
    if not isinstance(message, str):
        raise TypeError(f"progress message must be a str, not {type(message).__name__}")
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE]
    if value is None:
        if total is not None:
            raise ValueError("progress total given without a done count")
        return (None, None, None, message, time.time())
    value = _number(value, "progress")
    if total is None:
        if value > 1:
            raise ValueError(
                f"progress fraction must be between 0 and 1, not {value!r} "
                "(pass total= to report a count)"
            )
        return (float(value), None, None, message, time.time())
    total = _number(total, "progress total")
    if total <= 0:
        raise ValueError(f"progress total must be > 0, not {total!r}")
    if value > total:
        raise ValueError(f"progress done ({value!r}) must be <= total ({total!r})")
    return (value / total, value, total, message, time.time())


def _number(value: Any, what: str) -> int | float:
    """A finite number >= 0 as a plain int or float (JSON-serializable)."""
    kind = type(value)
    if kind is not int and kind is not float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{what} must be a number, not {kind.__name__}")
        value = int(value) if isinstance(value, numbers.Integral) else float(value)
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an int too large for a float
        finite = False
    if not finite:
        raise ValueError(f"{what} must be a finite number, not {value!r}")
    if value < 0:
        raise ValueError(f"{what} must be >= 0, not {value!r}")
    return value
