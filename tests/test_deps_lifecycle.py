"""A script's own packages in its lifecycle (issue 16), against a real gateway, real
kernels and real uv, with no index: the wheels are built here into a folder given
as ``--deps-find-links``.

A script that imports its package starts and uses it (and the engine's tornado
still wins); the progress of the install is in its logs; a second script with the
same declaration shares the environment and installs nothing; a conflicting
declaration and a missing package are 422 before any kernel is taken; a stop during
the install ends it; the environments, prefetch and dependencies endpoints (admin
only); a restore after a gateway restart installs the recorded lock, not a new
resolution."""

from __future__ import annotations

import json
import os
import shutil
import stat
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import tornado
from test_kernel_isolation import KERNEL_USER, _kernel_user, _reachable_python, open_root  # noqa: F401
from wheels import build_sdist, build_test_wheels, build_wheel

from conftest import GatewayProcess, GatewayThread, token_gateway, unique, wait_until
from kernel_gateway.config import ConfigError, Settings, parse_settings

pytestmark = pytest.mark.timeout(300)

ADMIN, CALLER = "deps-admin-token", "deps-caller-token"


def script(requirements: list[str], name: str) -> str:
    """A script whose route /<name> answers its package's VERSION and the tornado it sees."""
    deps = ", ".join(f'"{r}"' for r in requirements)
    return textwrap.dedent(
        f"""\
        # /// script
        # dependencies = [{deps}]
        # ///
        import os
        import sys

        import tornado
        import vwedtiny

        def after():
            # whether the script's packages come after the kernel's own on sys.path
            engine = os.path.dirname(os.path.dirname(tornado.__file__))
            mine = os.path.dirname(os.path.dirname(vwedtiny.__file__))
            return sys.path.index(mine) > sys.path.index(engine)

        def boot():
            VWED.api.register_route(
                "/{name}", "GET",
                lambda: {{"version": vwedtiny.VERSION, "tornado": tornado.version,
                          "after": after()}},
            )
        """
    )


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = build_test_wheels(tmp_path_factory.mktemp("wheels"))
    # an sdist whose metadata takes a minute to build: a start stays "installing"
    backend = (
        "import time\n\n"
        "def get_requires_for_build_wheel(config_settings=None):\n"
        "    return []\n\n"
        "def prepare_metadata_for_build_wheel(directory, config_settings=None):\n"
        "    time.sleep(60)\n"
        "    raise RuntimeError('too slow')\n\n"
        "def build_wheel(directory, config_settings=None, metadata_directory=None):\n"
        "    time.sleep(60)\n"
        "    raise RuntimeError('too slow')\n"
    )
    pyproject = (
        '[build-system]\nrequires = []\nbuild-backend = "slow_backend"\nbackend-path = ["."]\n'
        '\n[project]\nname = "vwedslow"\nversion = "1.0"\n'
    )
    build_sdist(
        folder, "vwedslow", "1.0", {"pyproject.toml": pyproject, "slow_backend.py": backend}
    )
    return folder


@pytest.fixture(scope="module")
def deps_gw(
    tmp_path_factory: pytest.TempPathFactory, wheels: Path
) -> Iterator[tuple[GatewayThread, Path]]:
    yield from token_gateway(
        tmp_path_factory,
        "deps",
        ADMIN,
        CALLER,
        deps_find_links=str(wheels),
        deps_timeout=120.0,
        boot_timeout=60.0,
    )


@pytest.fixture
def admin(deps_gw: tuple[GatewayThread, Path]) -> Iterator[httpx.Client]:
    gw, _ = deps_gw
    headers = {"Authorization": f"token {ADMIN}"}
    with httpx.Client(base_url=gw.url, timeout=150, headers=headers) as c:
        yield c


def _write(root: Path, rel: str, code: str) -> str:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(code)
    return rel


def _deps_lines(c: httpx.Client, script_id: str) -> list[str]:
    r = c.get("/script-engine/logs", params={"script_id": script_id, "limit": 200})
    assert r.status_code == 200, r.text
    return [rec["message"] for rec in r.json()["records"] if rec.get("tag") == "deps"]


def _stop(c: httpx.Client, script_id: str) -> None:
    c.post("/script-engine/stop", json={"script_id": script_id})


