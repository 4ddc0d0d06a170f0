"""The scripts root as a Git repository (issue 17): every write through the files API
is a commit with an author and a message; history, content at a revision, diff,
restore; files changed on disk shown as uncommitted, committed at the next start and
by ``ScriptRepo.latest``. A real gateway, real git."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import GatewayProcess, GatewayThread, token_gateway, unique
from kernel_gateway.repo import ScriptRepo
from kernel_gateway.scripts import etag_of

pytestmark = pytest.mark.timeout(120)

ADMIN, CALLER = "versions-admin-token", "versions-caller-token"


@pytest.fixture(scope="module")
def vgw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayThread, Path]]:
    yield from token_gateway(tmp_path_factory, "versions", ADMIN, CALLER)


@pytest.fixture
def admin(vgw: tuple[GatewayThread, Path]) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"token {ADMIN}"}
    with httpx.Client(base_url=vgw[0].url, headers=headers, timeout=30) as c:
        yield c


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], check=True, capture_output=True, text=True
    ).stdout


def put(c: httpx.Client, rel: str, content: str, **headers: str) -> dict[str, Any]:
    r = c.put(f"/script-engine/files/{rel}", json={"content": content}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def history(c: httpx.Client, rel: str) -> list[dict[str, Any]]:
    r = c.get(f"/script-engine/files/{rel}/history")
    assert r.status_code == 200, r.text
    return r.json()["history"]


def test_saves_are_commits_with_author_and_message(admin, vgw):
    rel = f"{unique('hist')}.py"
    r = admin.put(
        f"/script-engine/files/{rel}",
        json={"content": "x = 1\n", "message": "first version"},
        headers={"X-VWED-Author": "alice"},
    )
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["committed"] is True and len(first["revision"]) == 40
    second = put(admin, rel, "x = 2\n", **{"X-VWED-Message": "second, from a header"})
    third = put(admin, rel, "x = 2\n")  # the same content: no commit
    assert third["committed"] is False and third["revision"] == second["revision"]
    entries = history(admin, rel)
    assert [e["revision"] for e in entries] == [second["revision"], first["revision"]]
    assert entries[1]["author"] == "alice (admin)"
    assert entries[1]["message"] == "first version"
    assert entries[0]["author"] == "admin"
    assert entries[0]["message"] == "second, from a header"
    assert all(isinstance(e["time"], int) for e in entries)
    # the repository is a plain git repository in the root, on its own branch
    assert git(vgw[1], "log", "-1", "--format=%H").strip() == second["revision"]


def test_content_at_a_revision_diff_and_restore(admin):
    rel = f"dir/{unique('rev')}.py"
    old = put(admin, rel, "def boot():\n    pass\n")["revision"]
    new = put(admin, rel, "def boot():\n    print('v2')\n")["revision"]

    r = admin.get(f"/script-engine/files/{rel}", params={"revision": old[:8]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["content"] == "def boot():\n    pass\n"
    assert body["revision"] == old
    assert body["etag"] == etag_of(b"def boot():\n    pass\n")
    assert r.headers["ETag"] == f'"{body["etag"]}"'

    r = admin.get(f"/script-engine/files/{rel}/diff", params={"from": old, "to": new[:10]})
    assert r.status_code == 200, r.text
    diff = r.json()["diff"]
    assert "-    pass" in diff and "+    print('v2')" in diff and f"a/{rel}" in diff
    # ``to`` left out: the latest revision
    assert admin.get(f"/script-engine/files/{rel}/diff", params={"from": old}).json()["to"] == new

    r = admin.post(
        f"/script-engine/files/{rel}/restore",
        json={"revision": old, "message": "back to v1"},
        headers={"X-VWED-Author": "bob"},
    )
    assert r.status_code == 200, r.text
    restored = r.json()
    assert restored["committed"] is True and restored["restored_from"] == old
    assert restored["revision"] not in (old, new)
    assert admin.get(f"/script-engine/files/{rel}").json()["content"] == "def boot():\n    pass\n"
    top = history(admin, rel)[0]
    assert top == {**top, "author": "bob (admin)", "message": "back to v1"}
    # restoring the content the file has: a no-op, no new commit
    again = admin.post(f"/script-engine/files/{rel}/restore", json={"revision": old}).json()
    assert again["committed"] is False and again["revision"] == restored["revision"]


def test_rename_delete_and_create_are_commits(admin, vgw):
    rel, moved = f"{unique('mv')}.py", f"moved/{unique('mv')}.py"
    r = admin.post(f"/script-engine/files/{rel}", json={"content": "a = 1\n"})
    assert r.status_code == 201 and r.json()["committed"] is True
    r = admin.patch(f"/script-engine/files/{rel}", json={"new_path": moved, "message": "move it"})
    assert r.status_code == 200 and r.json()["committed"] is True
    assert history(admin, moved)[0]["message"] == "move it"
    assert history(admin, rel)[0]["message"] == "move it"  # the old name's last commit
    r = admin.delete(f"/script-engine/files/{moved}", headers={"X-VWED-Message": "gone"})
    assert r.status_code == 200 and r.json()["committed"] is True
    assert history(admin, moved)[0]["message"] == "gone"
    assert moved not in git(vgw[1], "ls-files")
    # a deleted file comes back with a restore of a revision that had it
    before = history(admin, moved)[1]["revision"]
    r = admin.post(f"/script-engine/files/{moved}/restore", json={"revision": before})
    assert r.status_code == 200, r.text
    assert (vgw[1] / moved).read_text() == "a = 1\n"


def test_file_changed_on_disk_is_uncommitted_until_latest(admin, vgw):
    gw, root = vgw
    rel = f"{unique('disk')}.py"
    committed = put(admin, rel, "v = 1\n")["revision"]
    (root / rel).write_text("v = 2  # edited in a shell\n")
    tree = admin.get("/script-engine/files").json()["tree"]
    node = next(n for n in tree["children"] if n["path"] == rel)
    assert node["uncommitted"] is True
    # a script starting from it commits it first (author "disk")
    revision = gw.run(gw.gateway.repo.latest(rel))
    assert revision != committed
    top = history(admin, rel)[0]
    assert top["revision"] == revision and top["author"] == "disk"
    tree = admin.get("/script-engine/files").json()["tree"]
    assert "uncommitted" not in next(n for n in tree["children"] if n["path"] == rel)
    # nothing changed since: the same revision, and no new commit
    assert gw.run(gw.gateway.repo.latest(rel)) == revision


def test_bad_revisions(admin):
    rel = f"{unique('bad')}.py"
    revision = put(admin, rel, "b = 1\n")["revision"]
    for bad in ("xyz", "12", "g" * 40, "a" * 41, "HEAD", "HEAD~1"):
        r = admin.get(f"/script-engine/files/{rel}", params={"revision": bad})
        assert r.status_code == 400 and r.json()["code"] == "BAD_PARAMETER", (bad, r.text)
    r = admin.get(f"/script-engine/files/{rel}", params={"revision": "deadbeef"})
    assert r.status_code == 404 and r.json()["code"] == "REVISION_NOT_FOUND"
    r = admin.get(f"/script-engine/files/{rel}/diff", params={"from": "zz"})
    assert r.status_code == 400 and r.json()["parameter"] == "from"
    r = admin.get(f"/script-engine/files/{rel}/diff")
    assert r.status_code == 400 and r.json()["code"] == "BAD_PARAMETER"
    r = admin.post(f"/script-engine/files/{rel}/restore", json={})
    assert r.status_code == 400 and r.json()["code"] == "MISSING_FIELD"
    other = f"{unique('other')}.py"  # not in that revision
    r = admin.get(f"/script-engine/files/{other}", params={"revision": revision})
    assert r.status_code == 404 and r.json()["code"] == "FILE_NOT_FOUND"
    r = admin.post(f"/script-engine/files/{other}/restore", json={"revision": revision})
    assert r.status_code == 404 and r.json()["code"] == "FILE_NOT_FOUND"
    r = admin.get("/script-engine/files/../x.py/history")
    assert r.status_code in (400, 404)
    r = admin.get(f"/script-engine/files/{rel}/history", params={"limit": "0"})
    assert r.status_code == 400 and r.json()["parameter"] == "limit"
    r = admin.post("/script-engine/files/pull")
    assert r.status_code == 409 and r.json()["code"] == "NO_REMOTE"


def test_caller_token_may_not_read_or_change_versions(vgw):
    rel = f"{unique('tok')}.py"
    headers = {"Authorization": f"token {CALLER}"}
    with httpx.Client(base_url=vgw[0].url, headers=headers, timeout=30) as c:
        for method, url, body in (
            ("GET", f"/script-engine/files/{rel}/history", None),
            ("GET", f"/script-engine/files/{rel}/diff?from=abcd", None),
            ("GET", f"/script-engine/files/{rel}?revision=abcd", None),
            ("POST", f"/script-engine/files/{rel}/restore", {"revision": "abcd"}),
            ("POST", "/script-engine/files/pull", None),
        ):
            r = c.request(method, url, json=body)
            assert r.status_code == 403 and r.json()["code"] == "FORBIDDEN", (url, r.text)


def test_changed_on_disk_committed_at_start_and_data_never(tmp_path):
    root = tmp_path / "scripts"
    root.mkdir()
    (root / "a.py").write_text("a = 1\n")
    (root / ".vwed").mkdir()  # the data directory inside the root: never versioned
    data = root / ".vwed" / "data"  # (the gateway's output goes beside it, in .vwed)
    first = GatewayProcess(root, data)
    try:
        assert first.client.get("/script-engine/files/a.py/history").json()["history"]
    finally:
        first.finish()
    (root / "a.py").write_text("a = 2\n")
    (root / "b.py").write_text("b = 1\n")
    second = GatewayProcess(root, data)
    try:
        for rel in ("a.py", "b.py"):
            top = second.client.get(f"/script-engine/files/{rel}/history").json()["history"][0]
            assert top["author"] == "disk" and top["message"] == "changed on disk"
        tree = second.client.get("/script-engine/files").json()["tree"]
        assert not any(n.get("uncommitted") for n in tree["children"])
    finally:
        second.finish()
    tracked = git(root, "ls-files").split()
    assert sorted(tracked) == ["a.py", "b.py"], tracked
    assert git(root, "status", "--porcelain") == ""


def test_existing_repository_used_as_is_and_enclosing_one_untouched(tmp_path):
    """An existing repository keeps its branch and history; a root inside another
    repository's work tree gets a repository of its own in the data directory."""
    own = tmp_path / "own"
    own.mkdir()
    git(own, "init", "-q", "-b", "production")
    (own / "s.py").write_text("s = 1\n")
    git(own, "add", "s.py")
    git(own, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "by hand")
    repo = ScriptRepo(own, home=tmp_path / "data1")
    asyncio.run(repo.open())
    assert repo.branch == "production" and repo.git.git_dir == own / ".git"
    assert git(own, "log", "--format=%s") == "by hand\n"

    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    git(project, "init", "-q")
    (project / "scripts" / "t.py").write_text("t = 1\n")
    repo = ScriptRepo(project / "scripts", home=tmp_path / "data2")

    async def commit_one() -> list[dict[str, Any]]:
        await repo.open()
        (project / "scripts" / "t.py").write_text("t = 2\n")
        await repo.latest("t.py")
        return await repo.history("t.py")

    entries = asyncio.run(commit_one())
    assert len(entries) == 2 and repo.git.git_dir == tmp_path / "data2" / "scripts.git"
    assert not (project / "scripts" / ".git").exists()
    assert git(project, "rev-list", "--all") == ""  # the project has no commit of ours


