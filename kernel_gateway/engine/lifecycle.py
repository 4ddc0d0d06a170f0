"""Script lifecycle: start a script in one or more pooled kernels (replicas),
commit its registrations, stop, restart and reload it (without downtime), and
reload it when its file changes (``--watch``).

Every boot of a whole script (start, reload, restart after a crash) goes through
one ``_boot_all``: N replicas, all or nothing. Calls are routed by
``routing.CallRouter`` from the same ``ScriptTable``; deaths and crash restarts are
the ``Supervisor``'s; run records and restore are ``RunHistory``'s."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from ..background import Background
from ..boot import boot_kernel
from ..check import compiles
from ..errors import Conflict, NotFound, ScriptError, ServiceUnavailable
from ..kernels import KernelEvents, ScriptKernel
from ..logs import LogHub
from ..pool import KernelPool
from ..registrations import ScriptRegistrations
from ..registry import Registry
from ..scripts import ScriptStore
from ..store.service import StoreService
from .model import RunningScript, ScriptTable, StartOptions
from .persistence import RunHistory
from .supervisor import Supervisor
from .watch import watch_files

__all__ = ["ScriptEngine"]

log = logging.getLogger("kernel_gateway.engine")


class ScriptEngine:
    """Starts, stops, restarts and reloads scripts; owns their kernels."""

    def __init__(
        self,
        scripts: ScriptTable,
        files: ScriptStore,
        registry: Registry,
        pool: KernelPool,
        logs: LogHub,
        events: KernelEvents,
        *,
        db: StoreService | None = None,
        on_script_gone: Callable[[str], None] | None = None,
        boot_timeout: float = 60.0,
        debug: bool = False,
        restart_limit: int = 5,
        restart_window: float = 60.0,
        restart_backoff: float = 0.5,
        max_kernels: int = 0,
        memory_limit_mb: int = 0,
        default_policy: dict[str, Any] | None = None,
    ) -> None:
        self.scripts = scripts
        self.files = files
        self.registry = registry
        self.pool = pool
        self.logs = logs
        self.events = events
        self.boot_timeout = boot_timeout
        self.debug = debug
        self.max_kernels = max_kernels
        self.memory_limit_mb = memory_limit_mb
        self.default_policy = default_policy
        self.runs = RunHistory(db, logs)
        self.supervisor = Supervisor(
            scripts,
            registry,
            logs,
            self.runs,
            reboot=self._reboot,
            replace=self._replace,
            on_script_gone=on_script_gone,
            restart_limit=restart_limit,
            restart_window=restart_window,
            restart_backoff=restart_backoff,
        )
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks = Background(log)
        self._ending = Background(log)  # shutdowns of kernels that never served: awaited

    # -- queries ---------------------------------------------------------------------
    def running(self) -> list[RunningScript]:
        return self.scripts.running()

    def get(self, script_id: str) -> RunningScript:
        return self.scripts.get(script_id)

    def serving(self, script_id: str) -> RunningScript:
        return self.scripts.serving(script_id)

    async def wait_serving(self, script_id: str, timeout: float) -> RunningScript:
        return await self.scripts.wait_serving(script_id, timeout)

    def find(self, script_id: str | None = None, script_path: Any = None) -> RunningScript:
        """A running script by id, or by its path under the scripts root."""
        if script_id is not None:
            return self.get(script_id)
        assert script_path is not None, "the handler asks for one of the two"
        rel = self.files.relative(self.files.resolve(script_path))
        script = self.scripts.at(rel)
        if script is None:
            raise NotFound(
                f"script {rel!r} is not running", "NOT_RUNNING", details={"script_path": rel}
            )
        return script

    def _lock(self, path: str) -> asyncio.Lock:
        return self._locks.setdefault(path, asyncio.Lock())

    # -- start -----------------------------------------------------------------------
    async def start(self, script_path: str, options: StartOptions | None = None) -> RunningScript:
        """Start a script (its options checked by the handler); 409 if it runs already."""
        options = options or StartOptions()
        if self.max_kernels:
            used = self.scripts.kernels_in_use()
            if used + options.replicas > self.max_kernels:
                raise ServiceUnavailable(
                    f"{used} script kernels run already; the limit is {self.max_kernels}",
                    "TOO_MANY_KERNELS",
                )
        source = self.files.load(script_path)
        await compiles(source)  # 422 SYNTAX_ERROR before any kernel is taken
        async with self._lock(source.path):
            current = self.scripts.at(source.path)
            if current is not None:
                if current.status not in ("died", "crashed"):
                    raise Conflict(
                        f"script {source.path!r} is already running",
                        "ALREADY_RUNNING",
                        details={"script_id": current.script_id},
                    )
                self._forget(current)
            now = time.time()
            memory = options.memory_limit_mb
            script = RunningScript(
                self.scripts.new_id(source.path, now),
                source.path,
                source,
                options,
                now,
                memory_limit_mb=self.memory_limit_mb if memory is None else memory,
                policy=(self.default_policy if options.policy is None else options.policy) or None,
            )
            self.scripts.add(script)
            await self.runs.started(script)
            replicas = options.replicas
            self.logs.engine(
                script.script_id,
                "INFO",
                f"starting {source.path}" + (f" ({replicas} replicas)" if replicas > 1 else ""),
            )
            try:
                script.kernels, script.registrations = await self._boot_all(script)
            except BaseException as exc:
                self._forget(script)
                reason = getattr(exc, "code", None) or type(exc).__name__
                self.logs.engine(
                    script.script_id,
                    "ERROR",
                    f"start of {source.path} failed: {reason}: {getattr(exc, 'message', exc)}",
                )
                self.runs.ended(script, "failed", str(reason))
                raise
            script.status = "running"
            script.ready.set()
            self.runs.ended(script, "running", None, ended=False)
            await self.runs.remember(script)
            counts = script.registrations.counts()
            self.logs.engine(
                script.script_id,
                "INFO",
                f"booted {source.path}: " + ", ".join(f"{v} {k}" for k, v in counts.items()),
            )
            return script

    # -- booting ---------------------------------------------------------------------
    async def _boot_replica(self, script: RunningScript, index: int) -> ScriptKernel:
        kernel = await self.pool.acquire(_start_env(script))
        kernel.wire(
            self.events,
            script_id=script.script_id,
            replica=index,
            on_death=self.supervisor.on_kernel_death,
        )
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
            )
        except BaseException:
            self._discard([kernel])
            raise
        return kernel

    async def _boot_all(
        self, script: RunningScript, wanted: Callable[[], bool] | None = None
    ) -> tuple[list[ScriptKernel], ScriptRegistrations]:
        """Boot the script's replicas from ``script.source`` and commit their
        registrations (an atomic swap: a conflict changes nothing): all or nothing.
        On any failure, or if ``wanted()`` turned false meanwhile, the new kernels are
        shut down and the error raised."""
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

    async def _reboot(self, script: RunningScript) -> None:
        """All replicas again, after a crash (the supervisor's restart)."""
        script.kernels, script.registrations = await self._boot_all(
            script, lambda: script.status == "restarting" and self.scripts.holds(script)
        )

    async def _replace(self, script: RunningScript, index: int) -> None:
        """One replica again, beside the others that serve meanwhile."""
        try:
            kernel = await self._boot_replica(script, index)
        except Exception as exc:
            self.logs.engine(
                script.script_id,
                "ERROR",
                f"replica {index} of {script.path} could not be replaced: {exc}",
            )
            return
        if script.status != "running" or not self.scripts.holds(script):
            await kernel.shutdown(now=True)
            return
        script.kernels.append(kernel)
        script.kernels.sort(key=lambda k: k.replica)
        self.logs.engine(script.script_id, "INFO", f"replica {index} of {script.path} replaced")

    # -- stop, restart, reload -------------------------------------------------------
    async def stop(self, script: RunningScript, reason: str = "stopped") -> RunningScript:
        async with self._lock(script.path):
            if not self.scripts.holds(script):
                raise NotFound(f"script {script.script_id!r} is not running", "NOT_RUNNING")
            # Unregister first: new calls get 404 at once, never a hang.
            self.registry.remove(script.script_id)
            self.supervisor.script_gone(script.script_id)
            script.status = "stopping"
            kernels, script.kernels = script.kernels, []
            await _finish(kernels)
            script.exit_reason = reason
            self._forget(script)
            self.logs.engine(script.script_id, "INFO", f"stopped {script.path} ({reason})")
            self.runs.ended(script, "stopped", reason)
            return script

    async def forget_desired(self, script_path: str) -> None:
        """An operator stopped the script: do not start it again with the gateway."""
        await self.runs.forget(script_path)

    async def restart(self, script: RunningScript) -> RunningScript:
        await compiles(self.files.load(script.path))  # a syntax error stops nothing
        await self.stop(script, "restarted")
        return await self.start(script.path, script.options)

    async def reload(self, script: RunningScript) -> RunningScript:
        """Zero-downtime reload from the file: boot new kernels beside the old ones, swap
        the registrations atomically, then let the old kernels finish their calls and
        stop them. If the new boot fails, the old kernels keep serving."""
        async with self._lock(script.path):
            if not self.scripts.holds(script) or script.status != "running":
                raise NotFound(f"script {script.script_id!r} is not running", "NOT_RUNNING")
            old_source = script.source
            try:
                script.source = self.files.load(script.path)
                await compiles(script.source)  # 422 before any kernel is taken
                kernels, regs = await self._boot_all(script)
            except BaseException as exc:
                script.source = old_source
                self.logs.engine(
                    script.script_id,
                    "ERROR",
                    f"reload of {script.path} failed, the running "
                    f"version keeps serving: {getattr(exc, 'message', exc)}",
                )
                raise
            old, script.kernels = script.kernels, kernels
            script.registrations = regs
        self.logs.engine(script.script_id, "INFO", f"reloaded {script.path} from its file")
        self._tasks.spawn(self._retire(old))
        return script

    async def _retire(self, kernels: list[ScriptKernel], deadline: float = 30.0) -> None:
        """Stop kernels that no longer get new calls, once their calls are done."""
        end = time.monotonic() + deadline
        while time.monotonic() < end and any(k.bridge.in_flight for k in kernels):
            await asyncio.sleep(0.05)
        await _finish(kernels)

    def _forget(self, script: RunningScript) -> None:
        self.registry.remove(script.script_id)
        self.scripts.remove(script)

    # -- background work -------------------------------------------------------------
    def start_monitor(self) -> None:
        self.supervisor.start_memory_watch()

    def restore(self) -> None:
        """Start again, in the background, the scripts desired when the gateway stopped."""
        self.runs.restore_in_background(self.start)

    def watch(self, interval: float = 1.0) -> None:
        """Reload a running script when its file changes (``--watch``)."""
        self._tasks.spawn(watch_files(self.scripts, self.reload, interval))

    async def drain(self, deadline: float) -> int:
        """Wait (up to ``deadline`` seconds) for the calls in flight to finish; returns
        how many were still running."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if not self.scripts.in_flight():
                return 0
            await asyncio.sleep(0.05)
        return self.scripts.in_flight()

    async def close(self) -> None:
        """Cancel a restore under way, stop every script (concurrently), store the
        runs' ends, then cancel background work."""
        await self.runs.stop_restore()
        await asyncio.gather(
            *(self.stop(s, "gateway shutdown") for s in self.scripts.running()),
            return_exceptions=True,
        )
        await self.supervisor.close()
        await self.runs.flush()
        await self._ending.wait()  # a boot cut short by the stop leaves no kernel behind
        await self._tasks.cancel()


async def _finish(kernels: list[ScriptKernel]) -> None:
    """Let output already produced (e.g. by the last call) reach the logs, then shut
    the kernels down."""
    await asyncio.gather(*(k.barrier(1.0) for k in kernels), return_exceptions=True)
    await asyncio.gather(*(k.shutdown() for k in kernels), return_exceptions=True)


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
