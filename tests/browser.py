"""Browser harness: a real gateway (subprocess, with a token), a real JupyterLab server in
gateway mode on loopback, and a Playwright page in Debian's Chromium logged in with its token.

Tests import the fixtures (``from browser import lab, lab_page``). They skip with the reason
when Chromium, Playwright or JupyterLab is missing (``.ci/run`` installs Chromium when it runs
as root; ``pip install -e '.[test,lab]'`` brings the rest). Never ``playwright install``:
the browser is ``/usr/bin/chromium`` (``VWED_TEST_CHROMIUM`` overrides the path).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import GatewayProcess, jupyter_port, wait_until

CHROMIUM = os.environ.get("VWED_TEST_CHROMIUM", "/usr/bin/chromium")
# this machine's network is closed: no first-run, sync, update or QUIC traffic
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parent.parent
IMG = ROOT / "docs" / "img"
EXTENSION_CONFIG = ROOT / "jupyter-config" / "jupyter_server_config.d" / "vwed_lab.json"
# the prebuilt JupyterLab plugin @vwed/lab: <this>/@vwed/lab/package.json
LABEXTENSIONS = ROOT / "vwed_lab" / "labextension"
LAST = Path(tempfile.gettempdir()) / "vwed-lab-browser"
VIEWPORT = {"width": 1280, "height": 760}


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"no Chromium at {CHROMIUM} (apt-get install -y chromium; .ci/run does it as root)"
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install -e '.[test]')"
    if importlib.util.find_spec("jupyterlab") is None:
        return "jupyterlab is not installed (pip install -e '.[lab]')"
    return None


def has_vwed_lab() -> bool:
    """The Jupyter Server extension that lists script kernels (issue 14) is installed."""
    return importlib.util.find_spec("vwed_lab") is not None


def has_vwed_labextension() -> bool:
    """The prebuilt JupyterLab plugin @vwed/lab (refreshes the Running panel every second, asks
    before a script's kernel is shut down) is in the tree."""
    return (LABEXTENSIONS / "@vwed" / "lab" / "package.json").is_file()


needs_browser = pytest.mark.skipif(missing() is not None, reason=missing() or "")
needs_vwed_lab = pytest.mark.skipif(not has_vwed_lab(), reason="needs vwed_lab")


@dataclass
class Lab:
    """A gateway and a JupyterLab in gateway mode against it."""

    gateway: GatewayProcess
    gateway_token: str
    root: Path  # the scripts root, also JupyterLab's root_dir
    url: str  # JupyterLab's base URL
    token: str  # JupyterLab's own token
    log: Path

    @property
    def gw(self) -> httpx.Client:
        """The gateway's HTTP API with the admin token."""
        return self.gateway.client

    def api(self) -> httpx.Client:
        """JupyterLab's (Jupyter Server's) REST API."""
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"token {self.token}"}, timeout=30
        )

    def write(self, rel: str, code: str) -> str:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(code)
        return rel

    def start(self, rel: str) -> dict[str, Any]:
        r = self.gw.post("/script-engine/start", json={"script_path": rel})
        assert r.status_code == 200, r.text
        return dict(r.json())


def _start_lab(
    root: Path, tmp: Path, gateway_url: str, gateway_token: str
) -> tuple[subprocess.Popen[bytes], str, str, Path]:
    """Start ``jupyter lab`` in gateway mode on a port it takes itself (port 0, read back from
    its runtime file); started again should its own pick be taken before it binds it."""
    for attempt in range(1, 4):
        proc, token, log = _launch_lab(attempt, root, tmp, gateway_url, gateway_token)

        def up(proc: subprocess.Popen[bytes] = proc, token: str = token) -> str | None:
            """JupyterLab's URL once it answers ("exited": stop waiting)."""
            if proc.poll() is not None:
                return "exited"
            port = jupyter_port(tmp / "jrt", proc.pid)
            if port is None:
                return None
            url = f"http://127.0.0.1:{port}"
            try:
                r = httpx.get(f"{url}/api/status", headers={"Authorization": f"token {token}"})
            except httpx.HTTPError:
                return None
            return url if r.status_code == 200 else None

        url = wait_until(up, 90, "jupyter lab")
        if proc.poll() is None:
            return proc, url, token, log
        if "already in use" not in log.read_text():
            break
    raise AssertionError(f"jupyter lab exited: {log.read_text()[-3000:]}")


