"""JupyterLab's view of a VWED gateway, through a real Jupyter Server in gateway mode
(what ``jupyter lab --gateway-url=... --GatewayClient.auth_token=...`` runs) with the
vwed_lab extension, against a real gateway with a token: running scripts appear as
sessions named by their paths within 2 s, a notebook attached to one runs code in the
script's namespace, a restart from Jupyter Server restarts the script and the same
kernel id and WebSocket keep working, a stopped script's session goes, and the
server's exit leaves the scripts running."""

from __future__ import annotations

import json
import struct
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import GatewayThread, unique, wait_until
from kernel_gateway.config import Settings
from labserver import EXTENSION_CONFIG, ROOT, Channels, JupyterServer

ADMIN = "lab-admin-" + uuid.uuid4().hex[:8]

SCRIPT = """
import uuid
BOOT = uuid.uuid4().hex  # a new value at every boot of the script

def boot():
    VWED.api.register_route("/{n}/ping", "GET", lambda: "pong")
"""


@pytest.fixture(scope="module")
def lab_gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayThread]:
    root = tmp_path_factory.mktemp("lab-scripts")
    settings = Settings(
        scripts_dir=str(root),
        port=0,
        data_dir=str(tmp_path_factory.mktemp("lab-data")),
        pool_size=1,
        call_timeout=10.0,
        boot_timeout=30.0,
        auth=True,
        token=ADMIN,
        caller_token="lab-caller-" + uuid.uuid4().hex[:8],
    )
    thread = GatewayThread(settings.validated()).start()
    yield thread
    thread.stop()


@pytest.fixture
def gwc(lab_gw: GatewayThread) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"token {ADMIN}"}
    with httpx.Client(base_url=lab_gw.url, headers=headers, timeout=60) as c:
        yield c


@pytest.fixture
def lab(lab_gw: GatewayThread, tmp_path: Path) -> Iterator[JupyterServer]:
    server = JupyterServer(lab_gw.url, ADMIN, tmp_path, Path(lab_gw.settings.scripts_dir))
    yield server
    server.stop()


def _start(lab_gw: GatewayThread, gwc: httpx.Client, rel: str, **options) -> dict:
    path = Path(lab_gw.settings.scripts_dir) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SCRIPT.replace("{n}", unique("r")))
    r = gwc.post("/script-engine/start", json={"script_path": rel, **options})
    assert r.status_code == 200, r.text
    return r.json()


def _stop(gwc: httpx.Client, rel: str) -> None:
    gwc.post("/script-engine/stop", json={"script_path": rel})


def test_running_scripts_appear_by_path_and_replica_within_2s(lab_gw, gwc, lab):
    rel = f"warehouse/{unique('ctl')}.py"
    try:
        _start(lab_gw, gwc, rel, replicas=2)
        listed_at = time.monotonic()
        sessions = wait_until(
            lambda: (s := lab.sessions()) and rel in s and f"{rel} (replica 1)" in s and s,
            2.0,
            "the script's replicas in Jupyter Server's sessions",
        )
        assert time.monotonic() - listed_at <= 2.0
        first, second = sessions[rel], sessions[f"{rel} (replica 1)"]
        assert first["name"] == rel and first["type"] == "console"
        assert first["kernel"]["id"] != second["kernel"]["id"]
        # Jupyter Server lists the kernels (the Running panel's "Kernels"), with the
        # gateway's description of the script
        kernels = {k["id"]: k for k in lab.http.get("/api/kernels").json()}
        assert kernels[first["kernel"]["id"]]["vwed"]["script_path"] == rel
        assert kernels[second["kernel"]["id"]]["vwed"]["replica"] == 1
        # the gateway's own list: one stable id per replica
        ours = {k["id"]: k for k in gwc.get("/api/kernels").json()}
        assert first["kernel"]["id"] in ours and second["kernel"]["id"] in ours
    finally:
        _stop(gwc, rel)
    # a stopped script's sessions and kernels go (missing for GONE_AFTER, 3 s, seen at a poll)
    wait_until(
        lambda: not any(p.startswith(rel) for p in lab.sessions()), 8.0, "the sessions to go"
    )
    kernels = lab.http.get("/api/kernels").json()
    assert not any((k.get("vwed") or {}).get("script_path") == rel for k in kernels)


