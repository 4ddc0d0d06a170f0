"""Zero-downtime reload: under a steady load of calls no call fails; a version that
does not boot leaves the running one serving; --watch reloads on a file change."""

from __future__ import annotations

import os
import threading

import httpx

from conftest import GatewayThread, unique, wait_until
from kernel_gateway.config import Settings

VERSION = """
import time

def boot():
    time.sleep(0.3)   # a slow boot: the old version must keep serving meanwhile
    VWED.api.register_route("/{n}/version", "GET", lambda: "{v}")
"""


def test_reload_under_load_loses_no_call(scripts, client, gw, scripts_dir):
    n = unique("reload")
    started = scripts.start(f"{n}.py", VERSION.format(n=n, v="v1"))
    results: list[tuple[int, str]] = []
    stop = threading.Event()

    def hammer():
        with httpx.Client(base_url=gw.url, timeout=30) as c:
            while not stop.is_set():
                r = c.get(f"/script-api/{n}/version")
                results.append((r.status_code, r.text))

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(results) > 20, 10, "load")
        (scripts_dir / f"{n}.py").write_text(VERSION.format(n=n, v="v2"))
        r = client.post("/script-engine/reload", json={"script_id": started["script_id"]})
        assert r.status_code == 200, r.text
        count = len(results)
        wait_until(lambda: len(results) > count + 20, 10, "more load after the reload")
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    failed = [x for x in results if x[0] != 200]
    assert failed == [], failed[:5]
    versions = [x[1] for x in results]
    assert versions[0] == '"v1"' and '"v2"' in versions
    # (not versions[-1]: on a loaded machine a call the old kernel took just before the
    # swap can end after 20 calls to the new one) a call made now gets the new version
    assert client.get(f"/script-api/{n}/version").text == '"v2"'
    assert (
        client.get(f"/script-engine/scripts/{started['script_id']}").json()["kernel_id"]
        != started["kernel_id"]
    )

    # a version that does not boot: 422, and the running one keeps serving
    (scripts_dir / f"{n}.py").write_text(
        "def boot():\n    raise RuntimeError('half-written file')\n"
    )
    r = client.post("/script-engine/reload", json={"script_path": f"{n}.py"})
    assert r.status_code == 422 and r.json()["code"] == "BOOT_FAILED"
    assert client.get(f"/script-api/{n}/version").json() == "v2"


def test_watch_reloads_a_changed_file(tmp_path):
    (tmp_path / "w.py").write_text(VERSION.format(n="w", v="one"))
    gw = GatewayThread(
        Settings(
            scripts_dir=str(tmp_path),
            port=0,
            data_dir=str(tmp_path / "d"),
            pool_size=2,
            workers=1,
            watch=True,
            auth=False,
        ).validated()
    ).start()
    try:
        with httpx.Client(base_url=gw.url, timeout=30) as c:
            assert c.post("/script-engine/start", json={"script_path": "w.py"}).status_code == 200
            assert c.get("/script-api/w/version").json() == "one"
            # the edit lands in one step (os.replace) with an mtime set, not waited for
            script, edit = tmp_path / "w.py", tmp_path / "w.py.edit"
            edit.write_text(VERSION.format(n="w", v="two") + "\n# edited\n")
            later = script.stat().st_mtime_ns + 1_000_000_000
            os.utime(edit, ns=(later, later))
            os.replace(edit, script)
            wait_until(
                lambda: c.get("/script-api/w/version").json() == "two", 20, "the watched reload"
            )
    finally:
        gw.stop()
