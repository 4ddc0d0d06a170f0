"""The prebuilt JupyterLab plugin @vwed/lab (vwed_lab/labextension-src, built into
vwed_lab/labextension/@vwed/lab) and the endpoint it asks, ``GET /vwed-lab/status``.

The plugin's behaviour in JupyterLab (the Running panel follows the scripts without Refresh, a
script's shutdown asks first) is tested in a real browser: tests/test_lab_browser_scenario.py.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import GatewayThread, wait_until
from kernel_gateway.config import Settings
from labserver import ROOT, JupyterServer

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SOURCE = ROOT / "vwed_lab" / "labextension-src"
BUILT = ROOT / "vwed_lab" / "labextension" / "@vwed" / "lab"
ADMIN = "labext-admin-" + uuid.uuid4().hex[:8]


def test_the_built_plugin_is_committed_and_matches_its_source() -> None:
    source = json.loads((SOURCE / "package.json").read_text())
    built = json.loads((BUILT / "package.json").read_text())
    assert (built["name"], built["version"]) == (source["name"], source["version"])
    entry = BUILT / built["jupyterlab"]["_build"]["load"]
    assert entry.is_file(), "rebuild: cd vwed_lab/labextension-src && npm install && npm run build"
    bundle = "".join(p.read_text() for p in (BUILT / "static").glob("*.js"))
    # what the source says, in the bundle (a source edited without a rebuild shows here)
    code = (SOURCE / "src" / "index.js").read_text()
    for marker in ("vwed-lab/status", "Stop the production script", "@vwed/lab:plugin"):
        assert marker in code and marker in bundle, marker


def test_pyproject_installs_every_built_file_as_labextension_data() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    files = data["data-files"]
    installed = {
        f"{dest}/{Path(src).name}": src
        for dest, globs in files.items()
        for pattern in globs
        for src in [str(p.relative_to(ROOT)) for p in ROOT.glob(pattern)]
    }
    for path in BUILT.rglob("*"):
        if path.is_file():
            rel = path.relative_to(BUILT).as_posix()
            assert f"share/jupyter/labextensions/@vwed/lab/{rel}" in installed, rel


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayThread]:
    settings = Settings(
        scripts_dir=str(tmp_path_factory.mktemp("labext-scripts")),
        port=0,
        data_dir=str(tmp_path_factory.mktemp("labext-data")),
        pool_size=1,
        boot_timeout=30.0,
        auth=True,
        token=ADMIN,
        caller_token="labext-caller-" + uuid.uuid4().hex[:8],
    )
    thread = GatewayThread(settings.validated()).start()
    yield thread
    thread.stop()


def test_status_says_vwed_and_moves_when_a_script_starts_and_stops(
    gateway: GatewayThread, tmp_path: Path
) -> None:
    root = Path(gateway.settings.scripts_dir)
    server = JupyterServer(gateway.url, ADMIN, tmp_path, root)
    gw = httpx.Client(base_url=gateway.url, headers={"Authorization": f"token {ADMIN}"})
    try:
        assert httpx.get(f"{server.base}/vwed-lab/status").status_code == 403  # no token

        def status() -> dict:
            r = server.http.get("/vwed-lab/status")
            assert r.status_code == 200, r.text
            return dict(r.json())

        first = wait_until(lambda: (s := status())["vwed"] and s, 10, "vwed_lab probed")
        assert first["poll"] == 1.0
        (root / "labext_ctl.py").write_text("def boot():\n    pass\n")
        r = gw.post("/script-engine/start", json={"script_path": "labext_ctl.py"})
        assert r.status_code == 200, r.text
        started = wait_until(
            lambda: (s := status())["generation"] > first["generation"] and s, 5, "a new session"
        )
        gw.post("/script-engine/stop", json={"script_path": "labext_ctl.py"})
        wait_until(lambda: status()["generation"] > started["generation"], 10, "session gone")
    finally:
        gw.close()
        server.stop()
