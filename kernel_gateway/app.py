"""The gateway application: wiring of services into handlers, start/stop, CLI.

``Gateway`` pairs every setup step with its teardown (kernel pool, engine, HTTP
server), so tests and the CLI start and stop it the same way.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from tornado import httpserver, web
from tornado.netutil import bind_sockets

from . import __version__
from .bodylimit import BodyLimit
from .config import ConfigError, Settings, parse_settings
from .engine import ScriptEngine
from .handlers.base import NotFoundHandler, Tokens
from .handlers.calls import EventHandler, FunctionCallHandler, FunctionListHandler, ScriptApiHandler
from .handlers.files import FilesExportHandler, FilesHandler, FilesTreeHandler
from .handlers.jupyter import (
    ApiRootHandler,
    KernelActionHandler,
    KernelChannelsHandler,
    KernelConnectionHandler,
    KernelHandler,
    KernelsHandler,
    KernelSpecsHandler,
)
from .handlers.lifecycle import (
    ReloadHandler,
    RestartHandler,
    RunningHandler,
    ScriptHandler,
    StartHandler,
    StopHandler,
)
from .handlers.logs import LogExportHandler, LogHistoryHandler, LogStreamHandler, RunsHandler
from .handlers.ops import HealthHandler, MetricsHandler, OpenAPIHandler
from .handlers.platform import LocationsHandler, PlatformTasksHandler, RobotsHandler
from .handlers.sockets import ScriptWebSocketHandler
from .handlers.steps import (
    CancelExecutionHandler,
    ExecuteHandler,
    ExecutionsHandler,
    TaskVariablesHandler,
)
from .kernels import KernelPool, ScriptKernel
from .kernelspec import KERNEL_NAME, make_kernelspec_manager, write_gateway_kernelspec
from .logs import LogHub
from .mail import Mailer
from .metrics import Metrics
from .openapi import build_openapi
from .platform import EmbeddedBackend, HttpBackend, PlatformBackend
from .registry import Registry
from .routing import CallRouter
from .scratch import ScratchKernels
from .scripts import ScriptStore
from .steps import StepService
from .store import Database, DatabaseError
from .store.service import StoreService
from .workers import WorkerPool

__all__ = ["Gateway", "make_app", "main", "ROUTES"]

log = logging.getLogger("kernel_gateway")

# (url pattern, handler, services it needs). The OpenAPI document must list each.
ROUTES: list[tuple[str, type[web.RequestHandler], tuple[str, ...]]] = [
    (r"/script-engine/start", StartHandler, ("engine",)),
    (r"/script-engine/stop", StopHandler, ("engine",)),
    (r"/script-engine/restart", RestartHandler, ("engine",)),
    (r"/script-engine/reload", ReloadHandler, ("engine",)),
    (r"/script-engine/running", RunningHandler, ("engine",)),
    (r"/script-engine/scripts/(.+)", ScriptHandler, ("engine",)),
    (r"/script-engine/functions", FunctionListHandler, ("router",)),
    (r"/script-engine/functions/([^/]+)/call", FunctionCallHandler, ("router",)),
    (r"/script-engine/events/([^/]+)", EventHandler, ("router",)),
    (r"/script-engine/files", FilesTreeHandler, ("store",)),
    (r"/script-engine/files/(.+)/export", FilesExportHandler, ("store",)),
    (r"/script-engine/files/(.+)", FilesHandler, ("store",)),
    (r"/script-engine/health", HealthHandler, ("engine", "pool", "steps")),
    (r"/script-engine/openapi.json", OpenAPIHandler, ("document",)),
    (r"/metrics", MetricsHandler, ("metrics",)),
    (r"/script-engine/execute", ExecuteHandler, ("steps",)),
    (r"/script-engine/executions", ExecutionsHandler, ("steps",)),
    (r"/script-engine/executions/([^/]+)/cancel", CancelExecutionHandler, ("steps",)),
    (r"/script-engine/tasks/([^/]+)/variables", TaskVariablesHandler, ("steps",)),
    (r"/script-engine/platform/locations", LocationsHandler, ("embedded",)),
    (r"/script-engine/platform/robots", RobotsHandler, ("embedded",)),
    (r"/script-engine/platform/tasks", PlatformTasksHandler, ("embedded",)),
    (r"/script-engine/runs", RunsHandler, ("hub",)),
    (r"/script-engine/logs", LogHistoryHandler, ("hub",)),
    (r"/script-engine/logs/export", LogExportHandler, ("hub",)),
    (r"/script-engine/logs/ws", LogStreamHandler, ("hub",)),
    (r"/api", ApiRootHandler, ("engine", "scratch")),
    (r"/api/kernelspecs", KernelSpecsHandler, ("engine", "scratch")),
    (r"/api/kernelspecs/([^/]+)", KernelSpecsHandler, ("engine", "scratch")),
    (r"/api/kernels", KernelsHandler, ("engine", "scratch")),
    (r"/api/kernels/([^/]+)", KernelHandler, ("engine", "scratch")),
    (r"/api/kernels/([^/]+)/(interrupt|restart)", KernelActionHandler, ("engine", "scratch")),
    (r"/api/kernels/([^/]+)/channels", KernelChannelsHandler, ("engine", "scratch", "hub")),
    (
        r"/script-engine/kernels/([^/]+)/connection",
        KernelConnectionHandler,
        ("engine", "scratch", "hub"),
    ),
    (r"/script-api/(.*)", ScriptApiHandler, ("router",)),
    (r"/script-ws/(.*)", ScriptWebSocketHandler, ("router",)),
]


access_log = logging.getLogger("tornado.access")


def log_request(handler: web.RequestHandler) -> None:
    """Access log: failures at WARNING/ERROR; successes only at DEBUG (the hot path
    of a busy gateway should not format a log line per call)."""
    status = handler.get_status()
    if status < 400:
        if access_log.isEnabledFor(logging.DEBUG):
            access_log.debug(
                "%d %s %.2fms",
                status,
                handler._request_summary(),
                1000.0 * handler.request.request_time(),
            )
        return
    level = logging.WARNING if status < 500 else logging.ERROR
    access_log.log(
        level,
        "%d %s %.2fms",
        status,
        handler._request_summary(),
        1000.0 * handler.request.request_time(),
    )


def make_app(services: dict[str, Any], settings: Settings, tokens: Tokens) -> web.Application:
    """The Tornado application; handlers get their services via ``initialize``."""
    origins = tuple(o.strip() for o in settings.allow_origins.split(",") if o.strip())
    handlers = []
    for pattern, handler, needs in ROUTES:
        kwargs = {name: services[name] for name in needs}
        kwargs["token"] = tokens
        kwargs["allow_origins"] = origins
        handlers.append((pattern, handler, kwargs))
    return web.Application(
        handlers,
        default_handler_class=NotFoundHandler,
        default_handler_args={"token": tokens, "allow_origins": origins},
        debug=False,
        serve_traceback=False,
        log_function=log_request,
        websocket_ping_interval=20,
    )


def _stored_token(path: Path) -> str:
    """The token kept in ``path`` (mode 0600), made at first start."""
    import secrets

    if path.exists():
        token = path.read_text().strip()
        if token:
            return token
    token = secrets.token_hex(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.chmod(path, 0o600)
    return token


class Gateway:
    """A running gateway: kernel pool, engine, HTTP server."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port: int | None = None
        self._server: httpserver.HTTPServer | None = None
        self._restore: asyncio.Future[None] | None = None
        data_dir = Path(settings.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        write_gateway_kernelspec(data_dir)
        self.ksm = make_kernelspec_manager(data_dir)
        self.kernel_name = settings.kernel_name or KERNEL_NAME
        self.tokens = Tokens(
            settings.token or _stored_token(data_dir / "token") if settings.auth else "",
            settings.caller_token or _stored_token(data_dir / "caller_token")
            if settings.auth
            else "",
            enabled=settings.auth,
        )
        self.store = ScriptStore(settings.scripts_dir, settings.max_file_size)
        self.registry = Registry()
        self.db = StoreService(
            Database(settings.database_url),
            retention_days=settings.log_retention_days,
            retention_records=settings.log_retention_records,
            max_queue=settings.log_queue_max,
        )
        self.logs = LogHub(self.db, ring_bytes=settings.log_buffer_mb * 1024 * 1024)
        self.pool = KernelPool(self._start_kernel, settings.pool_size)
        self.engine = ScriptEngine(
            self.store,
            self.registry,
            self.pool,
            self.logs,
            boot_timeout=settings.boot_timeout,
            debug=settings.debug,
            db=self.db,
            restart_limit=settings.restart_limit,
            restart_window=settings.restart_window,
            restart_backoff=settings.restart_backoff,
            max_kernels=settings.max_kernels,
            memory_limit_mb=settings.memory_limit_mb,
            default_policy=settings.default_policy,
        )
        self.workers = WorkerPool(
            self._start_kernel,
            settings.workers or os.cpu_count() or 2,
            settings.step_queue,
            on_ready=self._worker_ready,
        )
        self.steps = StepService(
            self.store,
            self.workers,
            self.logs,
            self.db,
            timeout=settings.call_timeout,
            grace=settings.step_grace,
            debug=settings.debug,
        )
        mailer = Mailer(
            settings.smtp_host,
            settings.smtp_port,
            user=settings.smtp_user,
            password=settings.smtp_password,
            sender=settings.smtp_from,
            tls=settings.smtp_tls,
        )
        self.scratch = ScratchKernels(self.ksm, self.kernel_name)
        self.metrics = Metrics(self)
        self.embedded = EmbeddedBackend(self.db)
        self.platform: PlatformBackend = (
            HttpBackend(settings.platform_url, settings.platform_token)
            if settings.platform_url
            else self.embedded
        )
        self.router = CallRouter(
            self.engine,
            self.registry,
            self.logs,
            call_timeout=settings.call_timeout,
            debug=settings.debug,
            store=self.db,
            mailer=mailer,
            platform=self.platform,
        )
        self.router.metrics = self.metrics
        self.router.max_in_flight = settings.max_in_flight

    def _worker_ready(self, worker: ScriptKernel) -> None:
        worker.on_iopub = self.logs.on_iopub
        worker.on_closed = self.logs.kernel_gone
        worker.bridge.on_event = self.router.on_kernel_event

    async def _start_kernel(self) -> ScriptKernel:
        return await ScriptKernel.start(
            self.ksm, self.kernel_name, fast_path=self.settings.fast_path
        )

    async def start(self) -> int:
        await self.logs.start()  # migrations run here, before the gateway listens
        services = {
            "engine": self.engine,
            "router": self.router,
            "store": self.store,
            "pool": self.pool,
            "hub": self.logs,
            "steps": self.steps,
            "embedded": self.embedded,
            "scratch": self.scratch,
            "metrics": self.metrics,
            "document": build_openapi(),
        }
        app = make_app(services, self.settings, self.tokens)
        self._server = httpserver.HTTPServer(
            BodyLimit(app, self.settings.max_body_size),
            max_body_size=self.settings.max_body_size,
            xheaders=False,
        )
        sockets = bind_sockets(self.settings.port, self.settings.ip)
        self._server.add_sockets(sockets)
        self.port = sockets[0].getsockname()[1]
        self.pool.start()
        self.workers.start()
        self.engine.start_monitor()
        if self.settings.watch:
            self.engine.watch()
        if self.settings.restore:
            self._restore = asyncio.ensure_future(self.engine.restore())
        log.info(
            "VWED gateway %s on http://%s:%s (scripts root %s, pool %d, database %s)",
            __version__,
            self.settings.ip,
            self.port,
            self.store.root,
            self.pool.size,
            self.db.db.safe_url,
        )
        if self.tokens.enabled:
            log.info(
                "admin token in %s; use http://%s:%s/script-engine/health?token=%s or "
                "'Authorization: token <T>'",
                Path(self.settings.data_dir) / "token",
                self.settings.ip,
                self.port,
                self.tokens.admin,
            )
        else:
            log.warning(
                "auth is OFF (--no-auth): anyone who can reach %s:%s controls the gateway",
                self.settings.ip,
                self.port,
            )
        return self.port

    async def stop(self) -> None:
        """Stop listening, let calls in flight finish (up to --drain-timeout), stop the
        scripts (they stay desired: a new gateway restores them), flush the logs."""
        if self._server is not None:
            self._server.stop()
        left = await self.engine.drain(self.settings.drain_timeout)
        if left:
            log.warning(
                "%d call(s) still in flight after %g s; stopping anyway",
                left,
                self.settings.drain_timeout,
            )
        await self.engine.close()
        await self.pool.close()
        await self.workers.close()
        await self.scratch.close()
        if self._server is not None:
            await self._server.close_all_connections()
        await self.platform.close()
        await self.logs.close()


async def _serve(settings: Settings) -> None:
    gateway = Gateway(settings)
    await gateway.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            # No loop signal handlers here (Windows' event loop): the default SIGINT handler
            # stays, so Ctrl-C still ends the gateway, without the drain of SIGTERM.
            pass
    await stop.wait()
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
    try:
        asyncio.run(_serve(settings))
    except DatabaseError as exc:
        print(f"vwed-gateway: {exc}", file=sys.stderr)
        return 3
    except OSError as exc:  # the port is taken, the data dir is not writable, ...
        print(f"vwed-gateway: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