def test_a_script_imports_its_package_and_the_engines_tornado_wins(deps_gw, admin):
    gw, root = deps_gw
    assert gw.gateway is not None
    name = unique("tiny")
    rel = _write(root, f"{name}/app.py", script(["vwedtiny==1.0"], name))
    r = admin.post("/script-engine/start", json={"script_path": rel})
    assert r.status_code == 200, r.text
    sid = r.json()["script_id"]
    try:
        answer = admin.get(f"/script-api/{name}").json()
        assert answer == {"version": "1.0", "tornado": tornado.version, "after": True}
        shown = admin.get(f"/script-engine/scripts/{sid}").json()["environment"]
        assert ["vwedtiny", "1.0"] in shown["packages"] and len(shown["lock"]) == 64
        running = {s["script_id"]: s for s in admin.get("/script-engine/running").json()["scripts"]}
        assert running[sid]["environment"] == shown
        # the install's progress is in the script's logs (source engine, tag deps)
        lines = wait_until(lambda: _deps_lines(admin, sid), 10, "the install's log records")
        assert any("ready" in line for line in lines), lines
        # the second script with the same declaration shares it and installs nothing
        other = unique("tiny")
        rel2 = _write(root, f"{other}/app.py", script(["vwedtiny==1.0"], other))
        uv = gw.gateway.environments.uv
        runs_of_uv = uv.runs
        r = admin.post("/script-engine/start", json={"script_path": rel2})
        assert r.status_code == 200, r.text
        sid2 = r.json()["script_id"]
        assert uv.runs == runs_of_uv  # no uv process at all
        try:
            assert admin.get(f"/script-api/{other}").json()["version"] == "1.0"
            env2 = admin.get(f"/script-engine/scripts/{sid2}").json()["environment"]
            assert env2["lock"] == shown["lock"]
            assert not any("install" in line for line in _deps_lines(admin, sid2))
            listed = admin.get("/script-engine/environments").json()["environments"]
            mine = [e for e in listed if e["lock"] == shown["lock"]]
            assert len(mine) == 1 and set(mine[0]["running"]) == {sid, sid2}
            assert mine[0]["status"] == "ready"
        finally:
            _stop(admin, sid2)
    finally:
        _stop(admin, sid)


def _env(c: httpx.Client, sid: str) -> dict[str, Any]:
    return c.get(f"/script-engine/scripts/{sid}").json()["environment"]


def test_reload_restart_and_crash_keep_or_renew_the_environment(deps_gw, admin):
    _, root = deps_gw
    name = unique("re")
    rel = _write(root, f"{name}/app.py", script(["vwedtiny==1.0"], name))
    r = admin.post("/script-engine/start", json={"script_path": rel})
    assert r.status_code == 200, r.text
    sid = r.json()["script_id"]
    try:
        first = _env(admin, sid)
        # reload with a changed declaration: installed, then swapped in
        _write(root, rel, script(["vwedtiny==2.0"], name))
        r = admin.post("/script-engine/reload", json={"script_id": sid})
        assert r.status_code == 200, r.text
        assert admin.get(f"/script-api/{name}").json()["version"] == "2.0"
        second = _env(admin, sid)
        assert second["lock"] != first["lock"] and ["vwedtiny", "2.0"] in second["packages"]
        runs = admin.get("/script-engine/runs", params={"script_path": rel}).json()["runs"]
        assert runs[0]["lock_hash"] == second["lock"]
        # a reload whose packages cannot be installed leaves the running version serving
        _write(root, rel, script(["vwed-no-such-package-xyz"], name))
        r = admin.post("/script-engine/reload", json={"script_id": sid})
        assert r.status_code == 422 and r.json()["code"] == "DEPENDENCY_FAILED", r.text
        assert admin.get(f"/script-api/{name}").json()["version"] == "2.0"
        assert _env(admin, sid) == second
        # a crash: the restart uses the run's environment
        _write(root, rel, script(["vwedtiny==2.0"], name))
        pid = admin.get(f"/script-engine/scripts/{sid}").json()["pid"]
        psutil.Process(pid).kill()

        def restarted() -> bool:
            s = admin.get(f"/script-engine/scripts/{sid}").json()
            return s.get("status") == "running" and s.get("pid") not in (None, pid)

        wait_until(restarted, 60, "the restart after the crash")
        assert _env(admin, sid) == second
        assert admin.get(f"/script-api/{name}").json()["version"] == "2.0"
        # restart: a new run, the same (installed) environment, nothing installed
        r = admin.post("/script-engine/restart", json={"script_id": sid})
        assert r.status_code == 200, r.text
        sid = r.json()["script_id"]
        assert _env(admin, sid) == second
        assert not any("install" in line for line in _deps_lines(admin, sid))
    finally:
        _stop(admin, sid)


