"""Test fixtures: a real gateway on a loopback port (its own event loop in a
thread), real kernels, a real HTTP client."""

from __future__ import annotations

import asyncio
import json
import pwd
import re
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from kernel_gateway import busypoll
from kernel_gateway.app import Gateway
from kernel_gateway.config import Settings


class GatewayThread:
    """Runs a :class:`Gateway` on its own event loop in a background thread (the loop
    ``vwed-gateway`` runs on: it busy-polls after quick calls unless
    ``busy_poll_us=0``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.gateway: Gateway | None = None
        factory = busypoll.loop_factory(settings.busy_poll_us)
        self.loop = factory() if factory is not None else asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="gateway", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.gateway = Gateway(self.settings)
            self.loop.run_until_complete(self.gateway.start())
        except BaseException as exc:  # reported to the test thread
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()

    def start(self) -> GatewayThread:
        self.thread.start()
        if not self._ready.wait(60):
            raise TimeoutError("gateway did not start within 60 s")
        if self._error is not None:
            raise self._error
        return self

    def run(self, coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def wait_pool(self, n: int, timeout: float = 60) -> None:
        assert self.gateway is not None
        wait_until(lambda: self.gateway.pool.available >= n, timeout, f"pool of {n} kernels")

    def stop(self) -> None:
        if self.gateway is not None and self.thread.is_alive():
            self.run(self.gateway.stop(), timeout=60)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(30)

    @property
    def url(self) -> str:
        assert self.gateway is not None
        return f"http://127.0.0.1:{self.gateway.port}"


def token_gateway(
    tmp_path_factory: pytest.TempPathFactory, name: str, admin: str, caller: str, **settings: Any
) -> Iterator[tuple[GatewayThread, Path]]:
    """A module's own gateway with an admin and a caller token, one pooled kernel and one
    worker (``settings`` override or add): yields it with its empty scripts root."""
    base = tmp_path_factory.mktemp(name)
    (base / "scripts").mkdir()
    options: dict[str, Any] = {"pool_size": 1, "workers": 1, "call_timeout": 10.0, **settings}
    gw = GatewayThread(
        Settings(
            scripts_dir=str(base / "scripts"),
            port=0,
            data_dir=str(base / "data"),
            token=admin,
            caller_token=caller,
            **options,
        ).validated()
    ).start()
    try:
        yield gw, base / "scripts"
    finally:
        gw.stop()


def start_script(gw: GatewayThread, root: Path, name: str, text: str, admin: str) -> None:
    """Write ``<name>.py`` into the scripts root ``root`` and start it (admin token)."""
    (root / f"{name}.py").write_text(text)
    r = httpx.post(
        f"{gw.url}/script-engine/start",
        json={"script_path": f"{name}.py"},
        headers={"Authorization": f"token {admin}"},
        timeout=60,
    )
    assert r.status_code == 200, r.text


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` until it is truthy, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture(scope="session")
def scripts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("scripts")


@pytest.fixture(scope="session")
def gw(scripts_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayThread]:
    settings = Settings(
        scripts_dir=str(scripts_dir),
        port=0,
        data_dir=str(tmp_path_factory.mktemp("data")),
        pool_size=2,
        call_timeout=5.0,
        boot_timeout=30.0,
        max_file_size=64 * 1024,
        auth=False,
    )
    thread = GatewayThread(settings.validated()).start()
    yield thread
    thread.stop()


@pytest.fixture
def client(gw: GatewayThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.url, timeout=30) as c:
        yield c


class Scripts:
    """Writes scripts into the scripts root and stops what a test started."""

    def __init__(self, root: Path, client: httpx.Client) -> None:
        self.root = root
        self.client = client
        self.started: list[str] = []

    def write(self, rel: str, code: str) -> str:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(code))
        return rel

    def start(self, rel: str, code: str | None = None) -> dict[str, Any]:
        if code is not None:
            self.write(rel, code)
        r = self.client.post("/script-engine/start", json={"script_path": rel})
        assert r.status_code == 200, r.text
        body = r.json()
        self.started.append(body["script_id"])
        return body

    def stop_all(self) -> None:
        for sid in self.started:
            self.client.post("/script-engine/stop", json={"script_id": sid})


@pytest.fixture
def scripts(scripts_dir: Path, client: httpx.Client) -> Iterator[Scripts]:
    s = Scripts(scripts_dir, client)
    yield s
    s.stop_all()


def system_user(name: str) -> pwd.struct_passwd:
    """The system user ``name`` (made when missing; the caller runs as root). Two test
    workers may both find it missing: useradd fails for the one that comes second (the
    user exists, or /etc/passwd is locked), so wait until the user is there."""

    def made() -> pwd.struct_passwd | None:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", name], capture_output=True)
            try:
                return pwd.getpwnam(name)
            except KeyError:
                return None

    return wait_until(made, 30, f"the system user {name}")


def unique(prefix: str) -> str:
    return f"{prefix}_{time.monotonic_ns() % 10**9}"


__all__ = [
    "GatewayThread",
    "GatewayProcess",
    "listening_port",
    "jupyter_port",
    "wait_until",
    "Scripts",
    "unique",
    "replace",
    "system_user",
]


_LISTENING = re.compile(r"VWED gateway \S+ on http://[^:\s]+:(\d+) ")


def listening_port(output: Path) -> int | None:
    """The port a ``python -m kernel_gateway --port 0`` whose output goes to ``output``
    listens on, from its first INFO line (None: not listening yet). A port picked by the
    test and bound later by the gateway could be taken in between (other xdist workers'
    kernels and servers take free ports too): "Address already in use" flakes."""
    found = _LISTENING.search(output.read_text(errors="replace")) if output.exists() else None
    return int(found.group(1)) if found else None


def jupyter_port(runtime_dir: Path, pid: int) -> int | None:
    """The port a Jupyter Server (or JupyterLab) started with ``--ServerApp.port=0`` and
    ``JUPYTER_RUNTIME_DIR=runtime_dir`` took, from its runtime file ``jpserver-<pid>.json``
    (None: not written yet). Its own pick of a free port is bound a moment later, so a
    caller starts it again should it exit with "already in use"."""
    info = runtime_dir / f"jpserver-{pid}.json"
    try:
        return int(json.loads(info.read_text())["port"])
    except (OSError, ValueError, KeyError):
        return None  # not there yet, or being written


class GatewayProcess:
    """``python -m kernel_gateway`` on a free loopback port; its output in a file."""

    def __init__(self, root: Path, data: Path, *extra: str) -> None:
        # The gateway binds port 0 itself and says which port in its first INFO line: a
        # port picked here and bound later could be taken in between (a kernel's ZMQ
        # sockets also take free ports), which made "Address already in use" flakes.
        self.port = 0
        self.out = data.parent / f"gateway-{uuid.uuid4().hex[:8]}.log"
        data.mkdir(exist_ok=True)
        self._out = open(self.out, "w")  # noqa: SIM115 - closed in finish()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kernel_gateway",
                "--scripts-dir",
                str(root),
                "--data-dir",
                str(data),
                "--port",
                "0",
                "--pool-size",
                "1",
                "--workers",
                "1",
                "--no-auth",
                *extra,
            ],
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )
        self.url = ""
        self.client = httpx.Client(timeout=60)

        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited: {self.out.read_text()[-2000:]}")
            if not self.port:
                self.port = listening_port(self.out) or 0
                if not self.port:
                    return False
                self.url = f"http://127.0.0.1:{self.port}"
                self.client.base_url = httpx.URL(self.url)
            try:
                return self.client.get("/script-engine/health").status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, 60, "the gateway")

    def finish(self) -> None:
        print(f"--- {self.out} (tail)\n{self.out.read_text()[-4000:]}")  # shown on failure
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.client.close()
        self._out.close()

    def running(self) -> dict[str, dict[str, Any]]:
        """``/script-engine/running`` by script path."""
        scripts = self.client.get("/script-engine/running").json()["scripts"]
        return {s["script_path"]: s for s in scripts}


# --- Parallel runs (pytest-xdist; its options are in pyproject.toml) ----------------------
# All the tests of one group run on one worker, one after the other. Every test file is its own
# group (its module-scoped fixtures, a gateway or JupyterLab, start once, on one worker). Files
# that share something beyond their own temporary folders and loopback ports taken with port 0
# (a database server, a fixed name or address, a file at a fixed path) are one group here, so
# they never run at the same time. The group is a file's, never a test's: xdist's own
# `xdist_group` marker is not used (pytest 9.2 broke it: pytest-xdist issue 1386).
XDIST_GROUPS: dict[str, str] = {
    # PostgreSQL/MariaDB on 127.0.0.1:5432/3306: a schema or database each test, but one server
    # (its connection limit; test_failover ends sessions that hold advisory locks)
    **dict.fromkeys(
        [
            "test_calls_history.py",
            "test_executions_restart.py",
            "test_failover.py",
            "test_logs_databases.py",
            "test_secrets.py",
            "test_store_databases.py",
            "test_store_outage.py",
        ],
        "databases",
    ),
    # network namespaces and their 10.77.0.0/24 links (tests/netns.py picks free blocks)
    "test_remote_kernels.py": "netns",
    # Chromium and JupyterLab: two at once on two cores make the UI waits the slow part
    **dict.fromkeys(
        [
            "test_console_browser.py",
            "test_console_executions_browser.py",
            "test_lab_browser.py",
            "test_lab_browser_scenario.py",
        ],
        "browser",
    ),
}
# About how many seconds the slowest files take (their --durations on a busy two-core machine):
# the heaviest groups start first, so the run does not end on one long file while the other
# workers are idle. A file not listed counts as short; only the order depends on this.
XDIST_SECONDS: dict[str, float] = {
    "test_lab_sessions.py": 105,
    "test_store_outage.py": 60,
    "test_readme_tour.py": 50,
    "test_logs_stream.py": 45,
    "test_executions_restart.py": 45,
    "test_engine_boot.py": 40,
    "test_restore.py": 40,
    "test_failover.py": 35,
    "test_versions.py": 30,
    "test_revisions.py": 30,
    "test_secrets.py": 30,
    "test_progress.py": 20,
    "test_deps_lifecycle.py": 20,
    "test_notebooks.py": 20,
    "test_lab_browser_scenario.py": 60,
    "test_console_browser.py": 60,
    "test_remote_kernels.py": 90,
    "test_quotas.py": 35,
    "test_mqtt.py": 30,
    "test_plugins.py": 25,
    "test_log_sinks.py": 25,
    # about 75 s, plus about 30 s when the kernel image of this checkout is built first
    "test_docker_kernels.py": 80,
}


def xdist_group(nodeid: str) -> str:
    """The group of a test: its file's entry in XDIST_GROUPS, else its file's name."""
    name = nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
    return XDIST_GROUPS.get(name, name)


@pytest.hookimpl(optionalhook=True)  # the hook is pytest-xdist's: unknown without it
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup``: by the groups above (xdist's would split a file across workers)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class FileGroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_group(nodeid)

    return FileGroupScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The heaviest groups first (XDIST_SECONDS), each group's tests together and in their
    order: the scheduler hands out groups in this order."""
    groups = [xdist_group(item.nodeid) for item in items]
    files: dict[str, set[str]] = {}
    first: dict[str, int] = {}
    for index, (item, group) in enumerate(zip(items, groups, strict=True)):
        files.setdefault(group, set()).add(item.path.name)
        first.setdefault(group, index)
    seconds = {g: sum(XDIST_SECONDS.get(f, 0.0) for f in names) for g, names in files.items()}
    order = sorted(range(len(items)), key=lambda i: (-seconds[groups[i]], first[groups[i]], i))
    items[:] = [items[i] for i in order]
