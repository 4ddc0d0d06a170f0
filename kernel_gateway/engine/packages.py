"""The packages of running scripts (issue 16): a script's declaration read
(``deps.read_declaration``), its environment made ready before a kernel is taken
(progress lines go to the script's logs, source "engine", tag "deps"), the
environments in use kept from the garbage collector, and its daily run.

The engine decides when; ``kernel_gateway/deps`` resolves and installs."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..deps import Declaration, Environment, Environments, read_declaration
from ..errors import DependencyFailed
from ..logs import LogHub
from ..scripts import ScriptSource

__all__ = ["ScriptPackages", "GC_INTERVAL"]

log = logging.getLogger("kernel_gateway.engine")

GC_INTERVAL = 24 * 3600.0  # seconds between two runs of the environments' GC


class ScriptPackages:
    """Declarations and environments of the scripts under ``root``. Without
    ``environments`` (an engine built without them), a script that declares packages
    is refused with 422 DEPENDENCY_FAILED rather than run without them."""

    def __init__(self, environments: Environments | None, root: Path, logs: LogHub) -> None:
        self.environments = environments
        self.root = Path(root)
        self.logs = logs

    def declaration(self, source: ScriptSource) -> Declaration | None:
        """The script's declaration (422 DEPENDENCY_INVALID if it cannot be read)."""
        return read_declaration(source, self.root)

    def ready(self, decl: Declaration | None) -> Environment | None:
        """The environment of ``decl`` if it is installed now (no resolution)."""
        if decl is None or self.environments is None:
            return None
        return self.environments.find(decl)

    def progress(self, script_id: str | None) -> Callable[[str], None]:
        """Progress lines of an install, as log records of the script."""

        def line(text: str) -> None:
            self.logs.emit(script_id, "INFO", "engine", "deps", text)

        return line

    def _need(self) -> Environments:
        if self.environments is None:
            raise DependencyFailed(
                "this gateway runs without script environments; the script declares packages",
                "DEPENDENCY_FAILED",
                details={"resolver_message": ""},
            )
        return self.environments

    async def ensure(self, decl: Declaration, script_id: str | None) -> Environment:
        """Resolve and install ``decl`` (cached), with progress in the script's logs."""
        started = time.monotonic()
        env = await self._need().ensure(decl, self.progress(script_id))
        log.debug("environment %s ready in %.2f s", env.lock.hash[:12], time.monotonic() - started)
        return env

    async def ensure_lock(self, lock_hash: str, script_id: str | None) -> Environment:
        """The recorded lock, installed again if it was removed (a restore)."""
        return await self._need().ensure_lock(lock_hash, self.progress(script_id))

    async def for_source(
        self, source: ScriptSource, script_id: str | None, lock: str | None = None
    ) -> Environment | None:
        """The environment a boot of ``source`` uses: ``lock`` when one was recorded
        (restore: no new resolution; if that lock cannot be installed any more, the
        declaration is resolved again, which the log says), else the declaration's."""
        decl = self.declaration(source)
        if lock is not None:
            try:
                return await self.ensure_lock(lock, script_id)
            except Exception as exc:
                if decl is None:
                    raise
                self.logs.emit(
                    script_id,
                    "WARNING",
                    "engine",
                    "deps",
                    f"the recorded lock {lock[:12]} cannot be used "
                    f"({getattr(exc, 'message', exc)}); resolving the declaration again",
                )
        if decl is None:
            return None
        return self.ready(decl) or await self.ensure(decl, script_id)

    def touch(self, env: Environment | None, script_path: str) -> None:
        if env is not None and self.environments is not None:
            try:
                self.environments.touch(env.lock.hash, script_path)
            except Exception:  # bookkeeping must not fail a start
                log.exception("could not mark environment %s as used", env.lock.hash[:12])

    async def gc(
        self, in_use: Iterable[tuple[Environment, str]], now: float | None = None
    ) -> list[str]:
        """Remove environments unused for ``gc_days``; never one a running script uses
        (``in_use``: marked used now, and kept)."""
        if self.environments is None:
            return []
        keep = set()
        for env, path in in_use:
            self.touch(env, path)
            keep.add(env.lock.hash)
        return await self.environments.gc(now, keep=keep)

    async def gc_forever(
        self, in_use: Callable[[], Iterable[tuple[Environment, str]]], interval: float
    ) -> None:
        """At start and every ``interval`` seconds (a failure is logged, not fatal)."""
        while True:
            try:
                removed = await self.gc(in_use())
                if removed:
                    log.info("removed %d unused script environment(s)", len(removed))
            except Exception:
                log.exception("the GC of script environments failed")
            await asyncio.sleep(interval)

    def listing(self, users: dict[str, list[str]]) -> list[dict[str, Any]]:
        """``Environments.listing()`` with the running scripts (ids) using each."""
        if self.environments is None:
            return []
        return [{**e, "running": users.get(e["lock"], [])} for e in self.environments.listing()]
