"""A local kernel's process tree: its memory, and killing what is left of it.

A script may start processes (when its policy allows it); they belong to its
kernel. The memory limit counts the RSS of the kernel and all its descendants,
and a stopped kernel takes its descendants with it, those that left the
kernel's process group or session (``setsid``) included: they are found by
parentage (psutil), not by group. A descendant that was orphaned before the
stop (a double fork whose middle process exited) is no longer anyone's child
and is not found; docs/security.md says so.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

__all__ = ["tree_rss", "descendants", "kill_all"]

# Finding a process's children means reading every process's parent (psutil's
# ``children()`` does, each time): with 300 kernels sampled in one look, that was 300
# walks of a process table of 400 (seconds of the event loop). The table is read
# once and shared by the looks of the next half second.
TABLE_AGE = 0.5
_table: tuple[float, dict[int, list[int]]] | None = None


def _children_table() -> dict[int, list[int]]:
    """pid -> the pids of its children, for every process (at most TABLE_AGE old)."""
    global _table
    import psutil

    now = time.monotonic()
    if _table is None or now - _table[0] > TABLE_AGE:
        found: dict[int, list[int]] = {}
        for proc in psutil.process_iter(["ppid"]):
            ppid = proc.info.get("ppid")
            if ppid:
                found.setdefault(ppid, []).append(proc.pid)
        _table = (now, found)
    return _table[1]


def tree_rss(proc: Any) -> int:
    """Bytes of RSS of ``proc`` (a ``psutil.Process``) and all its descendants (as
    they were at most TABLE_AGE ago). Pages shared between them (a fork's
    copy-on-write pages) count once per process, so the sum errs on the high side."""
    import psutil

    total = proc.memory_info().rss
    children = _children_table()
    todo, seen = list(children.get(proc.pid, ())), {proc.pid}
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        with contextlib.suppress(psutil.Error):
            total += psutil.Process(pid).memory_info().rss
        todo.extend(children.get(pid, ()))
    return int(total)


def descendants(pid: int | None) -> list[Any]:
    """The live descendants of process ``pid`` (``psutil.Process`` objects, which
    remember each one's start time, so a reused pid is never mistaken for it)."""
    if pid is None:
        return []
    import psutil

    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []


def kill_all(procs: list[Any], timeout: float = 3.0) -> int:
    """SIGKILL the processes of ``procs`` still running; returns how many were.
    Blocking (up to ``timeout`` s): run it off the event loop."""
    import psutil

    alive = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            if proc.is_running():
                proc.kill()
                alive.append(proc)
    if alive:
        psutil.wait_procs(alive, timeout=timeout)
    return len(alive)
