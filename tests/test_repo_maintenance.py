"""Git's housekeeping runs after a burst of commits, in the background, not as a
process every commit waits for (kernel_gateway/repo/maintenance.py; real git)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import pytest

from kernel_gateway.repo import ScriptRepo

pytestmark = pytest.mark.timeout(60)


def _git(root: Path, *args: str, stdin: str | None = None) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], input=stdin, capture_output=True, text=True, check=True
    ).stdout


def _in_pack(root: Path) -> int:
    counts = dict(line.split(": ") for line in _git(root, "count-objects", "-v").splitlines())
    return int(counts["in-pack"])


async def _until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return bool(predicate())


def _loose_repo(tmp_path: Path) -> Path:
    """A scripts root whose repository holds enough loose objects for git's own
    threshold (``gc.auto``, set low in the repository's config) to want a pack."""
    root = tmp_path / "scripts"
    root.mkdir()
    (root / "a.py").write_text("a = 1\n")
    _git(root, "init", "-q")
    for i in range(2000):  # git counts the loose objects in objects/17/ (about 8 here)
        (root / f"f{i}.py").write_text(f"f = {i}\n")
    _git(root, "add", "-A")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "many")
    assert _in_pack(root) == 0  # git's default threshold is 6,700 loose objects
    _git(root, "config", "gc.auto", "256")  # more than one object in objects/17/ is many
    assert len(list((root / ".git/objects/17").iterdir())) > 1
    return root


def test_a_commit_does_not_wait_for_maintenance_which_runs_after_the_burst(
    tmp_path: Path,
) -> None:
    root = _loose_repo(tmp_path)
    repo = ScriptRepo(root, maintenance_delay=3)

    async def run() -> None:
        await repo.open()
        # the check open() scheduled is dropped: only the commits below schedule one
        repo.maintenance._timer.cancel()
        repo.maintenance._timer = None
        for i in range(3):  # a burst: one maintenance for all of it
            (root / "new.py").write_text(f"new = {i}\n")
            await repo.latest("new.py")
        # git itself would have packed at the first commit (gc.auto=256): not here
        assert _in_pack(root) == 0
        assert await _until(lambda: repo.maintenance.runs == 1, 30), "the maintenance"
        assert _in_pack(root) > 0
        assert _git(root, "status", "--porcelain") == ""
        assert _git(root, "fsck", "--no-progress") == ""
        await repo.close()

    asyncio.run(run())


def test_close_cancels_a_maintenance_not_yet_due(tmp_path: Path) -> None:
    root = _loose_repo(tmp_path)
    repo = ScriptRepo(root, maintenance_delay=1.0)

    async def run() -> None:
        await repo.open()
        (root / "new.py").write_text("new = 1\n")
        await repo.latest("new.py")
        await repo.close()
        repo.maintenance.soon()  # after close: nothing is scheduled
        assert repo.maintenance._timer is None and repo.maintenance._task is None
        await asyncio.sleep(2.0)  # past the delay: a run would have happened by now
        assert repo.maintenance.runs == 0 and repo.maintenance._task is None

    asyncio.run(run())
    assert _in_pack(root) == 0


def test_a_lock_left_by_a_killed_maintenance_does_not_stop_git_s_housekeeping(
    tmp_path: Path,
) -> None:
    """A maintenance killed mid-run (a timeout, a SIGKILL) leaves git's lock, and git
    then skips every later run (status 0, nothing done): an old lock is removed."""
    import os

    root = _loose_repo(tmp_path)
    lock = root / ".git" / "objects" / "maintenance.lock"
    lock.write_text("")
    old = time.time() - 2 * 3600
    os.utime(lock, (old, old))
    repo = ScriptRepo(root, maintenance_delay=0.1)

    async def run() -> None:
        await repo.open()
        assert await _until(lambda: repo.maintenance.runs == 1, 30), "the maintenance"
        await repo.close()

    asyncio.run(run())
    assert not lock.exists()
    assert _in_pack(root) > 0
