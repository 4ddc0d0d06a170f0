"""CPU quotas of script kernels: one cgroup per kernel with a CPU bandwidth limit.

A script started with ``"cpu_quota": 0.5`` (or under ``--cpu-quota``) has each of its
kernels moved, before its ``boot()`` runs, into a cgroup of its own whose bandwidth is
``0.5 x period`` per period: the kernel and every process it starts later (they inherit
the cgroup) share half a core at most; the scheduler throttles them past it.

Where: in ``vwed-<gateway pid>-<random>/k-<kernel id>``. cgroup v2 (``cpu.max``) where
the ``cpu`` controller is available to the gateway's cgroup: beside that cgroup (v2 lets
only a cgroup without processes delegate a controller; the gateway's own holds the
gateway), so its parent must be writable (root, or a delegated subtree: systemd
``Delegate=yes`` with ``DelegateSubgroup=``); else cgroup v1's ``cpu`` hierarchy
(``cpu.cfs_quota_us``) where it is mounted, under the gateway's own cgroup (root).
Where neither is possible (no cpu controller, not permitted, a remote kernel),
nothing is applied and the answer says why
(:class:`Applied`); the kernel's CPU use is still measured (``cpu_percent`` of each
kernel in ``/running``, the CPU series of ``/stats``), just not held.

The cgroup of a kernel is removed when the kernel is gone; the gateway's own folder
when it stops, and a folder left by a gateway that died is removed by the next one.
Writes to cgroupfs are in-memory kernel operations (microseconds): done inline.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Applied", "CpuQuotas", "Placement", "find_placement", "own_cpu_limit", "MAX_CORES"]

log = logging.getLogger("kernel_gateway.cpuquota")

PERIOD_US = 100_000  # the scheduler's default period: 100 ms
MIN_QUOTA_US = 1_000  # the kernel refuses less than 1 ms per period
MAX_CORES = 1024.0
_STALE = re.compile(r"vwed-(\d+)(-[0-9a-f]+)?$")


@dataclass(frozen=True)
class Applied:
    """What applying a quota to one kernel did (the ``cpu_quota`` of a start's answer)."""

    cores: float
    applied: bool
    mechanism: str | None = None  # "cgroup v2 cpu.max" | "cgroup v1 cpu.cfs_quota_us"
    cgroup: str | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"cores": self.cores, "applied": self.applied}
        if self.applied:
            out["mechanism"] = self.mechanism
            out["cgroup"] = self.cgroup
        else:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True)
class Placement:
    """Where kernel cgroups go: ``parent`` (the gateway's cgroup folder) and the
    cgroup version; or why there is no such place (``reason``)."""

    parent: Path | None
    version: int = 0
    reason: str | None = None
    enable_parent: bool = False  # v2 at the root cgroup: enable cpu for its children first


def _mounts(mountinfo: str) -> list[tuple[str, str, str, str]]:
    """(root, mount point, fstype, super options) of each line of a mountinfo."""
    found = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 3:
            continue
        found.append((_unescape(fields[3]), _unescape(fields[4]), tail[0], tail[2]))
    return found


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _under(mount: str, root: str, path: str) -> Path:
    """The folder of cgroup ``path`` (as /proc/self/cgroup names it) in a mount of ``root``."""
    if root != "/" and (path == root or path.startswith(root + "/")):
        path = path[len(root) :]
    return Path(mount) / path.lstrip("/")


def _own_cgroups(cgroups: str) -> dict[str, str]:
    """ "" (v2) or a v1 controller -> this process's cgroup path, from the text of
    ``/proc/self/cgroup``."""
    own: dict[str, str] = {}
    for line in cgroups.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for name in parts[1].split(",") if parts[1] else [""]:
                own[name] = parts[2]
    return own