def test_the_gc_never_removes_an_environment_in_use(deps_gw, admin):
    gw, root = deps_gw
    assert gw.gateway is not None
    engine = gw.gateway.engine
    name = unique("gc")
    rel = _write(root, f"{name}.py", script(["vweddep"], name))
    r = admin.post("/script-engine/start", json={"script_path": rel, "replicas": 2})
    assert r.status_code == 200, r.text
    sid = r.json()["script_id"]
    assert len(r.json()["kernels"]) == 2  # both replicas use the one environment
    for _ in range(4):
        assert admin.get(f"/script-api/{name}").json()["version"] == "2.0"
    lock = _env(admin, sid)["lock"]
    later = time.time() + 1000 * 86400  # every environment is stale by then
    try:
        removed = gw.run(engine.packages.gc(engine._environments_in_use(), now=later))
        assert lock not in removed
        assert admin.get(f"/script-api/{name}").json()["version"] == "2.0"
    finally:
        _stop(admin, sid)
    removed = gw.run(engine.packages.gc(engine._environments_in_use(), now=later))
    assert lock in removed
    listed = admin.get("/script-engine/environments").json()["environments"]
    assert lock not in [e["lock"] for e in listed]


def test_a_script_without_declaration_has_no_environment(deps_gw, admin):
    _, root = deps_gw
    name = unique("plain")
    rel = _write(
        root,
        f"{name}.py",
        f"def boot():\n    VWED.api.register_route('/{name}', 'GET', lambda: 1)\n",
    )
    r = admin.post("/script-engine/start", json={"script_path": rel})
    assert r.status_code == 200, r.text
    try:
        assert (
            admin.get(f"/script-engine/scripts/{r.json()['script_id']}").json()["environment"]
            is None
        )
        deps = admin.get("/script-engine/dependencies", params={"script_path": rel}).json()
        assert deps["declaration"] is None and deps["ready"] is True
    finally:
        _stop(admin, r.json()["script_id"])


def _uv_processes() -> list[psutil.Process]:
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "uv" in child.name():
                found.append(child)
        except psutil.Error:
            continue
    return found


def test_installing_is_shown_and_a_stop_cancels_it(deps_gw, admin):
    gw, root = deps_gw
    name = unique("slow")
    rel = _write(root, f"{name}.py", script(["vwedslow"], name))
    answer: list[httpx.Response] = []
    starter = threading.Thread(
        target=lambda: answer.append(admin.post("/script-engine/start", json={"script_path": rel}))
    )
    starter.start()
    try:

        def installing() -> dict[str, Any] | None:
            for s in admin.get("/script-engine/running").json()["scripts"]:
                if s["script_path"] == rel and s["status"] == "installing":
                    return s
            return None

        shown = wait_until(installing, 60, "the script shown as installing")
        assert shown["kernels"] == [] and shown["environment"] is None
        wait_until(_uv_processes, 30, "uv at work")
        lines = wait_until(lambda: _deps_lines(admin, shown["script_id"]), 10, "progress")
        assert any(line.startswith("resolving") for line in lines), lines
        r = admin.post("/script-engine/stop", json={"script_path": rel})
        assert r.status_code == 200, r.text
    finally:
        starter.join(60)
    assert answer and answer[0].status_code == 503, answer
    assert answer[0].json()["code"] == "SCRIPT_STOPPING"
    assert all(
        s["script_path"] != rel for s in admin.get("/script-engine/running").json()["scripts"]
    )
    wait_until(lambda: not _uv_processes(), 30, "no uv process left")

    def stopped_run() -> bool:  # a run's end is stored in the background
        runs = admin.get("/script-engine/runs", params={"script_path": rel}).json()["runs"]
        return runs[0]["status"] == "stopped"

    wait_until(stopped_run, 10, "the run recorded as stopped")


def _pool_ids(gw: GatewayThread) -> list[str]:
    assert gw.gateway is not None
    return [k.kernel_id for k in gw.gateway.pool._ready]


