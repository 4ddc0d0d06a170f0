"""``ForkProvisioner``: the kernel provisioner of the gateway's ``vwed`` kernelspec
(``"kernel_provisioner": {"provisioner_name": "vwed-fork-provisioner"}``, found
through the ``jupyter_client.kernel_provisioners`` entry point).

It is ``LocalProvisioner`` with one change: ``launch_kernel`` asks the gateway's
fork server for the kernel instead of starting ``python -m vwed_kernel``, and
keeps a ``ForkedProcess`` where ``LocalProvisioner`` keeps its ``Popen``; polling,
signals (interrupt is SIGINT to the kernel's process group, which the fork made
its own), kill, terminate, wait and cleanup are ``LocalProvisioner``'s, unchanged.
The connection file, ports and environment are prepared by ``LocalProvisioner``'s
``pre_launch`` as for any local kernel.

A plain launch (``LocalProvisioner``'s own) happens when the kernel manager has no
fork server (``fork_server`` of ``launch._KernelManager``: a kernel manager outside
the gateway, e.g. JupyterLab reading this kernelspec), when the launch asks for
something a fork cannot give (another interpreter, other ``PYTHON*`` variables,
``Popen`` options besides the environment, folder and user), or when the fork
server cannot be started.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning import LocalProvisioner

from .process import ForkedProcess
from .server import ForkServer, ForkServerUnavailable

__all__ = ["ForkProvisioner", "PROVISIONER_NAME"]

log = logging.getLogger("kernel_gateway.forkserver")

PROVISIONER_NAME = "vwed-fork-provisioner"
# What a fork gives of a launch's keyword arguments (``kerneluser.popen_kwargs``
# and ``cwd`` included); anything else asks for a plain launch.
_FORKABLE = frozenset({"env", "cwd", "user", "group", "extra_groups", "kernel_id"})


class ForkProvisioner(LocalProvisioner):  # type: ignore[misc]
    """``LocalProvisioner`` whose kernels come from the gateway's fork server."""

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        server: ForkServer | None = getattr(self.parent, "fork_server", None)
        why = self._unforkable(server, cmd, kwargs)
        if why is None and server is not None:
            cwd = str(kwargs.get("cwd") or os.getcwd())
            try:
                process = await server.spawn(cmd, kwargs["env"], cwd, _user(kwargs))
            except ForkServerUnavailable as exc:
                why = str(exc)
            else:
                self.process = process  # type: ignore[assignment]  # Popen-like
                self.pid = process.pid
                self.pgid = process.pid  # the child's own session and group
                self.cwd = cwd
                return self.connection_info
        if server is not None:
            log.info("kernel launched without the fork server: %s", why)
        return await super().launch_kernel(cmd, **kwargs)

    @staticmethod
    def _unforkable(
        server: ForkServer | None, cmd: list[str], kwargs: dict[str, Any]
    ) -> str | None:
        if server is None:
            return "no fork server"
        extra = set(kwargs) - _FORKABLE
        if extra:
            return f"launch options a fork cannot give: {sorted(extra)}"
        if "env" not in kwargs:
            return "no environment given"
        return server.unsuitable(cmd, kwargs["env"])

    async def send_signal(self, signum: int) -> None:
        """As ``LocalProvisioner`` (the process group first), never once the kernel
        ended: its group id may belong to another process by then."""
        if isinstance(self.process, ForkedProcess) and self.process.poll() is not None:
            return
        await super().send_signal(signum)


def _user(kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """The kernel user of ``kerneluser.popen_kwargs``, for the child to switch to."""
    if kwargs.get("user") is None:
        return None
    return {
        "uid": int(kwargs["user"]),
        "gid": int(kwargs["group"]),
        "groups": [int(g) for g in kwargs.get("extra_groups") or ()],
    }
