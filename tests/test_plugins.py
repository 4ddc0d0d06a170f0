"""Plugins (issue 20 part 1): module plugins (entry points ``vwed.modules``: ``VWED.<name>``
in every kernel) and gateway service plugins (``vwed.services``), against a real gateway
process and real kernels.

The example plugin (plugins/vwed-counter) is really installed, with pip, into a
folder put on ``PYTHONPATH``: the gateway and its kernels (their environment keeps
``PYTHONPATH``, kernel_gateway/kernelenv.py) see it as they would a site's packages.
Broken plugins beside it (an import error, an exception in ``__init__``, a name that is
built in, a service plugin that raises) are ERROR records, and the scripts still run.
A plugin's ``stop()`` runs when its script stops and when it reloads. A plugin in a
script's own package environment (docs/dependencies.md) is found at its ``prepare``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import GatewayProcess, wait_until

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[1]
COUNTER = ROOT / "plugins" / "vwed-counter"
ADMIN, CALLER = "plugins-admin-token", "plugins-caller-token"


# -- distributions, as pip would leave them in a site folder ---------------------------------
def _dist_info(
    site: Path, name: str, version: str, entry_points: dict[str, dict[str, str]]
) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = []
    for group, points in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{key} = {value}" for key, value in points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    (info / "RECORD").write_text("")


def _module(site: Path, name: str, code: str) -> None:
    (site / f"{name}.py").write_text(textwrap.dedent(code))


def _wheel(
    folder: Path, name: str, version: str, group: str, point: str, modules: dict[str, str]
) -> Path:
    """A pure-Python wheel with an entry point (what a script's environment installs)."""
    folder.mkdir(parents=True, exist_ok=True)
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    files = {f"{mod}.py": textwrap.dedent(code) for mod, code in modules.items()}
    files[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    files[f"{info}/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: vwed-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    files[f"{info}/entry_points.txt"] = f"[{group}]\n{point}\n"
    files[f"{info}/RECORD"] = "".join(f"{p},,\n" for p in files) + f"{info}/RECORD,,\n"
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for p, data in files.items():
            zf.writestr(p, data)
    return path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin installed with pip, and broken plugins beside it."""
    site = tmp_path_factory.mktemp("site")
    # built from a copy: setuptools leaves build/ and *.egg-info beside the sources
    source = tmp_path_factory.mktemp("source") / "vwed-counter"
    shutil.copytree(COUNTER, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(site),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path_factory.mktemp("build"),
    )
    if done.returncode != 0:
        raise AssertionError(f"pip could not install the example plugin: {done.stderr[-2000:]}")
    assert (site / "vwed_counter" / "module.py").is_file()
    stops = site.parent / "stops.txt"
    _module(site, "vwed_broken_import", "import vwed_no_such_module_xyz  # noqa\n")
    _dist_info(
        site,
        "vwed-broken-import",
        "1.0",
        {"vwed.modules": {"brokenimport": "vwed_broken_import:M"}},
    )
    _module(
        site,
        "vwed_broken_init",
        """
        from vwed_kernel.plugin import VwedModule

        class M(VwedModule):
            def __init__(self, context, name):
                raise RuntimeError("no PLC configured")
        """,
    )
    _dist_info(
        site, "vwed-broken-init", "2.0", {"vwed.modules": {"brokeninit": "vwed_broken_init:M"}}
    )
    _dist_info(site, "vwed-takes-api", "1.0", {"vwed.modules": {"api": "vwed_broken_init:M"}})
    _module(
        site,
        "vwed_broken_service",
        """
        from kernel_gateway.plugins import GatewayPlugin

        class S(GatewayPlugin):
            def __init__(self, context, name):
                raise ValueError("no broker to talk to")
        """,
    )
    _dist_info(
        site, "vwed-broken-service", "1.0", {"vwed.services": {"broken": "vwed_broken_service:S"}}
    )
    # stop() leaves a line in a file: "stop <pid> <whether the script used it>"
    _module(
        site,
        "vwed_recorder",
        f"""
        import os
        from vwed_kernel.plugin import VwedModule

        class Recorder(VwedModule):
            used = False

            def touch(self):
                self.used = True
                return os.getpid()

            def stop(self):
                with open({str(stops)!r}, "a") as f:
                    f.write(f"stop {{os.getpid()}} {{self.used}}\\n")
                self.used = False
        """,
    )
    _dist_info(
        site, "vwed-recorder", "1.0", {"vwed.modules": {"recorder": "vwed_recorder:Recorder"}}
    )
    return site


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plugin only a script's own environment holds."""
    folder = tmp_path_factory.mktemp("wheels")
    _wheel(
        folder,
        "vwed-hello",
        "3.1",
        "vwed.modules",
        "hello = vwed_hello:Hello",
        {
            "vwed_hello": """
            from vwed_kernel.plugin import VwedModule

            class Hello(VwedModule):
                def greet(self, who):
                    return f"hello {who} from {self.name}"
            """
        },
    )
    return folder


@pytest.fixture(scope="module")
def gateway(
    site: Path, wheels: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    base = tmp_path_factory.mktemp("plugins-gw")
    (base / "scripts").mkdir()
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(site)  # the gateway and (through it) its kernels
    try:
        gw = GatewayProcess(
            base / "scripts",
            base / "data",
            "--auth",
            "--token",
            ADMIN,
            "--caller-token",
            CALLER,
            "--deps-find-links",
            str(wheels),
            "--boot-timeout",
            "60",
        )
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
    gw.client.headers["Authorization"] = f"token {ADMIN}"
    gw.root = base / "scripts"  # type: ignore[attr-defined]
    try:
        yield gw
    finally:
        gw.finish()


def _start(gw: GatewayProcess, rel: str, code: str) -> dict[str, Any]:
    path = gw.root / rel  # type: ignore[attr-defined]
    path.write_text(textwrap.dedent(code))
    r = gw.client.post("/script-engine/start", json={"script_path": rel}, timeout=180)
    assert r.status_code == 200, r.text
    return r.json()


def _stop(gw: GatewayProcess, script_id: str) -> None:
    gw.client.post("/script-engine/stop", json={"script_id": script_id})


def _records(gw: GatewayProcess, **query: str) -> list[dict[str, Any]]:
    r = gw.client.get("/script-engine/logs", params={"limit": "500", **query})
    assert r.status_code == 200, r.text
    return r.json()["records"]


COUNTING = """
def boot():
    VWED.api.register_route("/{name}/count", "POST", count)


def count(request):
    return {{"total": VWED.counter.add("parts"), "mine": VWED.counter.mine()}}
"""


def test_counter_is_shared_by_scripts_through_the_gateway_service(gateway: GatewayProcess) -> None:
    a = _start(gateway, "count_a.py", COUNTING.format(name="a"))
    b = _start(gateway, "count_b.py", COUNTING.format(name="b"))
    try:
        totals = []
        for name in ("a", "b", "a"):
            r = gateway.client.post(f"/script-api/{name}/count", json={})
            assert r.status_code == 200, r.text
            totals.append(r.json())
        assert [t["total"] for t in totals] == [1, 2, 3]  # one counter, kept by the gateway
        assert totals[2]["mine"] == {"parts": 2}  # a's own tally, kept in its kernel
        assert totals[1]["mine"] == {"parts": 1}
    finally:
        _stop(gateway, a["script_id"])
        _stop(gateway, b["script_id"])


def test_broken_plugins_are_error_records_and_the_script_runs(gateway: GatewayProcess) -> None:
    started = _start(gateway, "uses_counter.py", COUNTING.format(name="c"))
    sid = started["script_id"]
    try:
        assert gateway.client.post("/script-api/c/count", json={}).status_code == 200

        def errors() -> list[str]:
            found = [r["message"] for r in _records(gateway, script_id=sid, level="ERROR")]
            return found if len(found) >= 3 else []

        messages = wait_until(errors, 20, "the plugins' ERROR records")
        text = "\n".join(messages)
        assert "'brokenimport' (vwed-broken-import 1.0" in text
        assert "ModuleNotFoundError" in text and "vwed_no_such_module_xyz" in text
        assert "'brokeninit' (vwed-broken-init 2.0" in text and "no PLC configured" in text
        assert "'api' (vwed-takes-api 1.0" in text and "VWED.api is built in" in text
        # a script's own name (api) still is the built-in one
        r = gateway.client.post("/script-api/c/count", json={})
        assert r.status_code == 200 and r.json()["total"] >= 2
    finally:
        _stop(gateway, sid)
    # the gateway side: the service plugin that raised is an ERROR in the gateway's log
    gateway_errors = [r["message"] for r in _records(gateway, level="ERROR")]
    assert any(
        "service plugin 'broken' (vwed-broken-service 1.0" in m and "no broker to talk to" in m
        for m in gateway_errors
    ), gateway_errors


def test_modules_endpoint_lists_builtins_and_plugins(gateway: GatewayProcess) -> None:
    r = gateway.client.get("/script-engine/modules", timeout=120)
    assert r.status_code == 200, r.text
    body = r.json()
    modules = {(m["name"], m["distribution"]): m for m in body["modules"]}
    counter = modules[("counter", "vwed-counter")]
    assert counter == {
        "name": "counter",
        "kind": "plugin",
        "distribution": "vwed-counter",
        "version": "0.1.0",
        "entry_point": "vwed_counter.module:CounterModule",
        "loads": True,
        "error": None,
    }
    for builtin in ("api", "function", "log", "event", "timer", "secrets", "mqtt"):
        assert modules[(builtin, "vwed-script-engine")]["kind"] == "builtin"
    broken = modules[("brokenimport", "vwed-broken-import")]
    assert broken["loads"] is False and "vwed_no_such_module_xyz" in broken["error"]
    assert modules[("brokeninit", "vwed-broken-init")]["loads"] is False
    assert modules[("api", "vwed-takes-api")]["loads"] is False
    assert body["python"] and body["count"] == len(body["modules"])
    assert "vwed" in body["note"]
    services = {s["name"]: s for s in body["services"]}
    assert services["counter"]["loads"] is True
    assert services["counter"]["distribution"] == "vwed-counter"
    assert services["counter"]["services"] == [
        "counter:add",
        "counter:get",
        "counter:list",
        "counter:reset",
    ]
    assert services["broken"]["loads"] is False and "no broker" in services["broken"]["error"]

    # admin only; a bad query is a 400 with its code
    url = f"{gateway.url}/script-engine/modules"
    assert httpx.get(url, timeout=30).status_code == 401
    r = httpx.get(url, headers={"Authorization": f"token {CALLER}"}, timeout=30)
    assert r.status_code == 403 and r.json()["code"] == "FORBIDDEN"
    r = gateway.client.get("/script-engine/modules", params={"nope": "1"})
    assert r.status_code == 400 and r.json()["code"] == "BAD_PARAMETER"
    r = gateway.client.get("/script-engine/modules", params={"script_path": "../etc/passwd"})
    assert r.status_code in (400, 404) and r.json()["code"] in ("PATH_INVALID", "SCRIPT_NOT_FOUND")


def test_a_kernel_without_the_fork_server_finds_plugins_itself(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--no-fork-server: each kernel a fresh interpreter that scans for itself."""
    (tmp_path / "scripts").mkdir()
    monkeypatch.setenv("PYTHONPATH", str(site))
    gw = GatewayProcess(tmp_path / "scripts", tmp_path / "data", "--no-fork-server")
    gw.root = tmp_path / "scripts"  # type: ignore[attr-defined]
    try:
        started = _start(gw, "fresh.py", COUNTING.format(name="fresh"))
        r = gw.client.post("/script-api/fresh/count", json={})
        assert r.status_code == 200, r.text
        assert r.json() == {"total": 1, "mine": {"parts": 1}}  # this gateway's own counter
        _stop(gw, started["script_id"])
    finally:
        gw.finish()


RECORDING = """
def boot():
    VWED.api.register_route("/{name}/touch", "POST", lambda: VWED.recorder.touch())
"""


def _stops(site: Path) -> list[str]:
    path = site.parent / "stops.txt"
    return path.read_text().splitlines() if path.exists() else []


def test_stop_runs_when_the_script_stops_and_reloads(gateway: GatewayProcess, site: Path) -> None:
    started = _start(gateway, "recording.py", RECORDING.format(name="rec"))
    sid = started["script_id"]
    first = gateway.client.post("/script-api/rec/touch", json={})
    assert first.status_code == 200, first.text
    pid = first.json()
    # a reload boots a new kernel and retires the old one: its plugin stops
    r = gateway.client.post("/script-engine/reload", json={"script_id": sid}, timeout=180)
    assert r.status_code == 200, r.text
    wait_until(lambda: f"stop {pid} True" in _stops(site), 30, "stop() of the old kernel")
    second = gateway.client.post("/script-api/rec/touch", json={})
    assert second.status_code == 200 and second.json() != pid
    _stop(gateway, sid)
    wait_until(lambda: f"stop {second.json()} True" in _stops(site), 30, "stop() at the stop")


def test_a_plugin_in_the_scripts_own_environment(gateway: GatewayProcess) -> None:
    code = """
    # /// script
    # dependencies = ["vwed-hello==3.1"]
    # ///

    def boot():
        VWED.api.register_route("/hello/{who}", "GET", greet)


    def greet(request):
        return VWED.hello.greet(request["path_params"]["who"])
    """
    started = _start(gateway, "hello.py", code)
    try:
        r = gateway.client.get("/script-api/hello/ann")
        assert r.status_code == 200, r.text
        assert r.json() == "hello ann from hello"
        # the listing with that script's environment has it; the engine's alone does not
        r = gateway.client.get("/script-engine/modules", params={"script_path": "hello.py"})
        assert r.status_code == 200, r.text
        names = {m["name"]: m for m in r.json()["modules"]}
        assert names["hello"]["distribution"] == "vwed-hello" and names["hello"]["loads"]
        assert names["hello"]["version"] == "3.1"
        plain = gateway.client.get("/script-engine/modules").json()["modules"]
        assert "hello" not in {m["name"] for m in plain}
    finally:
        _stop(gateway, started["script_id"])


# -- discovery, in this process (no kernel) ----------------------------------------------------
def test_discovery_scans_a_folder_once_until_it_changes(tmp_path: Path) -> None:
    from vwed_kernel import plugins

    folder = tmp_path / "f"
    folder.mkdir()
    _dist_info(folder, "vwed-one", "1.0", {"vwed.modules": {"one": "vwed_one:M"}})
    found = plugins.scan([str(folder)])
    assert [(f.name, f.distribution, f.version) for f in found] == [("one", "vwed-one", "1.0")]
    assert plugins.scan([str(folder)]) is not found  # a new list...
    cached = plugins._cache[str(folder)]
    plugins.scan([str(folder)])
    assert plugins._cache[str(folder)] is cached  # ...from the same scan
    time.sleep(0.01)  # a later mtime on file systems with coarse stamps
    _dist_info(folder, "vwed-two", "2.0", {"vwed.modules": {"two": "vwed_two:M"}})
    os.utime(folder)
    names = sorted(f.name for f in plugins.scan([str(folder)]))
    assert names == ["one", "two"]  # a package installed since is seen
    # the first distribution of a name on the path wins, as in importlib.metadata
    other = tmp_path / "g"
    other.mkdir()
    _dist_info(other, "vwed-one", "9.0", {"vwed.modules": {"one": "vwed_one:M"}})
    found = plugins.scan([str(folder), str(other)])
    assert [f.version for f in found if f.name == "one"] == ["1.0"]


def test_probe_prints_json(site: Path, tmp_path: Path) -> None:
    """``python -m vwed_kernel.plugins``, what the gateway runs: stdout is only the
    answer even when a plugin prints while imported."""
    noisy = tmp_path / "noisy"
    noisy.mkdir()
    _module(
        noisy,
        "vwed_noisy",
        "print('hello from an import')\nfrom vwed_recorder import Recorder as M\n",
    )
    _dist_info(noisy, "vwed-noisy", "1.0", {"vwed.modules": {"noisy": "vwed_noisy:M"}})
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{noisy}"}
    done = subprocess.run(
        [sys.executable, "-m", "vwed_kernel.plugins"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    names = {(m["name"], m["kind"]): m for m in answer["modules"]}
    assert names[("noisy", "plugin")]["loads"] is True
    assert names[("counter", "plugin")]["loads"] is True
    assert names[("api", "builtin")]["loads"] is True
    assert names[("api", "plugin")]["loads"] is False  # vwed-takes-api
    assert "hello from an import" in done.stderr


# -- the two loaders on their own, in this process ---------------------------------------------
def test_service_plugins_refuse_what_they_cannot_serve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a GatewayPlugin, a bad service name, a service that is not callable, a name
    two distributions take: each left out with its reason; the good one is served."""
    import asyncio

    from kernel_gateway.plugins import ServicePlugins, ServiceRequest

    _module(
        tmp_path,
        "vwed_svc_cases",
        """
        from kernel_gateway.plugins import GatewayPlugin

        class Good(GatewayPlugin):
            def services(self):
                async def echo(request):
                    return {"got": request.payload, "script": request.script_id}
                return {"echo": echo}

        class BadName(GatewayPlugin):
            def services(self):
                return {"Not Valid!": lambda request: None}

        class NotCallable(GatewayPlugin):
            def services(self):
                return {"x": 42}

        class Plain:
            pass
        """,
    )
    _dist_info(tmp_path, "vwed-svc-good", "1.0", {"vwed.services": {"good": "vwed_svc_cases:Good"}})
    _dist_info(
        tmp_path, "vwed-svc-again", "1.0", {"vwed.services": {"good": "vwed_svc_cases:Good"}}
    )
    _dist_info(
        tmp_path,
        "vwed-svc-bad",
        "1.0",
        {
            "vwed.services": {
                "badname": "vwed_svc_cases:BadName",
                "notcallable": "vwed_svc_cases:NotCallable",
                "plain": "vwed_svc_cases:Plain",
            }
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins = ServicePlugins()
    plugins.load(taken={"event.emit"})
    rows = {(r["name"], r["distribution"]): r for r in plugins.describe()}
    good = [r for (name, _), r in rows.items() if name == "good" and r["loads"]]
    again = [r for (name, _), r in rows.items() if name == "good" and not r["loads"]]
    assert len(good) == 1 and good[0]["services"] == ["good:echo"]
    assert len(again) == 1 and "the name is taken" in again[0]["error"]
    assert "not valid" in rows[("badname", "vwed-svc-bad")]["error"]
    assert "not callable" in rows[("notcallable", "vwed-svc-bad")]["error"]
    assert "not a subclass" in rows[("plain", "vwed-svc-bad")]["error"]
    said: list[tuple[str | None, str, str]] = []
    plugins.attach_log(lambda sid, level, message: said.append((sid, level, message)))
    assert len(said) == 4 and all(level == "ERROR" for _, level, _ in said)

    class Kernel:
        script_id, kernel_id, replica = "s.py_1", "k1", 0

    answer = asyncio.run(plugins.kernel_service("good:echo")(Kernel(), {"a": 1}))
    assert json.loads(answer) == {"got": {"a": 1}, "script": "s.py_1"}
    assert isinstance(ServiceRequest({}, None, "k"), ServiceRequest)


def test_a_stop_that_raises_is_an_error_record_and_the_others_still_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from vwed_kernel.vwed import VWED

    _module(
        tmp_path,
        "vwed_stop_cases",
        """
        from vwed_kernel.plugin import VwedModule

        stopped = []

        class Raises(VwedModule):
            def stop(self):
                raise OSError("socket already closed")

        class Counts(VwedModule):
            def stop(self):
                stopped.append(self.name)

        class NotAModule:
            pass
        """,
    )
    _dist_info(
        tmp_path,
        "vwed-stop-cases",
        "1.0",
        {
            "vwed.modules": {
                "araises": "vwed_stop_cases:Raises",
                "counts": "vwed_stop_cases:Counts",
                "plain": "vwed_stop_cases:NotAModule",
                "BadName": "vwed_stop_cases:Counts",
            }
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    vwed = VWED()
    assert sorted(vwed._plugin_loader.discover()) == ["araises", "counts"]
    assert "counts" in dir(vwed)
    rows = {r["name"]: r for r in vwed._plugin_loader.describe() if r["kind"] == "plugin"}
    assert "not a subclass" in rows["plain"]["error"]
    assert "lower case" in rows["BadName"]["error"]
    import vwed_stop_cases

    vwed._context.registrations.clear()  # the script stops
    assert vwed_stop_cases.stopped == ["counts"]
    vwed._context.registrations.clear()  # stop() is armed again for the next script
    assert vwed_stop_cases.stopped == ["counts", "counts"]
    # no gateway: the record is printed (stderr for ERROR)
    assert "VWED.araises.stop() failed: OSError: socket already closed" in capsys.readouterr().err


def test_a_folder_without_distributions_is_listed_not_searched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scripts' folder is on a kernel's sys.path and changes with every save: a
    folder with no ``*.dist-info`` is answered from a listing (no metadata search), and
    a distribution added to it later is found all the same (``vwed_kernel.plugins``)."""
    from vwed_kernel import plugins

    folder = tmp_path / "scripts"
    folder.mkdir()
    (folder / "a.py").write_text("x = 1\n")
    assert not plugins._may_hold_distributions(str(folder))
    assert plugins.scan([str(folder)]) == []
    dist = folder / "vwed_late-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: vwed-late\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[vwed.modules]\nlate = vwed_late:Late\n")
    os.utime(folder, ns=(time.time_ns(), time.time_ns() + 10**9))  # a new stamp, surely
    assert plugins._may_hold_distributions(str(folder))
    found = plugins.scan([str(folder)])
    assert [(f.name, f.distribution) for f in found] == [("late", "vwed-late")]
    # "" (the working folder) is the same folder, known by its path: a kernel forked in
    # another working folder than its fork server's finds the scan already made
    stamp = plugins._cache[str(folder)]
    monkeypatch.chdir(folder)
    assert plugins.scan([""]) == found
    assert plugins._cache[str(folder)] is stamp and "" not in plugins._cache
    archive = tmp_path / "lib.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("m.py", "")
    assert plugins._may_hold_distributions(str(archive))  # a zip: importlib's search
