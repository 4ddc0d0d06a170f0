"""Script kernels: start one through jupyter_client, keep its channels read, watch
for its death, sample its CPU and memory. (The pool of pre-started kernels is
``pool.py``.)

Kernels are started with ``AsyncKernelManager`` and its provisioner only; the
gateway never assumes a local PID, a signal or a connection-file path, so a
kernelspec that names another provisioner (Docker, Kubernetes) works unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import psutil
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning import LocalProvisioner

from . import proctree, remote
from .bridge import EventHandler, KernelBridge
from .errors import KernelDied, KernelStartError, ServiceUnavailable
from .launch import LaunchOptions, start_kernel
from .zmqsend import send_message

__all__ = ["ScriptKernel", "KernelEvents", "KernelStartError"]

log = logging.getLogger("kernel_gateway.kernels")
# a kernel that exits before its first reply is started again (see ScriptKernel.start)
START_ATTEMPTS = 3


# the exit code of a VWED kernel that could not bind a port (vwed_kernel/launch.py)
BIND_FAILED = 75


def _died_before_ready(exc: BaseException) -> bool:
    """jupyter_client's word for a kernel process that exited before it answered."""
    return isinstance(exc, RuntimeError) and "died before replying" in str(exc)


def _exit_code(km: AsyncKernelManager) -> int | None:
    """The exit code of a local kernel process that ended (None: unknown)."""
    code = getattr(getattr(km.provisioner, "process", None), "returncode", None)
    return code if isinstance(code, int) else None


COMM_TARGET = "vwed"
IopubSink = Callable[["ScriptKernel", dict[str, Any]], None]
DeathHandler = Callable[["ScriptKernel"], Awaitable[None] | None]


@dataclass(frozen=True)
class KernelEvents:
    """Where what a serving kernel sends goes (built once, by the app): its comm ops
    (logs, registrations, requests for services), its iopub output, its end."""

    on_event: EventHandler
    on_iopub: IopubSink
    on_closed: Callable[[ScriptKernel], None]


