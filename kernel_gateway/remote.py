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
import concurrent.futures
import logging
import os
import re
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning import KernelProvisionerFactory, LocalProvisioner

__all__ = [
    "prepare_remote_provisioners",
    "remote_state",
    "reattach",
    "end_remote",
    "end_unreachable",
    "describe",
    "in_container",
    "container_alive",
    "container_pid",
    "limit_memory",
    "DOCKER_TIMEOUT",
]

log = logging.getLogger("kernel_gateway.kernels")
T = TypeVar("T")

# -- Docker API calls: off the loop, on their own threads, never without a timeout -------
# docker-py blocks (its own timeout is 60 s). On the default executor, a hung daemon
# would take one thread per container kernel (each polls every 0.2 s) and starve
# every other user of that executor (check.compiles at each script start, local
# scripts too; shared_modules lookups). Here: a pool of DOCKER_THREADS threads of its
# own, a timeout on each call (DOCKER_TIMEOUT s: then "not known"), and at most one
# outstanding liveness poll per kernel (``container_alive``).
DOCKER_THREADS = 2
DOCKER_TIMEOUT = 10.0
QUEUED_LIMIT = 60.0  # docker-py's own timeout: a hung call frees its thread by then
_pool: concurrent.futures.ThreadPoolExecutor | None = None
_polls: weakref.WeakKeyDictionary[Any, concurrent.futures.Future[Any]] = weakref.WeakKeyDictionary()


def _docker_pool() -> concurrent.futures.ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = concurrent.futures.ThreadPoolExecutor(DOCKER_THREADS, "vwed-docker")
    return _pool


