"""``--watch``: reload a running script when its file changes on disk."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable

from .model import RunningScript, ScriptTable

__all__ = ["watch_files"]


async def watch_files(
    scripts: ScriptTable,
    reload: Callable[[RunningScript], Awaitable[RunningScript]],
    interval: float,
) -> None:
    """Every ``interval`` s, reload the running scripts whose file changed."""
    while True:
        await asyncio.sleep(interval)
        for script in scripts.running():
            if script.status == "running":
                await _reload_if_changed(script, reload)


async def _reload_if_changed(
    script: RunningScript, reload: Callable[[RunningScript], Awaitable[RunningScript]]
) -> None:
    try:
        st = os.stat(script.source.file)
    except OSError:
        return
    if (st.st_mtime, st.st_size) != (script.source.mtime, script.source.size):
        try:
            await reload(script)
        except Exception:
            # logged by reload; remember this version so it is not retried in a loop
            script.source.mtime, script.source.size = st.st_mtime, st.st_size
