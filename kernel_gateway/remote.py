"""What the gateway sets up for kernels on other hosts (gateway_provisioners' remote
provisioners: SSH-distributed, Docker, Kubernetes; docs/scaling.md).

gateway_provisioners reads its settings from the environment when it is imported
(at the first start of a kernel from a remote kernelspec). One of them hurts every
call of the gateway: its sockets to the kernel launchers (the response address that
receives connection info, the listener that answers liveness polls and relays
signals) get a 10 ms timeout (``GP_SOCKET_TIMEOUT``), which makes them blocking
sockets on the event loop: each ``accept`` of its response manager, polled every
0.1 ms, holds the whole loop for 10 ms. Measured (bench/remote.py): route p50 33 ms
for local and remote scripts alike once one remote kernel had started, against
about 1.5 ms. With 0 the sockets are non-blocking and asyncio waits on them as it
should. An operator's own value is kept.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning import KernelProvisionerFactory, LocalProvisioner

__all__ = ["prepare_remote_provisioners", "remote_state", "reattach", "end_remote"]

log = logging.getLogger("kernel_gateway.kernels")


def prepare_remote_provisioners(environ: dict[str, str] | None = None) -> None:
    """Settings of gateway_provisioners that must be in place before it is imported."""
    env = os.environ if environ is None else environ
    env.setdefault("GP_SOCKET_TIMEOUT", "0")


# -- reconnecting to a kernel that runs on another host ----------------------------------
# A restarted gateway can talk again to a remote kernel that outlived it: the kernel's
# launcher keeps running on its host (started with nohup over SSH), and what its
# provisioner knows (host, pid, listener port, the kernel's ports and key) is enough to
# rebuild a manager for it. ``remote_state`` is what to persist; ``reattach`` rebuilds.
# The engine keeps the first (sealed) with each desired remote script and reattaches
# through the second at restore (engine/reattach.py, engine/resume.py).


async def remote_state(km: AsyncKernelManager) -> dict[str, Any] | None:
    """What a restarted gateway needs to reconnect to ``km``'s kernel, JSON-safe (it
    holds the kernel's message key: store it as a secret); None for a local kernel,
    which does not outlive the gateway."""
    provisioner = km.provisioner
    # the fork server's provisioner is a LocalProvisioner too: local kernels end with
    # their gateway (their parent), there is nothing to reconnect to
    if provisioner is None or isinstance(provisioner, LocalProvisioner):
        return None
    info = await provisioner.get_provisioner_info()
    return {"kernel_name": km.kernel_name, "provisioner": _jsonable(info)}


async def reattach(ksm: KernelSpecManager, state: dict[str, Any]) -> AsyncKernelManager | None:
    """A manager for the kernel ``state`` describes, if it still answers (its
    launcher's listener): None when it is gone (start a new one then)."""
    info = dict(state["provisioner"])
    km = AsyncKernelManager(kernel_name=state["kernel_name"], kernel_spec_manager=ksm)
    km.kernel_id = info["kernel_id"]
    km.provisioner = KernelProvisionerFactory.instance(
        parent=km.parent
    ).create_provisioner_instance(info["kernel_id"], km.kernel_spec, parent=km)
    await km.provisioner.load_provisioner_info(info)
    km.load_connection_info(info["connection_info"])
    if not await km.is_alive():
        return None
    return km


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


async def end_remote(provisioner: Any, timeout: float = 10.0) -> None:
    """End a remote kernel for good: SIGTERM, then SIGKILL, through its launcher's
    listener (gateway_provisioners' ``kill``), before the usual shutdown.

    Why not the shutdown request alone: gateway_provisioners tells the listener to
    exit along with it, and a kernel slow to exit (measured here: 30 s) can then no
    longer be signalled, its liveness polls fail so it counts as dead, and it
    outlives its stop; a local kernel is cut off with SIGKILL after
    ``shutdown_wait_time`` instead. Processes the kernel started that left its
    process group on that host are not reached (the gateway sees no remote tree)."""
    try:
        await asyncio.wait_for(provisioner.kill(), timeout)
    except Exception as exc:  # unreachable host, listener gone: nothing more to do here
        log.warning("a remote kernel could not be signalled: %s", exc)
