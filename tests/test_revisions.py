"""A run knows its revision (issue 17): the scripts root is a Git repository; start and
reload run exactly one commit's source (the latest by default, an older one on request:
a rollback, without downtime); the revision is shown in running, the script and its run
records; a restarted gateway restores the revision that was running, not the newest.
Real gateway, real git, real kernels."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

import httpx
import pytest

from conftest import GatewayProcess, unique, wait_until

pytestmark = pytest.mark.timeout(180)

VERSION = """
import time

def boot():
    time.sleep(0.3)   # a slow boot: the running version serves meanwhile
    VWED.api.register_route("/{n}/version", "GET", lambda: "{v}")
"""


def save(client: httpx.Client, rel: str, code: str, message: str) -> str:
    """Write ``rel`` through the files API (a commit); returns the new revision."""
    r = client.put(f"/script-engine/files/{rel}", json={"content": code, "message": message})
    assert r.status_code == 200, r.text
    return commits(client, rel)[0]["revision"]


def commits(client: httpx.Client, rel: str) -> list[dict[str, Any]]:
    r = client.get(f"/script-engine/files/{rel}/history")
    assert r.status_code == 200, r.text
    body = r.json()
    return list(body.get("history") or body.get("commits") or [])


def run_record(client: httpx.Client, rel: str) -> dict[str, Any]:
    """The newest run record of ``rel``."""
    runs = client.get("/script-engine/runs", params={"script_path": rel}).json()["runs"]
    assert runs, f"no run of {rel}"
    return dict(runs[0])


def test_start_at_an_older_revision_runs_the_old_code_and_shows_it(client, scripts):
    n = unique("rev")
    rel = f"revs/{n}.py"
    old = save(client, rel, VERSION.format(n=n, v="v1"), "first version")
    new = save(client, rel, VERSION.format(n=n, v="v2"), "second version")
    assert old != new and len(old) == 40

    # a short revision is resolved to the full one; the old code runs though the file is v2
    r = client.post("/script-engine/start", json={"script_path": rel, "revision": old[:8]})
    assert r.status_code == 200, r.text
    started = r.json()
    scripts.started.append(started["script_id"])
    assert started["revision"] == old
    assert client.get(f"/script-api/{n}/version").json() == "v1"

    running = {s["script_path"]: s for s in client.get("/script-engine/running").json()["scripts"]}
    assert running[rel]["revision"] == old
    one = client.get(f"/script-engine/scripts/{started['script_id']}").json()
    assert one["revision"] == old
    wait_until(lambda: run_record(client, rel).get("revision") == old, 10, "the run's revision")

    # a reload without a revision takes the latest commit; the run record follows it
    r = client.post("/script-engine/reload", json={"script_path": rel})
    assert r.status_code == 200, r.text
    assert r.json()["revision"] == new
    assert client.get(f"/script-api/{n}/version").json() == "v2"
    wait_until(lambda: run_record(client, rel).get("revision") == new, 10, "the reloaded revision")

    # the latest of a file is its own last commit (the one its history lists), not a
    # newer commit of another file
    head = save(client, f"revs/{n}_other.py", "x = 1\n", "another file")
    r = client.post("/script-engine/reload", json={"script_path": rel})
    assert r.status_code == 200 and r.json()["revision"] == new != head, r.text

    # a change on disk is committed (author "disk") before a default reload runs it
    scripts.write(rel, VERSION.format(n=n, v="v3"))
    r = client.post("/script-engine/reload", json={"script_path": rel})
    assert r.status_code == 200, r.text
    latest = commits(client, rel)[0]
    assert r.json()["revision"] == latest["revision"] not in (old, new)
    assert "disk" in latest["author"]
    assert client.get(f"/script-api/{n}/version").json() == "v3"

    # restart (the endpoint) at a given revision
    r = client.post("/script-engine/restart", json={"script_path": rel, "revision": old})
    assert r.status_code == 200, r.text
    scripts.started.append(r.json()["script_id"])
    assert r.json()["revision"] == old
    assert client.get(f"/script-api/{n}/version").json() == "v1"

    # the restart after a crash keeps the revision (not the file's newer one)
    sid = r.json()["script_id"]
    pid = client.get(f"/script-engine/scripts/{sid}").json()["pid"]
    os.kill(pid, signal.SIGKILL)

    def restarted() -> bool:
        s = client.get(f"/script-engine/scripts/{sid}").json()
        return s.get("restarts") == 1 and s.get("status") == "running"

    wait_until(restarted, 60, "the restart after the crash")
    assert client.get(f"/script-engine/scripts/{sid}").json()["revision"] == old
    assert client.get(f"/script-api/{n}/version").json() == "v1"


def test_a_bad_revision_is_refused_before_a_kernel_is_taken(client, scripts):
    n = unique("badrev")
    other = f"revs/{n}_other.py"
    before = save(client, other, VERSION.format(n=f"{n}o", v="o"), "another file first")
    rel = f"revs/{n}.py"
    save(client, rel, VERSION.format(n=n, v="v1"), "first version")
    runs_before = len(client.get("/script-engine/runs", params={"script_path": rel}).json()["runs"])

    cases = [
        ("zz-not-hex", 400),
        (12345, 400),
        ("abc", 400),  # too short to name a commit
        ("deadbeefdeadbeef", 404),  # hex, but no such commit
        (before, 404),  # a commit from before the file existed
    ]
    for revision, status in cases:
        r = client.post("/script-engine/start", json={"script_path": rel, "revision": revision})
        assert r.status_code == status, (revision, r.text)
        body = r.json()
        assert body["success"] is False and "Traceback" not in r.text
        if status == 404:
            assert body["code"] in ("REVISION_NOT_FOUND", "FILE_NOT_FOUND"), body
        else:
            assert "revision" in body["error"], body
    r = client.post("/script-engine/start", json={"script_path": rel, "revision": before})
    assert r.json()["code"] == "FILE_NOT_FOUND"
    r = client.post("/script-engine/start", json={"script_path": rel, "revision": "deadbeef"})
    assert r.json()["code"] == "REVISION_NOT_FOUND"
    # nothing started, no run recorded: refused before a kernel was taken
    running = [s["script_path"] for s in client.get("/script-engine/running").json()["scripts"]]
    assert rel not in running
    runs = client.get("/script-engine/runs", params={"script_path": rel}).json()["runs"]
    assert len(runs) == runs_before

    # a reload to a bad revision leaves the running version serving
    started = scripts.start(rel)
    r = client.post("/script-engine/reload", json={"script_path": rel, "revision": "deadbeef"})
    assert r.status_code == 404 and r.json()["code"] == "REVISION_NOT_FOUND", r.text
    r = client.post("/script-engine/reload", json={"script_path": rel, "revision": ["x"]})
    assert r.status_code == 400, r.text
    assert client.get(f"/script-api/{n}/version").json() == "v1"
    assert client.get(f"/script-engine/scripts/{started['script_id']}").status_code == 200


def test_rollback_under_load_loses_no_call_and_serves_the_older_version(client, scripts, gw):
    n = unique("rollback")
    rel = f"revs/{n}.py"
    good = save(client, rel, VERSION.format(n=n, v="good"), "the good version")
    save(client, rel, VERSION.format(n=n, v="bad"), "the version to roll back")
    started = scripts.start(rel)
    assert client.get(f"/script-api/{n}/version").json() == "bad"

    results: list[tuple[int, str]] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=gw.url, timeout=30) as c:
            while not stop.is_set():
                r = c.get(f"/script-api/{n}/version")
                results.append((r.status_code, r.text))

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(results) > 20, 10, "load")
        r = client.post("/script-engine/reload", json={"script_path": rel, "revision": good})
        assert r.status_code == 200, r.text
        assert r.json()["revision"] == good
        count = len(results)
        wait_until(lambda: len(results) > count + 20, 10, "more load after the rollback")
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    failed = [x for x in results if x[0] != 200]
    assert failed == [], failed[:5]
    assert results[0][1] == '"bad"' and '"good"' in [x[1] for x in results]
    assert client.get(f"/script-api/{n}/version").json() == "good"
    one = client.get(f"/script-engine/scripts/{started['script_id']}").json()
    assert one["revision"] == good and one["status"] == "running"
    wait_until(lambda: run_record(client, rel).get("revision") == good, 10, "the run's revision")


@pytest.mark.timeout(240)
def test_restore_after_a_gateway_restart_runs_the_recorded_revision(tmp_path):
    root, data = tmp_path / "scripts", tmp_path / "data"
    root.mkdir()
    first = GatewayProcess(root, data)
    try:
        old = save(first.client, "pinned.py", VERSION.format(n="pinned", v="old"), "old")
        r = first.client.post("/script-engine/start", json={"script_path": "pinned.py"})
        assert r.status_code == 200 and r.json()["revision"] == old, r.text
        # a newer commit of the file, not run: the running script stays at `old`
        new = save(first.client, "pinned.py", VERSION.format(n="pinned", v="new"), "new")
        assert new != old
        assert first.running()["pinned.py"]["revision"] == old
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(30)
    finally:
        first.finish()

    second = GatewayProcess(root, data)
    try:
        wait_until(
            lambda: second.running().get("pinned.py", {}).get("status") == "running",
            60,
            "the restored script",
        )
        assert second.running()["pinned.py"]["revision"] == old
        assert second.client.get("/script-api/pinned/version").json() == "old"
        assert run_record(second.client, "pinned.py")["revision"] == old
        assert commits(second.client, "pinned.py")[0]["revision"] == new  # still the newest
        # the operator's next plain reload takes the newest
        r = second.client.post("/script-engine/reload", json={"script_path": "pinned.py"})
        assert r.status_code == 200 and r.json()["revision"] == new, r.text
        assert second.client.get("/script-api/pinned/version").json() == "new"
    finally:
        second.finish()


def test_a_file_the_repository_ignores_runs_from_disk_without_a_revision(
    client, scripts, scripts_dir
):
    """An existing repository is used as it is: a file its .gitignore ignores is never
    committed; its start runs the file on disk, says it runs no commit, and warns."""
    n = unique("ignored")
    folder = f"ignored_{n}"
    (scripts_dir / folder).mkdir()
    (scripts_dir / folder / ".gitignore").write_text("*.py\n")
    rel = scripts.write(f"{folder}/{n}.py", VERSION.format(n=n, v="disk"))
    started = scripts.start(rel)
    assert started["revision"] is None
    assert client.get(f"/script-api/{n}/version").json() == "disk"
    one = client.get(f"/script-engine/scripts/{started['script_id']}").json()
    assert one["revision"] is None

    def warned() -> bool:
        records = client.get(
            "/script-engine/logs", params={"script_id": started["script_id"], "level": "WARNING"}
        ).json()["records"]
        return any("not a commit" in r["message"] for r in records)

    wait_until(warned, 10, "the warning that it runs no commit")
    # an explicit revision of it is refused: no commit has the file
    r = client.post("/script-engine/reload", json={"script_path": rel, "revision": "deadbeef"})
    assert r.status_code == 404, r.text
