"""The gateway application: wiring of services into handlers, start/stop, CLI.

``Gateway`` pairs every setup step with its teardown (kernel pool, engine, HTTP
server), so tests and the CLI start and stop it the same way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from tornado import httpserver
from tornado.netutil import bind_sockets

from . import __version__, busypoll
from .config import ConfigError, Settings, parse_settings
from .cpuquota import CpuQuotas
from .datadir import secure_data_dir, stored_token
from .deploy import Deployer
from .deps import DepsSettings, Environments
from .drafts import DraftHub
from .engine import ScriptEngine, ScriptTable
from .engine.given import GivenAgain
from .engine.reattach import RemoteKernels
from .envworkers import EnvWorkerPools
from .errors import GatewayError, KernelStartError, StoreTimeout
from .executions.service import ExecutionService
from .executions.watchers import CallWatchers
from .forkserver import ForkServer
from .ha import ActiveLock, Failover, StandbyGate
from .handlers.base import Tokens
from .handlers.front import CallFront
from .httpfront import FrontServer
from .kernel_services import KernelServices
from .kernelenv import kernel_environment
from .kernels import KernelEvents, ScriptKernel
from .kernelspec import (
    KERNEL_NAME,
    fork_server_argv,
    make_kernelspec_manager,
    write_gateway_kernelspec,
)
from .kerneluser import KernelUser, KernelUserError, resolve_kernel_user, unreachable
from .launch import LaunchOptions
from .logs import LogHub
from .mail import Mailer
from .metrics import GatewayGauges, Metrics
from .modules_catalog import ModuleCatalog
from .mqtt_config import MqttConfig
from .openapi import build_openapi
from .platform import EmbeddedBackend, HttpBackend, PlatformBackend
from .pool import KernelPool
from .quotas import StepLimits
from .registry import Registry
from .remote import prepare_remote_provisioners
from .repo import GitFailed, ScriptRepo
from .routes import ROUTES, make_app, make_front
from .routing import CallRouter
from .scratch import ScratchKernels
from .scripts import ScriptStore
from .secrets import SecretsKey, SecretsKeyError
from .secrets.vault import Secrets
from .shared_modules import SharedModules
from .stats import CallStats
from .steps import StepService
from .store import Database, DatabaseError
from .store.service import StoreService, busy_threads
from .workers import WorkerPool

__all__ = ["Gateway", "make_app", "main", "ROUTES"]

log = logging.getLogger("kernel_gateway")


def _kernel_user(settings: Settings, argv0: str) -> KernelUser | None:
    """``--kernel-user``, checked against what its kernels must reach."""
    if not settings.kernel_user:
        return None
    try:
        user = resolve_kernel_user(settings.kernel_user)
    except KernelUserError as exc:
        raise ConfigError(str(exc)) from None
    for path, bits, what in (
        (settings.scripts_dir, 5, "read the scripts root"),
        (argv0, 1, "run the kernel's interpreter"),
        (str(settings.deps_path), 5, "read the scripts' package environments (--deps-dir)"),
    ):
        blocked = unreachable(path, user, bits)
        if blocked is not None:
            raise ConfigError(
                f"kernel_user {user.name!r} cannot {what} {path!r}: {blocked!r} is not open "
                "to it (give it read and search permission, or use another location)"
            )
    return user


def _deps_settings(settings: Settings) -> DepsSettings:
    """The scripts' environments: their folder made readable by kernels (0755; the
    data directory around it stays closed to listing), and where packages come from."""
    folder = settings.deps_path
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o755)
    return DepsSettings(
        dir=folder,
        index_url=settings.deps_index_url or None,
        find_links=settings.deps_find_links_dirs,
        timeout=settings.deps_timeout,
        gc_days=settings.deps_gc_days,
    )


class Gateway:
    """A running gateway: kernel pool, engine, HTTP server."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port: int | None = None
        # --ha: active only while holding the database's advisory lock (ha/)
        self.ha = (
            Failover(ActiveLock(settings.database_url, settings.db_timeout))
            if settings.ha
            else None
        )
        self._server: httpserver.HTTPServer | None = None
        self.http_front: FrontServer | None = None
        self.front: CallFront | None = None  # the HTTP front of calls (handlers/front.py)
        data_dir = Path(settings.data_dir)
        secure_data_dir(
            data_dir,
            None if settings.db_url else Path(settings.database_url[len("sqlite:///") :]),
            # a kernel user must reach <data-dir>/environments: search (not list) permission
            traversable=bool(settings.kernel_user),
        )
        self.environments = Environments(_deps_settings(settings))
        prepare_remote_provisioners()  # before a remote kernelspec's provisioner is imported
        write_gateway_kernelspec(data_dir, fork_server=settings.fork_server)
        self.ksm = make_kernelspec_manager(data_dir)
        self.kernel_name = settings.kernel_name or KERNEL_NAME
        self.launch = LaunchOptions(
            env=kernel_environment(settings.kernel_env_names),
            user=_kernel_user(settings, self._kernel_argv0()),
            cwd=str(Path(settings.scripts_dir).resolve()),
            # used by kernelspecs that name the fork provisioner (ours unless --no-fork-server)
            fork_server=ForkServer(fork_server_argv(sys.executable)),
        )
        self.tokens = Tokens(
            settings.token or stored_token(data_dir / "token") if settings.auth else "",
            settings.caller_token or stored_token(data_dir / "caller_token")
            if settings.auth
            else "",
            enabled=settings.auth,
        )
        try:  # before anything is opened: a bad key is a configuration error
            key = SecretsKey.load(settings.secrets_key_path)
        except SecretsKeyError as exc:
            raise ConfigError(str(exc)) from None
        self.store = ScriptStore(settings.scripts_dir, settings.max_file_size)
        # the scripts root as a Git repository: every write a commit (docs/versions.md)
        self.repo = ScriptRepo(
            self.store.root,
            settings.scripts_remote or None,
            home=data_dir.resolve(),
            # never versioned, when inside the root: the data dir (tokens, database), the
            # environments, the secrets key wherever it is
            exclude=(data_dir, settings.deps_path, settings.secrets_key_path),
        )
        self.modules = SharedModules(self.store)  # the root's modules, served to kernels
        self.registry = Registry()
        self.db = StoreService(
            Database(settings.database_url, settings.db_timeout),
            timeout=settings.db_timeout,
            spill_path=data_dir / "spill.jsonl",
            retention_days=settings.log_retention_days,
            retention_records=settings.log_retention_records,
            max_queue=settings.log_queue_max,
            end_orphans=not settings.ha,  # with --ha: at takeover (_activate)
        )
        self.logs = LogHub(
            self.db,
            ring_bytes=settings.log_buffer_mb * 1024 * 1024,
            sink_urls=settings.log_sink_urls,  # --log-sink
        )
        self.embedded = EmbeddedBackend(self.db)
        self.platform: PlatformBackend = (
            HttpBackend(settings.platform_url, settings.platform_token)
            if settings.platform_url
            else self.embedded
        )
        # Calls go in through the router and come out of kernels to their services;
        # both read the table of running scripts the engine writes.
        self.scripts = ScriptTable()
        # secrets for scripts (VWED.secrets): encrypted in the database, read by kernels
        self.secrets = Secrets(self.db, key, self.logs, self.scripts)
        # per-script series for the console (sampled; the table gives each script its meter)
        self.stats = CallStats(self.scripts, settings.stats_interval)
        self.scripts.meters = self.stats.meter
        self.metrics = Metrics()
        self.router = CallRouter(
            self.scripts,
            self.registry,
            self.logs,
            self.metrics,
            history=self.db,
            call_timeout=settings.call_timeout,
            max_timeout=settings.max_timeout,
            max_in_flight=settings.max_in_flight,
            debug=settings.debug,
        )
        self.services = KernelServices(
            self.scripts,
            self.registry,
            self.logs,
            self.metrics,
            self.router,
            platform=self.platform,
            mailer=Mailer(
                settings.smtp_host,
                settings.smtp_port,
                user=settings.smtp_user,
                password=settings.smtp_password,
                sender=settings.smtp_from,
                tls=settings.smtp_tls,
            ),
            modules=self.modules,
            secrets=self.secrets.kernel_get,
        )
        # VWED.mqtt: the broker's settings, asked by kernels (kernel_gateway/mqtt_config.py)
        mqtt_config = MqttConfig.from_settings(settings, self.logs.redactor)
        self.services.kernel_services["mqtt.config"] = mqtt_config.kernel_get
        self.cpu = CpuQuotas()  # kernel cgroups for CPU quotas (made on first use)

        def kernel_gone(kernel: ScriptKernel) -> None:
            self.logs.kernel_gone(kernel)
            self.cpu.release(kernel.kernel_id)  # its cgroup, if it had one

        events = KernelEvents(
            on_event=self.services.on_kernel_event,
            on_iopub=self.logs.on_iopub,
            on_closed=kernel_gone,
        )
        self.pool = KernelPool(
            self._start_kernel,
            settings.pool_size,
            kernel_name=self.kernel_name,
            kernel_names=lambda: self.ksm.find_kernel_specs().keys(),  # a start's kernel_name
        )
        self.engine = ScriptEngine(
            self.scripts,
            self.store,
            self.registry,
            self.pool,
            self.logs,
            events,
            db=self.db,
            on_script_gone=self.router.script_gone,
            boot_timeout=settings.boot_timeout,
            debug=settings.debug,
            restart_limit=settings.restart_limit,
            restart_window=settings.restart_window,
            restart_backoff=settings.restart_backoff,
            max_kernels=settings.max_kernels,
            memory_limit_mb=settings.memory_limit_mb,
            default_policy=settings.default_policy,
            repo=self.repo,  # which revision a start, reload, restart runs
            environments=self.environments,
            # remote kernels that outlive a gateway are reattached at restore (issue 19)
            remote=RemoteKernels(
                self.ksm,
                key,
                fast_path=settings.fast_path,
                # what a reattached kernel was given before: redacted again (issue 20)
                given_again=GivenAgain(self.secrets, mqtt_config, self.logs.redactor),
            ),
            rate_limit=settings.default_rate_limit,
            cpu_quota=settings.cpu_quota,
            cpu=self.cpu,
        )
        self.workers = WorkerPool(
            self._start_worker,
            settings.workers or os.cpu_count() or 2,
            settings.step_queue,
            events,
        )
        # steps of files that declare packages: workers per environment (envworkers.py)
        self.env_workers = EnvWorkerPools(
            self._start_worker,
            settings.deps_workers,
            settings.step_queue,
            events,
            idle=settings.deps_worker_idle,
        )
        self.watchers = CallWatchers()  # who follows a step's progress and output
        self.logs.on_call_record = self.watchers.record
        self.steps = StepService(
            self.store,
            self.workers,
            self.logs,
            self.db,
            timeout=settings.call_timeout,
            max_timeout=settings.max_timeout,
            grace=settings.step_grace,
            debug=settings.debug,
            modules=self.modules,
            env_pools=self.env_workers,
            environments=self.environments,
            watchers=self.watchers,
            limits=StepLimits(
                self.scripts,
                self.store,
                settings.default_rate_limit,
                on_refused=lambda path: self.metrics.rate_limited(path, "step"),
            ),
        )
        self.executions = ExecutionService(
            self.steps,
            self.db,
            self.logs,
            self.watchers,
            concurrency=settings.async_concurrency or self.workers.size,
            queue_max=settings.async_queue,
            retention_hours=settings.execution_retention_hours,
            metrics=self.metrics,
        )
        self.services.on_progress = self.executions.on_progress
        self.secrets.step_path = self.steps.path_of  # a step worker reads its file's secrets
        self.scratch = ScratchKernels(
            self.ksm,
            self.kernel_name,
            self.launch,
            DraftHub(
                self.services,
                deployer=Deployer(self.engine, self.store, self.repo),
                fast_path=settings.fast_path,
            ),
        )
        GatewayGauges(
            self.metrics.registry,
            self.scripts,
            self.pool,
            self.workers,
            self.scratch,
            self.db,
            self.logs,
            self.executions.status,
        )

    def _kernel_argv0(self) -> str:
        try:
            argv = self.ksm.get_kernel_spec(self.kernel_name).argv
        except Exception as exc:  # a missing spec is reported when a kernel starts
            log.debug("kernelspec %r not readable yet: %s", self.kernel_name, exc)
            return sys.executable
        return shutil.which(argv[0]) or argv[0] if argv else sys.executable

    async def _start_kernel(
        self, extra_env: dict[str, str] | None = None, kernel_name: str | None = None
    ) -> ScriptKernel:
        return await ScriptKernel.start(
            self.ksm,
            kernel_name or self.kernel_name,
            fast_path=self.settings.fast_path,
            launch=self.launch,
            extra_env=extra_env,
        )

    async def _start_worker(self, site: list[str] | None = None) -> ScriptKernel:
        """A worker kernel for steps, under the policy of the scripts it runs (``--policy``;
        relative ``write`` entries are under the scripts root), installed before any step;
        ``site``: the environment's site dir, added after the kernel's own paths (``prepare``)."""
        worker = await self._start_kernel()
        policy = self.settings.default_policy
        if policy is None and not site:
            return worker
        prepare: dict[str, object] = {"op": "prepare", "folder": str(self.store.root)}
        if policy is not None:
            prepare["policy"] = policy
        if site:
            prepare["site"] = site
        reply = await worker.bridge.call(prepare, timeout=30)
        if not reply.ok:
            await worker.shutdown(now=True)
            raise KernelStartError(f"a worker could not be prepared: {reply.error.get('message')}")
        return worker

    async def start(self) -> int:
        await self.logs.start()  # migrations run here, before the gateway listens
        self.services.start()  # the service plugins' records (load failures) into the log
        try:
            await self.secrets.check()  # secrets this key cannot decrypt: said, not fatal
        except GatewayError as exc:  # the database slow right now: the reads will say it
            log.warning("the stored secrets could not be checked at start: %s", exc.message)
        try:  # before a script is restored: it runs a revision of the repository
            await self.repo.open()
        except (OSError, GitFailed) as exc:
            raise ConfigError(
                f"the scripts root {self.store.root} cannot be used as a git repository "
                f"(the git program is needed): {exc}"
            ) from None
        if self.settings.cpu_quota and self.cpu.reason:
            log.warning(
                "--cpu-quota %g is not applied on this machine: %s. The kernels' CPU use "
                "is measured (cpu_percent in /script-engine/running), not held",
                self.settings.cpu_quota,
                self.cpu.reason,
            )
        services = {
            "engine": self.engine,
            "router": self.router,
            "store": self.store,
            "repo": self.repo,
            "pool": self.pool,
            "hub": self.logs,
            "steps": self.steps,
            "executions": self.executions,
            "embedded": self.embedded,
            "scratch": self.scratch,
            "metrics": self.metrics,
            "document": build_openapi(),
            "stats": self.stats,
            "secrets": self.secrets,
            "modules": ModuleCatalog(
                self.ksm, self.kernel_name, self.launch, self.services.plugins
            ),
            "about": {"version": __version__, "jupyter_url": self.settings.jupyter_url or None},
        }
        app = make_app(services, self.settings, self.tokens)
        # the call front, then the JSON 413 of BodyLimit, then the application
        delegate = self.front = make_front(app, services, self.settings, self.tokens)
        self._server = httpserver.HTTPServer(
            StandbyGate(delegate, self.ha) if self.ha is not None else delegate,
            max_body_size=self.settings.max_body_size,
            xheaders=False,
        )
        sockets = bind_sockets(self.settings.port, self.settings.ip)
        if self.settings.fast_http:  # calls parsed by httptools, the rest to Tornado's server
            self.http_front = FrontServer(self._server, self.front, self.ha)
            await self.http_front.listen(sockets)
        else:
            self._server.add_sockets(sockets)
        self.port = sockets[0].getsockname()[1]
        self.pool.start()
        self.workers.start()
        self.engine.start_monitor()
        self.stats.start()
        if self.settings.watch:
            self.engine.watch()
        if self.ha is None:
            await self._activate()
        else:  # a standby until it holds the lock (pool and workers kept warm meanwhile)
            self.ha.start(self._activate)
        log.info(
            "VWED gateway %s on http://%s:%s (scripts root %s, pool %d, database %s)",
            __version__,
            self.settings.ip,
            self.port,
            self.store.root,
            self.pool.size,
            self.db.safe_url,
        )
        if self.tokens.enabled:
            # Security: the token itself never goes into a log, only where to find it.
            log.info(
                "the admin token is in %s: send 'Authorization: token <T>' "
                '(e.g. curl -H "Authorization: token $(cat %s)" http://%s:%s/script-engine/running)',
                Path(self.settings.data_dir) / "token",
                Path(self.settings.data_dir) / "token",
                self.settings.ip,
                self.port,
            )
        else:
            log.warning(
                "auth is OFF (--no-auth): anyone who can reach %s:%s controls the gateway",
                self.settings.ip,
                self.port,
            )
        return self.port

    async def _activate(self) -> None:
        """What only the active gateway does: take over what the last one left (its
        runs, its asynchronous executions) and restore the desired scripts. With --ha
        the gate opens when this returns: once the restore is done (or boot_timeout)."""
        if self.ha is not None:
            try:
                ended = await self.db.end_orphan_runs()
                if ended:
                    self.logs.engine(
                        None,
                        "WARNING",
                        f"took over: {ended} run(s) of the gateway that was active marked ended",
                    )
            except GatewayError as exc:  # the restore goes on; the next takeover ends them
                log.warning("the runs of the last gateway could not be ended: %s", exc.message)
        await self.executions.start()  # what the last gateway left queued or running
        if self.settings.restore:
            self.engine.restore()
        self.engine.collect_environments()
        if self.ha is not None and self.settings.restore:
            restored = asyncio.shield(self.engine.runs.restored())
            await asyncio.wait([restored], timeout=self.settings.boot_timeout)

    async def fence(self) -> None:
        """--ha, the lock lost (503 STANDBY already): another gateway may start these
        scripts in a second, so their kernels are killed now, then the gateway stops
        without waiting for calls in flight."""
        kernels = [k for script in self.scripts.running() for k in script.kernels]
        await asyncio.gather(*(k.shutdown(now=True) for k in kernels), return_exceptions=True)
        await self.stop(drain=0.0)

    async def stop(self, drain: float | None = None) -> None:
        """Stop listening, let calls in flight finish (up to --drain-timeout, or
        ``drain``), stop the scripts (they stay desired: a new gateway restores them),
        flush the logs; with --ha, give the lock up last."""
        drain = self.settings.drain_timeout if drain is None else drain
        if self._server is not None:
            self._server.stop()
        if self.http_front is not None:
            self.http_front.stop()
        self.executions.stop_taking()  # queued executions stay queued for the next gateway
        deadline = time.monotonic() + drain
        left = await self.engine.drain(drain)
        if left:
            log.warning(
                "%d call(s) still in flight after %g s; stopping anyway",
                left,
                drain,
            )
        # running asynchronous executions get the drain time too; queued ones stay queued
        await self.executions.close(max(0.0, deadline - time.monotonic()))
        await self.stats.close()
        await self.engine.close()
        # a push or git's housekeeping under way ends (up to 10 s): beside the rest
        repo_closed = asyncio.ensure_future(self.repo.close())
        await self.services.close()
        await self.pool.close()
        await self.workers.close()
        await self.env_workers.close()
        await self.scratch.close()
        await self.launch.fork_server.close()  # after every kernel it forked was shut down
        self.cpu.close()  # the kernels' cgroups (the kernels are gone)
        if self.http_front is not None:
            await self.http_front.close_all_connections()
        elif self._server is not None:
            await self._server.close_all_connections()
        await self.platform.close()
        await self.logs.close()
        if self.launch.runtime_dir is not None:  # the kernel user's connection files
            shutil.rmtree(self.launch.runtime_dir, ignore_errors=True)
        await repo_closed
        if self.ha is not None:  # last: no script of this gateway runs any more
            await self.ha.close()


