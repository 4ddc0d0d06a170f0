"""What the engine keeps in the database: a run record per start (its end too), the
scripts that should be running (desired), and their restore when the gateway
starts again. The restore task belongs here, so closing cancels it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..background import Background
from ..errors import StoreTimeout
from ..logs import LogHub
from ..store.service import StoreService
from .model import RunningScript, StartOptions
from .reattach import ATTACH_KEY

__all__ = ["RunHistory"]

log = logging.getLogger("kernel_gateway.engine")

# start(script_path, options, lock=<the lock hash recorded with the desired script>,
#       revision=<the revision recorded with it>)
Starter = Callable[..., Awaitable[RunningScript]]
# resume(desired row): the script reattached to its remote kernels, or None (start it)
Resumer = Callable[[dict[str, Any]], Awaitable[RunningScript | None]]
# the sealed state of a script's remote kernels (engine/reattach.py), or None
StateOf = Callable[[RunningScript], Awaitable[str | None]]


def _lock_of(script: RunningScript) -> str | None:
    return script.environment.lock.hash if script.environment is not None else None


class RunHistory:
    """Run records and desired scripts of one engine (no database: does nothing)."""

    def __init__(self, db: StoreService | None, logs: LogHub, state: StateOf | None = None) -> None:
        self.db = db
        self.logs = logs
        self.state = state  # kept with a remote script: how to reattach to its kernels
        self._writes = Background(log)  # run ends still being stored
        self._restore: asyncio.Task[Any] | None = None

    def begin(
        self, script: RunningScript, after: Awaitable[None] | None = None
    ) -> asyncio.Task[None]:
        """Record the run while the start goes on (its kernel boots meanwhile), once
        ``after`` is done (the script's revision is known then); the script's log
        records wait for the run's id (``LogHub.run_pending``), so each still carries
        it. Await the task before anything that needs ``run_id``."""
        if self.db is not None:
            self.logs.run_pending(script.script_id)

        async def record() -> None:
            if after is not None:
                with contextlib.suppress(Exception):  # recorded all the same
                    await asyncio.shield(after)
            await self.started(script)

        return asyncio.ensure_future(record())

    async def started(self, script: RunningScript) -> None:
        """Record the run; a start goes on without a record if the database is slow or
        away (its logs then carry no run id): a script must not stay down for it."""
        if self.db is None:
            return
        try:
            await self._insert(script)
        finally:  # the records held for the run id go, with it or without
            self.logs.run_started(script.script_id, script.run_id)

    async def _insert(self, script: RunningScript) -> None:
        assert self.db is not None
        try:
            script.run_id = await self.db.run_started(
                script.script_id,
                script.path,
                script.replicas,
                script.started_at,
                _lock_of(script),
                script.revision,
            )
        except Exception as exc:
            log.warning("could not record the run of %s: %s", script.script_id, exc)
            self.logs.engine(
                script.script_id,
                "WARNING",
                "the run could not be recorded in the database "
                f"({getattr(exc, 'message', exc)}); the script starts without a run record",
            )

    def ended(
        self, script: RunningScript, status: str, reason: str | None, ended: bool = True
    ) -> None:
        """Store the run's status (and its end), in the background."""
        if self.db is None or script.run_id is None:
            return
        self._writes.spawn(self._end(script.run_id, status, reason, time.time() if ended else None))

    async def _end(self, run_id: int, status: str, reason: str | None, at: float | None) -> None:
        assert self.db is not None
        try:
            await self.db.run_ended(run_id, status, reason, at)
        except Exception as exc:
            # the next start ends a run left open
            log.warning("could not store the end of a run: %s", exc)

    async def remember(self, script: RunningScript) -> None:
        """Stored before ``start`` answers: a gateway killed right after still restores it."""
        if self.db is None:
            return
        try:
            await self.db.desire(*await self._desired(script))
        except StoreTimeout as exc:  # the database is slow or away: no traceback
            log.warning("could not store %s as a script to restore: %s", script.path, exc)
        except Exception:
            log.exception("could not store %s as a script to restore", script.path)

    async def serving(self, script: RunningScript) -> None:
        """A start booted: its run is ``running`` and the script is remembered (restored
        by a restarted gateway), in one transaction stored before ``start`` answers, so
        a gateway killed right after the answer still has both."""
        if self.db is None:
            return
        try:
            await self.db.run_serving(script.run_id, *await self._desired(script))
        except StoreTimeout as exc:  # the database is slow or away: no traceback
            log.warning("could not store the start of %s: %s", script.path, exc)
        except Exception:
            log.exception("could not store the start of %s", script.path)

    async def _desired(self, script: RunningScript) -> tuple[Any, ...]:
        """The desired-script row's values (``desire``'s arguments, in order)."""
        options = await self._options(script)
        return (
            script.path,
            script.replicas,
            script.restart,
            time.time(),
            options,
            _lock_of(script),
            script.revision,
        )

    async def _options(self, script: RunningScript) -> dict[str, Any]:
        """The options a restore starts ``script`` with (and how to reattach to its
        remote kernels, if it has some)."""
        options = script.options.requested()
        if self.state is not None:
            try:
                sealed = await self.state(script)
            except Exception:  # restored all the same, with new kernels
                log.exception("could not take the state of the remote kernels of %s", script.path)
                sealed = None
            if sealed is not None:
                options[ATTACH_KEY] = sealed
        return options

    async def locked(self, script: RunningScript) -> None:
        """The run's environment is known now (installed after the run was recorded)."""
        if self.db is None or script.run_id is None:
            return
        try:
            await self.db.run_lock(script.run_id, _lock_of(script))
        except Exception as exc:  # the run goes on; its record lacks the lock
            log.warning("could not store the lock of run %s: %s", script.run_id, exc)

    async def reloaded(self, script: RunningScript, lock: bool, revision: bool) -> None:
        """A reload changed the script's environment and/or its revision (a rollback):
        its run and its desired row say so (a restored script runs that revision)."""
        if lock:
            await self.locked(script)
        if revision and self.db is not None and script.run_id is not None:
            try:
                await self.db.run_revision(script.run_id, script.revision)
            except Exception as exc:  # the run goes on; its record lacks the revision
                log.warning("could not store the revision of run %s: %s", script.run_id, exc)
        if lock or revision:
            await self.remember(script)

    async def forget(self, script_path: str) -> None:
        """An operator stopped the script: do not start it again with the gateway."""
        if self.db is None:
            return
        try:
            await self.db.undesire(script_path)
        except StoreTimeout as exc:
            log.warning("could not forget %s as a script to restore: %s", script_path, exc)
        except Exception:
            log.exception("could not forget %s as a script to restore", script_path)

    def restore_in_background(self, start: Starter, resume: Resumer | None = None) -> None:
        """Start again, in the background, the scripts that were running when the
        gateway last stopped (or died); reattach to the remote kernels that outlived it."""
        if self._restore is None:
            self._restore = asyncio.ensure_future(self.restore(start, resume))

    async def restore(self, start: Starter, resume: Resumer | None = None) -> None:
        """Each desired script on its own: one that fails to boot does not block the
        others. A remote script whose kernels still run is reattached (``resume``),
        not started again; one whose kernels are gone is started."""
        if self.db is None:
            return
        try:
            desired = await self.db.desired()
        except Exception:
            log.exception("could not read the scripts to restore")
            return

        async def one(row: dict[str, Any]) -> None:
            options = row.get("options") or {}
            if resume is not None and options.get(ATTACH_KEY):
                try:
                    if await resume(row) is not None:
                        return
                except Exception as exc:
                    log.exception("reattaching %s failed", row["script_path"])
                    self.logs.engine(
                        None,
                        "WARNING",
                        f"could not reattach {row['script_path']} to its remote kernels "
                        f"({getattr(exc, 'message', exc)}); starting it again",
                    )
            try:
                script = await start(
                    row["script_path"],
                    StartOptions.from_row(row),
                    lock=row.get("lock_hash"),
                    revision=row.get("revision"),
                )
                self.logs.engine(
                    script.script_id,
                    "INFO",
                    f"restored {row['script_path']} after a gateway restart"
                    + (f" at revision {script.revision[:12]}" if script.revision else ""),
                )
            except Exception as exc:
                self.logs.engine(
                    None,
                    "ERROR",
                    f"could not restore {row['script_path']}: {getattr(exc, 'message', exc)}",
                )

        if desired:
            self.logs.engine(None, "INFO", f"restoring {len(desired)} script(s)")
        await asyncio.gather(*(one(row) for row in desired))

    async def restored(self) -> None:
        """Wait for the restore, if one runs (its failures are its own)."""
        if self._restore is not None:
            await asyncio.gather(asyncio.shield(self._restore), return_exceptions=True)

    async def stop_restore(self) -> None:
        """Cancel a restore still running (the gateway is stopping)."""
        if self._restore is not None and not self._restore.done():
            self._restore.cancel()
            await asyncio.gather(self._restore, return_exceptions=True)

    async def flush(self) -> None:
        """Wait for the run ends being stored (each write has the store's deadline): a
        run left open would be taken, at the next start, for one of a gateway that died."""
        await self._writes.wait()
