"""``--scripts-remote``: each commit is pushed (in the background; a failed push is a
warning, never a failed save) and ``POST /script-engine/files/pull`` fast-forwards,
with 409 ``DIVERGED`` when the lines diverged. A bare repository made by the test."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import GatewayThread, token_gateway, unique, wait_until

pytestmark = pytest.mark.timeout(120)

ADMIN, CALLER = "remote-admin-token", "remote-caller-token"


def git(where: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(where), "-c", "user.name=ci", "-c", "user.email=ci@ci", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("remote") / "scripts.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def rgw(
    tmp_path_factory: pytest.TempPathFactory, bare: Path
) -> Iterator[tuple[GatewayThread, Path]]:
    yield from token_gateway(tmp_path_factory, "remote", ADMIN, CALLER, scripts_remote=str(bare))


@pytest.fixture
def admin(rgw: tuple[GatewayThread, Path]) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"token {ADMIN}"}
    with httpx.Client(base_url=rgw[0].url, headers=headers, timeout=30) as c:
        yield c


def remote_head(bare: Path) -> str:
    found = subprocess.run(
        ["git", "--git-dir", str(bare), "rev-parse", "--verify", "--quiet", "refs/heads/main"],
        capture_output=True,
        text=True,
    )
    return found.stdout.strip()


def put(c: httpx.Client, rel: str, content: str) -> dict[str, Any]:
    r = c.put(f"/script-engine/files/{rel}", json={"content": content})
    assert r.status_code == 200, r.text
    return r.json()


def clone(bare: Path, where: Path) -> Path:
    subprocess.run(["git", "clone", "-q", "-b", "main", str(bare), str(where)], check=True)
    return where


def test_each_commit_is_pushed(admin, bare):
    revision = put(admin, f"{unique('push')}.py", "p = 1\n")["revision"]
    wait_until(lambda: remote_head(bare) == revision, 30, "the push of the new commit")


def test_pull_fast_forwards_from_the_remote(admin, rgw, bare, tmp_path):
    gw, root = rgw
    rel = f"{unique('pull')}.py"
    ours = put(admin, rel, "version = 'test line'\n")["revision"]
    wait_until(lambda: remote_head(bare) == ours, 30, "the push")
    line = clone(bare, tmp_path / "line")  # another line (production) promotes a change
    (line / rel).write_text("version = 'promoted'\n")
    git(line, "commit", "-qam", "promote")
    git(line, "push", "-q", "origin", "HEAD:main")
    theirs = git(line, "rev-parse", "HEAD").strip()

    r = admin.post("/script-engine/files/pull")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["action"] == "pulled" and body["revision"] == theirs
    assert body["previous"] == ours and body["changed"] == [rel]
    assert (root / rel).read_text() == "version = 'promoted'\n"
    top = admin.get(f"/script-engine/files/{rel}/history").json()["history"][0]
    assert top["revision"] == theirs and top["message"] == "promote"
    again = admin.post("/script-engine/files/pull").json()
    assert again["action"] == "up to date" and again["changed"] == []


def test_divergence_is_409_and_a_failed_push_never_fails_a_save(admin, rgw, bare, tmp_path):
    gw, root = rgw
    rel = f"{unique('div')}.py"
    base = put(admin, rel, "d = 0\n")["revision"]
    wait_until(lambda: remote_head(bare) == base, 30, "the push")
    line = clone(bare, tmp_path / "line")
    (line / rel).write_text("d = 'theirs'\n")
    git(line, "commit", "-qam", "theirs")
    git(line, "push", "-q", "origin", "HEAD:main")
    theirs = git(line, "rev-parse", "HEAD").strip()
    # our save: committed even though its push is refused (not a fast-forward)
    ours = put(admin, rel, "d = 'ours'\n")
    assert ours["committed"] is True
    remote = gw.gateway.repo.remote
    wait_until(lambda: remote.last_error is not None, 30, "the refused push")
    assert remote_head(bare) == theirs

    r = admin.post("/script-engine/files/pull")
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "DIVERGED" and "diverged" in r.json()["error"]
    assert r.json()["remote_revision"] == theirs
    assert (root / rel).read_text() == "d = 'ours'\n"  # nothing changed on disk
    # settled outside the gateway: the remote takes our line again, pushes work again
    git(line, "push", "-q", "--force", "origin", f"{base}:main")
    nxt = put(admin, f"{unique('after')}.py", "a = 1\n")["revision"]
    wait_until(lambda: remote_head(bare) == nxt, 30, "the push after the fix")
    # the ref moves when git pushes; the gateway notes the success once git has exited
    wait_until(lambda: remote.last_error is None, 10, "the push's success noted")


def test_unreachable_remote_is_502_and_its_credentials_never_shown(tmp_path_factory):
    url = "https://ci-user:s3cret-token@127.0.0.1:9/scripts.git"  # nothing listens on 9
    gateway = contextmanager(token_gateway)
    with gateway(tmp_path_factory, "unreach", ADMIN, CALLER, scripts_remote=url) as (gw, _):
        headers = {"Authorization": f"token {ADMIN}"}
        with httpx.Client(base_url=gw.url, headers=headers, timeout=30) as c:
            assert put(c, "u.py", "u = 1\n")["committed"] is True  # the save is not failed
            remote = gw.gateway.repo.remote
            wait_until(lambda: remote.last_error is not None, 30, "the failed push")
            r = c.post("/script-engine/files/pull")
            assert r.status_code == 502 and r.json()["code"] == "REMOTE_FAILED", r.text
            assert "s3cret" not in r.text and "***@127.0.0.1" in r.text
            assert "s3cret" not in remote.last_error


def test_the_gateways_own_files_are_never_versioned_nor_pulled(tmp_path):
    """The data dir inside the scripts root (the default when the gateway runs from it):
    a .gitignore that re-includes it does not get its files committed (and pushed), and a
    remote that holds files there is refused at pull: they would replace the tokens."""
    from kernel_gateway.config import Settings

    root, bare = tmp_path / "scripts", tmp_path / "remote.git"
    root.mkdir()
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    (root / ".gitignore").write_text("!/data/\n!/data/*\n")
    gw = GatewayThread(
        Settings(
            scripts_dir=str(root),
            port=0,
            data_dir=str(root / "data"),
            pool_size=1,
            workers=1,
            token=ADMIN,
            caller_token=CALLER,
            scripts_remote=str(bare),
        ).validated()
    ).start()
    try:
        headers = {"Authorization": f"token {ADMIN}"}
        with httpx.Client(base_url=gw.url, headers=headers, timeout=30) as c:
            revision = put(c, "app.py", "x = 1\n")["revision"]
            wait_until(lambda: remote_head(bare) == revision, 30, "the push")
            tracked = git(root, "ls-files")
            assert "app.py" in tracked and "data/" not in tracked, tracked
            pushed = subprocess.run(
                ["git", "--git-dir", str(bare), "ls-tree", "-r", "--name-only", "main"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            assert "data/" not in pushed, pushed

            # someone with push rights adds data/secrets.key to the remote
            work = clone(bare, tmp_path / "work")
            (work / "data").mkdir()
            (work / "data" / "secrets.key").write_text("attacker\n")
            git(work, "add", "-f", "data/secrets.key")
            git(work, "commit", "-q", "-m", "take over")
            git(work, "push", "-q", "origin", "main")
            key_before = (root / "data" / "secrets.key").read_bytes()
            r = c.post("/script-engine/files/pull")
            assert r.status_code == 409 and r.json()["code"] == "PULL_REFUSED", r.text
            assert "data/secrets.key" in r.json()["paths"]
            assert (root / "data" / "secrets.key").read_bytes() == key_before
    finally:
        gw.stop()