def test_a_conflict_is_refused_before_a_kernel_is_taken(deps_gw, admin):
    gw, root = deps_gw
    gw.wait_pool(1)
    before = _pool_ids(gw)
    name = unique("old")
    rel = _write(root, f"{name}.py", script(["vwedoldtornado"], name))
    r = admin.post("/script-engine/start", json={"script_path": rel})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "DEPENDENCY_CONFLICT", body
    assert body["package"] == "tornado", body
    assert _pool_ids(gw) == before  # the pool is untouched
    assert all(
        s["script_path"] != rel for s in admin.get("/script-engine/running").json()["scripts"]
    )


def test_a_missing_package_fails_with_the_resolvers_message(deps_gw, admin):
    gw, root = deps_gw
    name = unique("missing")
    rel = _write(root, f"{name}.py", script(["vwed-no-such-package-xyz"], name))
    r = admin.post("/script-engine/start", json={"script_path": rel})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "DEPENDENCY_FAILED", body
    assert "vwed-no-such-package-xyz" in body["resolver_message"], body

    def failed_run() -> bool:  # a run's end is stored in the background
        runs = admin.get("/script-engine/runs", params={"script_path": rel}).json()["runs"]
        return runs[0]["status"] == "failed" and runs[0]["exit_reason"] == "DEPENDENCY_FAILED"

    wait_until(failed_run, 10, "the failed run recorded")
    assert all(
        s["script_path"] != rel for s in admin.get("/script-engine/running").json()["scripts"]
    )
    # an invalid declaration: 422 DEPENDENCY_INVALID, before anything else
    bad = _write(root, f"{name}_bad.py", script(["not a requirement !!"], name))
    r = admin.post("/script-engine/start", json={"script_path": bad})
    assert r.status_code == 422 and r.json()["code"] == "DEPENDENCY_INVALID", r.text


def test_prefetch_and_dependencies(deps_gw, admin):
    _, root = deps_gw
    name = unique("pre")
    good = _write(root, f"{name}/a.py", script(["vwedtiny==1.0"], name))
    deps = admin.get("/script-engine/dependencies", params={"script_path": good}).json()
    assert deps["declaration"]["requirements"] == ["vwedtiny==1.0"]
    assert deps["declaration"]["origin"] == "pep723"
    r = admin.post("/script-engine/environments/prefetch", json={"script_paths": [good]})
    assert r.status_code == 200, r.text
    result = r.json()["results"][0]
    assert result["ok"] and ["vwedtiny", "1.0"] in result["environment"]["packages"]
    deps = admin.get("/script-engine/dependencies", params={"script_path": good}).json()
    assert deps["ready"] is True and deps["environment"] == result["environment"]
    bad = _write(root, f"{name}/b.py", script(["vwed-no-such-package-xyz"], name))
    r = admin.post("/script-engine/environments/prefetch", json={"script_paths": [good, bad]})
    assert r.status_code == 422, r.text
    results = r.json()["results"]
    assert [x["ok"] for x in results] == [True, False]
    assert results[1]["code"] == "DEPENDENCY_FAILED"
    r = admin.post("/script-engine/environments/prefetch", json={"script_paths": "a.py"})
    assert r.status_code == 400
    r = admin.get("/script-engine/dependencies")
    assert r.status_code == 400 and r.json()["code"] == "BAD_PARAMETER"


def test_the_caller_token_may_not_use_them(deps_gw):
    gw, _ = deps_gw
    with httpx.Client(
        base_url=gw.url, timeout=30, headers={"Authorization": f"token {CALLER}"}
    ) as c:
        for method, url, body in (
            ("GET", "/script-engine/environments", None),
            ("POST", "/script-engine/environments/prefetch", {"script_paths": ["a.py"]}),
            ("GET", "/script-engine/dependencies?script_path=a.py", None),
            ("POST", "/script-engine/start", {"script_path": "a.py"}),
        ):
            r = c.request(method, url, json=body)
            assert r.status_code == 403, (url, r.text)


def _restored(gw: GatewayProcess, rel: str) -> dict[str, Any] | None:
    s = gw.running().get(rel)
    return s if s and s["status"] == "running" else None