def find_placement(mountinfo: str, cgroups: str) -> Placement:
    """Where this process may make kernel cgroups with a CPU limit, from the text of
    ``/proc/self/mountinfo`` and ``/proc/self/cgroup`` (read-only: nothing created)."""
    mounts = _mounts(mountinfo)
    own = _own_cgroups(cgroups)
    reasons = []
    for root, point, fstype, _ in mounts:
        if fstype != "cgroup2" or "" not in own:
            continue
        folder = _under(point, root, own[""])
        try:
            controllers = (folder / "cgroup.controllers").read_text().split()
        except OSError as exc:
            reasons.append(f"cgroup v2 at {point}: {folder} is not readable ({exc.strerror})")
            continue
        if "cpu" in controllers:
            # cgroup v2 lets only a cgroup without processes hand a controller to its
            # children, and the gateway's own holds the gateway: kernel cgroups go beside
            # it (its parent delegates cpu already, since the gateway's cgroup has it),
            # except at the root cgroup, which may hold processes and delegate
            if folder == Path(point):
                return Placement(folder, 2, enable_parent=True)
            return Placement(folder.parent, 2)
        reasons.append(
            f"cgroup v2 at {point}: the cpu controller is not available to {folder} "
            f"(its cgroup.controllers: {' '.join(controllers) or 'none'}); a parent must "
            "delegate it (systemd: Delegate=yes)"
        )
    for root, point, fstype, options in mounts:
        if fstype == "cgroup" and "cpu" in options.split(",") and "cpu" in own:
            folder = _under(point, root, own["cpu"])
            if (folder / "cpu.cfs_quota_us").exists():
                return Placement(folder, 1)
            reasons.append(f"cgroup v1 cpu at {point}: {folder} has no cpu.cfs_quota_us")
    if not reasons:
        reasons.append("no cgroup v2 with the cpu controller and no cgroup v1 cpu hierarchy")
    return Placement(None, reason="; ".join(reasons))


def own_cpu_limit(mountinfo: str, cgroups: str) -> float | None:
    """The CPU bandwidth this process's cgroup may use, in cores (a container's
    ``--cpus``): the smallest ``cpu.max`` of its cgroup v2 folder and the folders above
    it, else its cgroup v1 ``cpu.cfs_quota_us``; None when none is set (or readable)."""
    own = _own_cgroups(cgroups)
    limits: list[float] = []
    for root, point, fstype, options in _mounts(mountinfo):
        if fstype == "cgroup2" and "" in own:
            folder, top = _under(point, root, own[""]), Path(point)
            while True:
                limits += _cores((folder / "cpu.max").read_text)
                if folder == top or top not in folder.parents:
                    break
                folder = folder.parent
        elif fstype == "cgroup" and "cpu" in options.split(",") and "cpu" in own:
            folder = _under(point, root, own["cpu"])
            limits += _cores(
                lambda f=folder: " ".join(
                    (f / name).read_text().strip()
                    for name in ("cpu.cfs_quota_us", "cpu.cfs_period_us")
                )
            )
    return min(limits) if limits else None


def _cores(read: Any) -> list[float]:
    """[cores] of the ``"<quota> <period>"`` pair ``read()`` gives (v2's ``cpu.max``,
    v1's two files); [] for no limit (``max``, -1) or nothing readable."""
    try:
        quota, _, period = read().strip().partition(" ")
    except (OSError, ValueError):
        return []
    if not quota.isdigit() or not period.strip().isdigit():
        return []
    return [int(quota) / max(1, int(period.strip()))]