def _submit(fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
    return _docker_pool().submit(fn, *args)


async def _docker(
    fn: Callable[..., T], *args: Any, timeout: float = DOCKER_TIMEOUT, queued: float = 0.0
) -> T:
    """``fn(*args)`` (a Docker API call) on the Docker threads; TimeoutError after
    ``timeout`` s (a call still queued is then dropped; one running goes on until
    docker-py gives up, on its own thread). With ``queued`` > 0, ``timeout`` counts
    from the call's start on a Docker thread, and the call may wait up to ``queued`` s
    for one (a removal among many stops, behind other kernels' polls, is not given
    up for the queue it waited in)."""
    if queued <= 0:
        return await asyncio.wait_for(asyncio.wrap_future(_submit(fn, *args)), timeout)
    loop = asyncio.get_running_loop()
    started = asyncio.Event()

    def run() -> T:
        try:
            loop.call_soon_threadsafe(started.set)
        except RuntimeError:  # the loop is closed: nobody waits for it any more
            pass
        return fn(*args)

    call = asyncio.wrap_future(_submit(run))
    try:
        await asyncio.wait_for(started.wait(), queued)
        return await asyncio.wait_for(call, timeout)
    finally:
        call.cancel()  # dropped if still queued; nothing if done


def prepare_remote_provisioners(environ: dict[str, str] | None = None) -> None:
    """Settings of gateway_provisioners that must be in place before it is imported."""
    env = os.environ if environ is None else environ
    env.setdefault("GP_SOCKET_TIMEOUT", "0")


# -- reconnecting to a kernel that runs on another host ----------------------------------
# A restarted gateway can talk again to a remote kernel that outlived it: the kernel's
# launcher keeps running on its host (started with nohup over SSH) or in its container
# (Docker runs it detached), and what its provisioner knows (host or container, pid,
# listener port, the kernel's ports and key) is enough to rebuild a manager for it.
# ``remote_state`` is what to persist; ``reattach`` rebuilds.
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
    state = {"kernel_name": km.kernel_name, "provisioner": _jsonable(info)}
    if in_container(provisioner):
        state[DAEMON] = await _daemon_id(provisioner)
    return state


DAEMON = "docker_daemon"  # the key, in a container kernel's state, of its daemon's ID


async def _daemon_id(provisioner: Any) -> str | None:
    """The ID of the Docker daemon ``provisioner`` talks to (``docker info``), None
    when it has none or does not answer."""
    info = getattr(getattr(provisioner, "client", None), "info", None)
    if not callable(info):
        return None
    try:
        return str((await _docker(info)).get("ID") or "") or None
    except Exception:
        return None


async def manager(ksm: KernelSpecManager, state: dict[str, Any]) -> AsyncKernelManager:
    """A manager rebuilt from ``state`` (what ``remote_state`` gave), not yet checked."""
    info = dict(state["provisioner"])
    km = AsyncKernelManager(kernel_name=state["kernel_name"], kernel_spec_manager=ksm)
    km.kernel_id = info["kernel_id"]
    km.provisioner = KernelProvisionerFactory.instance(
        parent=km.parent
    ).create_provisioner_instance(info["kernel_id"], km.kernel_spec, parent=km)
    await km.provisioner.load_provisioner_info(info)
    km.load_connection_info(info["connection_info"])
    return km


async def reattach(ksm: KernelSpecManager, state: dict[str, Any]) -> AsyncKernelManager | None:
    """A manager for the kernel ``state`` describes, if it still answers (its
    launcher's listener): None when it is known gone (its host refuses the listener's
    port: start a new one then). Raises when that cannot be known (an unreachable
    host, a timeout, a state that does not load): the kernel may still run."""
    km = await manager(ksm, state)
    if not await _alive(km, state):
        return None
    return km


def in_container(provisioner: Any) -> bool:
    """Whether ``provisioner`` runs its kernel in a container (gateway_provisioners'
    Docker, Docker Swarm, Kubernetes provisioners): the container runtime then knows
    whether the kernel runs, and removing the container ends all it started."""
    return callable(getattr(provisioner, "get_container_status", None))


async def container_alive(provisioner: Any, timeout: float = DOCKER_TIMEOUT) -> bool | None:
    """Whether the container of a kernel in one still runs; None when the container
    runtime does not answer (not known: the kernel may run), within ``timeout`` s
    too, and while this kernel's previous poll is still outstanding (never two of a
    kernel's polls on the Docker threads). The death watch of such kernels
    (``ScriptKernel._watch``) asks this instead of the provisioner's ``poll``, which
    makes the same blocking Docker API call (about 1.6 ms here) on the event loop,
    every 0.2 s for each kernel."""
    previous = _polls.get(provisioner)
    if previous is not None and not previous.done():
        return None
    call = _submit(provisioner.get_container_status, None)
    _polls[provisioner] = call
    try:
        status = await asyncio.wait_for(asyncio.wrap_future(call), timeout)
    except Exception as exc:  # TimeoutError included
        log.debug("the container runtime did not answer: %r", exc)
        return None
    return status in provisioner.get_initial_states()


async def _alive(km: AsyncKernelManager, state: dict[str, Any] | None = None) -> bool:
    """Whether the kernel's launcher answers. gateway_provisioners' own ``poll`` says
    "gone" for any failure to reach the listener (an unreachable host too); here only
    a refused connection means gone, any other failure is raised (not known).

    A kernel in a container is asked of the container runtime instead (its launcher
    is the container's main process): running means alive, not found means gone (the
    containers are started with ``remove``), a runtime that does not answer raises.
    The lookup also gives the provisioner back its container's name, without which
    its ``kill`` at a stop would not remove the container (the name is not in the
    provisioner's persisted info). "Not found" means gone only from the daemon that
    started it (its ID is kept in ``state``): any other daemon raises."""
    provisioner: Any = km.provisioner
    if in_container(provisioner):
        # a container not found by another daemon (a standby on another machine, a
        # DOCKER_HOST changed) may run all the same where it was started: not known
        stored = (state or {}).get(DAEMON)
        if stored and stored != (now := await _daemon_id(provisioner)):
            raise RuntimeError(f"its container ran on Docker daemon {stored}, not this one ({now})")
        status = await _docker(provisioner.get_container_status, None)
        return status in provisioner.get_initial_states()
    send = getattr(provisioner, "_send_listener_request", None)
    if send is None or not getattr(provisioner, "comm_port", 0) > 0:
        return bool(await km.is_alive())  # no listener to ask: the provisioner's own poll
    try:
        await send({"signum": 0})
    except ConnectionRefusedError:
        return False
    return True


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
    process group on that host are not reached (the gateway sees no remote tree).

    A kernel in a container: the container is removed (forced), and every process in
    it with it; in a thread, as the Docker API call blocks (about 80 ms here)."""
    try:
        if in_container(provisioner):
            await _docker(
                provisioner.terminate_container_resources, timeout=timeout, queued=QUEUED_LIMIT
            )
            # its listener went with the container: the shutdown that follows must not
            # try to reach it (the address is gone from Docker's bridge: EHOSTUNREACH
            # after an ARP timeout, and a warning)
            provisioner.comm_port = 0
            return
        await asyncio.wait_for(provisioner.kill(), timeout)
    except Exception as exc:  # unreachable host, listener gone: nothing more to do here
        log.warning("a remote kernel could not be signalled: %s", exc)


async def container_pid(provisioner: Any, timeout: float = 30.0) -> int | None:
    """The process id, on this machine, of the main process of a kernel's Docker
    container (the kernel: the launcher runs it in its own process), when the Docker
    daemon runs here: its ``/proc/<pid>/cgroup`` names the container. None otherwise
    (a daemon on another machine, another PID namespace, no answer): the gateway
    measures that kernel's CPU and RSS as it does a local one's, nothing more (it is
    not signalled, nor its process tree walked: the container's removal ends it)."""
    client = getattr(provisioner, "client", None)
    name = getattr(provisioner, "container_name", None)
    if client is None or not hasattr(client, "containers") or not name:
        return None

    def lookup() -> int | None:
        container = client.containers.get(name)
        pid = int(container.attrs.get("State", {}).get("Pid") or 0)
        if pid <= 0:
            return None
        with open(f"/proc/{pid}/cgroup") as f:
            return pid if container.id in f.read() else None

    try:
        return await _docker(lookup, timeout=timeout)
    except Exception as exc:
        log.debug("no process of this machine measured for container %s: %r", name, exc)
        return None


async def limit_memory(provisioner: Any, mib: int, timeout: float = 30.0) -> str | None:
    """Cap the memory of a kernel in a Docker container at ``mib`` MiB, swap
    included (``docker update --memory --memory-swap`` on the running container: its
    cgroup; the kernel is killed when it goes over, a death the script's restart
    policy handles). None when done, else why not (another remote kernel, the update
    refused): gateway_provisioners' launcher itself passes no limits."""
    client = getattr(provisioner, "client", None)
    name = getattr(provisioner, "container_name", None)
    if not in_container(provisioner) or client is None or not hasattr(client, "containers"):
        return "not in a Docker container"
    if not name:
        return "its container is not known"

    def update() -> None:
        limit = f"{int(mib)}m"
        client.containers.get(name).update(mem_limit=limit, memswap_limit=limit)

    try:
        await _docker(update, timeout=timeout)
    except Exception as exc:  # the daemon refused it (a kernel without the cgroup), ...
        return f"Docker did not set it: {exc}"
    return None


_KERNEL_ID = re.compile(r"[0-9A-Za-z-]{8,64}")


def describe(state: dict[str, Any]) -> tuple[str, Any]:
    """(host, pid) of a stored remote kernel, for messages."""
    info = state.get("provisioner") if isinstance(state, dict) else None
    if not isinstance(info, dict):
        return "an unknown host", None
    host = info.get("assigned_host") or info.get("assigned_ip") or "an unknown host"
    return str(host), info.get("pid")


async def end_unreachable(
    ksm: KernelSpecManager, state: dict[str, Any], timeout: float = 30.0
) -> bool:
    """End a remote kernel whose listener could not be asked (``reattach`` raised), so
    that a new one never runs beside it: SIGTERM/SIGKILL through its listener if it
    answers after all, then SIGKILL of its launcher process (and its children) over
    SSH (the SSH-distributed provisioner), checked by its kernel id in
    ``/proc/<pid>/cmdline`` so that a reused pid is never hit. True when it is known
    ended (or was gone); False when that could not be done (keep it, try again)."""
    try:
        km = await manager(ksm, state)
    except Exception as exc:
        log.warning("a stored remote kernel cannot be loaded to be ended: %r", exc)
        return False
    provisioner = km.provisioner
    try:
        if not await asyncio.wait_for(_alive(km, state), timeout):
            return True  # its host refuses the listener's port: gone
        await end_remote(provisioner, timeout)
        for _ in range(3):  # its listener ends at its next request once the kernel is gone
            if not await asyncio.wait_for(_alive(km, state), timeout):
                return True
            await asyncio.sleep(0.5)
    except Exception:
        pass  # its listener cannot be reached: over SSH then
    rsh = getattr(provisioner, "_rsh", None)
    host, pid = describe(state)
    kernel_id = str(getattr(provisioner, "kernel_id", "") or "")
    if rsh is None or not isinstance(pid, int) or pid <= 1 or not _KERNEL_ID.fullmatch(kernel_id):
        return False
    mine = f"grep -qa -- {kernel_id} /proc/{pid}/cmdline 2>/dev/null"
    command = (
        f"if {mine}; then pkill -KILL -P {pid}; kill -KILL {pid}; sleep 0.5; fi; "
        f"if {mine}; then echo VWED-ALIVE; else echo VWED-GONE; fi"
    )
    try:
        lines = await asyncio.wait_for(asyncio.to_thread(rsh, host, command), timeout)
    except Exception as exc:
        log.warning(
            "the remote kernel (pid %s) on %s could not be ended over SSH: %r", pid, host, exc
        )
        return False
    return any("VWED-GONE" in str(line) for line in lines or [])
