"""What a step cost its worker: CPU time and peak memory (``steps.py`` sends them
with the step's answer, as ``usage``).

CPU is ``time.process_time()`` over the step: the worker process's CPU, all its
threads. Peak memory is Linux's high-water mark of the resident set (``VmHWM`` in
``/proc/self/status``), reset before the step by writing ``5`` to
``/proc/self/clear_refs``. Both are of the process: async steps that overlap share
them.

Why the files are opened at import: a worker's write policy may refuse opening
``/proc/self/clear_refs`` for writing later (Landlock, applied by ``launch.py``,
which imports this module first; the policy's audit hook, installed at
``prepare``, would also log a refusal). A descriptor opened before keeps working,
and writing to it or reading the status raises no audit event. Where a file cannot
be opened (not Linux, refused), the peak is ``None``; nothing is logged. The
descriptors are per process by nature (``/proc/self`` is resolved when opened), so
they are checked against the pid before use.
"""

from __future__ import annotations

import os
import time
from typing import Any

__all__ = ["Usage", "descriptors", "after_fork"]


def _open(path: str, flags: int) -> int | None:
    try:
        return os.open(path, flags | os.O_CLOEXEC)
    except (OSError, AttributeError):
        return None


_PID = os.getpid()
_CLEAR_REFS = _open("/proc/self/clear_refs", os.O_WRONLY)
_STATUS = _open("/proc/self/status", os.O_RDONLY)


def descriptors() -> set[int]:
    """The descriptors this module holds (the fork server checks what is open)."""
    return {fd for fd in (_CLEAR_REFS, _STATUS) if fd is not None}


def after_fork() -> None:
    """In a process forked from one that imported this module (the fork server,
    ``forkserver.py``): close the parent's ``/proc`` files and open this process's,
    before Landlock is applied."""
    global _PID, _CLEAR_REFS, _STATUS
    for fd in descriptors():
        os.close(fd)
    _PID = os.getpid()
    _CLEAR_REFS = _open("/proc/self/clear_refs", os.O_WRONLY)
    _STATUS = _open("/proc/self/status", os.O_RDONLY)


def _reset_peak() -> bool:
    """Reset ``VmHWM`` to the current resident set; False where that cannot be done."""
    if _CLEAR_REFS is None or _STATUS is None or os.getpid() != _PID:
        return False
    try:
        os.write(_CLEAR_REFS, b"5")
    except OSError:
        return False
    return True


def _peak() -> int | None:
    """``VmHWM`` in bytes, or None."""
    if _STATUS is None:
        return None
    try:
        status = os.pread(_STATUS, 8192, 0)
        start = status.index(b"VmHWM:") + 6
        return int(status[start : status.index(b"kB", start)]) * 1024
    except (OSError, ValueError):
        return None


class Usage:
    """Started when a step starts; :meth:`measure` when it ends."""

    __slots__ = ("_cpu", "_peak")

    def __init__(self) -> None:
        self._peak = _reset_peak()
        self._cpu = time.process_time()

    def measure(self) -> dict[str, Any]:
        """``{"cpu_ms": float, "peak_rss_bytes": int | None}`` since the start."""
        cpu_ms = (time.process_time() - self._cpu) * 1000.0
        return {"cpu_ms": round(cpu_ms, 3), "peak_rss_bytes": _peak() if self._peak else None}
