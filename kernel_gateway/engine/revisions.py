"""Which code a start, reload or restart runs (issue 17): a revision of the
scripts repository (``kernel_gateway/repo``), the latest by default (an on-disk
change is committed first), read from Git rather than from the file, so a run
runs exactly the commit it names."""

from __future__ import annotations

import os
from typing import Protocol

from ..scripts import ScriptSource, ScriptStore

__all__ = ["Revisions", "disk_stat", "load_source"]


class Revisions(Protocol):
    """What the engine needs of ``ScriptRepo``."""

    async def latest(self, rel: str) -> str: ...

    async def resolve(self, revision: str) -> str: ...

    async def source_at(self, rel: str, revision: str) -> str: ...


async def load_source(
    files: ScriptStore, repo: Revisions | None, script_path: str, revision: str | None
) -> ScriptSource:
    """The source of ``script_path`` at ``revision`` (None: the latest commit).

    Without a repository (an engine built without one), the file as it is on disk.
    The latest is checked on disk first (404 ``SCRIPT_NOT_FOUND``, 413, a bad
    notebook), so a start of a missing file says so; an older revision is read from
    Git only (404 ``REVISION_NOT_FOUND`` / ``FILE_NOT_FOUND``): a file deleted since
    can still be run at a revision that had it."""
    if revision is None or repo is None:
        on_disk = files.load(script_path)
        if repo is None:
            return on_disk
        rel = on_disk.path
        full = await repo.latest(rel)
    else:
        rel = files.relative(files.resolve(script_path))
        full = await repo.resolve(revision)
    text = await repo.source_at(rel, full)
    return files.source_from_text(rel, text, full)


def disk_stat(source: ScriptSource) -> tuple[float, int] | None:
    """The (mtime, size) of the script's file on disk now (None: it is not there)."""
    try:
        st = os.stat(source.file)
    except OSError:
        return None
    return st.st_mtime, st.st_size
