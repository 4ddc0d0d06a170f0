"""Script lifecycle: start a script in one or more pooled kernels (replicas),
commit its registrations, stop, restart and reload it (without downtime), and
reload it when its file changes (``--watch``).

Every boot of a whole script (start, reload, restart after a crash) goes through
one ``_boot_all``: N replicas, all or nothing. Calls are routed by
``routing.CallRouter`` from the same ``ScriptTable``; deaths and crash restarts are
the ``Supervisor``'s; run records and restore are ``RunHistory``'s."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from ..background import Background
from ..check import compiles
from ..cpuquota import CpuQuotas
from ..deps import Environment, Environments
from ..errors import Conflict, NotFound, ServiceUnavailable
from ..kernels import KernelEvents, ScriptKernel
from ..logs import LogHub
from ..pool import KernelPool
from ..quotas import RateLimit, parse_rate_limit
from ..registry import Registry
from ..scripts import ScriptSource, ScriptStore
from ..store.service import StoreService
from .booting import Booting
from .model import RunningScript, ScriptTable, StartOptions
from .packages import GC_INTERVAL, ScriptPackages
from .persistence import RunHistory
from .reattach import RemoteKernels
from .resume import resume_script
from .revisions import Revisions, disk_stat, load_latest, load_source, warn_uncommitted
from .supervisor import Supervisor
from .watch import watch_files

__all__ = ["ScriptEngine"]

log = logging.getLogger("kernel_gateway.engine")


class ScriptEngine(Booting):
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
        environments: Environments | None = None,
        repo: Revisions | None = None,
        remote: RemoteKernels | None = None,
        rate_limit: RateLimit | None = None,
        cpu_quota: float = 0.0,
        cpu: CpuQuotas | None = None,
    ) -> None:
        self.scripts = scripts
        self.files = files
        self.repo = repo  # the scripts root as a Git repository: which revision runs
        self.registry = registry
        self.pool = pool
        self.logs = logs
        self.events = events
        self.boot_timeout = boot_timeout
        self.debug = debug
        self.max_kernels = max_kernels
        self.memory_limit_mb = memory_limit_mb
        self.default_policy = default_policy
        # remote kernels outlive a gateway that dies: reattached at restore (reattach.py)
        self.remote = remote
        self.runs = RunHistory(db, logs, remote.state if remote is not None else None)
        # quotas (docs/security.md "Quotas"): the defaults of scripts started without
        # their own, and the kernel cgroups that hold CPU quotas (None: not applied)
        self.rate_limit = rate_limit
        self.cpu_quota = cpu_quota
        self.cpu = cpu
        self.packages = ScriptPackages(environments, files.root, logs)
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
    async def start(
        self,
        script_path: str,
        options: StartOptions | None = None,
        *,
        lock: str | None = None,
        revision: str | None = None,
    ) -> RunningScript:
        """Start a script (its options checked by the handler); 409 if it runs already.
        Its packages are installed first, if missing (status ``installing``); ``lock``:
        the one recorded with it (a restore), installed again rather than resolved.
        ``revision``: the commit to run (short or full; None: the latest)."""
        options = options or StartOptions()
        if options.kernel_name is not None:
            self.pool.check_kernel_name(options.kernel_name)  # 400 UNKNOWN_KERNEL
        if self.max_kernels:
            used = self.scripts.kernels_in_use()
            if used + options.replicas > self.max_kernels:
                raise ServiceUnavailable(
                    f"{used} script kernels run already; the limit is {self.max_kernels}",
                    "TOO_MANY_KERNELS",
                )
        committing: asyncio.Future[ScriptSource] | None = None
        if revision is None:  # the latest: a file changed on disk is committed as it boots
            source, committing = await load_latest(self.files, self.repo, script_path)
        else:
            source = await load_source(self.files, self.repo, script_path, revision)
        await compiles(source)  # 422 SYNTAX_ERROR before any kernel is taken
        decl = self.packages.declaration(source)  # 422 DEPENDENCY_INVALID, likewise
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
            script = self.new_script(source, options, self.scripts.new_id(source.path, now), now)
            script.file_stat = disk_stat(source)
            script.revision = source.revision
            # the revision it runs, known once its commit is done (that of a file that did
            # not change: now); the run is recorded with it
            settled = asyncio.ensure_future(self._settle(script, committing))
            script.environment = None if lock else self.packages.ready(decl)
            if script.environment is None and (decl is not None or lock is not None):
                script.status = "installing"
            self.scripts.add(script)
            # the run is recorded while the kernel boots; its records wait for its id
            recorded = self.runs.begin(script, after=settled)
            replicas = options.replicas
            self.logs.engine(
                script.script_id,
                "INFO",
                f"starting {source.path}" + (f" ({replicas} replicas)" if replicas > 1 else ""),
            )
            try:
                if script.status == "installing":
                    await recorded  # its install's records carry the run id
                    script.environment = await self._install(script, lock)
                    script.status = "starting"
                    await self.runs.locked(script)
                self.packages.touch(script.environment, source.path)
                script.kernels, script.registrations = await self._boot_all(script)
            except BaseException as exc:
                self._forget(script)
                await asyncio.shield(recorded)  # the failed run is stored too
                reason = getattr(exc, "code", None) or type(exc).__name__
                self.logs.engine(
                    script.script_id,
                    "ERROR",
                    f"start of {source.path} failed: {reason}: {getattr(exc, 'message', exc)}",
                )
                if script.exit_reason is not None:  # stopped while it installed
                    self.runs.ended(script, "stopped", script.exit_reason)
                else:
                    self.runs.ended(script, "failed", str(reason))
                raise
            # its run id first (the record waits for the revision): a kernel that dies
            # from ``running`` on is seen by the supervisor, whose ``down`` stores the
            # run's end only with the run id
            await recorded
            script.status = "running"
            script.ready.set()
            for kernel in [k for k in script.kernels if not k.alive]:
                await self.supervisor.on_kernel_death(kernel)  # died while it was recorded
            if script.status not in ("died", "crashed"):
                await self.runs.serving(script)  # the run and the desired script: one commit
            counts = script.registrations.counts()
            self.logs.engine(
                script.script_id,
                "INFO",
                f"booted {source.path}: " + ", ".join(f"{v} {k}" for k, v in counts.items()),
            )
            return script

    async def _settle(
        self, script: RunningScript, committing: asyncio.Future[ScriptSource] | None
    ) -> None:
        """``script.revision`` once the commit of its changed file is done: that commit,
        if its text is the one that booted (the file may have changed again between the
        read and git's); else none, and the WARNING of a script that runs no commit."""
        if committing is not None:
            try:
                committed = await committing
            except Exception:  # the file runs as read: its commit is tried at the next start
                log.exception("committing %s failed", script.path)
            else:
                if committed.revision and committed.cells == script.source.cells:
                    script.source = committed
                    script.revision = committed.revision
        warn_uncommitted(self.logs, self.repo, script)

    def new_script(
        self, source: ScriptSource, options: StartOptions, script_id: str, started_at: float
    ) -> RunningScript:
        """A script to run with ``options``, the gateway's defaults where it gives none
        (memory limit, policy, rate limit, CPU quota): a start's, and a reattach's."""
        memory = options.memory_limit_mb
        rate = (
            self.rate_limit if options.rate_limit is None else parse_rate_limit(options.rate_limit)
        )
        return RunningScript(
            script_id,
            source.path,
            source,
            options,
            started_at,
            memory_limit_mb=self.memory_limit_mb if memory is None else memory,
            policy=(self.default_policy if options.policy is None else options.policy) or None,
            rate_limit=rate,
            bucket=None if rate is None else rate.bucket(),
            cpu_quota=self.cpu_quota if options.cpu_quota is None else options.cpu_quota,
        )

    # -- booting ---------------------------------------------------------------------
    async def _reboot(self, script: RunningScript) -> None:
        """All replicas again, after a crash (the supervisor's restart)."""
        script.kernels, script.registrations = await self._boot_all(
            script, lambda: script.status == "restarting" and self.scripts.holds(script)
        )
        self._tasks.spawn(self._keep_state(script))

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
        await self._keep_state(script)

    def _is_remote(self, script: RunningScript) -> bool:
        return self.remote is not None and any(k.host is not None for k in script.kernels)

    async def _keep_state(self, script: RunningScript) -> None:
        """A remote script's kernels changed (a restart after a crash, a replaced
        replica): what a restarted gateway reattaches to is stored again. Under the
        script's lock, and only while it runs: a stop's ``forget`` is never undone."""
        if not self._is_remote(script):
            return
        async with self._lock(script.path):
            if self.scripts.holds(script) and script.status in ("running", "restarting"):
                await self.runs.remember(script)

    # -- stop, restart, reload -------------------------------------------------------
    async def stop(self, script: RunningScript, reason: str = "stopped") -> RunningScript:
        if script.status == "installing":
            # its start holds the lock while it installs: cancel the install, let the
            # start clean up (it ends with SCRIPT_STOPPING), then it is stopped
            script.exit_reason = reason
            script.status = "stopping"
            if script.installing is not None:
                script.installing.cancel()
            async with self._lock(script.path):
                pass
            self.logs.engine(
                script.script_id, "INFO", f"stopped {script.path} while installing ({reason})"
            )
            return script
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

    async def restart(self, script: RunningScript, revision: str | None = None) -> RunningScript:
        """Stop and start again, at ``revision`` (None: the latest commit)."""
        source = await load_source(self.files, self.repo, script.path, revision)
        await compiles(source)  # a syntax error stops nothing
        # nor does a package that cannot be installed: it is installed while the
        # running version still serves, and the new start finds it ready
        await self.packages.for_source(source, script.script_id)
        await self.stop(script, "restarted")
        return await self.start(script.path, script.options, revision=source.revision)

    async def reload(self, script: RunningScript, revision: str | None = None) -> RunningScript:
        """Zero-downtime reload at ``revision`` (None: the latest commit; an older one is
        a rollback): boot new kernels beside the old ones, swap the registrations
        atomically, then let the old kernels finish their calls and stop them. If the
        new boot fails, the old kernels keep serving."""
        async with self._lock(script.path):
            if not self.scripts.holds(script) or script.status != "running":
                raise NotFound(f"script {script.script_id!r} is not running", "NOT_RUNNING")
            old_source, old_env, old_stat = script.source, script.environment, script.file_stat
            try:
                script.source = await load_source(self.files, self.repo, script.path, revision)
                script.file_stat = disk_stat(script.source)
                await compiles(script.source)  # 422 before any kernel is taken
                # a changed declaration is installed while the old version serves
                env = await self.packages.for_source(script.source, script.script_id)
                script.environment = env
                kernels, regs = await self._boot_all(script)
            except BaseException as exc:
                script.source, script.environment = old_source, old_env
                script.file_stat = old_stat
                self.logs.engine(
                    script.script_id,
                    "ERROR",
                    f"reload of {script.path} failed, the running "
                    f"version keeps serving: {getattr(exc, 'message', exc)}",
                )
                raise
            old, script.kernels = script.kernels, kernels
            script.registrations = regs
            script.revision = script.source.revision
            warn_uncommitted(self.logs, self.repo, script)
            self.packages.touch(env, script.path)
            changed = (_lock(env) != _lock(old_env), script.revision != old_source.revision)
            await self.runs.reloaded(script, *changed)
            if self._is_remote(script) and not any(changed):  # its new kernels, stored
                await self.runs.remember(script)
        at = f" at revision {script.revision[:12]}" if script.revision else " from its file"
        self.logs.engine(script.script_id, "INFO", f"reloaded {script.path}{at}")
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
        """Start again, in the background, the scripts desired when the gateway stopped
        (a remote script whose kernels still run: reattached to them, engine/resume.py)."""
        self.runs.restore_in_background(self.start, self.resume)

    async def resume(self, row: dict[str, Any]) -> RunningScript | None:
        """The desired script ``row`` reattached to its remote kernels that still run;
        None if there is none (it is started then)."""
        if self.remote is None:
            return None
        return await resume_script(self, self.remote, row)

    def collect_environments(self, interval: float = GC_INTERVAL) -> None:
        """Remove unused script environments now and every ``interval`` seconds
        (never one a running script uses)."""
        self._tasks.spawn(self._collect(interval))

    async def _collect(self, interval: float) -> None:
        # after the restore: its scripts' environments are in use by then (a restored
        # script must not find its environment removed under it)
        await self.runs.restored()
        await self.packages.gc_forever(self._environments_in_use, interval)

    def _environments_in_use(self) -> list[tuple[Environment, str]]:
        return [(s.environment, s.path) for s in self.scripts.running() if s.environment]

    def environment_users(self) -> dict[str, list[str]]:
        """Lock hash -> the running scripts (ids) whose kernels use that environment."""
        users: dict[str, list[str]] = {}
        for s in self.scripts.running():
            if s.environment is not None:
                users.setdefault(s.environment.lock.hash, []).append(s.script_id)
        return users

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


def _lock(env: Environment | None) -> str | None:
    return env.lock.hash if env is not None else None
