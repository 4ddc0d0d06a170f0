"""A kernel that exits before its first reply (a port jupyter_client picked for it was taken
by another process before the kernel bound it: "Address already in use") is started again
with new ports, up to ``START_ATTEMPTS`` times; one that always exits is a clear
KernelStartError. Real kernels, through a kernelspec whose launcher exits while a count of
launches is below a number. And the real kernel, launched plainly (no fork server), whose
port is taken: it exits at once with ``BIND_FAILED`` (it hung in ZeroMQ's ``term()`` until
the start timed out) and the start is retried."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kernel_gateway.errors import KernelStartError
from kernel_gateway.kernelenv import kernel_environment
from kernel_gateway.kernels import START_ATTEMPTS, ScriptKernel
from kernel_gateway.kernelspec import make_kernelspec_manager
from kernel_gateway.launch import LaunchOptions
from vwed_kernel.launch import BIND_FAILED

LAUNCHER = """
import os, sys
count, exits, connection_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(count, "a") as f:
    f.write("launch\\n")
if len(open(count).read().split()) <= exits:
    sys.exit(3)  # as a kernel whose port was taken does
os.execv(sys.executable, [sys.executable, "-m", "vwed_kernel", "-f", connection_file])
"""


def _spec(data: Path, exits: int) -> Path:
    """Kernelspec ``flaky``: its first ``exits`` launches exit at once; returns the count file."""
    folder = data / "kernels" / "flaky"
    folder.mkdir(parents=True)
    count = data / "launches"
    argv = [sys.executable, "-c", LAUNCHER, str(count), str(exits), "{connection_file}"]
    spec = {"argv": argv, "display_name": "flaky", "language": "python"}
    (folder / "kernel.json").write_text(json.dumps(spec))
    return count


def _launches(count: Path) -> int:
    return len(count.read_text().split())


@pytest.mark.timeout(120)
def test_a_kernel_that_died_before_it_was_ready_is_started_again(tmp_path):
    count = _spec(tmp_path, exits=START_ATTEMPTS - 1)

    async def run() -> None:
        launch = LaunchOptions(env=kernel_environment())
        kernel = await ScriptKernel.start(make_kernelspec_manager(tmp_path), "flaky", launch=launch)
        try:
            reply = await kernel.execute("assert 6 * 7 == 42", timeout=30)
            assert reply["status"] == "ok", reply
        finally:
            await kernel.shutdown(now=True)

    asyncio.run(run())
    assert _launches(count) == START_ATTEMPTS


@pytest.mark.timeout(120)
def test_a_kernel_that_always_dies_is_a_clear_start_error(tmp_path):
    count = _spec(tmp_path, exits=START_ATTEMPTS)

    async def run() -> None:
        launch = LaunchOptions(env=kernel_environment())
        await ScriptKernel.start(make_kernelspec_manager(tmp_path), "flaky", launch=launch)

    with pytest.raises(KernelStartError, match="died before replying"):
        asyncio.run(run())
    assert _launches(count) == START_ATTEMPTS


# The first launch holds the kernel's iopub port (a socket the kernel inherits), as another
# process would: the kernel's bind of it fails. Later launches run the kernel as it is.
HOLDER = """
import json, os, socket, sys
count, connection_file = sys.argv[1], sys.argv[2]
with open(count, "a") as f:
    f.write("launch\\n")
if len(open(count).read().split()) == 1:
    info = json.load(open(connection_file))
    held = socket.socket()
    held.bind((info["ip"], info["iopub_port"]))
    held.listen()
    held.set_inheritable(True)
os.execv(sys.executable, [sys.executable, "-m", "vwed_kernel", "-f", connection_file])
"""


@pytest.mark.timeout(120)
def test_a_plain_kernel_whose_port_is_taken_exits_at_once_and_is_started_again(tmp_path):
    folder = tmp_path / "kernels" / "taken"
    folder.mkdir(parents=True)
    count = tmp_path / "launches"
    argv = [sys.executable, "-c", HOLDER, str(count), "{connection_file}"]
    spec = {"argv": argv, "display_name": "taken", "language": "python"}
    (folder / "kernel.json").write_text(json.dumps(spec))

    async def run() -> None:
        launch = LaunchOptions(env=kernel_environment())
        # below the 60 s default, so a hanging first kernel fails the start here
        kernel = await ScriptKernel.start(
            make_kernelspec_manager(tmp_path), "taken", launch=launch, startup_timeout=30
        )
        try:
            reply = await kernel.execute("assert 6 * 7 == 42", timeout=30)
            assert reply["status"] == "ok", reply
        finally:
            await kernel.shutdown(now=True)

    asyncio.run(run())
    assert _launches(count) == 2


@pytest.mark.timeout(60)
@pytest.mark.parametrize("port", ["shell_port", "iopub_port", "stdin_port", "control_port"])
def test_the_kernel_exits_with_bind_failed_when_a_port_is_taken(tmp_path, port):
    from jupyter_client.connect import write_connection_file

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        connection_file, _ = write_connection_file(
            str(tmp_path / "kernel.json"), ip="127.0.0.1", **{port: held.getsockname()[1]}
        )
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "vwed_kernel", "-f", connection_file],
            capture_output=True,
            text=True,
            timeout=40,  # it hung in term() until killed: this fails the test then
        )
    assert done.returncode == BIND_FAILED, done.stderr[-2000:]
    assert "a port is taken" in done.stderr
    print(f"{port}: exited in {time.monotonic() - started:.2f} s")
