"""The files of the dependency engine under ``DepsSettings.dir``::

cache/                         uv's cache (never ~/.cache)
locks/<hash>.txt               a lock's text (kept for restore)
locks/by-declaration/<key>.json  a declaration's resolution: {"lock", "engine", ...}
envs/<hash>/site/              an environment: the folder a kernel adds
envs/<hash>/READY              its marker, written last (no marker: broken, never used)
envs/<hash>.tmp-<pid>/         an install in progress, renamed into place when complete
usage/<hash>.json              the scripts that used an environment and when
flocks/<hash>.lock             the file lock two gateways sharing the folder take
work/                          uv's input files of one resolution
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import re
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ..errors import DependencyFailed

__all__ = ["Layout", "HASH"]

HASH = re.compile(r"^[0-9a-f]{64}$")
MARKER = "READY"


class Layout:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.cache = self.root / "cache"
        self.locks = self.root / "locks"
        self.by_declaration = self.locks / "by-declaration"
        self.envs = self.root / "envs"
        self.usage = self.root / "usage"
        self.flocks = self.root / "flocks"
        self.work = self.root / "work"

    def lock_file(self, lock_hash: str) -> Path:
        return self.locks / f"{lock_hash}.txt"

    def env(self, lock_hash: str) -> Path:
        return self.envs / lock_hash

    def marker(self, lock_hash: str) -> Path:
        return self.env(lock_hash) / MARKER

    def usage_file(self, lock_hash: str) -> Path:
        return self.usage / f"{lock_hash}.json"

    def env_names(self) -> list[str]:
        """The lock hashes that have a folder under envs/ (ready or broken)."""
        if not self.envs.is_dir():
            return []
        return sorted(p.name for p in self.envs.iterdir() if HASH.match(p.name) and p.is_dir())

    def leftovers(self) -> list[Path]:
        """Folders of interrupted installs and removals (``.tmp-``, ``.trash-``)."""
        if not self.envs.is_dir():
            return []
        return [p for p in self.envs.iterdir() if ".tmp-" in p.name or ".trash-" in p.name]

    @contextlib.asynccontextmanager
    async def file_lock(self, lock_hash: str, deadline: float) -> AsyncIterator[None]:
        """Hold ``flocks/<hash>.lock`` (waits without blocking the loop, up to ``deadline``)."""
        self.flocks.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.flocks / f"{lock_hash}.lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise DependencyFailed(
                            "timed out waiting for another install of the same environment",
                            details={"resolver_message": "another process holds the install lock"},
                        ) from None
                    await asyncio.sleep(0.05)
            yield
        finally:
            os.close(fd)  # releases the lock

    def try_file_lock(self, lock_hash: str) -> int | None:
        """The fd holding the file lock of ``lock_hash`` now, or None when someone holds it."""
        self.flocks.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.flocks / f"{lock_hash}.lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def remove_tree(self, path: Path) -> None:
        """Remove ``path`` so that it disappears at once (renamed, then deleted)."""
        if not path.exists():
            return
        trash = path.with_name(f"{path.name}.trash-{os.getpid()}-{time.monotonic_ns()}")
        os.rename(path, trash)
        shutil.rmtree(trash, ignore_errors=True)


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` to ``path`` atomically (a temporary file renamed into place)."""
    write_text(path, json.dumps(data, indent=1, sort_keys=True))


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    """The JSON in ``path``, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def tree_size(path: Path) -> int:
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_size
    return total
