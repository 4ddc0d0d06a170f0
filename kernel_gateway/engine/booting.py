"""Booting a script's kernels (the engine's part that takes kernels): one replica
from the pool, all replicas all-or-nothing with their registrations committed
atomically, the script's packages installed before any of it, and the shutdown of
kernels that never served. ``ScriptEngine`` (``lifecycle.py``) is built on it."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable

from .. import remote
from ..background import Background
from ..boot import boot_kernel
from ..cpuquota import CpuQuotas
from ..deps import Environment
from ..errors import GatewayError, ScriptError, ServiceUnavailable
from ..kernels import KernelEvents, ScriptKernel
from ..logs import LogHub
from ..pool import KernelPool
from ..registrations import ScriptRegistrations
from ..registry import Registry
from .model import RunningScript
from .packages import ScriptPackages
from .supervisor import Supervisor

__all__ = ["Booting"]


class Booting:
    """Kernels for scripts: the attributes below are the engine's."""

    pool: KernelPool
    events: KernelEvents
    registry: Registry
    supervisor: Supervisor
    packages: ScriptPackages
    boot_timeout: float
    debug: bool
    logs: LogHub
    cpu: CpuQuotas | None
    _ending: Background

    async def _boot_replica(self, script: RunningScript, index: int) -> ScriptKernel:
        kernel = await self.pool.acquire(_start_env(script), kernel_name=script.options.kernel_name)
        kernel.wire(
            self.events,
            script_id=script.script_id,
            replica=index,
            on_death=self.supervisor.on_kernel_death,
        )
        if kernel.host is not None and script.memory_limit_mb:
            # a container's limit is Docker's (its cgroup); any other remote kernel's is not
            why_not = await remote.limit_memory(kernel.km.provisioner, script.memory_limit_mb)
            self.logs.engine(
                script.script_id,
                "INFO" if why_not is None else "WARNING",
                f"replica {index} runs in container {kernel.host}: its memory limit "
                f"({script.memory_limit_mb} MiB) is Docker's, the container is killed at it"
                if why_not is None
                else f"replica {index} runs on {kernel.host}: its memory limit "
                f"({script.memory_limit_mb} MiB) is not enforced, the gateway cannot "
                f"measure a remote kernel ({why_not}; docs/scaling.md)",
            )
        if script.cpu_quota:
            self._hold_cpu(script, kernel, index)
        try:
            kernel.registrations = await boot_kernel(
                kernel,
                script.script_id,
                script.source,
                replica=index,
                replicas=script.replicas,
                timeout=self.boot_timeout,
                debug=self.debug,
                policy=script.policy,
                site=[script.environment.site] if script.environment else None,
            )
        except BaseException as exc:
            if isinstance(exc, GatewayError):  # a secret read in boot(), out of the traceback
                self.logs.redactor.redact_error(exc, kernel.kernel_id, script.script_id)
            self._discard([kernel])
            raise
        return kernel

    def _hold_cpu(self, script: RunningScript, kernel: ScriptKernel, index: int) -> None:
        """Put the kernel under the script's CPU quota (before its boot() runs); where
        that cannot be done, a WARNING says why (its CPU use is measured all the same)."""
        if self.cpu is None:
            state = {"cores": script.cpu_quota, "applied": False, "reason": "not configured"}
        else:
            state = self.cpu.apply(kernel.kernel_id, kernel.pid, script.cpu_quota).to_json()
        applied = script.cpu_applied
        if len(applied) >= 3 * script.replicas:  # of kernels gone (a reload holds 2x)
            live = {k.kernel_id for k in script.kernels}
            for gone in [key for key in applied if key not in live]:
                del applied[gone]
        applied[kernel.kernel_id] = state
        if not state["applied"]:
            self.logs.engine(
                script.script_id,
                "WARNING",
                f"the CPU quota of {script.cpu_quota:g} core(s) is not applied to replica "
                f"{index}: {state['reason']}. Its CPU use is measured (cpu_percent in "
                "/script-engine/running) but not held (docs/security.md, Quotas)",
            )

    async def _install(self, script: RunningScript, lock: str | None) -> Environment | None:
        """The script's environment, installed if needed; a stop meanwhile cancels it
        (the start then fails with 503 SCRIPT_STOPPING)."""
        if script.exit_reason is not None:  # stopped before its install began
            raise ServiceUnavailable(
                f"script {script.path!r} was stopped before its packages were installed",
                "SCRIPT_STOPPING",
            )
        task = asyncio.ensure_future(
            self.packages.for_source(script.source, script.script_id, lock)
        )
        script.installing = task
        try:
            env = await task
        except asyncio.CancelledError:
            if script.exit_reason is None:  # not a stop: the start itself was cancelled
                raise
            env = None
        finally:
            script.installing = None
        if script.exit_reason is not None:
            raise ServiceUnavailable(
                f"script {script.path!r} was stopped while its packages were installed",
                "SCRIPT_STOPPING",
            )
        return env

    async def _boot_all(
        self, script: RunningScript, wanted: Callable[[], bool] | None = None
    ) -> tuple[list[ScriptKernel], ScriptRegistrations]:
        """Boot the script's replicas from ``script.source`` and commit their
        registrations (an atomic swap: a conflict changes nothing): all or nothing.
        On any failure, or if ``wanted()`` turned false meanwhile, the new kernels are
        shut down and the error raised."""
        results: list[ScriptKernel | BaseException]
        if script.replicas == 1:  # awaited here: a task (gather's) costs a loop turn each way
            try:
                results = [await self._boot_replica(script, 0)]
            except Exception as exc:
                results = [exc]
        else:
            results = await asyncio.gather(
                *(self._boot_replica(script, i) for i in range(script.replicas)),
                return_exceptions=True,
            )
        good = [k for k in results if isinstance(k, ScriptKernel)]
        try:
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            if wanted is not None and not wanted():
                raise ServiceUnavailable(
                    f"script {script.script_id} was stopped while it booted", "SCRIPT_STOPPING"
                )
            regs = _same_registrations(script, [k.registrations for k in good])
            self.registry.commit(script.script_id, regs)
        except BaseException:
            self._discard(good)
            raise
        return sorted(good, key=lambda k: k.replica), regs

    def _discard(self, kernels: list[ScriptKernel]) -> None:
        """Shut down kernels that never served (their death is nobody's business)."""
        for kernel in kernels:
            kernel.on_death = None
            self._ending.spawn(kernel.shutdown(now=True))


def _start_env(script: RunningScript) -> dict[str, str] | None:
    """What a kernel of ``script`` must be started with: a ``write`` policy goes in
    its environment too, so the kernel can apply it (Landlock) before it starts a
    thread (vwed_kernel/landlock.py); such a kernel does not come from the pool."""
    write = (script.policy or {}).get("write")
    if write is None:
        return None
    folder = os.path.dirname(script.source.file)
    return {"VWED_KERNEL_POLICY": json.dumps({"write": write, "folder": folder})}


def _same_registrations(
    script: RunningScript, sets: list[ScriptRegistrations]
) -> ScriptRegistrations:
    first = sets[0]
    for other in sets[1:]:
        if set(other.routes) != set(first.routes) or set(other.functions) != set(first.functions):
            raise ScriptError(
                f"the replicas of {script.path!r} registered different routes or "
                "functions; boot() must register the same in every replica",
                "BOOT_FAILED",
                details={"phase": "boot"},
            )
    return first
