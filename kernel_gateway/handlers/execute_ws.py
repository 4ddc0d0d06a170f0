"""``/script-engine/execute/ws``: task-flow steps over one WebSocket, so a task engine
keeps one connection open instead of one HTTP request per step (docs/executions.md,
"Steps over one WebSocket").

Two protocols share the endpoint, told apart message by message:

- Multiplexed: a JSON object with an ``"id"`` (a string or number, at most 128
  characters) is an execute request, the body of ``POST /script-engine/execute``.
  Several run at once (each its own asyncio task, at most ``MAX_IN_FLIGHT`` per
  connection); everything the server sends for one carries its id. ``{"id": X,
  "cancel": true}`` cancels step X.
- Legacy: a JSON object without ``"id"`` is a request of the WebSocket script server
  this product replaces (``{"script_path": "job.py"}``): the file runs as ``RUN`` does,
  one request at a time, answered ``{"status": "success", "result": ...}`` or
  ``{"status": "error", "message": ...}`` in order, with the old server's messages.

A message that belongs to neither (not JSON, not an object) is answered in the shape
of the protocol the connection speaks: legacy until the client has sent an ``"id"``.

Closing the connection cancels its synchronous steps (their workers are freed at once);
its asynchronous ones go on, stored, and can be read or followed at
``/script-engine/executions/{id}``.

Everything sent goes through one bounded outbox per connection, written by one task:
a client that reads slowly loses progress and output events (counted in a
``"dropped"`` message), never a result, and never slows a step.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tornado import websocket

from ..errors import BadRequest, Conflict, GatewayError, NotFound, ServiceUnavailable
from ..executions.service import BODY_KEYS, ExecutionService
from ..steps import StepService
from .execute_legacy import INVALID_JSON, NOT_AN_OBJECT, LegacyRequests
from .steps import is_admin
from .wsbase import GatewaySocket

__all__ = ["StepSocketHandler", "MAX_IN_FLIGHT", "MAX_ID", "OUTBOX_MAX"]

log = logging.getLogger("kernel_gateway.steps")

MAX_IN_FLIGHT = 64  # steps in flight on one connection (and legacy requests waiting)
MAX_ID = 128  # characters of a client id
OUTBOX_MAX = 1000  # messages waiting to be written; past it progress and output are dropped
# past this many messages waiting (results, errors: never dropped) the client does not
# read: it is disconnected rather than kept in the gateway's memory
OUTBOX_HARD = 4 * OUTBOX_MAX
_DROPPABLE = frozenset({"progress", "output"})
_RESERVED = frozenset({"id", "type", "status", "code", "error"})


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


@dataclass
class Flight:
    """One multiplexed step in flight."""

    id: Any
    key: str
    is_async: bool = False
    execution_id: str | None = None  # sync: of the attempt running; async: the execution's
    cancel_requested: bool = False
    task: asyncio.Task[None] | None = None
    following: bool = False  # async: accepted, its feed is being forwarded


class Outbox:
    """The messages waiting to be written, in order. Bounded: past ``maximum``, progress
    and output events are dropped (the count reaches the client before the next
    message of that id); results, errors and the other events are always kept (a
    few per step, and at most ``MAX_IN_FLIGHT`` steps in flight)."""

    def __init__(self, maximum: int = OUTBOX_MAX) -> None:
        self.maximum = maximum
        self._queue: deque[dict[str, Any]] = deque()
        self._ready = asyncio.Event()
        self._dropped: dict[str, tuple[Any, int]] = {}
        self._closed = False

    def put(self, message: dict[str, Any], key: str | None = None) -> None:
        if key is not None and message.get("type") in _DROPPABLE:
            if len(self._queue) >= self.maximum:
                count = self._dropped.get(key, (message.get("id"), 0))[1]
                self._dropped[key] = (message.get("id"), count + 1)
                return
        if key is not None and key in self._dropped:
            ident, count = self._dropped.pop(key)
            self._queue.append({"id": ident, "type": "dropped", "count": count})
        self._queue.append(message)
        self._ready.set()

    @property
    def size(self) -> int:
        return len(self._queue)

    async def get(self) -> dict[str, Any] | None:
        """The next message; None once the outbox is closed."""
        while not self._queue:
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        return self._queue.popleft()

    def close(self) -> None:
        """Nothing more is written (the connection closed): the writer stops."""
        self._closed = True
        self._queue.clear()
        self._ready.set()


def error_message(exc: GatewayError, ident: Any = None, *, has_id: bool = True) -> dict[str, Any]:
    """``{"id", "type": "error", "status", "code", "error", ...details}``: the HTTP error
    answer of the same failure, tagged (``has_id``: False for a message without one)."""
    head: dict[str, Any] = {"id": ident} if has_id else {}
    details = {k: v for k, v in exc.details.items() if k not in _RESERVED}
    return {
        **head,
        "type": "error",
        "status": exc.status,
        "code": exc.code,
        "error": exc.message,
        **details,
    }


class StepSocketHandler(GatewaySocket):
    """Steps over one WebSocket (see the module's docstring for both protocols).

    Security: the caller token is enough (a task engine runs steps, it does not manage
    the gateway); it is checked before the upgrade (``Authorization`` header, or
    ``?token=`` for clients that cannot send headers). Only the admin token (or auth
    off) lets a step install its file's packages, as on ``POST /script-engine/execute``.
    """

    role = "caller"

    def initialize(  # type: ignore[override]
        self,
        steps: StepService,
        executions: ExecutionService,
        token: Any = "",
        allow_origins: tuple[str, ...] = (),
        allow_hosts: tuple[str, ...] | None = (),
    ) -> None:
        self.steps = steps
        self.executions = executions
        self.token = token
        self.allow_origins = allow_origins
        self.allow_hosts = allow_hosts
        self.admin = False
        self.multiplexed = False  # the client has sent an "id": unattributable errors in that shape
        self.closed = False
        self.flights: dict[str, Flight] = {}
        self.outbox = Outbox()
        self.legacy: LegacyRequests | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def get(self, *args: Any, **kwargs: Any) -> None:
        try:
            self.admit()
            self.require_upgrade()
        except GatewayError as exc:
            self.refuse(exc)
            return
        self.admin = is_admin(self)
        await super().get(*args, **kwargs)

    def open(self, *args: Any, **kwargs: Any) -> None:
        # Each answer is a small frame after a small frame ("started"): without this,
        # Nagle's algorithm holds it for the client's delayed ACK (~40 ms a step).
        self.set_nodelay(True)
        self.legacy = LegacyRequests(
            self.steps, admin=self.admin, send=self._send, spawn=self._spawn, limit=MAX_IN_FLIGHT
        )
        self._spawn(self._write_loop())
        self._spawn(self.legacy.loop())

    # -- reading -------------------------------------------------------------------------
    def on_message(self, message: str | bytes) -> None:
        text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
        try:
            data = json.loads(text, parse_constant=_no_constant)
        except (ValueError, RecursionError):
            exc = BadRequest("the message is not valid JSON", "INVALID_JSON")
            self._unattributed(exc, INVALID_JSON)
            return
        if not isinstance(data, dict):
            exc = BadRequest("a message must be a JSON object", "INVALID_JSON")
            self._unattributed(exc, NOT_AN_OBJECT)
            return
        if "id" in data:
            self.multiplexed = True
            self._request(data)
        elif "cancel" in data or (data.keys() & BODY_KEYS) - {"script_path"}:
            # an execute request that forgot its id: never run as a legacy request
            self.multiplexed = True
            self._send(
                error_message(
                    BadRequest(
                        "an execute request needs an 'id' (a string or number) to tag "
                        "what the server sends for it",
                        "MISSING_ID",
                    ),
                    has_id=False,
                )
            )
        else:
            self._legacy(lambda legacy: legacy.put(data))

    def _unattributed(self, exc: BadRequest, legacy_message: str) -> None:
        """A message that is neither protocol's request, answered in the connection's."""
        if self.multiplexed:
            self._send(error_message(exc, has_id=False))
        else:
            self._legacy(lambda legacy: legacy.answer_error(legacy_message))

    def _legacy(self, queue: Callable[[LegacyRequests], bool]) -> None:
        assert self.legacy is not None  # made when the connection opened
        if not queue(self.legacy):
            # the old protocol cannot say "busy" for one request without breaking the
            # order of its answers: the client is told by the close
            self.close(1008, f"more than {MAX_IN_FLIGHT} requests waiting")

    # -- multiplexed ---------------------------------------------------------------------
    def _request(self, data: dict[str, Any]) -> None:
        ident = data["id"]
        ok_type = isinstance(ident, (str, int, float)) and not isinstance(ident, bool)
        if isinstance(ident, float) and not math.isfinite(ident):  # 1e999: not sendable back
            ok_type = False
        key = json.dumps(ident) if ok_type else ""
        exc: GatewayError
        if not ok_type or len(str(ident)) > MAX_ID or (isinstance(ident, str) and not ident):
            exc = BadRequest(
                f"'id' must be a string or number of 1 to {MAX_ID} characters", "BAD_ID"
            )
            self._send(error_message(exc, has_id=False))
            return
        if "cancel" in data:
            self._cancel_request(ident, key, data)
            return
        if key in self.flights:
            self._send(
                error_message(Conflict(f"id {ident!r} is in flight already", "ID_IN_USE"), ident),
                key,
            )
            return
        if len(self.flights) >= MAX_IN_FLIGHT:
            exc = ServiceUnavailable(
                f"{MAX_IN_FLIGHT} steps are in flight on this connection already: "
                "wait for one to end, or open another connection",
                "BUSY",
                details={"in_flight": len(self.flights)},
            )
            self._send(error_message(exc, ident), key)
            return
        mode = data.get("async", False)
        if not isinstance(mode, bool):
            exc = BadRequest(
                "'async' must be true or false", "BAD_PARAMETER", details={"parameter": "async"}
            )
            self._send(error_message(exc, ident), key)
            return
        body = {k: v for k, v in data.items() if k not in ("id", "async")}
        flight = Flight(ident, key, is_async=mode)
        self.flights[key] = flight
        run = self._run_async(flight, body) if mode else self._run_sync(flight, body)
        flight.task = self._spawn(run)

    def _cancel_request(self, ident: Any, key: str, data: dict[str, Any]) -> None:
        exc: GatewayError
        if data.get("cancel") is not True or set(data) != {"id", "cancel"}:
            exc = BadRequest(
                'a cancel is exactly {"id": <the id of a step in flight>, "cancel": true}',
                "BAD_REQUEST",
            )
            self._send(error_message(exc, ident), key)
            return
        flight = self.flights.get(key)
        if flight is None:
            exc = NotFound(f"no step with id {ident!r} is in flight", "NOT_IN_FLIGHT")
            self._send(error_message(exc, ident), key)
            return
        self._send({"id": ident, "type": "cancelling"}, key)
        self._spawn(self._cancel(flight))

    async def _run_sync(self, flight: Flight, body: dict[str, Any]) -> None:
        def listener(event: dict[str, Any]) -> None:
            if event.get("type") == "started":
                flight.execution_id = event.get("execution_id")
                if flight.cancel_requested:
                    # after run() has sent the call (this task runs at its next await)
                    self._spawn(self._cancel(flight))
            self._send({"id": flight.id, **event}, flight.key)

        try:
            answer = await self.steps.execute(body, admin=self.admin, listener=listener)
            final = {"id": flight.id, "type": "result", **answer}
        except GatewayError as exc:
            final = error_message(exc, flight.id)
        except Exception as exc:  # a bug of ours: the step still gets its answer
            log.exception("step %s over the WebSocket failed in the gateway", flight.id)
            final = error_message(GatewayError(f"the gateway failed: {exc}"), flight.id)
        self.flights.pop(flight.key, None)
        self._send(final, flight.key)

    async def _run_async(self, flight: Flight, body: dict[str, Any]) -> None:
        try:
            accepted = await self.executions.submit(body, admin=self.admin)
        except GatewayError as exc:
            self.flights.pop(flight.key, None)
            self._send(error_message(exc, flight.id), flight.key)
            return
        flight.execution_id = accepted["execution_id"]
        self._send({"id": flight.id, "type": "accepted", **accepted}, flight.key)
        if self.closed:  # nobody to tell: it goes on, stored
            return
        # no await between submit's return and subscribe: no event is missed
        feed = await self.executions.subscribe(flight.execution_id)
        flight.following = True
        if flight.cancel_requested:
            self._spawn(self._cancel(flight))
        try:
            while True:
                event = await feed.get()
                if event.get("type") == "end":
                    self.flights.pop(flight.key, None)
                    self._send({"id": flight.id, **event}, flight.key)
                    return
                self._send({"id": flight.id, **event}, flight.key)
        finally:
            self.executions.unsubscribe(feed)

    async def _cancel(self, flight: Flight) -> None:
        """Cancel a step: at once when it runs, else as soon as it has its worker (sync)
        or is accepted (async). How it ended comes with its error or end message."""
        flight.cancel_requested = True
        target = flight.execution_id
        if target is None:
            return
        try:
            if flight.is_async:
                await self.executions.cancel(target)
            elif target in self.steps.running:
                await self.steps.cancel(target)
            # else: between two attempts; the next one is cancelled when it starts
        except GatewayError as exc:  # it ended meanwhile: its own message says how
            log.debug("cancel of step %s over the WebSocket: %s", flight.id, exc.message)

    # -- writing and closing -------------------------------------------------------------
    def _send(self, message: dict[str, Any], key: str | None = None) -> None:
        if self.closed:
            return
        self.outbox.put(message, key)
        if self.outbox.size > OUTBOX_HARD:
            log.info("a step WebSocket client does not read its answers: disconnected")
            self.outbox.close()
            self.close(1008, "too many answers not read")

    async def _write_loop(self) -> None:
        try:
            while True:
                message = await self.outbox.get()
                if message is None:  # the connection closed
                    return
                text = json.dumps(message, ensure_ascii=False, default=str)
                await self.write_message(text)
        except (websocket.WebSocketClosedError, asyncio.CancelledError):
            pass

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def on_close(self) -> None:
        self.closed = True
        for flight in list(self.flights.values()):
            if not flight.is_async:
                self._spawn(self._cancel(flight))  # its worker is freed
            elif flight.following and flight.task is not None:
                flight.task.cancel()  # stop following it; it goes on, stored
        if self.legacy is not None:
            self.legacy.close()
        self.outbox.close()