def _launch_lab(
    attempt: int, root: Path, tmp: Path, gateway_url: str, gateway_token: str
) -> tuple[subprocess.Popen[bytes], str, Path]:
    token = uuid.uuid4().hex
    log = tmp / f"jupyterlab-{attempt}.log"
    env = {
        **os.environ,
        # the user's own Jupyter config, data and workspaces stay out of the test
        "JUPYTER_CONFIG_DIR": str(tmp / "jcfg"),
        "JUPYTER_DATA_DIR": str(tmp / "jdata"),
        "JUPYTER_RUNTIME_DIR": str(tmp / "jrt"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp / "jsettings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "jworkspaces"),
    }
    _quiet_lab_settings(tmp / "jsettings")
    if has_vwed_lab() and EXTENSION_CONFIG.is_file():
        # an editable install does not install the extension's config file: as an installed
        # distribution has it (tests/labserver.py does the same)
        enabled = tmp / "jcfg" / "jupyter_server_config.d"
        enabled.mkdir(parents=True, exist_ok=True)
        shutil.copy(EXTENSION_CONFIG, enabled / "vwed_lab.json")
    extra = []
    if has_vwed_lab() and has_vwed_labextension():
        # nor its JupyterLab plugin (share/jupyter/labextensions/@vwed/lab): from the tree
        extra.append(f"--LabApp.extra_labextensions_path={LABEXTENSIONS}")
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        "--port=0",  # its own pick, written to its runtime file
        "--port-retries=0",
        f"--IdentityProvider.token={token}",
        f"--gateway-url={gateway_url}",
        f"--GatewayClient.auth_token={gateway_token}",
        f"--ServerApp.root_dir={root}",
        # window.jupyterapp: the tests wait on the kernel's connection state, not on pixels
        "--LabApp.expose_app_in_browser=True",
        "--LabApp.news_url=None",  # no news poll (closed network), no toast on the screenshots
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--allow-root",
        *extra,
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    return proc, token, log


def _quiet_lab_settings(settings_dir: Path) -> None:
    """User settings that keep the UI deterministic: no news prompt, no kernel-picker dialog
    left open by a previous run."""
    ann = settings_dir / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    ann.parent.mkdir(parents=True, exist_ok=True)
    ann.write_text('{"fetchNews": "false", "checkForUpdates": false}')


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A real gateway subprocess (token auth) and JupyterLab in gateway mode against it."""
    reason = missing()
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "scripts"
    root.mkdir()
    gateway_token = uuid.uuid4().hex
    gateway = GatewayProcess(root, tmp / "data", "--auth", "--token", gateway_token)
    gateway.client.headers["Authorization"] = f"token {gateway_token}"
    proc = None
    try:
        proc, url, token, log = _start_lab(root, tmp, gateway.url, gateway_token)
        yield Lab(gateway, gateway_token, root, url, token, log)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            print(f"--- jupyter lab log (tail)\n{log.read_text()[-10000:]}")
        gateway.finish()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    reason = missing()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def lab_page(lab: Lab, chromium: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser page logged in to JupyterLab with its token, the launcher shown.
    The page as it was at the end of the test is in $TMPDIR/vwed-lab-browser/<test>.png."""
    context = chromium.new_context(viewport=VIEWPORT)
    context.set_default_timeout(30_000)
    page = context.new_page()
    try:
        # ?token= logs in and sets the session cookie; ?reset gives a clean workspace
        page.goto(f"{lab.url}/lab?reset&token={lab.token}")
        page.locator("#jp-main-dock-panel").wait_for()
        page.locator(".jp-LauncherCard").first.wait_for()
        yield page
    finally:
        _last_screenshot(page, context, request)


@contextlib.contextmanager
def console_page(
    chromium: Any, request: pytest.FixtureRequest, viewport: dict[str, int] | None = None
) -> Iterator[Any]:
    """A fresh page for the operator's console; fails the test on an uncaught exception of
    the page's own code; the page as it was at the end in $TMPDIR/vwed-lab-browser/<test>.png."""
    context = chromium.new_context(viewport=viewport or VIEWPORT)
    context.set_default_timeout(30_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
        assert not errors, errors
    finally:
        _last_screenshot(page, context, request)


def console_sign_in(page: Any, url: str, token: str) -> None:
    """Open the console at ``url`` and sign in with ``token``."""
    page.goto(f"{url}/")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def _last_screenshot(page: Any, context: Any, request: pytest.FixtureRequest) -> None:
    """The page as it was at the end of the test, for a failure's reader; then close."""
    try:
        LAST.mkdir(exist_ok=True)
        last = LAST / f"{request.node.name}.png"
        page.screenshot(path=str(last))
        print(f"--- the page at the end: {last}")
    finally:
        context.close()


def screenshot(page: Any, name: str, **kwargs: Any) -> Path:
    """Save a screenshot of the viewport as <name>.png: into docs/img/ with
    ``VWED_DOCS_SCREENSHOTS=1`` (how the docs' images are made), else beside the failure
    screenshots, so that a test run leaves the tree clean."""
    folder = IMG if os.environ.get("VWED_DOCS_SCREENSHOTS") == "1" else LAST
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), **kwargs)
    return path
