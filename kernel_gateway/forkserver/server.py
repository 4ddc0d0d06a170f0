"""The gateway's end of the fork server (``python -m vwed_kernel.forkserver``).

One fork server per gateway, started on the first kernel it is asked for, with
that kernel's environment (the allow-listed one of ``kernelenv``: the server holds
no secret of the gateway). It speaks JSON lines on a socket pair (the protocol is
in the server's module docstring). The server runs no script code; if it dies
anyway, its kernels end with it (their parent is gone), each death is seen by its
``ForkedProcess`` and handled by the restart policy, and the next start runs a
new server; a server that cannot be started gives plain launches (the provisioner
falls back) for ``RETRY_AFTER`` seconds before it is tried again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import socket
import subprocess
import time
from collections.abc import Mapping
from typing import Any

from .process import ForkedProcess

__all__ = ["ForkServer", "ForkServerUnavailable", "PER_KERNEL"]

log = logging.getLogger("kernel_gateway.forkserver")

# Variables that differ between kernels of one gateway: not part of the server's
# own environment. Any other difference that Python reads at start (``PYTHON*``,
# ``LD_*``) cannot be given to a fork: such a kernel gets a plain launch.
PER_KERNEL = frozenset({"VWED_KERNEL_POLICY", "JPY_SESSION_NAME", "JPY_PARENT_PID"})
RETRY_AFTER = 30.0


class ForkServerUnavailable(Exception):
    """The fork server cannot start this kernel (the caller launches it plainly)."""


def _at_start(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(("PYTHON", "LD_"))}


class ForkServer:
    """Starts the fork server when first needed, asks it for kernels, hears their
    ends. ``argv``: the server's command (the kernel's interpreter, ``-m
    vwed_kernel.forkserver``)."""

    def __init__(
        self, argv: list[str], *, start_timeout: float = 60.0, spawn_timeout: float = 10.0
    ) -> None:
        self.argv = list(argv)
        self.start_timeout = start_timeout
        self.spawn_timeout = spawn_timeout
        self.pid: int | None = None
        self.starts = 0  # how many servers this gateway has run (1 + restarts)
        self._popen: subprocess.Popen[bytes] | None = None
        self._env: dict[str, str] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[int]] = {}
        self._children: dict[int, ForkedProcess] = {}
        self._early_exits: dict[int, int] = {}
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()
        self._failed_at = 0.0
        self._closed = False

    # -- what a kernel needs ---------------------------------------------------
    def unsuitable(self, cmd: list[str], env: Mapping[str, str]) -> str | None:
        """Why ``cmd`` with ``env`` cannot be forked from this server (None: it can)."""
        if len(cmd) < 3 or cmd[1] != "-m" or cmd[0] != self.argv[0]:
            return f"the kernel's command is not '{self.argv[0]} -m <module>'"
        if self._popen is not None and _at_start(env) != _at_start(self._env):
            return "the kernel's PYTHON*/LD_* variables differ from the fork server's"
        return None

    @property
    def alive(self) -> bool:
        return self._popen is not None and self._writer is not None and self._popen.poll() is None

    async def spawn(
        self, cmd: list[str], env: Mapping[str, str], cwd: str, user: dict[str, Any] | None
    ) -> ForkedProcess:
        """Fork a kernel running ``cmd`` (``python -m module args``)."""
        if self._closed:
            raise ForkServerUnavailable("the gateway is stopping")
        async with self._lock:
            if not self.alive:
                await self._start(env)
        request_id = next(self._ids)
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = fut
        request = {"op": "spawn", "id": request_id, "argv": cmd, "env": dict(env), "cwd": cwd}
        request["user"] = user
        try:
            assert self._writer is not None
            self._writer.write(json.dumps(request).encode() + b"\n")
            await self._writer.drain()
            pid = await asyncio.wait_for(fut, self.spawn_timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            # It may have forked a kernel that holds this kernel's ports: no plain
            # launch now. A server that does not answer is replaced at the next start.
            if isinstance(exc, asyncio.TimeoutError):
                await self._stop_process()
            raise RuntimeError(f"the fork server did not answer: {exc!r}") from exc
        finally:
            self._pending.pop(request_id, None)
        child = ForkedProcess(pid)
        if self._writer is None:  # the server ended meanwhile: no report will come
            child.orphaned()
        status = self._early_exits.pop(pid, None)
        if status is not None:  # it ended before this coroutine resumed
            child.ended(status)
        else:
            self._children[pid] = child
        return child

    # -- the server process ------------------------------------------------------
    async def _start(self, env: Mapping[str, str]) -> None:
        if time.monotonic() - self._failed_at < RETRY_AFTER:
            raise ForkServerUnavailable("the fork server failed to start a moment ago")
        if self._popen is not None:
            log.warning("the fork server (pid %s) is gone: starting a new one", self.pid)
            await self._stop_process()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._env = {k: v for k, v in env.items() if k not in PER_KERNEL}
        try:
            with theirs:
                self._popen = subprocess.Popen(
                    [*self.argv, "--fd", str(theirs.fileno())],
                    pass_fds=(theirs.fileno(),),
                    env=self._env,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # a Ctrl-C of the gateway's terminal is the gateway's
                )
            reader, self._writer = await asyncio.open_unix_connection(sock=ours)
            line = await asyncio.wait_for(reader.readline(), self.start_timeout)
            hello = json.loads(line) if line else {}
            if hello.get("op") != "ready":
                raise ForkServerUnavailable("the fork server ended before it was ready")
        except (OSError, ValueError, asyncio.TimeoutError, ForkServerUnavailable) as exc:
            self._failed_at = time.monotonic()
            ours.close()
            await self._stop_process()
            log.warning("the fork server could not start (%r): plain kernel launches", exc)
            if isinstance(exc, ForkServerUnavailable):
                raise
            raise ForkServerUnavailable(f"the fork server could not start: {exc!r}") from exc
        self.pid = self._popen.pid
        self.starts += 1
        self._reader_task = asyncio.ensure_future(self._read(reader))
        log.info("fork server started (pid %s)", self.pid)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                line = await reader.readline()
            except (OSError, ValueError):
                line = b""
            if not line:
                break
            try:
                message = json.loads(line)
                op = message["op"]
                if op == "exit":
                    child = self._children.pop(message["pid"], None)
                    if child is not None:
                        child.ended(int(message["status"]))
                    else:
                        self._early_exits[int(message["pid"])] = int(message["status"])
                elif op in ("spawned", "failed"):
                    fut = self._pending.get(message["id"])
                    if fut is not None and not fut.done():
                        if op == "spawned":
                            fut.set_result(int(message["pid"]))
                        else:
                            fut.set_exception(ForkServerUnavailable(message.get("error", "")))
            except (ValueError, KeyError, TypeError):
                log.exception("the fork server sent an unreadable line: %r", line[:200])
        # end of file: the server is gone (its kernels end with it)
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        gone = RuntimeError("the fork server ended while forking a kernel")
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(gone)
        for child in self._children.values():
            child.orphaned()  # their pidfds say when they end
        self._children.clear()
        if not self._closed:
            log.warning("the fork server (pid %s) ended", self.pid)

    async def _stop_process(self) -> None:
        popen, self._popen = self._popen, None
        if popen is None:
            return
        with contextlib.suppress(OSError):
            popen.terminate()
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, popen.wait, 5.0)
        except subprocess.TimeoutExpired:
            popen.kill()
            await loop.run_in_executor(None, popen.wait)

    async def close(self) -> None:
        """End the server (after the gateway's kernels were shut down: the kernels
        still running end with it)."""
        self._closed = True
        if self._writer is not None:
            self._writer.close()  # end of file: the server leaves its loop
        popen = self._popen
        if popen is not None:
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(None, popen.wait, 5.0)
            except subprocess.TimeoutExpired:
                await self._stop_process()
            self._popen = None
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(BaseException):
                await self._reader_task
