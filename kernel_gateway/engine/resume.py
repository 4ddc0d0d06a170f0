"""A restore's reattach of one desired script to its remote kernels that still run
(engine/reattach.py says what is kept and why): the same script id and run, its
registrations asked of its kernels, ``boot()`` not run again. A replica whose kernel
is gone is booted anew beside the others; with none left, the script is started as
before (the caller does that)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from ..errors import Conflict
from ..kernels import ScriptKernel
from ..remote import describe
from .booting import _same_registrations
from .model import RunningScript, StartOptions
from .reattach import ORPHANS, RemoteKernels, registrations_of
from .revisions import disk_stat, load_source

if TYPE_CHECKING:
    from .lifecycle import ScriptEngine

__all__ = ["resume_script"]

log = logging.getLogger("kernel_gateway.engine")


async def resume_script(
    engine: ScriptEngine, remote: RemoteKernels, row: dict[str, Any]
) -> RunningScript | None:
    path = row["script_path"]
    state = remote.open(path, (row.get("options") or {}).get("attach"))
    if state is None:
        return None
    options = StartOptions.from_row(row)
    # old kernels a previous gateway could not end: ended now, before anything starts
    await remote.end_orphans(path, state.get(ORPHANS))
    stored = [k for k in state["kernels"] if isinstance(k, dict)]
    found = await asyncio.gather(*(remote.kernel(path, k) for k in stored))
    _report_orphans(engine, path, remote)
    alive: dict[int, ScriptKernel] = {}
    extra: list[ScriptKernel] = []
    for entry, kernel in zip(stored, found, strict=True):
        if kernel is None:
            continue
        replica = int(entry.get("replica") or 0)
        if 0 <= replica < options.replicas and replica not in alive:
            alive[replica] = kernel
        else:  # not a replica of this script any more: it must not run on
            extra.append(kernel)
    await asyncio.gather(*(k.shutdown(now=True) for k in extra), return_exceptions=True)
    if not alive:
        if stored and not remote.orphans.get(path):  # not known to be gone: said above
            engine.logs.engine(
                None, "INFO", f"the remote kernels of {path} are gone: it is started again"
            )
        return None
    try:
        return await _resume(engine, remote, row, state, options, alive)
    except BaseException as exc:
        await asyncio.gather(
            *(k.shutdown(now=True) for k in alive.values()), return_exceptions=True
        )
        if isinstance(exc, Exception):
            log.warning("%s could not be reattached: %s", path, exc)
            engine.logs.engine(
                None,
                "WARNING",
                f"could not reattach {path} to its remote kernels "
                f"({getattr(exc, 'message', exc)}); they were ended, it is started again",
            )
            return None
        raise


async def _resume(
    engine: ScriptEngine,
    remote: RemoteKernels,
    row: dict[str, Any],
    state: dict[str, Any],
    options: StartOptions,
    alive: dict[int, ScriptKernel],
) -> RunningScript:
    source = await load_source(engine.files, engine.repo, row["script_path"], row.get("revision"))
    async with engine._lock(source.path):
        if engine.scripts.at(source.path) is not None:
            raise Conflict(f"script {source.path!r} is already running", "ALREADY_RUNNING")
        started_at = state.get("started_at")
        script = engine.new_script(
            source,
            options,
            str(state.get("script_id") or engine.scripts.new_id(source.path, time.time())),
            float(started_at) if isinstance(started_at, (int, float)) else time.time(),
        )
        script.file_stat = disk_stat(source)
        script.revision = source.revision
        run_id = state.get("run_id")
        script.run_id = run_id if isinstance(run_id, int) else None
        if row.get("lock_hash"):  # the environment it was started with, kept in use
            script.environment = await engine.packages.for_source(
                source, script.script_id, row["lock_hash"]
            )
        engine.scripts.add(script)
        try:
            for replica, kernel in alive.items():
                kernel.wire(
                    engine.events,
                    script_id=script.script_id,
                    replica=replica,
                    on_death=engine.supervisor.on_kernel_death,
                )
                kernel.registrations, given = await registrations_of(
                    kernel, script.script_id, engine.boot_timeout
                )
                await _given_again(engine, remote, script, kernel, given)
                if script.cpu_quota:  # what /running says of it (not held: remote)
                    engine._hold_cpu(script, kernel, replica)
            missing = [i for i in range(options.replicas) if i not in alive]
            booted = await asyncio.gather(
                *(engine._boot_replica(script, i) for i in missing), return_exceptions=True
            )
            fresh = [k for k in booted if isinstance(k, ScriptKernel)]
            try:
                for result in booted:
                    if isinstance(result, BaseException):
                        raise result
                kernels = sorted([*alive.values(), *fresh], key=lambda k: k.replica)
                regs = _same_registrations(script, [k.registrations for k in kernels])
                engine.registry.commit(script.script_id, regs)
            except BaseException:
                engine._discard(fresh)
                raise
        except BaseException:
            engine._forget(script)
            raise
        script.kernels, script.registrations = kernels, regs
        script.status = "running"
        script.ready.set()
    if script.run_id is not None:  # its run goes on (a gateway that died marked it ended)
        engine.logs.run_started(script.script_id, script.run_id)
    else:  # its start could not be recorded then
        await engine.runs.started(script)
    engine.runs.ended(script, "running", None, ended=False)
    await engine.runs.remember(script)
    hosts = sorted({k.host or "this machine" for k in alive.values()})
    engine.logs.engine(
        script.script_id,
        "INFO",
        f"reattached {source.path} to {len(alive)} running kernel(s) on {', '.join(hosts)} "
        "after a gateway restart (boot() not run again)"
        + (f"; {len(missing)} replica(s) whose kernel was gone booted anew" if missing else ""),
    )
    return script


def _report_orphans(engine: ScriptEngine, path: str, remote: RemoteKernels) -> None:
    """An ERROR for each old kernel of ``path`` that may still run and could not be
    ended: two copies of the script may run (timers, MQTT, PLC writes) until it is."""
    for stored in remote.orphans.get(path, []):
        host, pid = describe(stored)
        engine.logs.engine(
            None,
            "ERROR",
            f"an old kernel of {path} (pid {pid} on {host}) may still run and could not be "
            "ended (its host does not answer); it is started again all the same. End that "
            "process on its host; the next restore tries again (docs/scaling.md)",
        )


async def _given_again(
    engine: ScriptEngine,
    remote: RemoteKernels,
    script: RunningScript,
    kernel: ScriptKernel,
    given: dict[str, Any],
) -> None:
    """The values the kernel was given before the restart, to the redactor again."""
    if remote.given_again is None or not given:
        return
    missing = await remote.given_again(kernel, given)
    if missing:
        engine.logs.engine(
            script.script_id,
            "WARNING",
            f"{script.path} read secret(s) {', '.join(sorted(missing))} before the gateway "
            "restarted, and they are not in the vault any more: their old values are not "
            "redacted from its logs",
        )
