"""Running the gateway's calls in the kernel, whichever channel they came on.

A call is run on the thread that received it (the kernel's main thread): a
synchronous handler inline, a coroutine as an asyncio task on the main loop.
Each answer goes back through the ``send`` function of the channel the call came
on (the comm, or the fast channel of ``fastpath.py``), except the answer of a call
that reported progress (``VWED.progress``, ``progress.py``): it follows its
``progress`` ops on the comm.

A call that fails in the script's code (its handler raised, or returned what
cannot be serialized) also becomes one ERROR record of the script's log, with
the exception's type, message and traceback (``_Answer``). The record is sent
while the call's parent header is set, so the gateway attributes it to the call
id (and task id). Failures that are the caller's (bad arguments, not found) or
the gateway's (timeouts, cancels) are not logged here.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from . import progress
from .calling import (
    BindError,
    bind_function,
    call_event_handler,
    call_handler_with_request,
    call_with_arity,
)
from .encoding import ResultNotSerializable, decode_request, encode_result
from .interruptible import interruptible
from .progress import Emit, Flusher, Reporter
from .registrations import Registrations
from .replies import Send, reply_error, reply_ok
from .steps import StepRunner

__all__ = ["Calls", "Log"]

log = logging.getLogger("vwed_kernel")

Log = Callable[[str, str, str], None]

# the most call ids remembered as cancelled before they started (a cancel of a call
# that had already ended leaves its id here: ids are unique, so it only takes room)
MAX_CANCELLED = 256

# error kinds that are the script's own failure, logged as ERROR records
_LOGGED_KINDS = ("handler", "serialization")

# call kind -> (the Registrations attribute holding its handlers, message when missing)
_TABLES: dict[str, tuple[str, str]] = {
    "api": ("routes", "route {name} is not registered"),
    "event": ("listeners", "listener {name!r} is not registered"),
    "ws": ("websockets", "WebSocket {name} is not registered"),
    "function": ("functions", "function {name!r} is not registered"),
}


def failure_record(data: dict[str, Any], error: dict[str, Any]) -> tuple[str, str]:
    """The tag and text of the ERROR record of a failed call: what failed, the
    exception's type and message, then its traceback."""
    kind, name = str(data.get("kind")), data.get("name", "")
    if kind == "step":
        tag = "step"
        what = (
            f"step {data.get('file')} (RUN)"
            if data.get("mode") == "RUN"
            else f"step {data.get('function')} of {data.get('file')}"
        )
    else:
        tag, label = _LABELS.get(kind, ("call", "call"))
        what = f"{label} {name}"
    etype, message = error.get("type", "Exception"), error.get("message", "")
    if error.get("kind") == "serialization":
        head = f"{what} returned a result that is not JSON-serializable: {message}"
    else:
        head = f"{what} raised {etype}: {message}"
    traceback = str(error.get("traceback") or "").rstrip()
    return tag, f"{head}\n{traceback}" if traceback else head


# call kind -> (tag of its failure records, how a record names it)
_LABELS = {
    "api": ("route", "route"),
    "event": ("listener", "listener"),
    "ws": ("websocket", "WebSocket"),
    "function": ("function", "function"),
}


