"""The ``load`` op: a script's start in one message from the gateway (docs/protocol.md).

It does what ``prepare``, one ``execute_request`` per code cell and ``boot`` did as
three round trips (or more), and answers once: the registrations, or the error of the
phase that failed (``phase``: ``prepare``, ``load`` or ``boot``; the error's ``kind``
as the separate op would have answered, ``load`` for a failed cell).

The cells run through ipykernel's own ``do_execute``, as an ``execute_request``
would run them (silent: false, no history, no stdin): the same compile names (the
debugger's breakpoints in the script file, vwed_kernel/debugsource.py), the same
``error`` output on iopub and the same traceback text in the answer. Because
``do_execute`` is a coroutine (a cell with a top-level ``await`` suspends), the cells
and ``boot()`` run as a coroutine: an asyncio task when a cell awaits (as ipykernel
runs an ``execute_request``), else driven to its end in the comm's handler
(``run_now``).

While a load is under way the kernel does not send a ``register`` op per
registration: the gateway ignores them while a script starts (the answer's list is
the authoritative one), and each cost a message both ways.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Coroutine
from typing import Any, Protocol

from .policy import PolicyError
from .replies import Send, reply_error

__all__ = ["load_script"]

log = logging.getLogger("vwed_kernel")


class Loadable(Protocol):
    """What ``load`` needs of the comm's end (``bridge.GatewayLink``)."""

    loading: bool  # a load is under way: its registrations go in its answer only

    def prepare(self, data: dict[str, Any]) -> None: ...

    def boot(self, call_id: str, send: Send) -> None: ...


def _phase(link: Loadable, send: Send, phase: str) -> Send:
    """``send`` for the answer: output printed so far goes first (ipykernel flushes
    it only at the end of a shell message), and an error says its phase."""

    def answer(reply: dict[str, Any], buffers: list[bytes] | None) -> None:
        for stream in (sys.stdout, sys.stderr):
            # ipykernel's flush waits for its IO thread: only when output is pending
            if getattr(stream, "_flush_pending", True):
                try:
                    stream.flush()
                except Exception:  # a closed stream: the answer goes out all the same
                    pass
        link.loading = False  # registrations made from now on are sent one by one
        error = reply.get("error")
        if isinstance(error, dict):
            error["phase"] = phase
        send(reply, buffers)

    return answer


def load_script(link: Loadable, kernel: Any, data: dict[str, Any], send: Send) -> None:
    """Handle a ``load`` op: ``prepare`` now, then the cells and ``boot()`` in a task."""
    call_id = str(data["id"])
    link.loading = True
    try:
        link.prepare(data)
    except PolicyError as exc:
        reply_error(_phase(link, send, "prepare"), call_id, exc, "policy")
        return
    except Exception as exc:  # every load gets its answer, whatever went wrong
        reply_error(_phase(link, send, "prepare"), call_id, exc, "handler")
        return
    cells = [str(cell) for cell in data.get("cells") or []]
    load = _cells_then_boot(link, kernel, call_id, cells, send)
    if any(_awaits(kernel, cell) for cell in cells):
        _keep(asyncio.ensure_future(load))  # a real task, as an execute_request's
    else:
        run_now(load)


def _awaits(kernel: Any, cell: str) -> bool:
    """Whether ``cell`` runs as a coroutine (a top-level ``await``, ``async with``,
    ``async for``): asked of IPython as ``do_execute`` asks it; in doubt, yes."""
    if "await" not in cell and "async" not in cell:  # what each of those needs
        return False
    shell = getattr(kernel, "shell", None)
    if shell is None or not hasattr(shell, "should_run_async"):
        return False
    try:
        transformed = shell.transform_cell(cell)
    except Exception:  # do_execute reports it; a task runs any cell
        return True
    try:
        return bool(shell.should_run_async(cell, transformed_cell=transformed))
    except Exception:
        return True


_TASKS: set[asyncio.Future[Any]] = set()  # the loads that wait (kept from the collector)


