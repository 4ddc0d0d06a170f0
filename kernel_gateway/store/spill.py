"""The spill file: what the database did not take before the gateway stopped.

JSON lines (mode 0600) in the data directory, one ``{"kind": "log" | "call" |
"execution", "row": {...}}`` per line, appended to (a file an earlier start could
not store is kept, not overwritten). The next start stores its rows, with their
original ids, and removes the file (``load_spill``, called by ``StoreService.open``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .queues import HistoryQueues, level_numbers

__all__ = ["write_spill", "read_spill", "spill_queues", "load_spill"]

log = logging.getLogger("kernel_gateway.store")
Rows = list[dict[str, Any]]
Notice = tuple[str, str]  # (level, message) of an engine record
StoreBatch = Callable[[Rows, Rows, Rows], Awaitable[Any]]


def write_spill(path: Path, logs: Rows, calls: Rows, executions: Rows) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        for kind, rows in (("log", logs), ("call", calls), ("execution", executions)):
            for row in rows:
                f.write(json.dumps({"kind": kind, "row": row}, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.chmod(path, 0o600)


def read_spill(path: Path) -> tuple[Rows, Rows, Rows, int]:
    """``(logs, calls, executions, unreadable lines)``; a torn last line (a crash
    while writing) is counted, not fatal."""
    found: dict[str, Rows] = {"log": [], "call": [], "execution": []}
    bad = 0
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                found[item["kind"]].append(dict(item["row"]))
            except (ValueError, KeyError, TypeError):
                bad += 1
    return found["log"], found["call"], found["execution"], bad


def spill_queues(path: Path | None, queues: HistoryQueues) -> int:
    """What the database did not take at shutdown, from the queues to the spill file;
    returns how many rows were kept there (0: none, or they are lost, said in the log)."""
    counts = queues.counts()
    if path is None:
        log.error(
            "%d log records, %d calls, %d executions were not stored (no spill file)", *counts
        )
        return 0
    try:
        write_spill(path, list(queues.logs), list(queues.calls), list(queues.executions))
    except OSError as exc:
        log.error(
            "%d log records, %d calls, %d executions were lost: the spill file %s "
            "could not be written: %s",
            *counts,
            path,
            exc,
        )
        return 0
    queues.take_all()
    log.warning(
        "the database did not take %d log records, %d calls, %d executions in time: "
        "kept in %s, stored at the next start",
        *counts,
        path,
    )
    return sum(counts)


async def load_spill(
    path: Path | None, store: StoreBatch, batch_size: int
) -> tuple[int, Notice | None]:
    """Store what the last gateway spilled (ids kept, ``store`` takes one batch), then
    remove the file. Returns the highest log id in it (0 without one) and what to
    say about it as an engine record."""
    if path is None or not path.exists():
        return 0, None
    try:
        logs, calls, execs, bad = read_spill(path)
    except OSError as exc:
        return 0, ("ERROR", f"the spill file {path} cannot be read: {exc}")
    top = max((int(r["id"]) for r in logs), default=0)
    total = len(logs) + len(calls) + len(execs)
    try:
        for start in range(0, max(len(logs), len(calls), len(execs)), batch_size):
            end = start + batch_size
            await store(level_numbers(logs[start:end]), calls[start:end], execs[start:end])
    except Exception as exc:  # StoreTimeout, a database error, a row it refuses: said
        return top, (
            "ERROR",
            f"{total} records of the spill file {path} (left by the last gateway) "
            f"could not be stored: {getattr(exc, 'message', exc)}; kept for the next start",
        )
    path.unlink()
    message = f"stored {total} records the last gateway could not store before it stopped"
    if bad:
        message += f"; {bad} unreadable line(s) of the spill file were lost"
    return top, ("WARNING" if bad else "INFO", message)