class Calls:
    """Runs ``call`` ops (and ``boot``) and keeps the asyncio tasks of async ones.

    ``registrations`` are where handlers are looked up; ``vwed`` gives the ``VWED``
    object that task-flow steps (``steps.py``) put in the namespace of their files;
    ``progress`` sends a call's ``progress`` op and ``comm`` is the comm's ``send``
    (``progress.py``).
    """

    def __init__(
        self,
        registrations: Registrations,
        script_id: Callable[[], str | None],
        vwed: Callable[[], Any],
        log: Log | None = None,
        *,
        progress: Emit | None = None,
        comm: Send | None = None,
    ) -> None:
        self._registrations = registrations
        # VWED.progress: ops sent with ``progress`` (none: calls report nothing); the
        # result of a call that reported progress goes on ``comm`` (_Answer)
        self._emit_progress = progress
        self._comm = comm
        self._flusher = Flusher()
        self._script_id = script_id
        self._log: Log = log or (lambda level, tag, text: None)
        self.tasks: dict[str, asyncio.Future[Any]] = {}
        self.steps = StepRunner(self.run, vwed)
        # what ``cancel`` (the service subshell's thread) knows of the main thread: the
        # call whose synchronous part runs now, and the calls cancelled before they ran
        self._lock = threading.Lock()
        self._current: str | None = None
        self._cancelled: OrderedDict[str, None] = OrderedDict()

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
            # a coroutine blocked in synchronous code: only an interrupt stops it
            task = asyncio.ensure_future(
                interruptible(value) if inspect.iscoroutine(value) else value
            )
            with self._lock:
                self.tasks[call_id] = task
                if call_id in self._cancelled:  # cancelled while its sync part ran
                    task.cancel()
            task.add_done_callback(lambda t: self._task_done(call_id, kind, t, send))
            return
        self._send_value(call_id, kind, value, send)

    def _task_done(self, call_id: str, kind: str, task: asyncio.Future[Any], send: Send) -> None:
        self.tasks.pop(call_id, None)
        if task.cancelled():
            reply_error(
                send, call_id, asyncio.CancelledError("the call was cancelled"), "cancelled"
            )
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
        """A ``call`` op: find the registered handler, bind its arguments, run it, with
        the call's progress reporter (``VWED.progress``) set around its code. A call
        cancelled before it got here is answered ``cancelled`` without running."""
        call_id = str(data["id"])
        with self._lock:
            skipped = call_id in self._cancelled
            previous, self._current = self._current, (self._current if skipped else call_id)
        if skipped:
            error = asyncio.CancelledError("the call was cancelled before it ran")
            reply_error(send, call_id, error, "cancelled")
            return
        try:
            self._call(data, buffers, send)
        finally:
            with self._lock:
                self._current = previous

    def _call(self, data: dict[str, Any], buffers: list[Any], send: Send) -> None:
        if self._emit_progress is None:
            self._dispatch(data, buffers, _Answer(self, data, send, None))
            return
        reporter = Reporter(str(data["id"]), self._emit_progress, self._flusher)
        token = progress.CURRENT.set(reporter)
        try:
            self._dispatch(data, buffers, _Answer(self, data, send, reporter))
        finally:
            progress.CURRENT.reset(token)

    def _dispatch(self, data: dict[str, Any], buffers: list[Any], send: Send) -> None:
        call_id = data["id"]
        kind = data.get("kind")
        name = data.get("name", "")
        if kind == "step":
            self.steps.run(data, send)
            return
        table = _TABLES.get(str(kind))
        if table is None:
            reply_error(send, call_id, ValueError(f"unknown call kind {kind!r}"), "protocol")
            return
        attribute, missing = table
        spec = getattr(self._registrations, attribute).get(name)
        if spec is None:
            reply_error(send, call_id, LookupError(missing.format(name=name)), "not_found")
            return
        try:
            produce = self._produce(str(kind), spec, data, buffers)
        except (BindError, RecursionError, MemoryError, ValueError) as exc:
            reply_error(send, call_id, exc, "arguments")
            return
        except Exception as exc:  # every call gets its answer, whatever went wrong
            reply_error(send, call_id, exc, "handler")
            return
        self.run(call_id, str(kind), produce, send)

    def _produce(
        self, kind: str, spec: Any, data: dict[str, Any], buffers: list[Any]
    ) -> Callable[[], Any]:
        """The call of ``spec``'s handler with this call's arguments (bound now)."""
        if kind == "api":
            request = decode_request(data.get("request") or {}, buffers)
            request["script_id"] = self._script_id()
            return lambda: call_handler_with_request(spec.handler, request)
        if kind == "event":
            event, payload = data.get("event", spec.event), data.get("args")
            return lambda: call_event_handler(spec.handler, event, payload)
        if kind == "ws":
            args = data.get("args") or {}
            return lambda: call_with_arity(
                spec.handler, args.get("connection_id"), args.get("message")
            )
        positional, keywords = bind_function(spec, data.get("args"), self._log)
        return lambda: spec.handler(*positional, **keywords)

    def _log_failure(self, data: dict[str, Any], reply: dict[str, Any]) -> None:
        """One ERROR record for a call that failed in the script's code."""
        error = reply.get("error")
        if isinstance(error, dict) and error.get("kind") in _LOGGED_KINDS:
            try:
                tag, text = failure_record(data, error)
                self._log("ERROR", tag, text)
            except Exception:  # the answer goes out whatever happened to the record
                log.exception("the ERROR record of call %s could not be sent", data.get("id"))

    def cancel(self, target: str) -> str:
        """Cancel call ``target`` (from any thread); says what became of it:
        ``"task"``: its asyncio task is cancelled; ``"running"``: its synchronous code runs
        on the main thread now (only an interrupt stops it: the gateway sends one);
        ``"pending"``: it has not started (or it has ended), and it will be answered
        ``cancelled`` without running if it comes."""
        with self._lock:
            task = self.tasks.get(target)
            if task is not None:
                task.get_loop().call_soon_threadsafe(task.cancel)
                return "task"
            self._cancelled[target] = None  # also a task its sync part may still make
            while len(self._cancelled) > MAX_CANCELLED:
                self._cancelled.popitem(last=False)
            return "running" if self._current == target else "pending"


class _Answer:
    """The ``send`` of one call's answer (every call gets exactly one ``result``).

    A failure of the script's code is logged first (``Calls._log_failure``: one ERROR
    record per failed call). Then, with a progress reporter: what is pending goes
    first, and a call that sent progress answers on the comm, whichever channel it
    came on: its ``progress`` ops went there (kernel -> gateway ops use the comm), and
    one channel keeps them in order, so the gateway sees the last progress before the
    result. One object per call instead of a closure per step of that."""

    __slots__ = ("calls", "data", "send", "reporter")

    def __init__(
        self, calls: Calls, data: dict[str, Any], send: Send, reporter: Reporter | None
    ) -> None:
        self.calls = calls
        self.data = data
        self.send = send
        self.reporter = reporter

    def __call__(self, reply: dict[str, Any], buffers: list[bytes] | None) -> None:
        calls = self.calls
        if not reply.get("ok"):
            calls._log_failure(self.data, reply)
        reporter = self.reporter
        if reporter is not None and reporter.finish() and calls._comm is not None:
            calls._comm(reply, buffers)
        else:
            self.send(reply, buffers)
