"""Task-flow steps of files that declare packages (issue 16): they run in worker kernels
of that environment (workers per environment, reused, retired when idle); files without
a declaration keep the plain workers; a caller token cannot make the gateway install.

The packages are small wheels built by the tests (tests/wheels.py) into a folder given
as ``--deps-find-links``; no index is used."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from wheels import build_test_wheels

from conftest import GatewayThread, token_gateway, unique, wait_until

pytestmark = pytest.mark.timeout(180)

ADMIN, CALLER = "deps-steps-admin", "deps-steps-caller"

STEP = """\
# /// script
# dependencies = [{requirement!r}]
# ///
import os

import vwedtiny


def version():
    return {{"version": vwedtiny.VERSION, "pid": os.getpid()}}
"""

PLAIN = """\
import importlib.util
import os


def where():
    return {"pid": os.getpid(), "has_tiny": importlib.util.find_spec("vwedtiny") is not None}
"""


@pytest.fixture(scope="module")
def deps_gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayThread, Path]]:
    wheels = build_test_wheels(tmp_path_factory.mktemp("deps-steps-wheels"))
    yield from token_gateway(
        tmp_path_factory,
        "deps-steps",
        ADMIN,
        CALLER,
        deps_find_links=str(wheels),
        deps_worker_idle=3.0,
        boot_timeout=60.0,
    )


def _client(gw: GatewayThread, token: str) -> httpx.Client:
    return httpx.Client(base_url=gw.url, headers={"Authorization": f"token {token}"}, timeout=120)


def _step(client: httpx.Client, path: str, function: str) -> httpx.Response:
    return client.post(
        "/script-engine/execute", json={"script_path": path, "function_name": function}
    )


def _write(root: Path, text: str) -> str:
    name = f"{unique('depstep')}.py"
    (root / name).write_text(text)
    return name


def test_a_step_imports_its_package_in_a_reused_worker_of_its_environment(deps_gw):
    gw, root = deps_gw
    path = _write(root, STEP.format(requirement="vwedtiny==2.0"))
    with _client(gw, ADMIN) as admin:
        first = _step(admin, path, "version")
        assert first.status_code == 200, first.text
        assert first.json()["result"]["version"] == "2.0"
        lock = first.json()["environment"]
        assert lock and len(lock) == 64
        # installed with its bytecode: a kernel that may not write .pyc (a --kernel-user, or
        # PYTHONDONTWRITEBYTECODE) does not compile the package again at every start
        assert list((gw.settings.deps_path / "envs" / lock).rglob("vwedtiny/__pycache__/*.pyc"))
        # the next step of that environment: the same warm worker, no install
        second = _step(admin, path, "version")
        assert second.status_code == 200, second.text
        assert second.json()["environment"] == lock
        assert second.json()["result"]["pid"] == first.json()["result"]["pid"]
        # another file with the same declaration shares the environment and its workers
        other = _write(root, STEP.format(requirement="vwedtiny==2.0"))
        third = _step(admin, other, "version")
        assert third.status_code == 200, third.text
        assert third.json()["environment"] == lock
        assert third.json()["result"]["pid"] == first.json()["result"]["pid"]
    assert gw.gateway is not None
    status = gw.gateway.env_workers.status()["environments"]
    assert lock in [e["lock"] for e in status]
    health = httpx.get(f"{gw.url}/script-engine/health", timeout=30).json()
    assert health["environment_workers"]["workers"] >= 1


def test_a_file_without_a_declaration_keeps_the_plain_workers(deps_gw):
    gw, root = deps_gw
    plain = _write(root, PLAIN)
    with _client(gw, CALLER) as caller:
        answer = _step(caller, plain, "where")
    assert answer.status_code == 200, answer.text
    assert answer.json()["environment"] is None
    assert answer.json()["result"]["has_tiny"] is False  # no environment's site dir in it
    assert gw.gateway is not None
    plain_pids = {w.pid for w in gw.gateway.workers._all}
    assert answer.json()["result"]["pid"] in plain_pids


def test_a_caller_token_cannot_install_an_admin_can(deps_gw):
    gw, root = deps_gw
    path = _write(root, STEP.format(requirement="vwedtiny==1.0"))
    with _client(gw, CALLER) as caller, _client(gw, ADMIN) as admin:
        refused = _step(caller, path, "version")
        assert refused.status_code == 409, refused.text
        body = refused.json()
        assert body["success"] is False and body["code"] == "DEPENDENCIES_NOT_READY"
        assert "admin" in body["error"] and "prefetch" in body["error"]
        assert "Traceback" not in refused.text
        # refused before anything was installed or any worker was taken
        assert gw.gateway is not None
        listed = {tuple(p) for e in gw.gateway.environments.listing() for p in e["packages"]}
        assert ("vwedtiny", "1.0") not in listed
        # the admin's step installs, then runs; from then on a caller may run it
        installed = _step(admin, path, "version")
        assert installed.status_code == 200, installed.text
        assert installed.json()["result"]["version"] == "1.0"
        again = _step(caller, path, "version")
        assert again.status_code == 200, again.text
        assert again.json()["result"]["version"] == "1.0"


def test_an_idle_environment_pool_is_retired_and_comes_back(deps_gw):
    gw, root = deps_gw
    assert gw.gateway is not None
    pools = gw.gateway.env_workers
    path = _write(root, STEP.format(requirement="vweddep==1.0"))
    with _client(gw, ADMIN) as admin:
        first = _step(admin, path, "version")
        assert first.status_code == 200, first.text
        lock = first.json()["environment"]
        assert lock in {e["lock"] for e in pools.status()["environments"]}
        # --deps-worker-idle 3: retired after 3 s without a step, its workers shut down
        wait_until(
            lambda: lock not in {e["lock"] for e in pools.status()["environments"]},
            20,
            "the idle environment's worker pool retired",
        )
        wait_until(lambda: pools.workers == 0, 20, "its workers shut down")
        back = _step(admin, path, "version")
        assert back.status_code == 200, back.text
        assert back.json()["result"]["version"] == "2.0"  # vweddep needs vwedtiny>=2
        assert back.json()["result"]["pid"] != first.json()["result"]["pid"]


def test_a_step_waits_for_its_environment_worker_no_longer_than_its_timeout(deps_gw):
    gw, root = deps_gw
    path = _write(root, STEP.format(requirement="vwedtiny==2.0"))
    with _client(gw, ADMIN) as admin:
        assert _step(admin, path, "version").status_code == 200  # installed (or was)
        assert gw.gateway is not None
        pools = gw.gateway.env_workers
        # retired when idle; the next step's worker has to start, and a kernel takes longer
        # than 0.2 s to start: the step gets a clear 503, not a wait without end
        wait_until(lambda: pools.workers == 0, 20, "the environment's workers retired")
        body = {"script_path": path, "function_name": "version", "timeout": 0.2}
        quick = admin.post("/script-engine/execute", json=body)
        assert quick.status_code == 503, quick.text
        assert quick.json()["code"] == "KERNEL_START_FAILED"
        assert "within 0.2 s" in quick.json()["error"]
        # the worker goes on starting: the next step gets it
        again = _step(admin, path, "version")
        assert again.status_code == 200, again.text
