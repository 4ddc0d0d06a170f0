"""``--watch``: reload a running script when its file changes on disk (to the
latest revision: the reload commits the change first)."""

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
    """The file's (mtime, size) is compared with the one seen when the running source
    was taken (``RunningScript.file_stat``): a script run at an older revision is not
    reloaded until its file changes."""
    try:
        st = os.stat(script.source.file)
    except OSError:
        return
    if (st.st_mtime, st.st_size) != script.file_stat:
        try:
            await reload(script)
        except Exception:
            # logged by reload; remember this version so it is not retried in a loop
            script.file_stat = st.st_mtime, st.st_size
