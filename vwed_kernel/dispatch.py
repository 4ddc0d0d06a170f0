"""Running the gateway's calls in the kernel, whichever channel they came on.

A call is run on the thread that received it (the kernel's main thread): a
synchronous handler inline, a coroutine as an asyncio task on the main loop.
Each answer goes back through the ``send`` function of the channel the call came
on (the comm, or the fast channel of ``fastpath.py``).
"""

from __future__ import annotations

import asyncio
import inspect
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .calling import (
    BindError,
    bind_arguments,
    call_event_handler,
    call_handler_with_request,
    call_with_arity,
)
from .encoding import ResultNotSerializable, decode_request, encode_result

if TYPE_CHECKING:
    from .vwed import VWED

__all__ = ["Send", "Calls", "error_payload"]

Send = Callable[[dict[str, Any], "list[bytes] | None"], None]


def error_payload(exc: BaseException, kind: str) -> dict[str, Any]:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    payload = {"type": type(exc).__name__, "message": str(exc), "traceback": tb, "kind": kind}
    if getattr(exc, "exit_code", None) is not None:
        payload["exit_code"] = exc.exit_code  # type: ignore[attr-defined]
    return payload


def reply_ok(send: Send, call_id: str, fields: dict[str, Any], buffers: list[bytes]) -> None:
    send({"op": "result", "id": call_id, "ok": True, **fields}, buffers)


def reply_error(send: Send, call_id: str, exc: BaseException, kind: str) -> None:
    send({"op": "result", "id": call_id, "ok": False, "error": error_payload(exc, kind)}, None)


class Calls:
    """Runs ``call`` ops (and ``boot``) and keeps the asyncio tasks of async ones."""

    def __init__(self, vwed: Callable[[], VWED], script_id: Callable[[], str | None]) -> None:
        self._vwed = vwed
        self._script_id = script_id
        self.tasks: dict[str, asyncio.Future[Any]] = {}
        self.steps: Any = None  # a steps.StepRunner, set by the kernel's link

    def run(self, call_id: str, kind: str, produce: Callable[[], Any], send: Send) -> None:
        """Run ``produce`` (the sync part of a call); schedule it if it returns an awaitable."""
        try:
            value = produce()
        except KeyboardInterrupt as exc:
            reply_error(send, call_id, exc, "interrupted")
            return
        except BaseException as exc:
            reply_error(send, call_id, exc, "handler")
            return
        if inspect.isawaitable(value):
            task = asyncio.ensure_future(value)
            self.tasks[call_id] = task
            task.add_done_callback(lambda t: self._task_done(call_id, kind, t, send))
            return
        self._send_value(call_id, kind, value, send)

    def _task_done(self, call_id: str, kind: str, task: asyncio.Future[Any], send: Send) -> None:
        self.tasks.pop(call_id, None)
        if task.cancelled():
            reply_error(send, call_id, asyncio.CancelledError("the call was cancelled"), "cancelled")
            return
        exc = task.exception()
        if exc is not None:
            reply_error(send, call_id, exc, "handler")
            return
        self._send_value(call_id, kind, task.result(), send)

    @staticmethod
    def _send_value(call_id: str, kind: str, value: Any, send: Send) -> None:
        try:
            fields, buffers = encode_result(kind, value)
        except ResultNotSerializable as exc:
            reply_error(send, call_id, exc, "serialization")
            return
        reply_ok(send, call_id, fields, buffers)

    def call(self, data: dict[str, Any], buffers: list[Any], send: Send) -> None:
        """A ``call`` op: find the route or function, bind, run."""
        call_id = data["id"]
        kind = data.get("kind")
        name = data.get("name", "")
        regs = self._vwed()._registrations
        if kind == "api":
            spec = regs.routes.get(name)
            if spec is None:
                reply_error(send, call_id, LookupError(f"route {name} is not registered"), "not_found")
                return
            request = decode_request(data.get("request") or {}, buffers)
            request["script_id"] = self._script_id()
            self.run(call_id, kind, lambda: call_handler_with_request(spec.handler, request), send)
            return
        if kind == "event":
            lspec = regs.listeners.get(name)
            if lspec is None:
                reply_error(send, call_id, LookupError(f"listener {name!r} is not registered"),
                            "not_found")
                return
            event, payload = data.get("event", lspec.event), data.get("args")
            self.run(call_id, kind, lambda: call_event_handler(lspec.handler, event, payload), send)
            return
        if kind == "ws":
            wspec = regs.websockets.get(name)
            if wspec is None:
                reply_error(send, call_id, LookupError(f"WebSocket {name} is not registered"),
                            "not_found")
                return
            args = data.get("args") or {}
            self.run(call_id, kind, lambda: call_with_arity(
                wspec.handler, args.get("connection_id"), args.get("message")), send)
            return
        if kind == "step" and self.steps is not None:
            self.steps.run(data, send)
            return
        if kind == "function":
            fspec = regs.functions.get(name)
            if fspec is None:
                reply_error(send, call_id, LookupError(f"function {name!r} is not registered"),
                            "not_found")
                return
            try:
                args, kwargs = bind_arguments(fspec.handler, data.get("args"))
            except BindError as exc:
                reply_error(send, call_id, exc, "arguments")
                return
            self.run(call_id, kind, lambda: fspec.handler(*args, **kwargs), send)
            return
        reply_error(send, call_id, ValueError(f"unknown call kind {kind!r}"), "protocol")

    def cancel(self, target: str) -> None:
        """Cancel an async call (from any thread)."""
        task = self.tasks.get(target)
        if task is not None:
            task.get_loop().call_soon_threadsafe(task.cancel)
