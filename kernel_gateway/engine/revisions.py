"""Which code a start, reload or restart runs (issue 17): a revision of the
scripts repository (``kernel_gateway/repo``), the latest by default (an on-disk
change is committed first), read from Git rather than from the file, so a run
runs exactly the commit it names."""

from __future__ import annotations

import asyncio
import os
from typing import Any, Protocol

from ..errors import NotFound
from ..logs import LogHub
from ..repo import GitFailed
from ..scripts import ScriptSource, ScriptStore
from .model import RunningScript

__all__ = ["Revisions", "disk_stat", "load_latest", "load_source", "warn_uncommitted"]


class Revisions(Protocol):
    """What the engine needs of ``ScriptRepo``."""

    async def latest(self, rel: str) -> str: ...

    async def resolve(self, revision: str) -> str: ...

    async def source_at(self, rel: str, revision: str) -> str: ...

    async def history(self, rel: str, limit: int = 100) -> list[dict[str, Any]]: ...

    def changed(self, rel: str) -> bool: ...


async def load_source(
    files: ScriptStore, repo: Revisions | None, script_path: str, revision: str | None
) -> ScriptSource:
    """The source of ``script_path`` at ``revision`` (None: the latest commit of the
    file, the one its history lists first).

    Without a repository (an engine built without one), the file as it is on disk.
    The latest is checked on disk first (404 ``SCRIPT_NOT_FOUND``, 413, a bad
    notebook), so a start of a missing file says so; an older revision is read from
    Git only (404 ``REVISION_NOT_FOUND`` / ``FILE_NOT_FOUND``): a file deleted since
    can still be run at a revision that had it.

    The latest of a file that cannot be committed (git refuses the commit: a merge
    left half done in the repository; or the repository's own ``.gitignore`` ignores
    the file) is the file on disk, with ``revision`` None: the script runs and its
    summary says it runs no commit, rather than a start refused for the repository's
    state (``engine/lifecycle.py`` logs a WARNING)."""
    if revision is None or repo is None:
        on_disk = files.load(script_path)
        if repo is None:
            return on_disk
        return await _latest(files, repo, on_disk)
    rel = files.relative(files.resolve(script_path))
    full = await repo.resolve(revision)
    text = await repo.source_at(rel, full)
    return files.source_from_text(rel, text, full)


async def _latest(files: ScriptStore, repo: Revisions, on_disk: ScriptSource) -> ScriptSource:
    """The latest commit of the file read as ``on_disk`` (committed first if it changed),
    or ``on_disk`` itself when it cannot be committed."""
    rel = on_disk.path
    try:
        full = await repo.latest(rel)
        # the file's own last commit (its content is HEAD's): what its history lists
        last = await repo.history(rel, 1)
        full = str(last[0]["revision"]) if last else full
        text = await repo.source_at(rel, full)
    except (GitFailed, NotFound):
        return on_disk
    return files.source_from_text(rel, text, full)


async def load_latest(
    files: ScriptStore, repo: Revisions | None, script_path: str
) -> tuple[ScriptSource, asyncio.Future[ScriptSource] | None]:
    """The latest source of ``script_path`` for a start (as ``load_source`` with no
    revision), without waiting for git when the file changed on disk: then the file as
    it is now, and its commit under way (the latest source, awaited before the start
    answers: its text is checked to be the one that booted). The kernel boots while
    git commits, instead of after."""
    on_disk = files.load(script_path)  # 404, 413, a bad notebook: before anything
    if repo is None or not repo.changed(on_disk.path):
        return (on_disk if repo is None else await _latest(files, repo, on_disk)), None
    committing = asyncio.ensure_future(_latest(files, repo, on_disk))
    committing.add_done_callback(_retrieved)
    return on_disk, committing


def _retrieved(task: asyncio.Future[Any]) -> None:
    """A commit nobody awaits any more (the start failed before) leaves no warning."""
    if not task.cancelled():
        task.exception()


def disk_stat(source: ScriptSource) -> tuple[float, int] | None:
    """The (mtime, size) of the script's file on disk now (None: it is not there)."""
    try:
        st = os.stat(source.file)
    except OSError:
        return None
    return st.st_mtime, st.st_size


def warn_uncommitted(logs: LogHub, repo: Revisions | None, script: RunningScript) -> None:
    """An ``engine`` WARNING when a script with a repository runs no commit."""
    if repo is not None and script.revision is None:
        logs.engine(
            script.script_id,
            "WARNING",
            f"{script.path} runs its file as it is on disk, not a commit: the scripts "
            "repository could not commit it (see the gateway's log, or its .gitignore)",
        )