def test_attach_run_in_the_script_restart_keeps_the_kernel_and_socket(lab_gw, gwc, lab):
    rel = f"{unique('att')}.py"
    try:
        first_run = _start(lab_gw, gwc, rel)
        session = wait_until(lambda: lab.sessions().get(rel), 2.0, "the script's session")
        kernel_id = session["kernel"]["id"]
        # "Use Kernel from Other Session": a notebook's session on the same kernel
        r = lab.http.post(
            "/api/sessions",
            json={
                "path": "debug.ipynb",
                "type": "notebook",
                "name": "debug.ipynb",
                "kernel": {"id": kernel_id},
            },
        )
        assert r.status_code == 201, r.text
        assert r.json()["kernel"]["id"] == kernel_id
        channels = Channels(lab, kernel_id, uuid.uuid4().hex)
        try:
            before = channels.execute("print(BOOT)").strip()
            assert len(before) == 32  # the script's own global
            r = lab.http.post(f"/api/kernels/{kernel_id}/restart")
            assert r.status_code == 200, r.text
            assert r.json()["id"] == kernel_id
            # the script restarted through its lifecycle: a new run
            running = {
                s["script_path"]: s for s in gwc.get("/script-engine/running").json()["scripts"]
            }
            assert running[rel]["script_id"] != first_run["script_id"]
            # the same WebSocket now talks to the new kernel
            after = wait_until(
                lambda: _try(channels, "print(BOOT)"), 30, "the WebSocket on the new kernel"
            )
            assert after.strip() != before
            assert len(after.strip()) == 32
            # a restart from elsewhere (the scripts API, the dashboard) too
            r = gwc.post("/script-engine/restart", json={"script_path": rel})
            assert r.status_code == 200, r.text
            again = wait_until(
                lambda: _try(channels, "print(BOOT)"), 30, "the WebSocket on the third kernel"
            )
            assert again.strip() not in (before, after.strip())
        finally:
            channels.close()
        sessions = lab.sessions()
        assert sessions[rel]["kernel"]["id"] == kernel_id  # still listed, same id
        assert sessions["debug.ipynb"]["kernel"]["id"] == kernel_id
    finally:
        _stop(gwc, rel)


def _try(channels: Channels, code: str) -> str | None:
    try:
        return channels.execute(code, timeout=5) or None
    except (AssertionError, TimeoutError):
        return None


def test_server_exit_leaves_the_scripts_running(lab_gw, gwc, tmp_path):
    rel = f"{unique('keep')}.py"
    server = JupyterServer(lab_gw.url, ADMIN, tmp_path, Path(lab_gw.settings.scripts_dir))
    try:
        started = _start(lab_gw, gwc, rel)
        wait_until(lambda: rel in server.sessions(), 2.0, "the script's session")
        server.stop()
        running = {s["script_path"]: s for s in gwc.get("/script-engine/running").json()["scripts"]}
        assert running[rel]["script_id"] == started["script_id"]  # not stopped by the exit
    finally:
        server.stop()
        _stop(gwc, rel)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_kernelspec_logo_through_jupyter_server(lab_gw, gwc, lab):
    spec = lab.http.get("/api/kernelspecs").json()["kernelspecs"]["vwed"]
    assert set(spec["resources"]) >= {"logo-32x32", "logo-64x64"}
    for size in (32, 64):
        url = spec["resources"][f"logo-{size}x{size}"]
        assert url.endswith(f"/kernelspecs/vwed/logo-{size}x{size}.png")
        r = lab.http.get(url)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/png"
        assert _png_size(r.content) == (size, size)
    # only a kernelspec's resource files are served, with a readable 404 otherwise
    r = gwc.get("/kernelspecs/vwed/kernel.json")
    assert r.status_code == 404 and r.json()["code"] == "KERNELSPEC_RESOURCE_NOT_FOUND"


def test_the_extension_is_enabled_by_its_installed_config():
    assert json.loads(EXTENSION_CONFIG.read_text()) == {
        "ServerApp": {"jpserver_extensions": {"vwed_lab": True}}
    }
    # installed (by a wheel; an editable install skips data files) where Jupyter
    # Server reads its config: <prefix>/etc/jupyter/jupyter_server_config.d/
    project = (ROOT / "pyproject.toml").read_text()
    assert (
        '"etc/jupyter/jupyter_server_config.d" = '
        '["jupyter-config/jupyter_server_config.d/vwed_lab.json"]'
    ) in project
    assert (
        'lab = ["jupyterlab>=4.6", "jupyter_server>=2.10"]' in project
    )  # the prebuilt plugin needs 4.6


def test_shutting_the_kernel_down_from_jupyter_server_stops_the_script(lab_gw, gwc, lab):
    rel = f"{unique('down')}.py"
    try:
        _start(lab_gw, gwc, rel)
        session = wait_until(lambda: lab.sessions().get(rel), 2.0, "the script's session")
        # JupyterLab's "Shut Down Kernel" (after its "Shut down kernel?" dialog)
        r = lab.http.delete(f"/api/kernels/{session['kernel']['id']}")
        assert r.status_code == 204, r.text
        running = {s["script_path"] for s in gwc.get("/script-engine/running").json()["scripts"]}
        assert rel not in running
        # gone after GONE_AFTER (3 s) missing, seen at the next poll (1 s)
        wait_until(lambda: rel not in lab.sessions(), 8.0, "the session to go")
    finally:
        _stop(gwc, rel)
