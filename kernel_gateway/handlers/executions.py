"""An execution, one at a time: its record, a long poll until it ends, its cancel, and
its events over a WebSocket (``/script-engine/executions/{id}...``, the caller token
is enough: a task engine follows the steps it submitted)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from tornado import websocket

from ..errors import GatewayError
from ..executions.feed import Feed
from ..executions.service import ExecutionService
from ..inputs import parse_timeout
from .base import JSONHandler
from .params import query_args
from .wsbase import GatewaySocket

__all__ = [
    "ExecutionHandler",
    "ExecutionWaitHandler",
    "CancelExecutionHandler",
    "ExecutionStreamHandler",
]

WAIT_DEFAULT = 30.0
WAIT_MAX = 300.0


class ExecutionHandler(JSONHandler):
    role = "caller"
    executions: ExecutionService

    async def get(self, execution_id: str) -> None:
        query_args(self, set())
        self.send_json(await self.executions.record(execution_id))


class ExecutionWaitHandler(JSONHandler):
    """Long poll: answers when the execution ends, or after ``timeout`` seconds (default
    30, at most 300) with the status it has then (``queued`` or ``running``: ask again)."""

    role = "caller"
    executions: ExecutionService

    async def get(self, execution_id: str) -> None:
        args = query_args(self, {"timeout"})
        raw = args.get("timeout")
        try:
            value: Any = None if raw is None else float(raw)
        except ValueError:
            value = raw  # parse_timeout says what is wrong with it
        timeout = parse_timeout(value, WAIT_MAX) or WAIT_DEFAULT
        self.send_json(await self.executions.wait(execution_id, timeout))


class CancelExecutionHandler(JSONHandler):
    role = "caller"
    executions: ExecutionService

    async def post(self, execution_id: str) -> None:
        self.send_json(await self.executions.cancel(execution_id))


class ExecutionStreamHandler(GatewaySocket):
    """The events of one execution as JSON text messages: ``state`` first, then
    ``status``, ``attempt``, ``progress``, ``output``, ``retry``, and ``end`` (then the
    server closes with 1000). Nothing is read from the client."""

    role = "caller"

    def initialize(  # type: ignore[override]
        self,
        executions: ExecutionService,
        token: Any = "",
        allow_origins: tuple[str, ...] = (),
        allow_hosts: tuple[str, ...] | None = (),
    ) -> None:
        self.executions = executions
        self.token = token
        self.allow_origins = allow_origins
        self.allow_hosts = allow_hosts
        self.feed: Feed | None = None
        self._pump: asyncio.Task[None] | None = None

    async def get(self, execution_id: str, *args: Any, **kwargs: Any) -> None:
        try:
            self.admit()
            self.require_upgrade()
            self.feed = await self.executions.subscribe(execution_id)
        except GatewayError as exc:
            self.refuse(exc)
            return
        await super().get(execution_id, *args, **kwargs)

    async def open(self, *args: Any, **kwargs: Any) -> None:
        self.set_nodelay(True)  # small frames as they happen (Nagle would hold them)
        self._pump = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        assert self.feed is not None
        try:
            while True:
                event = await self.feed.get()
                await self.write_message(json.dumps(event, ensure_ascii=False, default=str))
                if event.get("type") == "end":
                    self.close(1000, "the execution ended")
                    return
        except (websocket.WebSocketClosedError, asyncio.CancelledError):
            pass

    def on_message(self, message: str | bytes) -> None:
        pass  # one-way

    def on_close(self) -> None:
        if self.feed is not None:
            self.executions.unsubscribe(self.feed)
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(Exception):
                self._pump = None