class CpuQuotas:
    """The kernel cgroups of one gateway (found on first use; ``close`` removes them)."""

    def __init__(self, placement: Placement | None = None, name: str | None = None) -> None:
        self._placement = placement
        # the pid names the gateway (a dead one's folder is removed); the suffix tells
        # apart the gateways of one process (tests run several)
        self.name = name or f"vwed-{os.getpid()}-{os.urandom(3).hex()}"
        self._version = 0
        self._home: Path | None = None  # <parent>/vwed-<pid>, once made
        self._reason: str | None = None  # why no cgroup can be made here
        self._groups: dict[str, Path] = {}  # kernel id -> its cgroup
        self._leftover: set[Path] = set()  # cgroups still busy when released: again later

    @property
    def reason(self) -> str | None:
        """Why quotas cannot be applied on this machine (None: they can), found once."""
        self._ready()
        return self._reason

    def _ready(self) -> Path | None:
        if self._home is not None or self._reason is not None:
            return self._home
        placement = self._placement
        if placement is None:
            try:
                placement = find_placement(
                    Path("/proc/self/mountinfo").read_text(), Path("/proc/self/cgroup").read_text()
                )
            except OSError as exc:
                placement = Placement(None, reason=f"/proc cannot be read: {exc}")
        if placement.parent is None:
            self._reason = placement.reason or "no cgroup to use"
            return None
        _remove_stale(placement.parent)
        home = placement.parent / self.name
        try:
            home.mkdir(exist_ok=True)
            if placement.enable_parent:
                _enable_cpu(placement.parent)
            if placement.version == 2:
                _enable_cpu(home)  # for the kernels' cgroups in it
        except OSError as exc:
            with contextlib.suppress(OSError):
                home.rmdir()
            self._reason = (
                f"cannot make cgroups under {placement.parent} (cgroup v{placement.version}): "
                f"{exc.strerror or exc}; the gateway runs as uid {os.getuid()}, it needs "
                "root or a delegated cgroup subtree"
            )
            return None
        self._home = home
        self._version = placement.version
        return home

    def apply(self, kernel_id: str, pid: int | None, cores: float) -> Applied:
        """Move kernel ``pid`` (and the processes it started) into a cgroup of its own
        held to ``cores``; what was done, or why nothing could be."""
        if pid is None:
            return Applied(cores, False, reason="the kernel runs on another host")
        home = self._ready()
        if home is None:
            return Applied(cores, False, reason=self._reason)
        group = home / f"k-{kernel_id}"
        quota = max(MIN_QUOTA_US, round(cores * PERIOD_US))
        try:
            group.mkdir(exist_ok=True)
            if self._version == 2:
                (group / "cpu.max").write_text(f"{quota} {PERIOD_US}")
                mechanism = "cgroup v2 cpu.max"
            else:
                (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
                (group / "cpu.cfs_quota_us").write_text(str(quota))
                mechanism = "cgroup v1 cpu.cfs_quota_us"
            self._groups[kernel_id] = group
            for proc in [pid, *_descendants(pid)]:
                try:
                    (group / "cgroup.procs").write_text(str(proc))
                except ProcessLookupError:
                    if proc == pid:
                        raise
        except OSError as exc:
            self.release(kernel_id)
            return Applied(cores, False, reason=f"{group}: {exc.strerror or exc}")
        return Applied(cores, True, mechanism, str(group))

    def release(self, kernel_id: str) -> None:
        """The kernel is gone: remove its cgroup (one still busy is tried again later)."""
        group = self._groups.pop(kernel_id, None)
        if group is not None:
            self._leftover.add(group)
        for path in list(self._leftover):
            try:
                path.rmdir()
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno == errno.EBUSY:
                    continue  # a process of it still exits
                log.warning("could not remove cgroup %s: %s", path, exc)
            self._leftover.discard(path)

    def usage_usec(self, kernel_id: str) -> int | None:
        """CPU microseconds used by a kernel's cgroup (v2 ``cpu.stat``; v1 has none
        in the cpu controller: None)."""
        group = self._groups.get(kernel_id)
        if group is None:
            return None
        with contextlib.suppress(OSError, ValueError):
            for line in (group / "cpu.stat").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "usage_usec":
                    return int(value)
        return None

    def close(self) -> None:
        """Remove every cgroup of this gateway (its kernels are gone by now)."""
        for kernel_id in list(self._groups):
            self.release(kernel_id)
        if self._home is not None:
            with contextlib.suppress(OSError):
                self._home.rmdir()


def _enable_cpu(folder: Path) -> None:
    control = folder / "cgroup.subtree_control"
    if "cpu" not in control.read_text().split():
        control.write_text("+cpu")


def _descendants(pid: int) -> list[int]:
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def _remove_stale(parent: Path) -> None:
    """Folders of gateways that are gone (``vwed-<pid>`` of a dead pid), if empty."""
    with contextlib.suppress(OSError):
        for entry in parent.iterdir():
            match = _STALE.match(entry.name)
            if match is None or not entry.is_dir() or _alive(int(match.group(1))):
                continue
            with contextlib.suppress(OSError):
                for child in entry.iterdir():
                    if child.is_dir():
                        child.rmdir()
                entry.rmdir()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
