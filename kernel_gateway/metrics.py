"""Prometheus metrics of one gateway (``GET /metrics``), on prometheus-client with a
registry of its own (no process-wide state): counters the call path feeds
(``Metrics``) and gauges read at scrape time from the services that hold the state
(``GatewayGauges``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .busypoll import poller_of

if TYPE_CHECKING:
    from .engine import ScriptTable
    from .logs import LogHub
    from .pool import KernelPool
    from .scratch import ScratchKernels
    from .store.service import StoreService
    from .workers import WorkerPool

__all__ = ["Metrics", "GatewayGauges"]

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class GatewayGauges:
    """Gauges read at scrape time from the services that hold the state; registers
    itself with ``registry`` (the one of ``Metrics``)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        scripts: ScriptTable,
        pool: KernelPool,
        workers: WorkerPool,
        scratch: ScratchKernels,
        db: StoreService,
        logs: LogHub,
        executions: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.scripts = scripts
        self.pool = pool
        self.workers = workers
        self.scratch = scratch
        self.db = db
        self.logs = logs
        self.executions = executions  # ExecutionService.status
        registry.register(self)

    def collect(self) -> Iterator[Any]:
        scripts = self.scripts.running()
        alive = GaugeMetricFamily("vwed_kernels_alive", "Kernels alive, by role", labels=["role"])
        alive.add_metric(["script"], sum(len(s.kernels) for s in scripts))
        alive.add_metric(["pool"], self.pool.available)
        alive.add_metric(["worker"], self.workers.workers)
        alive.add_metric(["scratch"], len(self.scratch.kernels))
        yield alive
        status = GaugeMetricFamily("vwed_scripts", "Scripts by status", labels=["status"])
        for name in (
            "installing",
            "starting",
            "running",
            "restarting",
            "stopping",
            "died",
            "crashed",
        ):
            status.add_metric([name], sum(s.status == name for s in scripts))
        yield status
        restarts = CounterMetricFamily(
            "vwed_script_restarts", "Restarts after a crash", labels=["script"]
        )
        for s in scripts:
            restarts.add_metric([s.path], s.restarts)
        yield restarts
        in_flight = GaugeMetricFamily(
            "vwed_calls_in_flight", "Calls in flight, by script", labels=["script"]
        )
        for s in scripts:
            in_flight.add_metric([s.path], sum(k.bridge.in_flight for k in s.kernels))
        yield in_flight
        yield GaugeMetricFamily(
            "vwed_pool_target", "Pre-started kernels wanted", value=self.pool.size
        )
        yield GaugeMetricFamily(
            "vwed_step_queue_depth", "Steps waiting for a worker", value=self.workers.waiting
        )
        yield GaugeMetricFamily(
            "vwed_log_queue_depth", "Log records waiting for the database", value=self.db.queued
        )
        yield CounterMetricFamily(
            "vwed_log_records_stored", "Log records stored", value=self.db.stored
        )
        yield CounterMetricFamily(
            "vwed_log_records_dropped",
            "Log records dropped (queue full)",
            value=self.db.dropped_total,
        )
        yield CounterMetricFamily(
            "vwed_history_records_dropped",
            "Call and execution history rows dropped (queue full)",
            value=self.db.history_dropped_total,
        )
        yield GaugeMetricFamily(
            "vwed_log_subscribers", "Live log WebSocket subscribers", value=self.logs.subscribers
        )
        yield from self._log_sinks()
        yield from self._busy_poll()
        if self.executions is not None:
            now = self.executions()
            live = GaugeMetricFamily(
                "vwed_async_executions_live",
                "Asynchronous executions queued or running now",
                labels=["status"],
            )
            for name in ("queued", "running"):
                live.add_metric([name], now.get(name, 0))
            yield live

    def _busy_poll(self) -> Iterator[Any]:
        """What ``--busy-poll-us`` cost (nothing when it is off)."""
        try:
            poller = poller_of(asyncio.get_running_loop())
        except RuntimeError:  # scraped outside the event loop's thread
            return
        if poller is None:
            return
        yield CounterMetricFamily(
            "vwed_busy_poll_seconds",
            "Seconds (wall clock) the event loop polled instead of sleeping after a quick call",
            value=poller.seconds,
        )
        polls = CounterMetricFamily(
            "vwed_busy_polls",
            "Polls after a quick call, by how they ended: ready (something to do came) "
            "or spent (the budget ran out and the loop slept)",
            labels=["outcome"],
        )
        polls.add_metric(["ready"], poller.ready)
        polls.add_metric(["spent"], poller.spent)
        yield polls

    def _log_sinks(self) -> Iterator[Any]:
        """Per ``--log-sink``: records waiting, sent and dropped (queue full, or a batch
        the sink failed to deliver)."""
        runners = self.logs.sinks.runners
        if not runners:
            return
        depth = GaugeMetricFamily(
            "vwed_log_sink_queue_depth", "Log records waiting for a log sink", labels=["sink"]
        )
        sent = CounterMetricFamily(
            "vwed_log_sink_records_sent", "Log records sent to a log sink", labels=["sink"]
        )
        dropped = CounterMetricFamily(
            "vwed_log_sink_records_dropped",
            "Log records a log sink dropped (its queue full, or a batch it failed to send)",
            labels=["sink"],
        )
        for runner in runners:
            depth.add_metric([runner.name], runner.queued)
            sent.add_metric([runner.name], runner.sent)
            dropped.add_metric([runner.name], runner.dropped_total)
        yield depth
        yield sent
        yield dropped


class Metrics:
    """The counters of the call path, in a registry of this gateway's own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.calls = Counter(
            "vwed_calls",
            "Calls served, by script, kind and outcome",
            ["script", "kind", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "vwed_call_duration_seconds",
            "Call latency, by script and kind",
            ["script", "kind"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.executions = Counter(
            "vwed_async_executions",
            "Asynchronous executions of steps that ended, by status",
            ["status"],
            registry=self.registry,
        )
        self.attempts = Counter(
            "vwed_step_retries",
            "Failed attempts of asynchronous steps that were tried again",
            registry=self.registry,
        )
        self.refusals = Counter(
            "vwed_policy_refusals",
            "Actions a script's policy refused (docs/security.md), by script",
            ["script"],
            registry=self.registry,
        )
        self.rate_limits = Counter(
            "vwed_rate_limited",
            "Calls refused by their script's rate limit (429 RATE_LIMITED), by script and kind",
            ["script", "kind"],
            registry=self.registry,
        )
        # (script id, kind, outcome) -> the two children a call feeds: labels() takes a
        # lock and builds its key on every call; the children are the same each time.
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def call(self, script_id: str, kind: str, outcome: str, seconds: float) -> None:
        key = (script_id, kind, outcome)
        children = self._children.get(key)
        if children is None:
            if len(self._children) >= 10_000:  # a run's id is new at each start
                self._children.clear()
            script = _label(script_id)
            children = (
                self.calls.labels(script, kind, outcome),
                self.latency.labels(script, kind),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def rate_limited(self, script_id: str, kind: str) -> None:
        """A call refused by a script's rate limit (``quotas.py``); ``kind``: api,
        function, ws or step (a step's ``script_id`` is its file's path)."""
        self.rate_limits.labels(_label(script_id) if kind != "step" else script_id, kind).inc()

    def policy_refusal(self, script_id: str) -> None:
        self.refusals.labels(_label(script_id)).inc()


def _label(script_id: str) -> str:
    """The ``script`` label: the script's path (a run's id is ``<path>_<epoch ms>``), so
    the series of a script go on across its restarts."""
    return script_id.rsplit("_", 1)[0]
