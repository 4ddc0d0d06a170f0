"""Series the console charts (``GET /script-engine/stats``), sampled here on the server:
per script, calls per second, errors and p50/p99 latency; per kernel, CPU and RSS.

The call path feeds a ``ScriptMeter`` per script path at O(1) cost (two counters and
a float in a bounded list). A sampler task closes the interval every ``interval``
seconds (``--stats-interval``) into one point of each series, and keeps one hour of
points in memory. A script that stopped keeps its series until its last point is an
hour old; so does a kernel that went away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from . import proctree

if TYPE_CHECKING:
    from .engine import ScriptTable

__all__ = ["CallStats", "ScriptMeter", "MAX_DURATIONS", "KEEP_SECONDS"]

log = logging.getLogger("kernel_gateway.stats")

MAX_DURATIONS = 2048  # call durations kept per script and interval, for the quantiles
KEEP_SECONDS = 3600.0  # the history kept in memory
RATE_WINDOW = 60.0  # calls_per_s and error_rate of GET /running: over the last minute


class ScriptMeter:
    """The calls of one script (by path, across its runs): the counts of the interval
    since the last sample, and marks of the running totals at each sample (for the
    rates of the last minute)."""

    __slots__ = ("calls", "errors", "durations", "total", "total_errors", "marks")

    def __init__(self, now: float, marks: int) -> None:
        self.calls = 0  # in this interval
        self.errors = 0
        self.durations: list[float] = []  # seconds; at most MAX_DURATIONS
        self.total = 0  # since the meter exists
        self.total_errors = 0
        # (t, total, total_errors) at each sample, oldest first
        self.marks: deque[tuple[float, int, int]] = deque([(now, 0, 0)], maxlen=marks)

    def record(self, ok: bool, seconds: float) -> None:
        """One call that ended (the call path: no allocation but the float)."""
        self.calls += 1
        self.total += 1
        if not ok:
            self.errors += 1
            self.total_errors += 1
        durations = self.durations
        if len(durations) < MAX_DURATIONS:
            durations.append(seconds)
        else:  # full: the newest calls replace older ones, in turn
            durations[self.calls % MAX_DURATIONS] = seconds

    def rates(self, now: float | None = None) -> tuple[float, float]:
        """``(calls per second, error rate)`` over the last minute: the error rate is
        the share of those calls that failed (0.0 when there were none)."""
        now = time.time() if now is None else now
        base_t, base_total, base_errors = self.marks[-1]
        for mark in self.marks:  # oldest first: the oldest one within the window
            if mark[0] >= now - RATE_WINDOW:
                base_t, base_total, base_errors = mark
                break
        calls = self.total - base_total
        if calls <= 0:
            return 0.0, 0.0
        seconds = max(now - base_t, 1.0)
        return round(calls / seconds, 3), round((self.total_errors - base_errors) / calls, 4)


class _Series:
    """Named columns of points sharing one time axis ``t``, one hour at most."""

    def __init__(self, names: tuple[str, ...], maxlen: int) -> None:
        self.columns: dict[str, deque[Any]] = {n: deque(maxlen=maxlen) for n in ("t", *names)}

    def add(self, t: float, **values: Any) -> None:
        for name, column in self.columns.items():
            column.append(t if name == "t" else values[name])

    @property
    def last(self) -> float:
        t = self.columns["t"]
        return t[-1] if t else -math.inf

    def since(self, start: float) -> dict[str, list[Any]]:
        """The points at or after ``start``, column by column."""
        t = self.columns["t"]
        skip = 0
        while skip < len(t) and t[skip] < start:  # oldest first; cheap: at most an hour
            skip += 1
        return {name: list(column)[skip:] for name, column in self.columns.items()}


class _ScriptStats:
    def __init__(self, maxlen: int, marks: int, now: float) -> None:
        self.meter = ScriptMeter(now, marks)
        self.series = _Series(("calls_per_s", "errors", "p50_ms", "p99_ms"), maxlen)


class CallStats:
    """The sampled series of one gateway (``app.Gateway.stats``): ``meter(path)`` for
    the call path (``ScriptTable.add`` gives each script its path's meter),
    ``start``/``close`` for the sampler task, ``series`` and ``rates`` for the endpoints."""

    def __init__(self, scripts: ScriptTable, interval: float = 10.0) -> None:
        if not interval > 0:
            raise ValueError("the stats interval must be > 0 seconds")
        self.scripts = scripts
        self.interval = float(interval)
        self.maxlen = max(1, math.ceil(KEEP_SECONDS / self.interval))
        self._marks = math.ceil(RATE_WINDOW / self.interval) + 2
        self._scripts: dict[str, _ScriptStats] = {}
        self._kernels: dict[str, _Series] = {}
        self._procs: dict[str, Any] = {}  # kernel id -> its psutil.Process (CPU % is per object)
        self._last = time.time()
        self._task: asyncio.Task[None] | None = None

    # -- the call path -----------------------------------------------------------------
    def meter(self, script_path: str) -> ScriptMeter:
        """The meter of a script path's calls (made as it first starts)."""
        entry = self._scripts.get(script_path)
        if entry is None:
            entry = self._scripts[script_path] = _ScriptStats(self.maxlen, self._marks, time.time())
        return entry.meter

    # -- the sampler -------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._last = time.time()
            self._task = asyncio.ensure_future(self._loop())

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.sample()
            except Exception:  # a bug here must not end the sampling
                log.exception("sampling the stats failed")

    def sample(self, now: float | None = None) -> None:
        """Close the interval: one point per script and per kernel."""
        now = time.time() if now is None else now
        elapsed = max(now - self._last, 1e-6)
        self._last = now
        gone = now - KEEP_SECONDS
        for path, entry in list(self._scripts.items()):
            meter = entry.meter
            if meter.calls or self.scripts.at(path) is not None:
                durations = sorted(meter.durations)
                entry.series.add(
                    now,
                    calls_per_s=round(meter.calls / elapsed, 3),
                    errors=meter.errors,
                    p50_ms=_quantile_ms(durations, 0.5),
                    p99_ms=_quantile_ms(durations, 0.99),
                )
                meter.calls = meter.errors = 0
                meter.durations = []
            elif entry.series.last < gone:
                del self._scripts[path]
                continue
            meter.marks.append((now, meter.total, meter.total_errors))
        self._sample_kernels(now, gone)

    def _sample_kernels(self, now: float, gone: float) -> None:
        import psutil

        seen: set[str] = set()
        for script in self.scripts.running():
            for kernel in script.kernels:
                key = f"{script.path}#{kernel.replica}"
                seen.add(kernel.kernel_id)
                cpu = rss = None
                if kernel.measured_pid is not None:
                    try:
                        proc = self._procs.get(kernel.kernel_id)
                        if proc is None:
                            proc = psutil.Process(kernel.measured_pid)
                            self._procs[kernel.kernel_id] = proc
                        cpu = proc.cpu_percent(None)
                        rss = round(proctree.tree_rss(proc) / 1048576, 1)
                    except psutil.Error:
                        self._procs.pop(kernel.kernel_id, None)
                series = self._kernels.get(key)
                if series is None:
                    series = self._kernels[key] = _Series(("cpu_percent", "rss_mb"), self.maxlen)
                series.add(now, cpu_percent=cpu, rss_mb=rss)
        for kernel_id in [k for k in self._procs if k not in seen]:
            del self._procs[kernel_id]
        for key in [k for k, s in self._kernels.items() if s.last < gone]:
            del self._kernels[key]

    # -- reading -----------------------------------------------------------------------
    def series(self, script_path: str | None = None, minutes: float = 60) -> dict[str, Any]:
        """The body of ``GET /script-engine/stats``: the points of the last ``minutes``,
        of one script (and its kernels) or all."""
        start = time.time() - minutes * 60
        scripts = {
            path: entry.series.since(start)
            for path, entry in sorted(self._scripts.items())
            if script_path is None or path == script_path
        }
        kernels = {
            key: series.since(start)
            for key, series in sorted(self._kernels.items())
            if script_path is None or key.rsplit("#", 1)[0] == script_path
        }
        return {"interval_s": self.interval, "scripts": scripts, "kernels": kernels}

    def rates(self, script_path: str) -> tuple[float, float]:
        """``(calls per second, error rate)`` of a script over the last minute."""
        entry = self._scripts.get(script_path)
        return (0.0, 0.0) if entry is None else entry.meter.rates()


def _quantile_ms(ordered: list[float], q: float) -> float | None:
    """The ``q`` quantile (nearest rank) of sorted durations in seconds, in ms."""
    if not ordered:
        return None
    rank = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return round(ordered[rank] * 1000, 3)
