"""Script lifecycle: start a script in one or more pooled kernels (replicas),
commit its registrations, stop it, notice a dead kernel and replace it.

Calls are routed by ``routing.CallRouter``; this module decides which kernels
serve a script."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from . import proctree
from .boot import boot_kernel
from .errors import BadRequest, Conflict, NotFound, ScriptError, ServiceUnavailable, StoreTimeout
from .kernels import KernelPool, ScriptKernel
from .logs import LogHub
from .registry import Registry, ScriptRegistrations
from .scripts import ScriptSource, ScriptStore
from .store.service import StoreService

__all__ = ["ScriptEngine", "RunningScript", "MAX_REPLICAS", "RESTART_POLICIES"]

log = logging.getLogger("kernel_gateway.engine")
MAX_REPLICAS = 16
RESTART_POLICIES = ("never", "on-failure", "always")


@dataclass
class RunningScript:
    script_id: str
    path: str
    source: ScriptSource  # the code the kernels run (a replacement replica runs the same)
    replicas: int
    started_at: float
    kernels: list[ScriptKernel] = field(default_factory=list)
    status: str = "starting"  # starting | running | restarting | stopping | died | crashed
    registrations: ScriptRegistrations = field(default_factory=ScriptRegistrations)
    exit_reason: str | None = None
    run_id: int | None = None
    restart: str = "on-failure"  # never | on-failure | always
    restarts: int = 0
    memory_limit_mb: int = 0
    policy: dict[str, Any] | None = None  # enforced in the kernel (vwed_kernel/policy.py)
    # the options the start asked for (None: the gateway's default), kept for a restore, so
    # a gateway restarted with other defaults applies them
    requested: dict[str, Any] = field(default_factory=dict)
    last_error: str | None = None
    crashes: list[float] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    _turn: itertools.count = field(default_factory=itertools.count)

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

    def summary(self) -> dict[str, Any]:
        first = min(self.kernels, key=lambda k: k.replica, default=None)
        return {
            "script_id": self.script_id,
            "script_path": self.path,
            "status": self.status,
            "started_at": self.started_at,
            "kernel_id": first.kernel_id if first else None,
            "pid": first.pid if first else None,
            "fast_path": first.bridge.fast if first else False,
            "in_flight": sum(k.bridge.in_flight for k in self.kernels),
            "replicas": self.replicas,
            "run_id": self.run_id,
            "restart": self.restart,
            "restarts": self.restarts,
            "memory_limit_mb": self.memory_limit_mb or None,
            "policy": self.policy,
            "last_error": self.last_error,
            "kernels": [
                {
                    "replica": k.replica,
                    "kernel_id": k.kernel_id,
                    "pid": k.pid,
                    "in_flight": k.bridge.in_flight,
                    **_usage(k.pid),
                }
                for k in sorted(self.kernels, key=lambda k: k.replica)
            ],
            "registrations": self.registrations.counts(),
            "exit_reason": self.exit_reason,
        }


def _usage(pid: int | None) -> dict[str, Any]:
    """CPU (% since the last look) of a local kernel process, and the RSS of its
    whole process tree."""
    if pid is None:
        return {"cpu_percent": None, "rss_mib": None}
    try:
        import psutil

        proc = _PROCS.get(pid)
        if proc is None:
            proc = _PROCS[pid] = psutil.Process(pid)
        return {
            "cpu_percent": proc.cpu_percent(None),
            # the kernel and the processes it started: the memory limit counts them all
            "rss_mib": round(proctree.tree_rss(proc) / 1048576, 1),
        }
    except Exception:
        _PROCS.pop(pid, None)
        return {"cpu_percent": None, "rss_mib": None}


def _start_env(script: RunningScript) -> dict[str, str] | None:
    """What a kernel of ``script`` must be started with: a ``write`` policy goes in
    its environment too, so the kernel can apply it (Landlock) before it starts a
    thread (vwed_kernel/landlock.py); such a kernel does not come from the pool."""
    write = (script.policy or {}).get("write")
    if write is None:
        return None
    folder = os.path.dirname(script.source.file)
    return {"VWED_KERNEL_POLICY": json.dumps({"write": write, "folder": folder})}


# psutil.Process objects keep the CPU times of the previous look (per kernel process).
_PROCS: dict[int, Any] = {}


class ScriptEngine:
    """Running scripts, by id and by path."""

    def __init__(
        self,
        store: ScriptStore,
        registry: Registry,
        pool: KernelPool,
        logs: LogHub,
        *,
        boot_timeout: float = 60.0,
        debug: bool = False,
        db: StoreService | None = None,
        restart_limit: int = 5,
        restart_window: float = 60.0,
        restart_backoff: float = 0.5,
        max_kernels: int = 0,
        memory_limit_mb: int = 0,
        default_policy: dict[str, Any] | None = None,
    ) -> None:
        self.default_policy = default_policy
        self.max_kernels = max_kernels
        self.memory_limit_mb = memory_limit_mb
        self._monitor: asyncio.Task[None] | None = None
        self.restart_limit = restart_limit
        self.restart_window = restart_window
        self.restart_backoff = restart_backoff
        self.db = db
        self.store = store
        self.registry = registry
        self.pool = pool
        self.logs = logs
        self.boot_timeout = boot_timeout
        self.debug = debug
        self.on_kernel_event: Any = None  # set by the call router
        self.on_script_gone: Any = None  # set by the call router
        self._scripts: dict[str, RunningScript] = {}
        self._by_path: dict[str, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._run_writes: set[asyncio.Task[Any]] = set()  # run ends still being stored

    # -- queries ---------------------------------------------------------------------
    def running(self) -> list[RunningScript]:
        return sorted(self._scripts.values(), key=lambda s: s.started_at)

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

    def find(self, script_id: Any = None, script_path: Any = None) -> RunningScript:
        if script_id is not None:
            if not isinstance(script_id, str):
                raise BadRequest("'script_id' must be a string", "BAD_REQUEST")
            return self.get(script_id)
        if script_path is not None:
            rel = self.store.relative(self.store.resolve(script_path))
            sid = self._by_path.get(rel)
            if sid is None:
                raise NotFound(
                    f"script {rel!r} is not running", "NOT_RUNNING", details={"script_path": rel}
                )
            return self._scripts[sid]
        raise BadRequest("give 'script_id' or 'script_path'", "MISSING_FIELD")

    def _lock(self, path: str) -> asyncio.Lock:
        return self._locks.setdefault(path, asyncio.Lock())

    # -- start -----------------------------------------------------------------------
    async def start(
        self,
        script_path: Any,
        replicas: Any = 1,
        restart: Any = "on-failure",
        memory_limit_mb: Any = None,
        policy: Any = None,
    ) -> RunningScript:
        if (
            isinstance(replicas, bool)
            or not isinstance(replicas, int)
            or not 1 <= replicas <= MAX_REPLICAS
        ):
            raise BadRequest(
                f"'replicas' must be an integer from 1 to {MAX_REPLICAS}", "BAD_REQUEST"
            )
        if restart not in RESTART_POLICIES:
            raise BadRequest(
                f"'restart' must be one of {', '.join(RESTART_POLICIES)}", "BAD_REQUEST"
            )
        requested = {"memory_limit_mb": memory_limit_mb, "policy": policy}
        if memory_limit_mb is None:
            memory_limit_mb = self.memory_limit_mb
        if (
            isinstance(memory_limit_mb, bool)
            or not isinstance(memory_limit_mb, int)
            or memory_limit_mb < 0
        ):
            raise BadRequest(
                "'memory_limit_mb' must be a whole number of MiB (0: none)", "BAD_REQUEST"
            )
        if policy is None:
            policy = self.default_policy
        if policy is not None and not isinstance(policy, dict):
            raise BadRequest(
                "'policy' must be an object with 'network', 'subprocess' and/or "
                "'write' (docs/security.md)",
                "BAD_POLICY",
            )
        if self.max_kernels:
            used = sum(
                len(s.kernels) or s.replicas
                for s in self._scripts.values()
                if s.status in ("starting", "running", "restarting")
            )
            if used + replicas > self.max_kernels:
                raise ServiceUnavailable(
                    f"{used} script kernels run already; the limit is {self.max_kernels}",
                    "TOO_MANY_KERNELS",
                )
        source = self.store.load(script_path)
        async with self._lock(source.path):
            existing = self._by_path.get(source.path)
            if existing is not None:
                current = self._scripts[existing]
                if current.status not in ("died", "crashed"):
                    raise Conflict(
                        f"script {source.path!r} is already running",
                        "ALREADY_RUNNING",
                        details={"script_id": existing},
                    )
                self._forget(current)
            script_id = f"{source.path}_{int(time.time() * 1000)}"
            while script_id in self._scripts:  # two starts in the same millisecond
                script_id += "_"
            script = RunningScript(
                script_id,
                source.path,
                source,
                replicas,
                time.time(),
                restart=restart,
                memory_limit_mb=memory_limit_mb,
                policy=policy or None,
                requested=requested,
            )
            self._scripts[script_id] = script
            self._by_path[source.path] = script_id
            await self._record_run(script)
            self.logs.engine(
                script_id,
                "INFO",
                f"starting {source.path}" + (f" ({replicas} replicas)" if replicas > 1 else ""),
            )
            try:
                kernels = await asyncio.gather(
                    *(self._boot_replica(script, i) for i in range(replicas)),
                    return_exceptions=True,
                )
                good = [k for k in kernels if isinstance(k, ScriptKernel)]
                errors = [e for e in kernels if isinstance(e, BaseException)]
                if errors:
                    for k in good:
                        self._spawn(k.shutdown(now=True))
                    raise errors[0]
                regs = self._same_registrations(script, [k.registrations for k in good])
                self.registry.commit(script_id, regs)
            except BaseException as exc:
                self._forget(script)
                reason = getattr(exc, "code", None) or type(exc).__name__
                self.logs.engine(
                    script_id,
                    "ERROR",
                    f"start of {source.path} failed: {reason}: {getattr(exc, 'message', exc)}",
                )
                self._end_run(script, "failed", str(reason))
                raise
            script.kernels = sorted(good, key=lambda k: k.replica)
            script.registrations = regs
            script.status = "running"
            script.ready.set()
            self._end_run(script, "running", None, ended=False)
            await self._remember(script)
            self.logs.engine(
                script_id,
                "INFO",
                f"booted {source.path}: " + ", ".join(f"{v} {k}" for k, v in regs.counts().items()),
            )
            return script

    async def _record_run(self, script: RunningScript) -> None:
        if self.db is None:
            return
        try:
            script.run_id = await self.db.write(
                self.db.db.run_started,
                script.script_id,
                script.path,
                script.replicas,
                script.started_at,
            )
        except Exception as exc:
            # start goes on without a run record (its logs carry no run id): a script
            # must not stay down because the history database is slow or away
            log.warning("could not record the run of %s: %s", script.script_id, exc)
            self.logs.engine(
                script.script_id,
                "WARNING",
                "the run could not be recorded in the database "
                f"({getattr(exc, 'message', exc)}); the script starts without a run record",
            )
            return
        self.logs.run_started(script.script_id, script.run_id)

    async def _remember(self, script: RunningScript) -> None:
        """Stored before ``start`` answers: a gateway killed right after still restores it."""
        if self.db is not None:
            try:
                await self.db.write(
                    self.db.db.desire,
                    script.path,
                    script.replicas,
                    script.restart,
                    time.time(),
                    script.requested,
                )
            except StoreTimeout as exc:  # the database is slow or away: no traceback
                log.warning("could not store %s as a script to restore: %s", script.path, exc)
            except Exception:
                log.exception("could not store %s as a script to restore", script.path)

    async def forget_desired(self, script_path: str) -> None:
        """An operator stopped the script: do not start it again with the gateway."""
        if self.db is not None:
            try:
                await self.db.write(self.db.db.undesire, script_path)
            except StoreTimeout as exc:
                log.warning("could not forget %s as a script to restore: %s", script_path, exc)
            except Exception:
                log.exception("could not forget %s as a script to restore", script_path)

    async def restore(self) -> None:
        """Start again the scripts that were running when the gateway last stopped (or
        died), each on its own: one that fails to boot does not block the others."""
        if self.db is None:
            return
        try:
            desired = await self.db.read(self.db.db.desired)
        except Exception:
            log.exception("could not read the scripts to restore")
            return

        async def one(row: dict[str, Any]) -> None:
            try:
                options = row.get("options") or {}
                script = await self.start(
                    row["script_path"],
                    row["replicas"],
                    row["restart"],
                    options.get("memory_limit_mb"),
                    options.get("policy"),
                )
                self.logs.engine(
                    script.script_id,
                    "INFO",
                    f"restored {row['script_path']} after a gateway restart",
                )
            except Exception as exc:
                self.logs.engine(
                    None,
                    "ERROR",
                    f"could not restore {row['script_path']}: {getattr(exc, 'message', exc)}",
                )

        if desired:
            self.logs.engine(None, "INFO", f"restoring {len(desired)} script(s)")
        await asyncio.gather(*(one(row) for row in desired))

    def start_monitor(self) -> None:
        """Watch the memory of script kernels with a limit (local kernels: RSS)."""
        if self._monitor is None:
            self._monitor = asyncio.ensure_future(self._watch_memory())

    async def _watch_memory(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            for script in list(self._scripts.values()):
                if not script.memory_limit_mb or script.status != "running":
                    continue
                for kernel in list(script.kernels):
                    rss = _usage(kernel.pid).get("rss_mib")
                    if rss is not None and rss > script.memory_limit_mb:
                        script.last_error = (
                            f"memory limit exceeded: {rss:.0f} MiB > {script.memory_limit_mb} MiB"
                        )
                        self.logs.engine(
                            script.script_id,
                            "ERROR",
                            f"{script.path} replica {kernel.replica}: {script.last_error}; "
                            "stopping its kernel",
                        )
                        # a death like any other: the restart policy applies
                        self._spawn(kernel.kill())

    async def drain(self, deadline: float) -> int:
        """Wait (up to ``deadline`` seconds) for the calls in flight to finish; returns
        how many were still running."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            busy = sum(k.bridge.in_flight for s in self._scripts.values() for k in s.kernels)
            if not busy:
                return 0
            await asyncio.sleep(0.05)
        return sum(k.bridge.in_flight for s in self._scripts.values() for k in s.kernels)

    def _end_run(
        self, script: RunningScript, status: str, reason: str | None, ended: bool = True
    ) -> None:
        if self.db is not None and script.run_id is not None:
            task = asyncio.ensure_future(
                self.db.write(
                    self.db.db.run_ended,
                    script.run_id,
                    status,
                    reason,
                    time.time() if ended else None,
                )
            )
            self._run_writes.add(task)
            task.add_done_callback(self._run_writes.discard)
            task.add_done_callback(_retrieve)

    async def _boot_replica(self, script: RunningScript, index: int) -> ScriptKernel:
        kernel = await self.pool.acquire(_start_env(script))
        kernel.script_id = script.script_id
        kernel.replica = index
        kernel.bridge.on_event = self.on_kernel_event
        kernel.on_iopub = self.logs.on_iopub
        kernel.on_closed = self.logs.kernel_gone
        kernel.on_death = self._on_kernel_death
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
            kernel.on_death = None
            self._spawn(kernel.shutdown(now=True))
            raise
        return kernel

    @staticmethod
    def _same_registrations(
        script: RunningScript, sets: list[ScriptRegistrations]
    ) -> ScriptRegistrations:
        first = sets[0]
        for other in sets[1:]:
            if set(other.routes) != set(first.routes) or set(other.functions) != set(
                first.functions
            ):
                raise ScriptError(
                    f"the replicas of {script.path!r} registered different routes or "
                    "functions; boot() must register the same in every replica",
                    "BOOT_FAILED",
                    details={"phase": "boot"},
                )
        return first

    # -- stop ------------------------------------------------------------------------
    async def stop(self, script: RunningScript, reason: str = "stopped") -> RunningScript:
        async with self._lock(script.path):
            if self._scripts.get(script.script_id) is not script:
                raise NotFound(f"script {script.script_id!r} is not running", "NOT_RUNNING")
            # Unregister first: new calls get 404 at once, never a hang.
            self.registry.remove(script.script_id)
            if self.on_script_gone is not None:
                self.on_script_gone(script.script_id)
            script.status = "stopping"
            kernels, script.kernels = script.kernels, []
            # Let output already produced (e.g. by the last call) reach the logs first.
            await asyncio.gather(*(k.barrier(1.0) for k in kernels), return_exceptions=True)
            await asyncio.gather(*(k.shutdown() for k in kernels), return_exceptions=True)
            script.exit_reason = reason
            self._forget(script)
            self.logs.engine(script.script_id, "INFO", f"stopped {script.path} ({reason})")
            self._end_run(script, "stopped", reason)
            return script

    async def reload(self, script: RunningScript) -> RunningScript:
        """Zero-downtime reload from the file: boot new kernels beside the old ones, swap
        the registrations atomically, then let the old kernels finish their calls and
        stop them. If the new boot fails, the old kernels keep serving."""
        async with self._lock(script.path):
            if self._scripts.get(script.script_id) is not script or script.status != "running":
                raise NotFound(f"script {script.script_id!r} is not running", "NOT_RUNNING")
            source = self.store.load(script.path)
            old_source = script.source
            script.source = source
            results = await asyncio.gather(
                *(self._boot_replica(script, i) for i in range(script.replicas)),
                return_exceptions=True,
            )
            good = [k for k in results if isinstance(k, ScriptKernel)]
            errors = [e for e in results if isinstance(e, BaseException)]
            try:
                if errors:
                    raise errors[0]
                regs = self._same_registrations(script, [k.registrations for k in good])
                self.registry.commit(
                    script.script_id, regs
                )  # atomic swap (or 409, nothing changed)
            except BaseException as exc:
                script.source = old_source
                for kernel in good:
                    kernel.on_death = None
                    self._spawn(kernel.shutdown(now=True))
                self.logs.engine(
                    script.script_id,
                    "ERROR",
                    f"reload of {script.path} failed, the running "
                    f"version keeps serving: {getattr(exc, 'message', exc)}",
                )
                raise
            old, script.kernels = script.kernels, sorted(good, key=lambda k: k.replica)
            script.registrations = regs
        self.logs.engine(script.script_id, "INFO", f"reloaded {script.path} from its file")
        self._spawn(self._retire(old))
        return script

    async def _retire(self, kernels: list[ScriptKernel], deadline: float = 30.0) -> None:
        """Stop kernels that no longer get new calls, once their calls are done."""
        end = time.monotonic() + deadline
        while time.monotonic() < end and any(k.bridge.in_flight for k in kernels):
            await asyncio.sleep(0.05)
        await asyncio.gather(*(k.barrier(1.0) for k in kernels), return_exceptions=True)
        await asyncio.gather(*(k.shutdown() for k in kernels), return_exceptions=True)

    def watch(self, interval: float = 1.0) -> None:
        """Reload a running script when its file changes (``--watch``)."""
        self._spawn(self._watch_files(interval))

    async def _watch_files(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            for script in list(self._scripts.values()):
                if script.status != "running":
                    continue
                try:
                    st = os.stat(script.source.file)
                except OSError:
                    continue
                if (st.st_mtime, st.st_size) != (script.source.mtime, script.source.size):
                    try:
                        await self.reload(script)
                    except Exception:
                        # logged by reload; remember this version so it is not retried in a loop
                        script.source.mtime, script.source.size = st.st_mtime, st.st_size

    async def restart(self, script: RunningScript) -> RunningScript:
        replicas, restart, asked = script.replicas, script.restart, script.requested
        await self.stop(script, "restarted")
        return await self.start(
            script.path, replicas, restart, asked.get("memory_limit_mb"), asked.get("policy")
        )

    def _forget(self, script: RunningScript) -> None:
        self.registry.remove(script.script_id)
        self._scripts.pop(script.script_id, None)
        if self._by_path.get(script.path) == script.script_id:
            del self._by_path[script.path]

    async def close(self) -> None:
        """Stop every script (concurrently), then cancel background work."""
        await asyncio.gather(
            *(self.stop(s, "gateway shutdown") for s in list(self._scripts.values())),
            return_exceptions=True,
        )
        if self._monitor is not None:
            self._monitor.cancel()
        if self._run_writes:
            # The runs' ends are stored before the gateway goes (each write has the
            # store's deadline): a run left open would be taken, at the next start, for
            # one of a gateway that died.
            await asyncio.wait(list(self._run_writes))
        for task in list(self._background):
            task.cancel()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- death -----------------------------------------------------------------------
    async def _on_kernel_death(self, kernel: ScriptKernel) -> None:
        script = self._scripts.get(kernel.script_id or "")
        if script is None or kernel not in script.kernels or script.status != "running":
            return
        script.kernels.remove(kernel)
        if script.kernels:
            # Other replicas take the new calls at once; a replacement boots meanwhile.
            self.logs.engine(
                script.script_id,
                "WARNING",
                f"replica {kernel.replica} of {script.path} died; replacing it",
            )
            self._spawn(self._replace(script, kernel.replica))
            return
        if not (script.last_error or "").startswith("memory limit"):
            script.last_error = "the kernel died"
        if self.on_script_gone is not None:
            self.on_script_gone(script.script_id)
        if script.restart != "never" and self._may_restart(script):
            return
        self._down(script, "died", "kernel died")

    def _down(self, script: RunningScript, status: str, reason: str) -> None:
        self.registry.remove(script.script_id)
        script.status = status
        script.exit_reason = reason
        script.registrations = ScriptRegistrations()
        script.ready.set()  # waiting calls wake up and get 503
        self.logs.engine(script.script_id, "ERROR", f"{script.path} is down: {reason}")
        self._end_run(script, status, reason)

    def _may_restart(self, script: RunningScript) -> bool:
        """Schedule a restart after a crash, unless the script is in a crash loop."""
        now = time.monotonic()
        script.crashes = [t for t in script.crashes if now - t < self.restart_window] + [now]
        if len(script.crashes) > self.restart_limit:
            self._down(
                script,
                "crashed",
                f"crash loop: {len(script.crashes)} crashes in "
                f"{self.restart_window:g} s; last error: {script.last_error}",
            )
            return True
        delay = min(30.0, self.restart_backoff * 2 ** (len(script.crashes) - 1))
        script.status = "restarting"
        script.ready.clear()
        self.logs.engine(
            script.script_id,
            "WARNING",
            f"{script.path} crashed ({script.last_error}); restarting in {delay:g} s",
        )
        self._spawn(self._restart_after_crash(script, delay))
        return True

    async def _restart_after_crash(self, script: RunningScript, delay: float) -> None:
        await asyncio.sleep(delay)
        if script.status != "restarting" or self._scripts.get(script.script_id) is not script:
            return
        results = await asyncio.gather(
            *(self._boot_replica(script, i) for i in range(script.replicas)), return_exceptions=True
        )
        good = [k for k in results if isinstance(k, ScriptKernel)]
        errors = [e for e in results if isinstance(e, BaseException)]
        if errors or script.status != "restarting":
            for kernel in good:
                kernel.on_death = None
                self._spawn(kernel.shutdown(now=True))
            if script.status == "restarting":
                err = errors[0]
                script.last_error = (
                    f"{getattr(err, 'code', type(err).__name__)}: {getattr(err, 'message', err)}"
                )
                self._may_restart(script)
            return
        script.kernels = sorted(good, key=lambda k: k.replica)
        self.registry.commit(script.script_id, good[0].registrations)
        script.registrations = good[0].registrations
        script.restarts += 1
        script.status = "running"
        script.ready.set()
        self.logs.engine(
            script.script_id,
            "INFO",
            f"{script.path} restarted after a crash (restart {script.restarts})",
        )

    async def _replace(self, script: RunningScript, index: int) -> None:
        try:
            kernel = await self._boot_replica(script, index)
        except Exception as exc:
            self.logs.engine(
                script.script_id,
                "ERROR",
                f"replica {index} of {script.path} could not be replaced: {exc}",
            )
            return
        if script.status != "running" or self._scripts.get(script.script_id) is not script:
            await kernel.shutdown(now=True)
            return
        script.kernels.append(kernel)
        script.kernels.sort(key=lambda k: k.replica)
        self.logs.engine(script.script_id, "INFO", f"replica {index} of {script.path} replaced")


def _retrieve(task: asyncio.Task[Any]) -> None:
    """A run's end that could not be stored is logged here, not as "never retrieved"
    (the next start ends a run left open)."""
    if not task.cancelled() and task.exception() is not None:
        log.warning("could not store the end of a run: %s", task.exception())
