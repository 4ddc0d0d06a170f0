"""A kernel that exits before its first reply (a port jupyter_client picked for it was taken
by another process before the kernel bound it: "Address already in use") is started again
with new ports, up to ``START_ATTEMPTS`` times; one that always exits is a clear
KernelStartError. Real kernels, through a kernelspec whose launcher exits while a count of
launches is below a number."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from kernel_gateway.errors import KernelStartError
from kernel_gateway.kernelenv import kernel_environment
from kernel_gateway.kernels import START_ATTEMPTS, ScriptKernel
from kernel_gateway.kernelspec import make_kernelspec_manager
from kernel_gateway.launch import LaunchOptions

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
