"""``/script-engine/execute`` (task-flow steps, synchronous or ``"async": true``), the
list of executions, task variables."""

from __future__ import annotations

import hmac

from tornado import web, websocket

from ..errors import BadRequest, NotFound
from ..executions.record import STATUSES
from ..executions.service import ExecutionService
from ..steps import StepService
from .base import JSONHandler, Tokens
from .params import MAX_LIMIT, int_param, query_args

__all__ = ["ExecuteHandler", "ExecutionsHandler", "TaskVariablesHandler", "is_admin"]


def is_admin(handler: web.RequestHandler) -> bool:
    """Whether the request came with the admin token (or auth is off): only then may a
    step install its file's packages. (``?token=`` counts on a WebSocket only.)"""
    tokens = getattr(handler, "token", None)
    if not isinstance(tokens, Tokens) or not tokens.enabled:
        return True
    scheme, _, value = handler.request.headers.get("Authorization", "").partition(" ")
    given = value.strip() if scheme.lower() in ("token", "bearer") else ""
    if not given:
        is_socket = isinstance(handler, websocket.WebSocketHandler)
        given = handler.get_query_argument("token", "") if is_socket else ""
    return hmac.compare_digest(given.encode(), tokens.admin.encode())


class ExecuteHandler(JSONHandler):
    """A step: answered when it ends, or with ``"async": true`` 202 as soon as it is
    stored and queued (``Location``: its record)."""

    role = "caller"
    steps: StepService
    executions: ExecutionService

    async def post(self) -> None:
        body = self.json_body()
        mode = body.get("async", False)
        if not isinstance(mode, bool):
            raise BadRequest(
                "'async' must be true or false", "BAD_PARAMETER", details={"parameter": "async"}
            )
        if not mode:
            self.send_json(await self.steps.execute(body, admin=is_admin(self)))
            return
        accepted = await self.executions.submit(body, admin=is_admin(self))
        self.set_header("Location", accepted["status_url"])
        self.send_json(accepted, 202)


class ExecutionsHandler(JSONHandler):
    """Recent executions (admin): the steps history (every step and attempt, with its
    worker and what it used), the running synchronous steps, and the asynchronous
    executions with their status and progress."""

    steps: StepService
    executions: ExecutionService

    async def get(self) -> None:
        args = query_args(self, {"task_id", "status", "script_path", "limit"})
        limit = int_param("limit", args.get("limit", "100"), 1, MAX_LIMIT)
        status = args.get("status")
        if status is not None and status not in STATUSES:
            raise BadRequest(
                f"'status' must be one of {', '.join(STATUSES)}",
                "BAD_PARAMETER",
                details={"parameter": "status"},
            )
        db = self.steps.db
        task_id = args.get("task_id")
        rows = await db.executions(task_id, limit) if db is not None else []
        running = sorted(self.steps.running)
        found = await self.executions.listing(status, task_id, args.get("script_path"), limit)
        self.send_json(
            {
                "count": len(rows),
                "executions": rows,
                "running": running,
                "async": found,
                "queue": self.executions.status(),
            }
        )


class TaskVariablesHandler(JSONHandler):
    role = "caller"
    steps: StepService

    async def get(self, task_id: str) -> None:
        db = self.steps.db
        row = await db.task_variables(task_id) if db is not None else None
        if row is None:
            raise NotFound(f"task {task_id!r} has no variables", "TASK_NOT_FOUND")
        self.send_json(row)
