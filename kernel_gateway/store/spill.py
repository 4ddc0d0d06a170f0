"""The spill file: what the database did not take before the gateway stopped.

JSON lines (mode 0600) in the data directory, one ``{"kind": "log" | "call" |
"execution", "row": {...}}`` per line, appended to (a file an earlier start could
not store is kept, not overwritten). The next start stores its rows, with their
original ids, and removes the file (``StoreService._load_spill``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["write_spill", "read_spill"]

Rows = list[dict[str, Any]]


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