def test_a_refused_commit_never_loses_the_save(admin, vgw):
    """Another git process holds the index: the file is written, the answer says it is
    not committed, and it is committed later as changed on disk."""
    gw, root = vgw
    rel = f"{unique('locked')}.py"
    lock = root / ".git" / "index.lock"
    lock.write_text("")
    try:
        body = put(admin, rel, "l = 1\n")
    finally:
        lock.unlink()
    assert body["committed"] is False and body["revision"] is None
    assert "index.lock" in body["commit_error"]
    assert (root / rel).read_text() == "l = 1\n"
    revision = gw.run(gw.gateway.repo.latest(rel))
    assert history(admin, rel)[0] == {**history(admin, rel)[0], "revision": revision}


def test_the_git_folder_is_out_of_reach(admin):
    for path in (".git/config.py", ".git/hooks/pre-commit.py", "a/.git/x.py"):
        r = admin.put(f"/script-engine/files/{path}", json={"content": "x"})
        assert r.status_code == 400 and r.json()["code"] == "PATH_INVALID", (path, r.text)
        r = admin.get(f"/script-engine/files/{path}/history")
        assert r.status_code == 400 and r.json()["code"] == "PATH_INVALID", (path, r.text)


def test_concurrent_saves_are_one_commit_each(vgw):
    gw, root = vgw
    names = [f"{unique('many')}_{i}.py" for i in range(12)]

    def save(rel: str) -> dict[str, Any]:
        headers = {"Authorization": f"token {ADMIN}", "X-VWED-Message": f"save {rel}"}
        with httpx.Client(base_url=gw.url, headers=headers, timeout=30) as c:
            return put(c, rel, f"# {rel}\n")

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(save, names))
    assert len({a["revision"] for a in answers}) == len(names)
    for rel, answer in zip(names, answers, strict=True):
        shown = git(root, "show", "--name-only", "--format=%s", answer["revision"]).split()
        assert shown == ["save", rel, rel], shown  # its own message, its own file only


def test_data_folders_inside_the_root_are_never_versioned(tmp_path):
    root = tmp_path / "scripts"
    (root / "state" / "environments").mkdir(parents=True)
    (root / "state" / "vwed.sqlite3").write_text("data")
    (root / "state" / "environments" / "mod.py").write_text("x = 1\n")
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
    (root / "a.py").write_text("a = 1\n")
    repo = ScriptRepo(root, exclude=(root / "state", tmp_path / "elsewhere"))
    asyncio.run(repo.open())
    assert git(root, "ls-files").split() == ["a.py"]
    assert asyncio.run(repo.uncommitted()) == set()
