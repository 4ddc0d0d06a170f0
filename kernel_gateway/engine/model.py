"""The model of running scripts: a ``RunningScript`` (its kernels, replica picking,
its JSON summary), the options it was started with, and the table of running
scripts by id and by path that the engine writes and the call router reads."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..deps import Environment
from ..errors import NotFound, ServiceUnavailable
from ..kernels import ScriptKernel
from ..quotas import RateLimit, TokenBucket
from ..registrations import ScriptRegistrations
from ..scripts import ScriptSource
from ..stats import ScriptMeter

__all__ = [
    "RunningScript",
    "ScriptTable",
    "StartOptions",
    "MAX_REPLICAS",
    "RESTART_POLICIES",
    "environment_json",
]

MAX_REPLICAS = 16
RESTART_POLICIES = ("never", "on-failure", "always")
LIVE = ("installing", "starting", "running", "restarting")


@dataclass(frozen=True)
class StartOptions:
    """How a script is asked to run (already checked: ``handlers/lifecycle.py`` ``start_options``).

    ``memory_limit_mb`` and ``policy`` are ``None`` when the start did not give
    them: the gateway's default applies, and a gateway restarted with other
    defaults applies its new ones to the scripts it restores."""

    replicas: int = 1
    restart: str = "on-failure"
    memory_limit_mb: int | None = None
    policy: dict[str, Any] | None = None
    # the kernelspec its kernels start from (None: the gateway's ``--kernel-name``);
    # one whose provisioner runs kernels on another host makes a remote script
    kernel_name: str | None = None
    # quotas (docs/security.md "Quotas"); None: the gateway's default. ``rate_limit``:
    # {"calls_per_minute", "burst"} as checked by quotas.parse_rate_limit (0: none);
    # ``cpu_quota``: cores per kernel (0: none)
    rate_limit: dict[str, int] | None = None
    cpu_quota: float | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> StartOptions:
        """The options of a desired script as stored (``vwed_desired_scripts``)."""
        options = row.get("options") or {}
        return cls(
            replicas=row["replicas"],
            restart=row["restart"],
            memory_limit_mb=options.get("memory_limit_mb"),
            policy=options.get("policy"),
            kernel_name=options.get("kernel_name"),
            rate_limit=options.get("rate_limit"),
            cpu_quota=options.get("cpu_quota"),
        )

    def requested(self) -> dict[str, Any]:
        """The options kept with a desired script (the database's ``options``)."""
        kept: dict[str, Any] = {"memory_limit_mb": self.memory_limit_mb, "policy": self.policy}
        if self.kernel_name is not None:
            kept["kernel_name"] = self.kernel_name
        if self.rate_limit is not None:
            kept["rate_limit"] = self.rate_limit
        if self.cpu_quota is not None:
            kept["cpu_quota"] = self.cpu_quota
        return kept


@dataclass
class RunningScript:
    script_id: str
    path: str
    source: ScriptSource  # the code the kernels run (a replacement replica runs the same)
    options: StartOptions
    started_at: float
    memory_limit_mb: int = 0  # in force: the start's, or the gateway's default
    policy: dict[str, Any] | None = None  # in force; enforced in the kernel
    kernels: list[ScriptKernel] = field(default_factory=list)
    # installing (its packages) | starting | running | restarting | stopping | died | crashed
    status: str = "starting"
    registrations: ScriptRegistrations = field(default_factory=ScriptRegistrations)
    exit_reason: str | None = None
    run_id: int | None = None
    restarts: int = 0
    last_error: str | None = None
    crashes: list[float] = field(default_factory=list)
    meter: ScriptMeter | None = None  # its calls (stats.py), given by ScriptTable.add
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    environment: Environment | None = None  # its packages (issue 16): every boot uses it
    installing: asyncio.Task[Any] | None = None  # the install a stop cancels
    # the file's (mtime, size) on disk when its source was taken: ``--watch`` reloads
    # when it changes (not when the script runs an older revision than the file)
    file_stat: tuple[float, int] | None = None
    # the commit of the scripts repository its serving kernels run (issue 17): the
    # source's, set when they serve (a reload sets it at the swap, not at its boot)
    revision: str | None = None
    # calls per minute in force (the start's or the gateway's default) and the bucket
    # its replicas share (routing.py takes a token per call); None: no limit
    rate_limit: RateLimit | None = None
    bucket: TokenBucket | None = None
    cpu_quota: float = 0.0  # cores per kernel in force (0: none)
    # what applying it did, by kernel id (cpuquota.CpuQuotas.apply): summarised per script
    cpu_applied: dict[str, dict[str, Any]] = field(default_factory=dict)
    _turn: itertools.count = field(default_factory=itertools.count)

    @property
    def replicas(self) -> int:
        return self.options.replicas

    @property
    def restart(self) -> str:
        return self.options.restart

    @property
    def in_flight(self) -> int:
        return sum(k.bridge.in_flight for k in self.kernels)

    def pick(self) -> ScriptKernel:
        """The replica with the fewest calls in flight (ties: in turn)."""
        kernels = self.kernels
        if len(kernels) == 1:
            return kernels[0]
        if not kernels:
            raise ServiceUnavailable(
                f"script {self.script_id} has no live kernel",
                "SCRIPT_STOPPING",
                details={"script_id": self.script_id},
            )
        start = next(self._turn) % len(kernels)
        best = kernels[start]
        for i in range(1, len(kernels)):
            k = kernels[(start + i) % len(kernels)]
            if k.bridge.in_flight < best.bridge.in_flight:
                best = k
        return best

    def kernels_json(self, usage: bool = True) -> list[dict[str, Any]]:
        """Its kernels, by replica; ``usage``: with their CPU and the RSS of their
        process trees (reading those walks the machine's process table: a start's
        answer leaves them out)."""
        return [
            {
                "replica": k.replica,
                "kernel_id": k.kernel_id,
                "pid": k.pid,
                "host": k.host,  # None: this machine (CPU/RSS are measured here only)
                "in_flight": k.bridge.in_flight,
                **(k.usage() if usage else {}),
                **_cgroup_of(self.cpu_applied.get(k.kernel_id)),
            }
            for k in sorted(self.kernels, key=lambda k: k.replica)
        ]

    def summary(self) -> dict[str, Any]:
        first = min(self.kernels, key=lambda k: k.replica, default=None)
        calls_per_s, error_rate = self.meter.rates() if self.meter else (0.0, 0.0)
        return {
            "script_id": self.script_id,
            "script_path": self.path,
            "status": self.status,
            "started_at": self.started_at,
            "kernel_id": first.kernel_id if first else None,
            "pid": first.pid if first else None,
            "fast_path": first.bridge.fast if first else False,
            "in_flight": self.in_flight,
            "replicas": self.replicas,
            "run_id": self.run_id,
            "revision": self.revision,
            "restart": self.restart,
            "restarts": self.restarts,
            "memory_limit_mb": self.memory_limit_mb or None,
            "policy": self.policy,
            "rate_limit": self.rate_limit.to_json() if self.rate_limit else None,
            "cpu_quota": self.cpu_quota_state(),
            "last_error": self.last_error,
            "calls_per_s": calls_per_s,  # over the last minute (of the script's path)
            "error_rate": error_rate,  # the share of those calls that failed
            "kernels": self.kernels_json(),
            "registrations": self.registrations.counts(),
            "exit_reason": self.exit_reason,
            "environment": environment_json(self.environment),
        }

    def cpu_quota_state(self) -> dict[str, Any] | None:
        """``{"cores", "applied", ...}`` of its CPU quota over its live kernels (applied:
        on every one), or None without a quota."""
        if not self.cpu_quota:
            return None
        states = [
            self.cpu_applied[k.kernel_id] for k in self.kernels if k.kernel_id in self.cpu_applied
        ]
        if not states:
            return {"cores": self.cpu_quota, "applied": False, "reason": "no kernel yet"}
        refused = [s for s in states if not s.get("applied")]
        state = dict(refused[0] if refused else states[0])
        state.pop("cgroup", None)  # per kernel: in "kernels"
        return state


def _cgroup_of(applied: dict[str, Any] | None) -> dict[str, Any]:
    """A kernel's cgroup (where its CPU quota is applied), for its entry in ``kernels``."""
    if applied is None or not applied.get("cgroup"):
        return {}
    return {"cgroup": applied["cgroup"]}


def environment_json(env: Environment | None) -> dict[str, Any] | None:
    """``{"lock", "packages"}`` of a script's environment (None: the engine's packages only)."""
    if env is None:
        return None
    return {"lock": env.lock.hash, "packages": [list(p) for p in env.lock.packages]}


class ScriptTable:
    """Running scripts by id and by path: written by the engine, read by the router.
    ``meters`` (``stats.CallStats.meter``) gives each script added the meter of its
    path's calls."""

    def __init__(self, meters: Callable[[str], ScriptMeter] | None = None) -> None:
        self._scripts: dict[str, RunningScript] = {}
        self._by_path: dict[str, str] = {}
        self.meters = meters

    def running(self) -> list[RunningScript]:
        return sorted(self._scripts.values(), key=lambda s: s.started_at)

    def lookup(self, script_id: str) -> RunningScript | None:
        return self._scripts.get(script_id)

    def at(self, path: str) -> RunningScript | None:
        """The script run from ``path`` (relative to the scripts root), if any."""
        sid = self._by_path.get(path)
        return None if sid is None else self._scripts[sid]

    def get(self, script_id: str) -> RunningScript:
        script = self._scripts.get(script_id)
        if script is None:
            raise NotFound(
                f"script {script_id!r} is not running",
                "NOT_RUNNING",
                details={"script_id": script_id},
            )
        return script

    def serving(self, script_id: str) -> RunningScript:
        """The script, if it serves calls now (else 503)."""
        script = self._scripts.get(script_id)
        if script is None or script.status != "running":
            raise ServiceUnavailable(
                f"script {script_id} is not serving calls",
                "SCRIPT_STOPPING",
                details={"script_id": script_id},
            )
        return script

    async def wait_serving(self, script_id: str, timeout: float) -> RunningScript:
        """The script, once it serves calls: a script restarting after a crash is waited
        for (up to ``timeout``); a script that is down gives 503 at once."""
        script = self._scripts.get(script_id)
        if script is not None and script.status == "restarting":
            try:
                await asyncio.wait_for(script.ready.wait(), timeout)
            except asyncio.TimeoutError:
                raise ServiceUnavailable(
                    f"script {script_id} is restarting after a crash",
                    "SCRIPT_RESTARTING",
                    details={"script_id": script_id},
                    headers={"Retry-After": "1"},
                ) from None
        return self.serving(script_id)

    def new_id(self, path: str, now: float) -> str:
        script_id = f"{path}_{int(now * 1000)}"
        while script_id in self._scripts:  # two starts in the same millisecond
            script_id += "_"
        return script_id

    def add(self, script: RunningScript) -> None:
        if self.meters is not None and script.meter is None:
            script.meter = self.meters(script.path)
        self._scripts[script.script_id] = script
        self._by_path[script.path] = script.script_id

    def remove(self, script: RunningScript) -> None:
        self._scripts.pop(script.script_id, None)
        if self._by_path.get(script.path) == script.script_id:
            del self._by_path[script.path]

    def holds(self, script: RunningScript) -> bool:
        """Whether ``script`` is still the one in the table under its id."""
        return self._scripts.get(script.script_id) is script

    def kernels_in_use(self) -> int:
        """Kernels of live scripts (a script still booting counts its replicas)."""
        return sum(len(s.kernels) or s.replicas for s in self._scripts.values() if s.status in LIVE)

    def in_flight(self) -> int:
        return sum(s.in_flight for s in self._scripts.values())
