"""The supervisor of running scripts: a kernel that died, the restart policy with
its backoff, crash loops, and the memory limit watch.

It decides; the lifecycle (``engine/lifecycle.py``) boots. Booting is handed in
as two callables when the supervisor is built: ``reboot`` (all replicas of a
script, all or nothing) and ``replace`` (one replica)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from ..background import Background
from ..kernels import ScriptKernel
from ..logs import LogHub
from ..registrations import ScriptRegistrations
from ..registry import Registry
from .model import RunningScript, ScriptTable
from .persistence import RunHistory

__all__ = ["Supervisor"]

log = logging.getLogger("kernel_gateway.engine")


class Supervisor:
    def __init__(
        self,
        scripts: ScriptTable,
        registry: Registry,
        logs: LogHub,
        runs: RunHistory,
        *,
        reboot: Callable[[RunningScript], Awaitable[None]],
        replace: Callable[[RunningScript, int], Coroutine[Any, Any, None]],
        on_script_gone: Callable[[str], None] | None = None,
        restart_limit: int = 5,
        restart_window: float = 60.0,
        restart_backoff: float = 0.5,
    ) -> None:
        self.scripts = scripts
        self.registry = registry
        self.logs = logs
        self.runs = runs
        self._reboot = reboot
        self._replace = replace
        self._on_script_gone = on_script_gone
        self.restart_limit = restart_limit
        self.restart_window = restart_window
        self.restart_backoff = restart_backoff
        self._tasks = Background(log)
        self._monitor: asyncio.Task[None] | None = None

    def script_gone(self, script_id: str) -> None:
        """The script no longer serves: its WebSocket connections close."""
        if self._on_script_gone is not None:
            self._on_script_gone(script_id)

    # -- death -----------------------------------------------------------------------
    async def on_kernel_death(self, kernel: ScriptKernel) -> None:
        script = self.scripts.lookup(kernel.script_id or "")
        if script is None or kernel not in script.kernels or script.status != "running":
            return
        script.kernels.remove(kernel)
        if script.kernels:
            # Other replicas take the new calls at once; a replacement boots meanwhile.
            self.logs.engine(
                script.script_id,
                "WARNING",
                f"replica {kernel.replica} of {script.path} died; replacing it",
            )
            self._tasks.spawn(self._replace(script, kernel.replica))
            return
        if not (script.last_error or "").startswith("memory limit"):
            script.last_error = "the kernel died"
        self.script_gone(script.script_id)
        if script.restart != "never" and self._may_restart(script):
            return
        self.down(script, "died", "kernel died")

    def down(self, script: RunningScript, status: str, reason: str) -> None:
        """The script stays down (died, or crashed in a loop)."""
        self.registry.remove(script.script_id)
        script.status = status
        script.exit_reason = reason
        script.registrations = ScriptRegistrations()
        script.ready.set()  # waiting calls wake up and get 503
        self.logs.engine(script.script_id, "ERROR", f"{script.path} is down: {reason}")
        self.runs.ended(script, status, reason)

    def _may_restart(self, script: RunningScript) -> bool:
        """Schedule a restart after a crash, unless the script is in a crash loop."""
        now = time.monotonic()
        script.crashes = [t for t in script.crashes if now - t < self.restart_window] + [now]
        if len(script.crashes) > self.restart_limit:
            self.down(
                script,
                "crashed",
                f"crash loop: {len(script.crashes)} crashes in "
                f"{self.restart_window:g} s; last error: {script.last_error}",
            )
            return True
        delay = min(30.0, self.restart_backoff * 2 ** (len(script.crashes) - 1))
        script.status = "restarting"
        script.ready.clear()
        self.logs.engine(
            script.script_id,
            "WARNING",
            f"{script.path} crashed ({script.last_error}); restarting in {delay:g} s",
        )
        self._tasks.spawn(self._restart_after_crash(script, delay))
        return True

    def _still_restarting(self, script: RunningScript) -> bool:
        return script.status == "restarting" and self.scripts.holds(script)

    async def _restart_after_crash(self, script: RunningScript, delay: float) -> None:
        await asyncio.sleep(delay)
        if not self._still_restarting(script):
            return
        try:
            await self._reboot(script)
        except Exception as err:
            if self._still_restarting(script):
                script.last_error = (
                    f"{getattr(err, 'code', type(err).__name__)}: {getattr(err, 'message', err)}"
                )
                self._may_restart(script)
            return
        script.restarts += 1
        script.status = "running"
        script.ready.set()
        self.logs.engine(
            script.script_id,
            "INFO",
            f"{script.path} restarted after a crash (restart {script.restarts})",
        )

    # -- memory ----------------------------------------------------------------------
    def start_memory_watch(self, interval: float = 1.0) -> None:
        """Watch the memory of script kernels with a limit (local kernels: RSS)."""
        if self._monitor is None:
            self._monitor = asyncio.ensure_future(self._watch_memory(interval))

    async def _watch_memory(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            for script in self.scripts.running():
                if script.memory_limit_mb and script.status == "running":
                    self._check_memory(script)

    def _check_memory(self, script: RunningScript) -> None:
        for kernel in list(script.kernels):
            rss = kernel.usage().get("rss_mib")
            if rss is not None and rss > script.memory_limit_mb:
                script.last_error = (
                    f"memory limit exceeded: {rss:.0f} MiB > {script.memory_limit_mb} MiB"
                )
                self.logs.engine(
                    script.script_id,
                    "ERROR",
                    f"{script.path} replica {kernel.replica}: {script.last_error}; "
                    "stopping its kernel",
                )
                # a death like any other: the restart policy applies
                self._tasks.spawn(kernel.kill())

    async def close(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            await asyncio.gather(self._monitor, return_exceptions=True)
        await self._tasks.cancel()