def run_now(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` here and now, in the comm's handler, as far as it goes without
    waiting: a synchronous script is loaded and booted before ipykernel ends the shell
    message (its flushes and ``idle`` status came first when the load was a task, about
    0.5 ms measured). Only for cells with no top-level ``await`` (those start as a task,
    ``load_script``): should one wait all the same, an asyncio task carries on from
    there (``boot()``, async or not, runs in the call machinery's own way)."""
    try:
        waited = coro.send(None)
    except StopIteration:
        return
    _keep(asyncio.ensure_future(_carry_on(coro, waited)))


def _keep(task: asyncio.Future[Any]) -> None:
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)


async def _carry_on(coro: Coroutine[Any, Any, None], waited: Any) -> None:
    """Go on with ``coro`` as an asyncio task would: resume it each time what it
    yielded (a future, or None for a bare yield) is done."""
    while True:
        if waited is None:
            await asyncio.sleep(0)
        else:
            waited._asyncio_future_blocking = False  # as asyncio.Task does
            try:
                await asyncio.wait([waited])
            except asyncio.CancelledError:
                coro.close()
                raise
        try:
            waited = coro.send(None)
        except StopIteration:
            return


class _OncePerText:
    """While a load runs, IPython's ``transform_cell`` and the debugger's cell name
    (``compile.get_code_name``, a pure-Python murmur2 of the text) are computed once per
    text: ipykernel's ``do_execute`` transforms a cell twice (to ask whether it awaits,
    then to run it) and the cell is named twice (ipykernel's compiler, then
    ``debugsource``). Both are functions of the text alone; about 0.5 ms of a small
    script's start, more for a large one."""

    def __init__(self, kernel: Any) -> None:
        self.shell = getattr(kernel, "shell", None)
        self.memo: dict[tuple[Any, ...], Any] = {}

    def __enter__(self) -> None:
        shell = self.shell
        if shell is None:
            return
        transform, name = shell.transform_cell, shell.compile.get_code_name
        memo = self.memo

        def transform_cell(raw_cell: str) -> Any:
            key = ("transform", raw_cell)
            if key not in memo:
                memo[key] = transform(raw_cell)
            return memo[key]

        def get_code_name(raw_code: str, transformed_code: str, number: int) -> Any:
            key = ("name", raw_code, transformed_code, number)
            if key not in memo:
                memo[key] = name(raw_code, transformed_code, number)
            return memo[key]

        shell.transform_cell = transform_cell
        shell.compile.get_code_name = get_code_name

    def __exit__(self, *exc: object) -> None:
        shell = self.shell
        if shell is None:
            return
        for owner, attribute in ((shell, "transform_cell"), (shell.compile, "get_code_name")):
            if attribute in vars(owner):  # ours, over the class's method
                delattr(owner, attribute)
        self.memo.clear()


async def _cells_then_boot(
    link: Loadable, kernel: Any, call_id: str, cells: list[str], send: Send
) -> None:
    with _OncePerText(kernel):
        await _cells_then_boot_inner(link, kernel, call_id, cells, send)


async def _cells_then_boot_inner(
    link: Loadable, kernel: Any, call_id: str, cells: list[str], send: Send
) -> None:
    try:
        for index, cell in enumerate(cells):
            content = await kernel.do_execute(
                cell, False, store_history=False, user_expressions={}, allow_stdin=False
            )
            if content.get("status") != "ok":
                error = {
                    "kind": "load",
                    "type": content.get("ename"),
                    "message": content.get("evalue"),
                    "traceback": list(content.get("traceback") or []),
                    "cell": index,
                }
                _phase(link, send, "load")(
                    {"op": "result", "id": call_id, "ok": False, "error": error}, None
                )
                return
    except BaseException as exc:  # the kernel's own machinery failed, not the script
        log.exception("loading the script failed")
        reply_error(_phase(link, send, "load"), call_id, exc, "handler")
        if not isinstance(exc, Exception):
            raise
        return
    link.boot(call_id, _phase(link, send, "boot"))