def test_restore_installs_the_recorded_lock(tmp_path):
    """The lock recorded with the desired script is installed again after a gateway
    restart, even though a new resolution would now pick a newer version."""
    root, wheels, data = tmp_path / "scripts", tmp_path / "wheels", tmp_path / "data"
    root.mkdir()
    wheels.mkdir()
    build_wheel(wheels, "vwedtiny", "1.0")
    (root / "keep.py").write_text(script(["vwedtiny>=1.0"], "keep"))
    first = GatewayProcess(root, data, "--deps-find-links", str(wheels))
    try:
        r = first.client.post("/script-engine/start", json={"script_path": "keep.py"})
        assert r.status_code == 200, r.text
        lock = first.client.get(f"/script-engine/scripts/{r.json()['script_id']}").json()[
            "environment"
        ]["lock"]
        assert first.client.get("/script-api/keep").json()["version"] == "1.0"
    finally:
        first.finish()  # killed: keep.py stays desired
    build_wheel(wheels, "vwedtiny", "2.0")  # a new resolution would take 2.0
    # the environment and the declaration's cached resolution are gone; the lock stays
    shutil.rmtree(data / "environments" / "envs")
    shutil.rmtree(data / "environments" / "locks" / "by-declaration")
    second = GatewayProcess(root, data, "--deps-find-links", str(wheels))
    try:
        s = wait_until(lambda: _restored(second, "keep.py"), 120, "keep.py restored")
        assert s["environment"]["lock"] == lock
        assert second.client.get("/script-api/keep").json()["version"] == "1.0"
        runs = second.client.get("/script-engine/runs", params={"script_path": "keep.py"}).json()
        assert {run.get("lock_hash") for run in runs["runs"]} == {lock}
    finally:
        second.finish()


def test_a_kernel_user_reads_its_environment(open_root, wheels):  # noqa: F811
    """With --kernel-user the kernels run as a user that cannot list the data directory
    (0711, its files 0600) yet reaches the environments inside it (0755)."""
    user = _kernel_user()
    argv, spec_env = _reachable_python(user)
    root = open_root
    (root / "scripts").mkdir(mode=0o755)
    os.chmod(root / "scripts", 0o755)
    (root / "scripts" / "ku.py").write_text(script(["vwedtiny==1.0"], "ku"))
    os.chmod(root / "scripts" / "ku.py", 0o644)
    data = root / "data"
    spec_dir = data / "kernels" / "vwed-user"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [*argv, "-m", "vwed_kernel", "-f", "{connection_file}"],
        "display_name": "VWED as the kernel user",
        "language": "python",
        "env": {**spec_env, "PYDEVD_DISABLE_FILE_VALIDATION": "1"},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    settings = Settings(
        scripts_dir=str(root / "scripts"),
        port=0,
        data_dir=str(data),
        pool_size=0,
        workers=1,
        auth=True,
        token=ADMIN,
        kernel_user=KERNEL_USER,
        kernel_name="vwed-user",
        deps_find_links=str(wheels),
    ).validated()
    gw = GatewayThread(settings).start()
    try:
        headers = {"Authorization": f"token {ADMIN}"}
        with httpx.Client(base_url=gw.url, timeout=120, headers=headers) as c:
            r = c.post("/script-engine/start", json={"script_path": "ku.py"})
            assert r.status_code == 200, r.text
            assert c.get("/script-api/ku").json()["version"] == "1.0"
        assert stat.S_IMODE(data.stat().st_mode) == 0o711
        assert stat.S_IMODE((data / "environments").stat().st_mode) == 0o755
    finally:
        gw.stop()


def test_the_deps_settings(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    s = parse_settings(
        ["--scripts-dir", str(tmp_path), "--deps-find-links", str(a), "--deps-find-links", str(b)],
        env={},
    )
    assert s.deps_find_links_dirs == (str(a), str(b))
    assert s.deps_path == (Path(".vwed") / "environments").resolve()
    s = parse_settings(
        ["--scripts-dir", str(tmp_path)],
        env={"VWED_DEPS_FIND_LINKS": f"{a},{b}", "VWED_DEPS_DIR": str(tmp_path / "envs")},
    )
    assert s.deps_find_links_dirs == (str(a), str(b)) and s.deps_path == tmp_path / "envs"
    with pytest.raises(ConfigError, match="deps_find_links"):
        parse_settings(
            ["--scripts-dir", str(tmp_path), "--deps-find-links", str(tmp_path / "x")], env={}
        )
    with pytest.raises(ConfigError, match="deps_timeout"):
        parse_settings(["--scripts-dir", str(tmp_path), "--deps-timeout", "0"], env={})
