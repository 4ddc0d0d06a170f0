"""``/script-engine/execute`` (task-flow steps), executions, task variables."""

from __future__ import annotations

import hmac

from ..errors import NotFound
from ..steps import StepService
from .base import JSONHandler, Tokens

__all__ = ["ExecuteHandler", "CancelExecutionHandler", "ExecutionsHandler", "TaskVariablesHandler"]


class ExecuteHandler(JSONHandler):
    role = "caller"
    steps: StepService

    async def post(self) -> None:
        self.send_json(await self.steps.execute(self.json_body(), admin=self._admin()))

    def _admin(self) -> bool:
        """Whether the request came with the admin token (or auth is off): only then may
        a step install its file's packages."""
        tokens = self.token
        if not isinstance(tokens, Tokens) or not tokens.enabled:
            return True
        scheme, _, value = self.request.headers.get("Authorization", "").partition(" ")
        given = value.strip() if scheme.lower() in ("token", "bearer") else ""
        return hmac.compare_digest(given.encode(), tokens.admin.encode())


class CancelExecutionHandler(JSONHandler):
    role = "caller"
    steps: StepService

    async def post(self, execution_id: str) -> None:
        await self.steps.cancel(execution_id)
        self.send_json({"execution_id": execution_id, "cancelled": True})


class ExecutionsHandler(JSONHandler):
    steps: StepService

    async def get(self) -> None:
        db = self.steps.db
        task_id = self.get_query_argument("task_id", None)
        rows = await db.executions(task_id, 100) if db is not None else []
        running = sorted(self.steps.running)
        self.send_json({"count": len(rows), "executions": rows, "running": running})


class TaskVariablesHandler(JSONHandler):
    role = "caller"
    steps: StepService

    async def get(self, task_id: str) -> None:
        db = self.steps.db
        row = await db.task_variables(task_id) if db is not None else None
        if row is None:
            raise NotFound(f"task {task_id!r} has no variables", "TASK_NOT_FOUND")
        self.send_json(row)
