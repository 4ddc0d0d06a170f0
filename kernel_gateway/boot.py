"""Loading a script into a kernel: one ``load`` op (``prepare``, the code cells,
``boot``, answered once), or for a kernel without it ``prepare``, the code cells as
``execute_request``s, then ``boot`` (docs/protocol.md, "Messages")."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from .bridge import Reply
from .errors import BadRequest, CallTimeout, GatewayError, HandlerError, NotFound, ScriptError
from .kernels import ScriptKernel
from .registrations import ScriptRegistrations, parse_registrations
from .scripts import ScriptSource

__all__ = ["boot_kernel", "map_call_error", "strip_ansi"]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
OUTPUT_WAIT = 2.0  # seconds a failed load waits for its output on iopub


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def map_call_error(reply: Reply, what: str, debug: bool) -> GatewayError:
    """Turn a failed ``result`` into the gateway error a client gets."""
    err = reply.error
    kind = err.get("kind", "handler")
    etype = err.get("type", "Exception")
    message = err.get("message", "")
    details: dict[str, Any] = {"type": etype, "message": message}
    if debug:
        details["traceback"] = err.get("traceback", "")
    if kind == "serialization":
        return HandlerError(
            f"{what} returned a result that is not JSON-serializable: {message}",
            "RESULT_NOT_SERIALIZABLE",
            details=details,
        )
    if kind == "policy":
        return BadRequest(
            f"the script's policy was refused: {message}", "BAD_POLICY", details=details
        )
    if kind == "arguments":
        return BadRequest(f"{what}: {message}", "BAD_ARGUMENTS", details=details)
    if kind == "not_found":
        return NotFound(f"{what} is no longer registered", "NOT_REGISTERED", details=details)
    if kind in ("interrupted", "cancelled"):
        return CallTimeout(f"{what} was interrupted", details=details)
    return HandlerError(
        f"{what} raised {etype}: {message}",
        "HANDLER_ERROR",
        details=details,
        log_message=err.get("traceback"),
    )


async def boot_kernel(
    kernel: ScriptKernel,
    script_id: str,
    source: ScriptSource,
    *,
    replica: int,
    replicas: int,
    timeout: float,
    debug: bool,
    policy: dict[str, Any] | None = None,
    site: list[str] | None = None,
) -> ScriptRegistrations:
    """Run the script in ``kernel`` and call ``boot()``; its registrations on success.
    ``site``: folders of the script's packages, added after the kernel's own paths.

    Raises ``ScriptError`` (BOOT_MISSING / BOOT_FAILED), ``CallTimeout``
    (BOOT_TIMEOUT) or ``KernelDied``.
    """
    # One message: prepare, the script's cells and boot() (the kernel's ``load`` op),
    # awaited here with its own timer: no task around it (asyncio.wait_for's cost a loop
    # turn each way, about 1 ms of a warm start on a busy gateway). A kernel that times
    # out is not interrupted (the caller shuts it down).
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    prepare = _prepare_op(script_id, source, replica, replicas, policy, site)
    try:
        reply = await kernel.bridge.call(
            {**prepare, "op": "load", "cells": source.cells}, timeout=timeout, abandon=False
        )
        if reply.ok:
            return parse_registrations(script_id, reply.value())
        if kernel.bridge.fast:
            # the answer came on the fast channel, the failing cell's ``error`` output and
            # what it printed come on iopub: they reach the logs before the kernel goes
            await kernel.barrier(OUTPUT_WAIT)
        err = reply.error
        if err.get("kind") == "protocol" and "phase" not in err:
            # a kernel older than the ``load`` op (a remote host's): three round trips
            left = max(0.0, deadline - loop.time())
            return await asyncio.wait_for(
                _three_steps(kernel, script_id, source, prepare, left + 1, debug), left
            )
    except (asyncio.TimeoutError, CallTimeout):
        raise CallTimeout(
            f"script {source.path!r} did not load and boot within {timeout:g} s", "BOOT_TIMEOUT"
        ) from None
    phase = err.get("phase")
    if phase == "prepare":
        raise map_call_error(reply, "prepare", debug)
    if phase == "load":
        raise _load_failed(source, err.get("cell"), err)
    raise _boot_failed(source, err)


def _prepare_op(
    script_id: str,
    source: ScriptSource,
    replica: int,
    replicas: int,
    policy: dict[str, Any] | None,
    site: list[str] | None,
) -> dict[str, Any]:
    return {
        "op": "prepare",
        "script_id": script_id,
        "file": source.file,
        "path": source.path,  # relative: a script at the root does not put it on sys.path
        "replica": replica,
        "replicas": replicas,
        "policy": policy,
        "site": site or [],
    }


async def _three_steps(
    kernel: ScriptKernel,
    script_id: str,
    source: ScriptSource,
    prepare: dict[str, Any],
    step: float,
    debug: bool,
) -> ScriptRegistrations:
    """``prepare``, an ``execute_request`` per cell, then ``boot``: a kernel without
    the ``load`` op."""
    reply = await kernel.bridge.call(prepare, timeout=step)
    if not reply.ok:
        raise map_call_error(reply, "prepare", debug)
    for index, cell in enumerate(source.cells):
        result = await kernel.execute(cell, timeout=step)
        if result.get("status") != "ok":
            raise _load_failed(source, index, result)
    reply = await kernel.bridge.call({"op": "boot"}, timeout=step)
    if not reply.ok:
        raise _boot_failed(source, reply.error)
    return parse_registrations(script_id, reply.value())


def _load_failed(source: ScriptSource, index: Any, result: dict[str, Any]) -> ScriptError:
    """A cell of the script raised while it loaded (``result``: an ``execute_reply``'s
    content, or the ``load`` op's error, whose ``type``/``message`` are its ename/evalue)."""
    ename = result.get("ename", result.get("type"))
    evalue = result.get("evalue", result.get("message"))
    where = f" (cell {int(index) + 1})" if len(source.cells) > 1 and index is not None else ""
    return ScriptError(
        f"script {source.path!r} raised {ename} while loading{where}: {evalue}",
        "BOOT_FAILED",
        details={
            "type": ename,
            "message": evalue,
            "traceback": strip_ansi("\n".join(result.get("traceback") or [])),
            "phase": "load",
        },
    )


def _boot_failed(source: ScriptSource, err: dict[str, Any]) -> ScriptError:
    if err.get("kind") == "boot_missing":
        return ScriptError(f"script {source.path!r} defines no boot() function", "BOOT_MISSING")
    return ScriptError(
        f"boot() of {source.path!r} raised {err.get('type')}: {err.get('message')}",
        "BOOT_FAILED",
        details={
            "type": err.get("type"),
            "message": err.get("message"),
            "traceback": err.get("traceback"),
            "phase": "boot",
        },
    )
