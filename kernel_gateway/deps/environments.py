"""Environments: a declaration resolved once into a lock, a lock installed once into a folder.

``ensure()`` looks up the declaration's lock (``locks/by-declaration/<key>.json``, valid while
the engine's own packages are the same), resolves it with uv when there is none
(:mod:`.resolve`), and installs the lock into ``envs/<hash>/`` unless it is there and complete.
An install goes into ``envs/<hash>.tmp-<pid>/`` (``uv pip install --target ... --no-deps
--require-hashes``), writes the marker last and is renamed into place, so an environment is
either complete or absent; a folder without its marker (an install interrupted some other way)
is removed and rebuilt, never used. Concurrent ``ensure()`` of one lock install once: an asyncio
lock per hash in this process, and a file lock between processes sharing the folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..errors import DependencyFailed
from .declaration import Declaration
from .layout import HASH, Layout, read_json, tree_size, write_json, write_text
from .model import DepsSettings, Environment, Lock
from .resolve import engine_pins, lock_from_text, make_lock, resolve
from .uv import Uv

__all__ = ["Environments"]

log = logging.getLogger(__name__)
Progress = Callable[[str], None] | None
DAY = 86400.0
LEFTOVER_AGE = 3600.0  # a .tmp-/.trash- folder this old is from a process that went away


class Environments:
    def __init__(self, settings: DepsSettings, python: str = sys.executable) -> None:
        # uv runs in settings.dir: local find-links folders are made absolute first
        links = tuple(f if "://" in f else str(Path(f).resolve()) for f in settings.find_links)
        settings = dataclasses.replace(settings, dir=Path(settings.dir).resolve(), find_links=links)
        self.settings = settings
        self.python = python
        self.layout = Layout(settings.dir)
        self.uv = Uv(settings)
        self._pins: dict[str, str] | None = None
        self._engine: str | None = None
        self._locks: dict[str, asyncio.Lock] = {}

    # -- the engine's own packages -----------------------------------------------------
    def pins(self) -> dict[str, str]:
        """The engine environment's distributions (canonical name -> version), read once."""
        if self._pins is None:
            self._pins = engine_pins(self.python)
        return self._pins

    def engine_hash(self) -> str:
        if self._engine is None:
            import hashlib

            text = "".join(f"{n}=={v}\n" for n, v in self.pins().items())
            self._engine = hashlib.sha256(text.encode()).hexdigest()
        return self._engine

    # -- lookups without uv ------------------------------------------------------------
    def _recorded(self, decl: Declaration) -> Lock | None:
        entry = read_json(self.layout.by_declaration / f"{decl.key}.json")
        if not isinstance(entry, dict) or entry.get("engine") != self.engine_hash():
            return None
        return self._lock(str(entry.get("lock", "")))

    def _lock(self, lock_hash: str) -> Lock | None:
        if not HASH.match(lock_hash):
            return None
        try:
            text = self.layout.lock_file(lock_hash).read_text()
        except OSError:
            return None
        lock = lock_from_text(text)
        return lock if lock.hash == lock_hash else None

    def _ready(self, lock: Lock) -> Environment | None:
        if not self.layout.marker(lock.hash).is_file():
            return None
        path = self.layout.env(lock.hash)
        return Environment(lock=lock, path=path, site=str(path / "site"))

    def find(self, decl: Declaration) -> Environment | None:
        """The environment of ``decl`` if it is ready now (no resolving, no installing)."""
        lock = self._recorded(decl)
        return self._ready(lock) if lock is not None else None

    # -- ensure ------------------------------------------------------------------------
    async def ensure(self, decl: Declaration, progress: Progress = None) -> Environment:
        """The ready environment of ``decl``: resolved and installed if need be."""
        say = progress or (lambda line: None)
        deadline = time.monotonic() + self.settings.timeout
        env = self.find(decl)
        if env is not None:
            say(f"environment {env.lock.hash[:12]} ready")
            return env
        async with self._lock_for(f"decl-{decl.key}"):
            lock = self._recorded(decl)
            if lock is None:
                lock = await self._resolve(decl, say, deadline)
        return await self._install(lock, say, deadline)

    async def ensure_lock(self, lock_hash: str, progress: Progress = None) -> Environment:
        """The environment of a recorded lock (a restore), reinstalled if it is gone."""
        say = progress or (lambda line: None)
        lock = self._lock(lock_hash)
        if lock is None:
            raise DependencyFailed(
                f"the lock {lock_hash[:64]!r} is not recorded under {self.layout.locks}",
                details={"resolver_message": "no such lock", "lock": lock_hash[:64]},
            )
        return await self._install(lock, say, time.monotonic() + self.settings.timeout)

    async def _resolve(
        self, decl: Declaration, say: Callable[[str], None], deadline: float
    ) -> Lock:
        n = len(decl.requirements)
        say(f"resolving {n} requirement{'s' if n != 1 else ''}")
        pins = self.pins()
        work = self.layout.work / f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        try:
            packages = await resolve(self.uv, self.python, decl, work, pins, deadline)
            lock = await make_lock(self.uv, self.python, packages, work, deadline)
        finally:
            with contextlib.suppress(OSError):
                for f in work.iterdir():
                    f.unlink()
                work.rmdir()
        if not self.layout.lock_file(lock.hash).is_file():
            write_text(self.layout.lock_file(lock.hash), lock.text)
        write_json(
            self.layout.by_declaration / f"{decl.key}.json",
            {
                "lock": lock.hash,
                "engine": self.engine_hash(),
                "requirements": list(decl.requirements),
                "resolved": time.time(),
            },
        )
        return lock

    def _lock_for(self, name: str) -> asyncio.Lock:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    async def _install(
        self, lock: Lock, say: Callable[[str], None], deadline: float
    ) -> Environment:
        async with self._lock_for(lock.hash), self.layout.file_lock(lock.hash, deadline):
            env = self._ready(lock)
            if env is None:
                await self._build(lock, say, deadline)
                env = self._ready(lock)
                assert env is not None
            say(f"environment {lock.hash[:12]} ready")
            return env

    async def _build(self, lock: Lock, say: Callable[[str], None], deadline: float) -> None:
        target = self.layout.env(lock.hash)
        if target.exists():
            log.warning("environment %s is incomplete (no marker): rebuilding it", lock.hash[:12])
            await asyncio.to_thread(self.layout.remove_tree, target)
        tmp = target.with_name(f"{lock.hash}.tmp-{os.getpid()}")
        await asyncio.to_thread(self.layout.remove_tree, tmp)
        (tmp / "site").mkdir(parents=True)
        n = len(lock.packages)
        started = time.monotonic()
        try:
            if n:
                say(f"installing {n} package{'s' if n != 1 else ''}")
                if not self.layout.lock_file(lock.hash).is_file():
                    write_text(self.layout.lock_file(lock.hash), lock.text)
                await self._uv_install(lock, tmp / "site", deadline)
            write_json(
                tmp / "READY",
                {
                    "lock": lock.hash,
                    "packages": [list(p) for p in lock.packages],
                    "created": time.time(),
                },
            )
            os.rename(tmp, target)
        except BaseException:
            await asyncio.shield(asyncio.to_thread(self.layout.remove_tree, tmp))
            raise
        if n:
            took = time.monotonic() - started
            say(f"installed {n} package{'s' if n != 1 else ''} in {took:.1f} s")

    async def _uv_install(self, lock: Lock, site: Path, deadline: float) -> None:
        args = ["pip", "install", "--target", str(site), "--no-deps", "--compile-bytecode"]
        args += ["--python", self.python]
        if all("--hash=" in entry for entry in _entries(lock.text)):
            args.append("--require-hashes")
        args += [*self.uv.index_args(), "-r", str(self.layout.lock_file(lock.hash))]
        result = await self.uv.run(args, deadline)
        if result.returncode != 0:
            raise DependencyFailed(
                f"the packages could not be installed: {result.summary}",
                details={"resolver_message": result.message},
            )

    # -- housekeeping ------------------------------------------------------------------
    def touch(self, lock_hash: str, script_path: str) -> None:
        """Record that ``script_path`` uses the environment of ``lock_hash`` now."""
        if not HASH.match(lock_hash):
            return
        path = self.layout.usage_file(lock_hash)
        entry = read_json(path)
        scripts = set(entry.get("scripts", [])) if isinstance(entry, dict) else set()
        scripts.add(script_path)
        write_json(path, {"scripts": sorted(scripts), "last_used": time.time()})

    def listing(self) -> list[dict[str, Any]]:
        """Every environment under envs/: lock, packages, size, scripts, times, status."""
        out = []
        for name in self.layout.env_names():
            path = self.layout.env(name)
            marker = read_json(path / "READY")
            usage = read_json(self.layout.usage_file(name))
            usage = usage if isinstance(usage, dict) else {}
            ready = isinstance(marker, dict)
            try:
                created = marker["created"] if ready else path.stat().st_mtime
            except (OSError, KeyError, TypeError):
                created = None
            out.append(
                {
                    "lock": name,
                    "packages": marker.get("packages", []) if ready else [],
                    "size_bytes": tree_size(path),
                    "scripts": usage.get("scripts", []),
                    "last_used": usage.get("last_used"),
                    "created": created,
                    "status": "ready" if ready else "broken",
                }
            )
        return out

    async def gc(self, now: float | None = None, keep: Iterable[str] = ()) -> list[str]:
        """Remove environments unused for ``gc_days`` (and broken ones); never one in
        ``keep`` (what is running) or one being installed now. Returns the removed hashes."""
        now = time.time() if now is None else now
        keep = set(keep)
        removed = []
        for entry in self.listing():
            lock_hash = entry["lock"]
            last = entry["last_used"] or entry["created"] or 0.0
            stale = now - last > self.settings.gc_days * DAY
            if lock_hash in keep or not (stale or entry["status"] == "broken"):
                continue
            if self._lock_for(lock_hash).locked():
                continue
            fd = self.layout.try_file_lock(lock_hash)
            if fd is None:
                continue
            try:
                await asyncio.to_thread(self.layout.remove_tree, self.layout.env(lock_hash))
                with contextlib.suppress(OSError):
                    self.layout.usage_file(lock_hash).unlink()
            finally:
                os.close(fd)
            removed.append(lock_hash)
        for path in self.layout.leftovers():
            with contextlib.suppress(OSError):
                if now - path.stat().st_mtime > LEFTOVER_AGE:
                    await asyncio.to_thread(self.layout.remove_tree, path)
        return removed


def _entries(text: str) -> list[str]:
    """The requirement entries of a lock text (each with its continuation lines)."""
    entries: list[str] = []
    for line in text.splitlines():
        if line.startswith((" ", "\t")) and entries:
            entries[-1] += line
        elif line.strip():
            entries.append(line)
    return entries
