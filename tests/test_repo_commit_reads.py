"""What a start reads right after ``ScriptRepo.latest`` committed its file (the file's
last commit, its text at it, HEAD) is known without more git processes: each answer
is the one git gives a repository object that never saw the commit (real git)."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from kernel_gateway.repo import ScriptRepo
from kernel_gateway.repo.git import Git

pytestmark = pytest.mark.timeout(60)


def _counting(repo: ScriptRepo) -> list[tuple[str, ...]]:
    """The git commands ``repo`` runs from now on."""
    seen: list[tuple[str, ...]] = []
    run = repo.git.run

    async def counted(*args: str, **kwargs: object) -> object:
        seen.append(args)
        return await run(*args, **kwargs)  # type: ignore[arg-type]

    repo.git.run = counted  # type: ignore[method-assign]
    return seen


async def _reads(repo: ScriptRepo, rel: str) -> tuple[str, list[dict], str]:
    head = await repo.latest(rel)
    last = (await repo.history(rel, 1))[0]
    return head, [last], await repo.source_at(rel, last["revision"])


def test_a_new_file_committed_by_latest_is_read_back_without_git(tmp_path: Path) -> None:
    root = tmp_path / "scripts"
    root.mkdir()
    (root / "old.py").write_text("old = 1\n")
    repo = ScriptRepo(root)

    async def run() -> None:
        await repo.open()
        (root / "new.py").write_text("def boot():\n    pass\n")
        seen = _counting(repo)
        head, history, text = await _reads(repo, "new.py")
        # no git process at all: libgit2 commits the file (repo/fastcommit.py), HEAD is
        # read from the ref files, the rest remembered
        assert seen == [], seen
        fresh = ScriptRepo(root)
        fresh.git = Git(repo.git.git_dir, root)
        assert (head, history, text) == await _reads(fresh, "new.py")
        assert text == "def boot():\n    pass\n"
        assert (
            head
            == subprocess.run(
                ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True
            ).stdout.strip()
        )

    asyncio.run(run())


def test_a_text_git_converts_is_read_from_git(tmp_path: Path) -> None:
    """A .gitattributes conversion (CRLF stored as LF): the blob is not the file's
    bytes, so its text comes from git, as before."""
    root = tmp_path / "scripts"
    root.mkdir()
    (root / ".gitattributes").write_text("*.py text eol=lf\n")
    repo = ScriptRepo(root)

    async def run() -> None:
        await repo.open()
        (root / "crlf.py").write_bytes(b"x = 1\r\ndef boot():\r\n    pass\r\n")
        seen = _counting(repo)
        head, history, text = await _reads(repo, "crlf.py")
        assert "cat-file" in [args[0] for args in seen], seen
        assert text == "x = 1\ndef boot():\n    pass\n"
        fresh = ScriptRepo(root)
        fresh.git = Git(repo.git.git_dir, root)
        assert (head, history, text) == await _reads(fresh, "crlf.py")

    asyncio.run(run())


def test_a_staged_data_folder_is_still_taken_out_before_the_commit(tmp_path: Path) -> None:
    """The data folder inside the root, staged by someone (``git add -f``): the next
    commit of a script takes it out of the index first, as before."""
    root = tmp_path / "scripts"
    (root / "state").mkdir(parents=True)
    (root / "state" / "token").write_text("secret")
    repo = ScriptRepo(root, exclude=(root / "state",))

    async def run() -> None:
        await repo.open()
        subprocess.run(["git", "-C", str(root), "add", "-f", "state/token"], check=True)
        (root / "s.py").write_text("s = 1\n")
        await repo.latest("s.py")

    asyncio.run(run())
    files = subprocess.run(
        ["git", "-C", str(root), "ls-tree", "-r", "--name-only", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert files == ["s.py"], files


def test_a_start_of_a_changed_file_boots_beside_its_commit_and_runs_that_commit(scripts, client):
    """The kernel boots while git commits the changed file: the answer names the new
    commit (the file's last one), and the run and the history say the same."""
    from conftest import unique

    n = unique("beside")
    rel = f"{n}.py"
    text = f'def boot():\n    VWED.api.register_route("/{n}/v", "GET", lambda: 1)\n'
    scripts.write(rel, text)  # on disk only: committed by the start
    r = client.post("/script-engine/start", json={"script_path": rel})
    assert r.status_code == 200, r.text
    revision = r.json()["revision"]
    history = client.get(f"/script-engine/files/{rel}/history").json()["history"]
    assert revision and history[0]["revision"] == revision and history[0]["author"] == "disk"
    at = client.get(f"/script-engine/files/{rel}", params={"revision": revision}).json()
    assert at["content"] == text
    runs = client.get("/script-engine/runs", params={"script_path": rel}).json()["runs"]
    assert runs[0]["revision"] == revision, runs
    assert client.post("/script-engine/stop", json={"script_path": rel}).status_code == 200


def test_a_file_changed_again_while_it_is_committed_is_told_apart(tmp_path: Path) -> None:
    """The start reads the file, then git commits it: if the file changed in between,
    the commit's text is not the one read (the engine then runs no revision and says so)."""
    from kernel_gateway.engine.revisions import load_latest
    from kernel_gateway.scripts import ScriptStore

    root = tmp_path / "scripts"
    root.mkdir()
    repo = ScriptRepo(root)
    files = ScriptStore(root)

    async def run() -> None:
        await repo.open()
        (root / "r.py").write_text("r = 1\n")
        read, committing = await load_latest(files, repo, "r.py")
        assert committing is not None and read.revision is None
        (root / "r.py").write_text("r = 2\n")  # before git has run
        committed = await committing
        assert committed.cells == ["r = 2\n"] and read.cells == ["r = 1\n"]
        again, none = await load_latest(files, repo, "r.py")  # unchanged since: no commit
        assert none is None and again.revision == committed.revision

    asyncio.run(run())
