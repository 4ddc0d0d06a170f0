"""Stable Jupyter kernel ids for script replicas.

A script's kernel changes at every restart (a restart is a stop and a new boot), so a
notebook attached by the kernel's own id would be left "Disconnected". The kernels API
lists each script replica under an id derived from the script's path and the replica
number instead; that id maps to the replica's current kernel, survives restarts (through
the kernels API or the scripts API, after a crash, a replica's replacement) and a
reload, and is the same after a stop and a new start of the same file. Between the
stop and the new boot of a restart the script is in no table: its ids stay listed,
"restarting", so Jupyter Server does not drop the kernel and its sessions. The kernel's own id still works as an
alias (``/script-engine/start`` returns it), without that survival.
"""

from __future__ import annotations

import time
import uuid
import weakref
from dataclasses import dataclass, field
from typing import Any

from ..engine import RunningScript, ScriptEngine

__all__ = ["Target", "stable_id", "resolve", "listed", "restarting"]

_NS = uuid.UUID("5d7c1e0a-76e5-4d1c-9f3e-56574544a001")  # VWED script replicas

RESTART_GRACE = 120.0  # s a restarted script's ids stay listed waiting for its new boot


@dataclass
class _Memory:
    """Per engine: restarts under way through the kernels API (path -> replicas), the
    scripts seen running, and those gone in a restart (path -> (replicas, since)).
    Between the stop and the new boot the script is in no table, yet its stable ids
    must stay listed (Jupyter Server drops a kernel the gateway stops listing, and its
    sessions with it)."""

    pending: dict[str, int] = field(default_factory=dict)
    seen: dict[str, RunningScript] = field(default_factory=dict)
    gone: dict[str, tuple[int, float]] = field(default_factory=dict)


_memory: weakref.WeakKeyDictionary[ScriptEngine, _Memory] = weakref.WeakKeyDictionary()


def stable_id(path: str, replica: int) -> str:
    return str(uuid.uuid5(_NS, f"{path}#{replica}"))


@dataclass
class Target:
    """What a kernel id names: a replica of a script (its kernel, or None while it
    restarts), with whether the id was the stable one."""

    path: str
    replica: int
    script: RunningScript | None
    kernel: Any  # ScriptKernel | None
    stable: bool

    @property
    def id(self) -> str:
        return stable_id(self.path, self.replica)


def restarting(engine: ScriptEngine) -> dict[str, int]:
    """Paths under a restart through the kernels API -> their replica count."""
    return _memory.setdefault(engine, _Memory()).pending


def _restarting_paths(engine: ScriptEngine, running: list[RunningScript]) -> dict[str, int]:
    """Paths between the stop and the new boot of a restart (any route: the engine's
    restart stops the script with the reason "restarted") -> their replica count."""
    memory = _memory.setdefault(engine, _Memory())
    now = time.monotonic()
    paths = {s.path for s in running}
    for path, old in list(memory.seen.items()):
        if path not in paths:
            del memory.seen[path]
            if old.exit_reason == "restarted":
                memory.gone[path] = (old.replicas, now)
    for path, (_, since) in list(memory.gone.items()):
        if path in paths or now - since > RESTART_GRACE:
            del memory.gone[path]
    memory.seen.update({s.path: s for s in running})
    return {**{p: n for p, (n, _) in memory.gone.items()}, **memory.pending}


def listed(engine: ScriptEngine) -> list[Target]:
    """Every script replica with a kernel, or restarting, by its stable id."""
    out: list[Target] = []
    seen: set[str] = set()
    running = engine.running()
    restarts = _restarting_paths(engine, running)
    for script in running:
        kernels = {k.replica: k for k in script.kernels}
        # A replica without a kernel is listed, "restarting", while the script is live:
        # its kernel is being replaced (a crash, a replica's replacement), or the script
        # stops, and whether it comes back (a restart) is known once it is gone (its
        # exit reason). Not while the script first boots, nor once it is down.
        pending = script.path in restarts or script.status in ("running", "restarting", "stopping")
        for replica in range(max(script.replicas, len(kernels))):
            kernel = kernels.get(replica)
            if kernel is None and not pending:
                continue  # still booting: listed once it serves
            out.append(Target(script.path, replica, script, kernel, True))
        seen.add(script.path)
    for path, replicas in restarts.items():
        if path not in seen:
            out += [Target(path, r, None, None, True) for r in range(replicas)]
    return out


def resolve(engine: ScriptEngine, kernel_id: str) -> Target | None:
    """The script replica ``kernel_id`` names (stable id or kernel id), or None (then
    it may be a scratch kernel)."""
    for target in listed(engine):
        if target.id == kernel_id:
            return target
    for script in engine.running():
        for kernel in script.kernels:
            if kernel.kernel_id == kernel_id:
                return Target(script.path, kernel.replica, script, kernel, False)
    return None
