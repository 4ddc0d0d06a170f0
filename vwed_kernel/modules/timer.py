"""``VWED.timer``: periodic, delayed and cron work on the kernel's event loop."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..errors import RegistrationError
from ..registrations import TimerSpec
from ..replies import failure_text

if TYPE_CHECKING:
    from ..context import Context

__all__ = ["TimerModule"]


class TimerModule:
    """Run a handler every ``interval`` seconds, once after a delay, or on a cron schedule.

    Timers run on the kernel's event loop. A tick that raises is logged and the
    timer keeps going; a slow tick never overlaps the next one (the next tick is
    scheduled when the slow one is over, missed ticks are skipped). Timers die
    with the script. For a script with replicas, a timer runs in replica 0 only,
    unless created with ``all_replicas=True``.
    """

    def __init__(self, context: Context) -> None:
        self._context = context
        self._ids = itertools.count(1)

    def schedule(
        self,
        interval: float,
        handler: Callable[..., Any],
        repeat: bool = True,
        all_replicas: bool = False,
    ) -> str:
        """Every ``interval`` seconds (once, if ``repeat`` is false); returns the timer id."""
        if not isinstance(interval, (int, float)) or isinstance(interval, bool) or interval <= 0:
            raise RegistrationError("interval must be a positive number of seconds")
        kind = "interval" if repeat else "delay"
        return self._add(kind, float(interval), None, handler, all_replicas)

    def delay(self, seconds: float, handler: Callable[..., Any], all_replicas: bool = False) -> str:
        """Once, after ``seconds``; returns the timer id."""
        return self.schedule(seconds, handler, repeat=False, all_replicas=all_replicas)

    def cron(self, expression: str, handler: Callable[..., Any], all_replicas: bool = False) -> str:
        """On a cron schedule (5 fields, or 6 with seconds last: ``"*/10 * * * * 30"``)."""
        from croniter import croniter

        if not isinstance(expression, str) or not croniter.is_valid(expression):
            raise RegistrationError(f"{expression!r} is not a valid cron expression")
        return self._add("cron", None, expression, handler, all_replicas)

    def cancel(self, timer_id: str) -> bool:
        """Stop a timer; returns whether it existed."""
        spec = self._context.registrations.timers.pop(timer_id, None)
        if spec is None:
            return False
        if spec.task is not None:
            spec.task.cancel()
        self._context.link.notify_unregister("timer", spec.describe())
        return True

    def list(self) -> list[dict[str, Any]]:
        """This script's timers, with their runs and failures so far."""
        return [t.describe() for t in self._context.registrations.timers.values()]

    def clear_all(self) -> int:
        """Cancel every timer of this script."""
        ids = list(self._context.registrations.timers)
        for timer_id in ids:
            self.cancel(timer_id)
        return len(ids)

    # -- running ---------------------------------------------------------------------
    def _add(
        self,
        kind: str,
        interval: float | None,
        expression: str | None,
        handler: Callable[..., Any],
        all_replicas: bool,
    ) -> str:
        if not callable(handler):
            raise RegistrationError("timer handler is not callable")
        spec = TimerSpec(
            f"timer_{next(self._ids)}", kind, handler, interval, expression, all_replicas
        )
        link = self._context.link
        spec.active = all_replicas or link.replica == 0
        if spec.active:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                raise RegistrationError("timers need a running event loop (a kernel)") from None
            spec.task = loop.create_task(self._run(spec))
        self._context.registrations.timers[spec.id] = spec
        link.notify_register("timer", spec.describe())
        return spec.id

    def _next_delay(self, spec: TimerSpec, started: float) -> float:
        if spec.kind == "cron":
            from croniter import croniter

            nxt = croniter(spec.expression, datetime.now()).get_next(float)
            return max(0.0, nxt - time.time())
        assert spec.interval is not None
        if spec.runs == 0:
            return spec.interval
        # fixed rate, skipping ticks missed while a slow tick ran
        elapsed = time.monotonic() - started
        return spec.interval - (elapsed % spec.interval)

    async def _run(self, spec: TimerSpec) -> None:
        started = time.monotonic()
        while True:
            await asyncio.sleep(self._next_delay(spec, started))
            try:
                value = spec.handler()
                if inspect.isawaitable(value):
                    await value
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                spec.failures += 1
                self._context.log("ERROR", "timer", failure_text(f"timer {spec.id}", exc))
            spec.runs += 1
            spec.last_run = time.time()
            if spec.kind == "delay":
                self._context.registrations.timers.pop(spec.id, None)
                self._context.link.notify_unregister("timer", spec.describe())
                return
