"""A Docker daemon that hangs cannot starve the gateway's default executor (review
finding 6): the liveness polls of container kernels (``remote.container_alive``) run
on remote.py's own Docker threads, each with a timeout ("not known" after it), and a
kernel's poll is skipped while its previous one is still outstanding.

Real parts: gateway_provisioners' ``DockerProvisioner`` with its real docker-py
client, pointed (DOCKER_HOST) at a local TCP listener that answers the client's
``/version`` handshake and then never answers any other request, as a hung dockerd
would. Needs no Docker daemon.
"""

from __future__ import annotations

import asyncio
import importlib.util
import socketserver
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from kernel_gateway import remote

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        importlib.util.find_spec("gateway_provisioners") is None
        or importlib.util.find_spec("docker") is None,
        reason="needs gateway_provisioners[docker]",
    ),
]

KERNELS = 10  # more than the default executor's threads (min(32, cpus + 4))


class HungDaemon(socketserver.ThreadingTCPServer):
    """Answers GET /version; holds every other request unanswered until ``release``
    (then answers ``[]``: no containers)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.released = threading.Event()
        self.held = 0
        self.lock = threading.Lock()

    def release(self) -> None:
        self.released.set()


class _Handler(socketserver.StreamRequestHandler):
    server: HungDaemon

    def handle(self) -> None:
        while True:
            line = self.rfile.readline()
            if not line:
                return
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # headers (GET requests: no body)
            if b"/version" in line:
                body = b'{"ApiVersion": "1.41", "Version": "hung"}'
                self.wfile.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )
                self.wfile.flush()
                continue
            with self.server.lock:
                self.server.held += 1
            self.server.released.wait(100)
            body = b"[]"  # released: the daemon answers again, no containers
            self.wfile.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            self.wfile.flush()


@pytest.fixture
def hung_daemon(monkeypatch: pytest.MonkeyPatch) -> Iterator[HungDaemon]:
    server = HungDaemon()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{server.server_address[1]}")
    monkeypatch.delenv("DOCKER_TLS_VERIFY", raising=False)
    try:
        yield server
    finally:
        server.release()
        server.shutdown()
        server.server_close()


def _provisioner() -> Any:
    from gateway_provisioners.docker_swarm import DockerProvisioner
    from jupyter_client.kernelspec import KernelSpec

    spec = KernelSpec(argv=["python"], display_name="hung", metadata={})
    return DockerProvisioner(kernel_id=str(uuid.uuid4()), kernel_spec=spec, parent=None)


def test_hung_docker_daemon_leaves_default_executor_free(hung_daemon: HungDaemon) -> None:
    provisioners = [_provisioner() for _ in range(KERNELS)]
    port = str(hung_daemon.server_address[1])
    assert all(p.client.api.base_url.endswith(port) for p in provisioners)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        # every kernel polls, as its death watch does (one round, then a second while
        # the first ones still hang)
        first = [
            asyncio.ensure_future(remote.container_alive(p, timeout=2.0)) for p in provisioners
        ]
        await asyncio.sleep(0)
        # the default executor answers while the polls hang (before the fix they
        # occupied all its threads, for docker-py's 60 s)
        for _ in range(3):
            assert await asyncio.wait_for(loop.run_in_executor(None, lambda: 42), 10) == 42
        # the polls answer "not known" after their timeout, not "dead"
        assert await asyncio.wait_for(asyncio.gather(*first), 10) == [None] * KERNELS
        # while a kernel's poll still hangs on a Docker thread, its next one is skipped
        # ("not known" at once, nothing sent); calls that were only queued were dropped
        second = await asyncio.wait_for(
            asyncio.gather(*(remote.container_alive(p, timeout=2.0) for p in provisioners)), 10
        )
        assert second == [None] * KERNELS
        assert await asyncio.wait_for(loop.run_in_executor(None, lambda: 7), 10) == 7

    asyncio.run(scenario())
    # the Docker threads hold at most DOCKER_THREADS calls: the daemon saw no more
    with hung_daemon.lock:
        held = hung_daemon.held
    assert 1 <= held <= remote.DOCKER_THREADS


def test_a_stop_waits_its_turn_behind_hung_polls(hung_daemon: HungDaemon) -> None:
    """A container's removal queued behind hung polls is not given up for the time it
    waited for a Docker thread: its timeout counts from its start."""
    polling = [_provisioner() for _ in range(4)]
    stopped = _provisioner()
    stopped.comm_port = 4242  # set to 0 by end_remote once the removal is done

    async def scenario() -> None:
        polls = [asyncio.ensure_future(remote.container_alive(p, timeout=1.0)) for p in polling]
        await asyncio.sleep(0)
        stopping = asyncio.ensure_future(remote.end_remote(stopped, timeout=1.0))
        assert await asyncio.wait_for(asyncio.gather(*polls), 10) == [None] * len(polling)
        # longer than the removal's timeout, in the queue: it still waits
        waited_until = time.monotonic() + 2.5
        while time.monotonic() < waited_until:
            assert not stopping.done()
            await asyncio.sleep(0.1)
        assert stopped.comm_port == 4242
        hung_daemon.release()  # the hung calls end, the removal runs
        await asyncio.wait_for(stopping, 20)
        assert stopped.comm_port == 0

    asyncio.run(scenario())
