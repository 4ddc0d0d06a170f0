"""Busy polling is off under a CPU quota of less than two cores (a container's
``--cpus``): the poll would spend the quota the kernels need (busypoll.off_reason,
cpuquota.own_cpu_limit). Read from real cgroup files."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from kernel_gateway.cpuquota import own_cpu_limit

pytestmark = pytest.mark.timeout(60)

CPU_V1 = Path("/sys/fs/cgroup/cpu")


def test_the_smallest_cpu_max_of_the_cgroup_and_its_parents(tmp_path: Path) -> None:
    """cgroup v2: the limit is the smallest ``cpu.max`` on the way up to the mount."""
    leaf = tmp_path / "system.slice" / "gateway.service"
    leaf.mkdir(parents=True)
    mountinfo = f"30 23 0:26 / {tmp_path} rw,nosuid - cgroup2 cgroup2 rw\n"
    cgroups = "0::/system.slice/gateway.service\n"
    assert own_cpu_limit(mountinfo, cgroups) is None  # no cpu.max anywhere
    (leaf / "cpu.max").write_text("max 100000\n")
    (leaf.parent / "cpu.max").write_text("150000 100000\n")
    assert own_cpu_limit(mountinfo, cgroups) == 1.5
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # the mount's own: tighter
    assert own_cpu_limit(mountinfo, cgroups) == 0.5


@pytest.mark.skipif(
    os.geteuid() != 0 or not (CPU_V1 / "cpu.cfs_quota_us").exists(),
    reason="needs root and a cgroup v1 cpu hierarchy at /sys/fs/cgroup/cpu to make a cgroup",
)
def test_a_process_under_half_a_core_does_not_poll() -> None:
    group = CPU_V1 / f"vwed-test-{uuid.uuid4().hex[:8]}"
    group.mkdir()
    try:
        (group / "cpu.cfs_period_us").write_text("100000")
        (group / "cpu.cfs_quota_us").write_text("50000")
        probe = (
            "from kernel_gateway import busypoll; "
            "print(busypoll.off_reason(300)); print(busypoll.loop_factory(300))"
        )
        out = subprocess.run(
            ["sh", "-c", f'echo $$ > {group}/cgroup.procs && exec "$0" -c "$1"', sys.executable,
             probe],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.splitlines()  # fmt: skip
        assert out == ["a CPU quota of 0.5 core(s) on this process's cgroup", "None"], out
        own = own_cpu_limit(
            Path("/proc/self/mountinfo").read_text(), Path("/proc/self/cgroup").read_text()
        )
        if len(os.sched_getaffinity(0)) < 2 or (own is not None and own < 2):
            return  # one core, or a quota, here: no polling outside the cgroup either
        # outside the cgroup (no quota here), the same process polls
        out = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, check=True
        ).stdout.splitlines()
        assert out[0] == "None" and out[1] != "None", out
    finally:
        group.rmdir()