async def _serve(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            # No loop signal handlers here (Windows' event loop): the default SIGINT handler
            # stays, so Ctrl-C still ends the gateway, without the drain of SIGTERM.
            pass
    lost = False
    while True:
        gateway = Gateway(settings)
        if lost and gateway.ha is not None:
            gateway.ha.holdoff = 3 * gateway.ha.every  # the other standby's turn first
        await gateway.start()
        waits = [asyncio.ensure_future(stop.wait())]
        if gateway.ha is not None:
            waits.append(asyncio.ensure_future(gateway.ha.lost.wait()))
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in waits:
            task.cancel()
        if stop.is_set():
            break
        # --ha: it lost the lock: another gateway may be active now; its scripts stop
        # at once, and it starts again as a standby
        await gateway.fence()
        lost = True
        settings = dataclasses.replace(settings, port=gateway.port or settings.port)
    log.info("shutting down: stopping scripts")
    await gateway.stop()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        settings = parse_settings(argv)
    except ConfigError as exc:
        print(f"vwed-gateway: {exc}", file=sys.stderr)
        return 2
    code = 0
    off = busypoll.off_reason(settings.busy_poll_us)
    if off is not None and settings.busy_poll_us > 0:
        log.info("busy polling is off here: %s", off)
    try:
        busypoll.run(_serve(settings), settings.busy_poll_us)
    except ConfigError as exc:
        print(f"vwed-gateway: {exc}", file=sys.stderr)
        code = 2
    except (DatabaseError, StoreTimeout) as exc:
        print(f"vwed-gateway: {getattr(exc, 'message', exc)}", file=sys.stderr)
        code = 3
    except OSError as exc:  # the port is taken, the data dir is not writable, ...
        print(f"vwed-gateway: {exc}", file=sys.stderr)
        code = 3
    stuck = busy_threads()
    if stuck:
        # Threads stuck in a driver call on a stalled connection: the interpreter's
        # exit would join them (for as long as the stall). What they held is in the
        # spill file already; end the process without them.
        log.warning("%d database call(s) still stuck at exit: not waiting for them", stuck)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
