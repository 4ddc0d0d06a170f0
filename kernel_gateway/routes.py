"""The HTTP surface: every URL with its handler and the services it gets, the
Tornado application built from them, and its access log."""

from __future__ import annotations

import logging
from typing import Any

from tornado import web

from .bodylimit import BodyLimit
from .config import Settings
from .handlers.base import NotFoundHandler, Tokens
from .handlers.calls import EventHandler, FunctionCallHandler, FunctionListHandler, ScriptApiHandler
from .handlers.check import CheckHandler
from .handlers.console import ConsoleFileHandler, ConsoleIndexHandler
from .handlers.environments import DependenciesHandler, EnvironmentsHandler, PrefetchHandler
from .handlers.execute_ws import StepSocketHandler
from .handlers.executions import (
    CancelExecutionHandler,
    ExecutionHandler,
    ExecutionStreamHandler,
    ExecutionWaitHandler,
)
from .handlers.files import FilesExportHandler, FilesHandler, FilesTreeHandler
from .handlers.front import CallFront
from .handlers.jupyter import (
    ApiRootHandler,
    KernelActionHandler,
    KernelChannelsHandler,
    KernelConnectionHandler,
    KernelHandler,
    KernelsHandler,
    KernelSpecResourceHandler,
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
from .handlers.modules import ModulesHandler
from .handlers.observe import CallsHandler, StatsHandler, WhoamiHandler
from .handlers.ops import HealthHandler, MetricsHandler, OpenAPIHandler
from .handlers.platform import LocationsHandler, PlatformTasksHandler, RobotsHandler
from .handlers.secrets import SecretHandler, SecretsHandler
from .handlers.sockets import ScriptWebSocketHandler
from .handlers.steps import ExecuteHandler, ExecutionsHandler, TaskVariablesHandler
from .handlers.versions import (
    FileDiffHandler,
    FileHistoryHandler,
    FileRestoreHandler,
    FilesPullHandler,
)

__all__ = ["ROUTES", "make_app", "make_front", "log_request"]

# (url pattern, handler, services it needs). The OpenAPI document must list each.
ROUTES: list[tuple[str, type[web.RequestHandler], tuple[str, ...]]] = [
    (r"/script-engine/start", StartHandler, ("engine",)),
    (r"/script-engine/stop", StopHandler, ("engine",)),
    (r"/script-engine/restart", RestartHandler, ("engine",)),
    (r"/script-engine/reload", ReloadHandler, ("engine",)),
    (r"/script-engine/running", RunningHandler, ("engine",)),
    (r"/script-engine/check", CheckHandler, ("engine",)),
    (r"/script-engine/scripts/(.+)", ScriptHandler, ("engine",)),
    (r"/script-engine/environments", EnvironmentsHandler, ("engine",)),
    (r"/script-engine/environments/prefetch", PrefetchHandler, ("engine",)),
    (r"/script-engine/dependencies", DependenciesHandler, ("engine",)),
    (r"/script-engine/functions", FunctionListHandler, ("router",)),
    (r"/script-engine/functions/([^/]+)/call", FunctionCallHandler, ("router", "scratch")),
    (r"/script-engine/events/([^/]+)", EventHandler, ("router",)),
    (r"/script-engine/files", FilesTreeHandler, ("store", "repo")),
    (r"/script-engine/files/pull", FilesPullHandler, ("store", "repo")),
    (r"/script-engine/files/(.+)/export", FilesExportHandler, ("store", "repo")),
    (r"/script-engine/files/(.+)/history", FileHistoryHandler, ("store", "repo")),
    (r"/script-engine/files/(.+)/diff", FileDiffHandler, ("store", "repo")),
    (r"/script-engine/files/(.+)/restore", FileRestoreHandler, ("store", "repo")),
    (r"/script-engine/files/(.+)", FilesHandler, ("store", "repo")),
    (r"/script-engine/health", HealthHandler, ("engine", "pool", "steps")),
    (r"/script-engine/openapi.json", OpenAPIHandler, ("document",)),
    (r"/metrics", MetricsHandler, ("metrics",)),
    (r"/script-engine/execute", ExecuteHandler, ("steps", "executions")),
    (r"/script-engine/execute/ws", StepSocketHandler, ("steps", "executions")),
    (r"/script-engine/executions", ExecutionsHandler, ("steps", "executions")),
    (r"/script-engine/executions/([^/]+)", ExecutionHandler, ("executions",)),
    (r"/script-engine/executions/([^/]+)/wait", ExecutionWaitHandler, ("executions",)),
    (r"/script-engine/executions/([^/]+)/cancel", CancelExecutionHandler, ("executions",)),
    (r"/script-engine/executions/([^/]+)/ws", ExecutionStreamHandler, ("executions",)),
    (r"/script-engine/tasks/([^/]+)/variables", TaskVariablesHandler, ("steps",)),
    (r"/script-engine/platform/locations", LocationsHandler, ("embedded",)),
    (r"/script-engine/platform/robots", RobotsHandler, ("embedded",)),
    (r"/script-engine/platform/tasks", PlatformTasksHandler, ("embedded",)),
    (r"/script-engine/runs", RunsHandler, ("hub",)),
    (r"/script-engine/logs", LogHistoryHandler, ("hub",)),
    (r"/script-engine/logs/export", LogExportHandler, ("hub",)),
    (r"/script-engine/logs/ws", LogStreamHandler, ("hub",)),
    (r"/script-engine/calls", CallsHandler, ("hub",)),
    (r"/script-engine/stats", StatsHandler, ("stats",)),
    (r"/script-engine/whoami", WhoamiHandler, ("about",)),
    (r"/script-engine/secrets", SecretsHandler, ("secrets",)),
    (r"/script-engine/secrets/([^/]+)", SecretHandler, ("secrets",)),
    (r"/script-engine/modules", ModulesHandler, ("modules", "engine")),
    (r"/api", ApiRootHandler, ("engine", "scratch")),
    (r"/api/kernelspecs", KernelSpecsHandler, ("engine", "scratch")),
    (r"/api/kernelspecs/([^/]+)", KernelSpecsHandler, ("engine", "scratch")),
    (r"/kernelspecs/([^/]+)/([^/]+)", KernelSpecResourceHandler, ("engine", "scratch")),
    (r"/api/kernels", KernelsHandler, ("engine", "scratch")),
    (r"/api/kernels/([^/]+)", KernelHandler, ("engine", "scratch")),
    (r"/api/kernels/([^/]+)/(interrupt|restart)", KernelActionHandler, ("engine", "scratch")),
    (r"/api/kernels/([^/]+)/channels", KernelChannelsHandler, ("engine", "scratch", "hub")),
    (
        r"/script-engine/kernels/([^/]+)/connection",
        KernelConnectionHandler,
        ("engine", "scratch", "hub"),
    ),
    (r"/script-api/(.*)", ScriptApiHandler, ("router", "scratch")),
    (r"/script-ws/(.*)", ScriptWebSocketHandler, ("router",)),
    # the operator's console: static files, no token (they hold no data)
    (r"/", ConsoleIndexHandler, ()),
    (r"/console/(.+)", ConsoleFileHandler, ()),
]


access_log = logging.getLogger("tornado.access")


def log_request(handler: Any) -> None:
    """Access log: failures at WARNING/ERROR; successes only at DEBUG (the hot path
    of a busy gateway should not format a log line per call). ``handler``: a
    RequestHandler, or a call of the call front (``handlers/front.py``)."""
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
    # Tornado tries the rules in order: the two call routes first, or every routed call
    # would first fail to match the 50-odd rules before /script-api/ (no other rule
    # matches their paths, so the order changes nothing else).
    hot = (ScriptApiHandler, FunctionCallHandler)
    for pattern, handler, needs in sorted(ROUTES, key=lambda route: route[1] not in hot):
        kwargs = {name: services[name] for name in needs}
        kwargs["token"] = tokens
        kwargs["allow_origins"] = origins
        kwargs["allow_hosts"] = settings.host_check
        handlers.append((pattern, handler, kwargs))
    return web.Application(
        handlers,
        default_handler_class=NotFoundHandler,
        default_handler_args={
            "token": tokens,
            "allow_origins": origins,
            "allow_hosts": settings.host_check,
        },
        debug=False,
        serve_traceback=False,
        log_function=log_request,
        websocket_ping_interval=20,
    )


def make_front(
    app: web.Application, services: dict[str, Any], settings: Settings, tokens: Tokens
) -> CallFront:
    """``app`` behind the call front: route and function calls are served without a
    RequestHandler (``handlers/front.py``), every other request by ``app`` (behind the
    JSON 413 of ``BodyLimit``)."""
    return CallFront(
        BodyLimit(app, settings.max_body_size),
        services["router"],
        tokens,
        settings.host_check,
        max_body_size=settings.max_body_size,
        log_request=log_request,
    )
