"""A file changed on disk is committed at a start by libgit2 (repo/fastcommit.py), with
what git itself would have written, or by git where libgit2 might differ (real git
checks every result)."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from kernel_gateway.repo import ScriptRepo

pytestmark = pytest.mark.timeout(60)


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=True
    ).stdout


def _repo(tmp_path: Path) -> tuple[Path, ScriptRepo]:
    root = tmp_path / "scripts"
    (root / "lines").mkdir(parents=True)
    (root / "old.py").write_text("old = 1\n")
    (root / "lines" / "a.py").write_text("a = 1\n")
    return root, ScriptRepo(root)


def _counting(repo: ScriptRepo) -> list[str]:
    seen: list[str] = []
    run = repo.git.run

    async def counted(*args: str, **kwargs: object) -> object:
        seen.append(args[0])
        return await run(*args, **kwargs)  # type: ignore[arg-type]

    repo.git.run = counted  # type: ignore[method-assign]
    return seen


def test_a_changed_and_a_new_file_are_committed_as_git_would(tmp_path: Path) -> None:
    root, repo = _repo(tmp_path)

    async def run() -> None:
        await repo.open()
        first = _git(root, "rev-parse", "HEAD").strip()
        (root / "staged.py").write_text("by hand\n")
        _git(root, "add", "staged.py")  # staged by someone: stays staged, not committed
        seen = _counting(repo)
        (root / "lines" / "a.py").write_text("a = 2\n")
        head = await repo.latest("lines/a.py")
        (root / "lines" / "new.py").write_text("def boot():\n    pass\n")
        newer = await repo.latest("lines/new.py")
        assert seen == [], seen  # no git process
        assert _git(root, "rev-parse", "HEAD").strip() == newer
        assert _git(root, "rev-parse", f"{newer}~1").strip() == head
        assert _git(root, "rev-parse", f"{head}~1").strip() == first
        assert _git(root, "diff", "--name-only", first, head).split() == ["lines/a.py"]
        assert _git(root, "diff", "--name-only", head, newer).split() == ["lines/new.py"]
        log = _git(root, "log", "-1", "--format=%an|%ae|%cn|%ce|%B", newer).strip()
        assert log == "disk|scripts@vwed.invalid|VWED gateway|gateway@vwed.invalid|" + (
            "lines/new.py changed on disk"
        )
        assert _git(root, "show", f"{newer}:lines/new.py") == "def boot():\n    pass\n"
        assert _git(root, "status", "--porcelain") == "A  staged.py\n"
        assert _git(root, "fsck", "--no-progress") == ""
        assert await repo.source_at("lines/new.py", newer) == "def boot():\n    pass\n"
        # touched, not changed: nothing to commit
        os.utime(root / "lines" / "new.py")
        assert await repo.latest("lines/new.py") == newer

    asyncio.run(run())


def test_line_endings_are_converted_as_git_converts_them(tmp_path: Path) -> None:
    root, repo = _repo(tmp_path)
    (root / ".gitattributes").write_text("*.py text eol=lf\n")

    async def run() -> None:
        await repo.open()
        seen = _counting(repo)
        (root / "crlf.py").write_bytes(b"x = 1\r\ny = 2\r\n")
        head = await repo.latest("crlf.py")
        assert seen == [], seen
        blob = _git(root, "rev-parse", f"{head}:crlf.py").strip()
        expected = _git(root, "hash-object", "--path=crlf.py", "crlf.py").strip()
        assert blob == expected
        assert _git(root, "status", "--porcelain") == ""

    asyncio.run(run())


@pytest.mark.parametrize("case", ["filter", "symlink", "ignored"])
def test_what_libgit2_might_do_otherwise_is_left_to_git(tmp_path: Path, case: str) -> None:
    root, repo = _repo(tmp_path)
    if case == "filter":  # an external filter driver (git runs it; libgit2 would not)
        (root / ".gitattributes").write_text("*.py filter=upper\n")
        _git(root, "init", "-q")
        _git(root, "config", "filter.upper.clean", "tr a-z A-Z")
    if case == "ignored":
        (root / ".gitignore").write_text("ignored.py\n")

    async def run() -> None:
        await repo.open()
        before = _git(root, "rev-parse", "HEAD").strip()
        seen = _counting(repo)
        rel = {"filter": "f.py", "symlink": "link.py", "ignored": "ignored.py"}[case]
        if case == "symlink":
            os.symlink("old.py", root / rel)
        else:
            (root / rel).write_text("x = 1\n")
        head = await repo.latest(rel)
        assert "add" in seen, seen  # git's own commit path
        if case == "ignored":
            assert head == before  # not committed, as git would not
        else:
            assert head != before
            assert _git(root, "status", "--porcelain") == ""
        if case == "filter":
            assert _git(root, "show", f"{head}:f.py") == "X = 1\n"

    asyncio.run(run())
