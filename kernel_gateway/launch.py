"""How the gateway launches a kernel: its environment, and the user it runs as.

Every kernel (script, worker, scratch) is started through :func:`start_kernel`,
so none inherits the gateway's environment (``kernelenv``) and, with
``--kernel-user``, every local kernel runs as that user (``kerneluser``). A
kernelspec that names another provisioner (Docker, Kubernetes) gets the
environment but no user switch: its own launcher decides who the kernel is.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager

from .kerneluser import KernelUser

__all__ = ["LaunchOptions", "start_kernel"]


@dataclass
class LaunchOptions:
    """What every kernel of a gateway is launched with."""

    env: dict[str, str] = field(default_factory=dict)  # the kernel's whole environment
    user: KernelUser | None = None
    cwd: str | None = None  # the kernel's working folder when it runs as ``user``
    runtime_dir: str | None = None  # connection files of ``user``'s kernels
    fork_server: Any = None  # a forkserver.ForkServer, for the kernelspec's fork provisioner

    def connection_dir(self) -> str:
        """A folder only root may change, that ``user`` may enter (0711), for the
        connection files (each 0600, owned by ``user``); made on first use."""
        if self.runtime_dir is None:
            self.runtime_dir = tempfile.mkdtemp(prefix="vwed-kernels-")
            os.chmod(self.runtime_dir, 0o711)
        return self.runtime_dir


class _KernelManager(AsyncKernelManager):
    """An ``AsyncKernelManager`` that hands the connection file to the kernel's user
    (the kernel reads it after it dropped root)."""

    file_owner: tuple[int, int] | None = None
    fork_server: Any = None  # read by forkserver.ForkProvisioner (None: plain launches)

    def write_connection_file(self, **kwargs: Any) -> None:
        super().write_connection_file(**kwargs)
        if self.file_owner is not None:
            os.chown(self.connection_file, *self.file_owner)

    async def _async_wait(self, pollinterval: float = 0.1) -> None:
        """Until the kernel's process ended. jupyter_client's looks every 0.1 s, so a
        stopped kernel gone in 5 ms held its stop for 100 ms: here the loop wakes when
        the process ends (a forked kernel's pidfd, or one opened on a local process),
        then its exit status is looked for every 5 ms. The wake-up is only a hint:
        ``is_alive`` decides, and without one it is jupyter_client's poll."""
        process = getattr(self.provisioner, "process", None)
        until_ended = getattr(process, "until_ended", None)
        ended = until_ended() if callable(until_ended) else None
        watch = _PidWatch.of(process) if ended is None else None
        if watch is not None:
            ended = watch.ended
        if ended is None:
            await super()._async_wait(pollinterval=pollinterval)
            return
        try:
            while await self._async_is_alive():
                if not ended.done():
                    await asyncio.wait([ended], timeout=pollinterval)
                else:
                    await asyncio.sleep(min(pollinterval, 0.005))
        finally:
            if watch is not None:
                watch.close()


class _PidWatch:
    """A future resolved when a local process ends (its pidfd turns readable)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.loop = asyncio.get_running_loop()
        self.ended: asyncio.Future[None] = self.loop.create_future()
        self.loop.add_reader(fd, self._readable)

    @classmethod
    def of(cls, process: Any) -> _PidWatch | None:
        pid = getattr(process, "pid", None)
        if not isinstance(pid, int) or not hasattr(os, "pidfd_open"):
            return None
        try:
            fd = os.pidfd_open(pid)
        except OSError:  # ended and reaped already, or not ours to see
            return None
        try:
            return cls(fd)
        except (OSError, ValueError, NotImplementedError):
            os.close(fd)
            return None

    def _readable(self) -> None:
        self.loop.remove_reader(self.fd)
        if not self.ended.done():
            self.ended.set_result(None)

    def close(self) -> None:
        self.loop.remove_reader(self.fd)
        os.close(self.fd)


def _is_local(ksm: KernelSpecManager, name: str) -> bool:
    spec = ksm.get_kernel_spec(name)
    wanted = (spec.metadata or {}).get("kernel_provisioner", {}).get("provisioner_name")
    return wanted in (None, "local-provisioner", "vwed-fork-provisioner")


async def start_kernel(
    ksm: KernelSpecManager,
    name: str,
    launch: LaunchOptions,
    extra_env: dict[str, str] | None = None,
    *,
    script: bool = False,
) -> AsyncKernelManager:
    """Start kernel ``name`` as ``launch`` says; returns its (started) manager.
    ``script``: a kernel the gateway runs (a script's, a worker), not one a person
    types into."""
    km = _KernelManager(kernel_name=name, kernel_spec_manager=ksm)
    km.fork_server = launch.fork_server
    # A full env: jupyter_client then uses it as is instead of a copy of os.environ.
    env = {**launch.env, **(extra_env or {})}
    kwargs: dict[str, Any] = {}
    user = launch.user
    local = _is_local(ksm, name)
    if script and local:
        # No IPython history: a script kernel's cells are its script (kept in Git); the
        # history's SQLite file, thread and session row cost every kernel about
        # 0.5 MiB, and hundreds of kernels would share one database file. Kernels of
        # people (scratch, drafts, JupyterLab) keep it.
        kwargs["extra_arguments"] = ["--HistoryManager.enabled=False"]
    if user is not None and local:
        env.update(user.env())
        km.connection_file = os.path.join(
            launch.connection_dir(), f"kernel-{os.urandom(8).hex()}.json"
        )
        km.file_owner = (user.uid, user.gid)
        kwargs.update(user.popen_kwargs())
        if launch.cwd is not None:
            kwargs["cwd"] = launch.cwd
    km.shutdown_wait_time = 3.0
    await km.start_kernel(env=env, **kwargs)
    return km