class ScriptKernel:
    """One started kernel with its client, readers, death watch and comm bridge."""

    def __init__(self, km: AsyncKernelManager, *, death_poll: float = 0.2) -> None:
        self.km = km
        self.kernel_id = str(uuid.uuid4())
        self.client = km.client()
        self.bridge = KernelBridge(self)
        self.script_id: str | None = None
        self.replica = 0
        self.registrations: Any = None
        self.pid: int | None = None
        # the process measured for CPU and RSS: the kernel's own (pid), or a container's
        # main process when its Docker daemon runs on this machine (remote.container_pid)
        self.measured_pid: int | None = None
        self.info: dict[str, Any] = {}
        self.started_at = time.time()
        self.alive = True
        self.death_poll = death_poll
        self.death_watch = "poll"  # or "pidfd": how its end is seen (_watch)
        self.on_iopub: IopubSink | None = None
        self.on_death: DeathHandler | None = None
        self.on_closed: Callable[[ScriptKernel], None] | None = None
        self._proc: psutil.Process | None = None  # keeps the CPU times of the last look
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._idle: dict[str, asyncio.Future[None]] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._closing = False

    # -- start ---------------------------------------------------------------------
    @classmethod
    async def start(
        cls,
        ksm: KernelSpecManager,
        kernel_name: str,
        *,
        startup_timeout: float = 60.0,
        extra_env: dict[str, str] | None = None,
        fast_path: bool = True,
        launch: LaunchOptions | None = None,
    ) -> ScriptKernel:
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                km = await start_kernel(
                    ksm, kernel_name, launch or LaunchOptions(), extra_env, script=True
                )
            except Exception as exc:
                raise KernelStartError(f"kernel {kernel_name!r} failed to start: {exc}") from exc
            kernel = cls(km)
            try:
                await asyncio.wait_for(kernel._connect(fast_path), startup_timeout)
            except BaseException as exc:
                code = _exit_code(km)
                await kernel.shutdown(now=True)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                if _died_before_ready(exc) and attempt < START_ATTEMPTS:
                    # jupyter_client picks the kernel's ports before the kernel binds them:
                    # any process on the machine may take one in between (the kernel then
                    # exits with BIND_FAILED, at once: plain launches and forked ones
                    # alike). New ports, one more time.
                    log.warning(
                        "kernel %r exited before it was ready (code %s%s; attempt %d of %d): "
                        "starting it again",
                        kernel_name,
                        code,
                        ": a port was taken" if code == BIND_FAILED else "",
                        attempt,
                        START_ATTEMPTS,
                    )
                    continue
                raise KernelStartError(
                    f"kernel {kernel_name!r} did not become ready: {exc!r}"
                ) from exc
            return kernel
        raise AssertionError("unreachable")

    @classmethod
    async def attach(
        cls, km: AsyncKernelManager, *, timeout: float = 30.0, fast_path: bool = True
    ) -> ScriptKernel:
        """A kernel that was already running (a remote one this gateway reattached to,
        ``remote.reattach``): its channels, a new service subshell and a new ``vwed``
        comm (the kernel's newest comm wins). Raises ``KernelStartError`` if it does
        not answer in time; the kernel is left running then (the caller decides)."""
        kernel = cls(km)
        try:
            await asyncio.wait_for(kernel._connect(fast_path), timeout)
        except BaseException as exc:
            kernel._closing = True
            for task in kernel._tasks:
                task.cancel()
            kernel.bridge.close()
            with contextlib.suppress(Exception):
                kernel.client.stop_channels()
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise KernelStartError(f"the kernel did not answer on its channels: {exc!r}") from exc
        return kernel

    async def _connect(self, fast_path: bool) -> None:
        # no heartbeat channel: a thread per kernel in this process, waking every
        # second to ping it (300 kernels: 300 wake-ups a second, each taking the
        # interpreter lock from the event loop); a kernel's end is seen by _watch
        self.client.start_channels(hb=False)
        await self.client.wait_for_ready(timeout=60)
        self._tasks = [
            asyncio.ensure_future(self._read_iopub()),
            asyncio.ensure_future(self._read_replies(self.client.shell_channel)),
            asyncio.ensure_future(self._read_replies(self.client.control_channel)),
            asyncio.ensure_future(self._watch()),
        ]
        subshell = None
        reply = await self.request("control", "create_subshell_request", {}, timeout=10)
        if reply["content"].get("status") == "ok":
            subshell = reply["content"].get("subshell_id")
        hello = await self.bridge.open(COMM_TARGET, subshell, timeout=10, fast=fast_path)
        self.pid = hello.get("pid") if self._is_local() else None
        self.measured_pid = self.pid
        if remote.in_container(self.km.provisioner):
            self.measured_pid = await remote.container_pid(self.km.provisioner)
        self.info = hello

    def _is_local(self) -> bool:
        return isinstance(self.km.provisioner, LocalProvisioner)  # the fork provisioner too

    @property
    def host(self) -> str | None:
        """The host a remote provisioner started the kernel on (None: this machine,
        the only one whose CPU, memory and process tree the gateway can see)."""
        if self._is_local():
            return None
        provisioner = self.km.provisioner
        host = getattr(provisioner, "assigned_host", None) or getattr(provisioner, "ip", None)
        return str(host) if host else "remote"

    def _local_pid(self) -> int | None:
        """The kernel's process id when it runs on this machine (else None)."""
        if not self._is_local():
            return None
        process = getattr(self.km.provisioner, "process", None)
        return getattr(process, "pid", None) or self.pid

    def wire(
        self,
        events: KernelEvents,
        *,
        script_id: str | None = None,
        replica: int = 0,
        on_death: DeathHandler | None = None,
    ) -> None:
        """Hand the kernel to its user (a script's replica, or a step worker): from now
        on its events, output and death go there."""
        self.script_id = script_id
        self.replica = replica
        self.bridge.on_event = events.on_event
        self.on_iopub = events.on_iopub
        self.on_closed = events.on_closed
        self.on_death = on_death

    def usage(self) -> dict[str, Any]:
        """CPU (% since the last look) of a local kernel process, and the RSS of its
        whole process tree (the memory limit counts the processes it started too); of
        a container's main process when the container runs on this machine."""
        if self.measured_pid is None:
            return {"cpu_percent": None, "rss_mib": None}
        try:
            if self._proc is None:
                self._proc = psutil.Process(self.measured_pid)
            return {
                "cpu_percent": self._proc.cpu_percent(None),
                "rss_mib": round(proctree.tree_rss(self._proc) / 1048576, 1),
            }
        except psutil.Error:
            self._proc = None
            return {"cpu_percent": None, "rss_mib": None}

    # -- the bridge's link (bridge.KernelLink) -------------------------------------
    @property
    def session(self) -> Any:
        """The Jupyter session: makes and signs messages."""
        return self.client.session

    @property
    def ip(self) -> str:
        """The address the kernel listens on."""
        return str(self.km.get_connection_info().get("ip") or "127.0.0.1")

    # -- channels ------------------------------------------------------------------
    def send(self, channel: str, msg: dict[str, Any], buffers: list[Any] | None = None) -> None:
        chan = getattr(self.client, f"{channel}_channel")
        send_message(self.client.session, chan.socket, msg, buffers)

    async def request(
        self, channel: str, msg_type: str, content: dict[str, Any], *, timeout: float
    ) -> dict[str, Any]:
        """Send a request on shell/control and wait for its reply (with a deadline)."""
        msg = self.client.session.msg(msg_type, content)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[msg["header"]["msg_id"]] = fut
        try:
            self.send(channel, msg)
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._replies.pop(msg["header"]["msg_id"], None)

    async def execute(self, code: str, *, timeout: float) -> dict[str, Any]:
        """Run code with an ``execute_request``; returns the reply content."""
        content = {
            "code": code,
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        }
        reply = await self.request("shell", "execute_request", content, timeout=timeout)
        return dict(reply["content"])

    async def _read_replies(self, channel: Any) -> None:
        while True:
            try:
                msg = await channel.get_msg()
            except asyncio.CancelledError:
                raise
            except Exception:
                if self._closing:
                    return
                log.exception("kernel %s: unreadable reply", self.kernel_id)
                continue
            fut = self._replies.get(msg.get("parent_header", {}).get("msg_id", ""))
            if fut is not None and not fut.done():
                fut.set_result(msg)

    async def _read_iopub(self) -> None:
        channel = self.client.iopub_channel
        while True:
            try:
                msg = await channel.get_msg()
            except asyncio.CancelledError:
                raise
            except Exception:
                if self._closing:
                    return
                log.exception("kernel %s: unreadable iopub message", self.kernel_id)
                continue
            try:
                kind = msg["msg_type"]
                if kind == "comm_msg" and self.bridge.owns(msg):
                    self.bridge.on_comm_msg(msg)
                elif kind == "status":
                    self._on_status(msg)
                elif self.on_iopub is not None:
                    self.on_iopub(self, msg)
            except Exception:
                log.exception("kernel %s: iopub message handler failed", self.kernel_id)

    def _on_status(self, msg: dict[str, Any]) -> None:
        if msg["content"].get("execution_state") == "idle":
            fut = self._idle.pop(msg.get("parent_header", {}).get("msg_id", ""), None)
            if fut is not None and not fut.done():
                fut.set_result(None)

    async def barrier(self, timeout: float) -> bool:
        """Wait until the output the kernel produced so far has reached the gateway.

        A ``ping`` on the comm is answered on iopub after everything published
        before it, and its ``idle`` status comes after ipykernel flushed stdout and
        stderr; so once that ``idle`` arrives, nothing older is still on its way.
        False if the kernel did not answer in time (busy in a long call).
        """
        if not self.alive:
            return False
        msg_id = self.bridge.comm_ping()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._idle[msg_id] = fut
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except asyncio.TimeoutError:
            return False
        except Exception:
            log.debug("kernel %s: barrier failed", self.kernel_id, exc_info=True)
            return False
        finally:
            self._idle.pop(msg_id, None)

    async def _watch(self) -> None:
        """Poll the provisioner: a kernel that dies is noticed within ``death_poll`` s.
        A kernel forked by the fork server is watched through its pidfd first (the
        loop wakes when it ends: nothing per idle kernel), then polled for its end."""
        process = getattr(self.km.provisioner, "process", None)
        until_ended = getattr(process, "until_ended", None)
        ended = until_ended() if callable(until_ended) else None
        if ended is not None:
            self.death_watch = "pidfd"
            # shielded: a stop cancels this task, and the future is shared (the stop's
            # own wait for the process, launch._KernelManager._async_wait, takes it)
            try:
                await asyncio.shield(ended)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not ended.cancelled() or (task is not None and _cancelling(task)):
                    raise  # this watch is being stopped
                self.death_watch = "poll"  # someone cancelled the shared one: poll
        in_container = remote.in_container(self.km.provisioner)
        while not self._closing:
            await asyncio.sleep(self.death_poll)
            if in_container:  # asked of Docker off the loop; not known: asked again
                if await remote.container_alive(self.km.provisioner) is False:
                    if not self._closing:
                        await self._died()
                    return
                continue
            try:
                alive = await self.km.is_alive()
            except Exception:
                log.debug(
                    "kernel %s: liveness check failed; taken as dead", self.kernel_id, exc_info=True
                )
                alive = False
            if not alive and not self._closing:
                await self._died()
                return

    async def _died(self) -> None:
        self.alive = False
        log.warning("kernel %s (script %s) died", self.kernel_id, self.script_id)
        error = KernelDied(
            f"the kernel of script {self.script_id or '(none)'} died while serving the call",
            details={"script_id": self.script_id},
        )
        self.bridge.fail_all(error)
        for fut in list(self._replies.values()):
            if not fut.done():
                fut.set_exception(error)
        if self.on_death is not None:
            result = self.on_death(self)
            if asyncio.iscoroutine(result):
                await result
        await self.shutdown(now=True)

    async def kill(self) -> None:
        """Stop the kernel as if it had died (a limit it broke): calls fail, death
        handlers run, the process is killed."""
        if self.alive and not self._closing:
            await self._died()

    # -- control -------------------------------------------------------------------
    async def interrupt(self) -> None:
        """Interrupt the code running in the kernel (SIGINT or an interrupt_request)."""
        if not self.alive:
            return
        try:
            await self.km.interrupt_kernel()
        except Exception:
            log.exception("kernel %s: interrupt failed", self.kernel_id)

    async def shutdown(self, *, now: bool = False) -> None:
        if self._closing:
            return
        self._closing = True
        self.alive = False
        self.bridge.fail_all(
            ServiceUnavailable(
                f"script {self.script_id} is stopping",
                "SCRIPT_STOPPING",
                details={"script_id": self.script_id},
            )
        )
        self.bridge.close()
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        with contextlib.suppress(Exception):
            self.client.stop_channels()
        # The processes the script started go with the kernel, also those that left
        # its process group (setsid), which the provisioner's group kill misses.
        children = proctree.descendants(self._local_pid())
        if not self._is_local() and self.km.has_kernel:  # signalled while it can be
            await remote.end_remote(self.km.provisioner)
        try:
            await self.km.shutdown_kernel(now=now)
        except Exception:
            log.exception("kernel %s: shutdown failed", self.kernel_id)
        if children:
            left = await asyncio.get_running_loop().run_in_executor(
                None, proctree.kill_all, children
            )
            if left:
                log.info("kernel %s: killed %d leftover process(es)", self.kernel_id, left)
        with contextlib.suppress(Exception):
            await self.km.cleanup_resources()
        if self.on_closed is not None:
            self.on_closed(self)


def _cancelling(task: asyncio.Task[Any]) -> bool:
    """Whether ``task`` itself is being cancelled (Python 3.11+; before: assumed so)."""
    cancelling = getattr(task, "cancelling", None)
    return bool(cancelling()) if callable(cancelling) else True
