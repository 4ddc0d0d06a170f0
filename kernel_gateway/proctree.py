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
from typing import Any

__all__ = ["tree_rss", "descendants", "kill_all"]


def tree_rss(proc: Any) -> int:
    """Bytes of RSS of ``proc`` (a ``psutil.Process``) and all its descendants.
    Pages shared between them (a fork's copy-on-write pages) count once per
    process, so the sum errs on the high side."""
    import psutil

    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += child.memory_info().rss
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
