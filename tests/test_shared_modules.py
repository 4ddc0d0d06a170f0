"""Shared modules: the scripts root is importable (``common/utils.py`` is ``import
common.utils``) by scripts, replicas and steps, loaded through the gateway; an edited
helper is seen after a reload and by the next step; nothing outside the root is."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from jupyter_client.manager import KernelManager

from conftest import GatewayThread, Scripts, unique
from kernel_gateway.config import Settings
from kernel_gateway.kernelspec import make_kernelspec_manager, write_gateway_kernelspec
from kernel_gateway.scripts import ScriptStore
from kernel_gateway.shared_modules import SharedModules

UTILS = """
VERSION = "{version}"
LOADS = globals().get("LOADS", 0) + 1

def pick(items):
    return items[0]

def describe():
    import sys
    return {{
        "version": VERSION,
        "file": __file__,
        "loader": type(__loader__).__name__,
        "package_file": getattr(sys.modules["common"], "__file__", None),
    }}
"""

CONTROLLER = """
import os
from common.utils import pick
import common.utils

def boot():
    VWED.api.register_route("/{n}/pick", "GET", route)

def route(request):
    return {{"pick": pick(["a", "b"]), "pid": os.getpid(), **common.utils.describe()}}
"""

STEPS = """
from common.utils import VERSION, pick
import common.utils

def first(items):
    return {"pick": pick(items), "imported": VERSION, "now": common.utils.VERSION}
"""

PROBE = """
import importlib

def try_import(name):
    try:
        __import__(name)
    except ImportError as exc:
        return {"type": type(exc).__name__, "message": str(exc), "name": exc.name}
    return {"type": None}
"""


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shared_root")


@pytest.fixture(scope="module")
def mgw(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayThread]:
    """A gateway of its own: one worker, so consecutive steps share a module cache."""
    settings = Settings(
        scripts_dir=str(root),
        port=0,
        data_dir=str(tmp_path_factory.mktemp("shared_data")),
        pool_size=2,
        workers=1,
        call_timeout=10.0,
        boot_timeout=30.0,
        max_file_size=64 * 1024,
        auth=False,
    )
    thread = GatewayThread(settings.validated()).start()
    yield thread
    thread.stop()


@pytest.fixture
def mclient(mgw: GatewayThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=mgw.url, timeout=60) as c:
        yield c


@pytest.fixture
def mscripts(root: Path, mclient: httpx.Client) -> Iterator[Scripts]:
    s = Scripts(root, mclient)
    yield s
    s.stop_all()


def edit(path: Path, text: str) -> None:
    """Rewrite ``path`` with a new mtime (set rather than waited for)."""
    later = path.stat().st_mtime_ns + 1_000_000_000
    path.write_text(textwrap.dedent(text))
    os.utime(path, ns=(later, later))


def step(client: httpx.Client, path: str, function: str, args: object = None) -> httpx.Response:
    return client.post(
        "/script-engine/execute",
        json={"script_path": path, "function_name": function, "args": args},
    )


def test_script_replicas_and_steps_import_the_root_and_see_an_edit(mscripts, mclient, root):
    utils = root / "common" / "utils.py"
    mscripts.write("common/utils.py", UTILS.format(version="v1"))  # no __init__.py
    n = unique("wh")
    controller = mscripts.write(f"warehouse/{n}.py", CONTROLLER.format(n=n))
    started = mscripts.start(controller)
    body = mclient.get(f"/script-api/{n}/pick").json()
    assert body["pick"] == "a" and body["version"] == "v1"
    # loaded through the gateway, named by its real path under the root
    assert body["loader"] == "RootModuleLoader"
    assert body["file"] == str(utils.resolve())
    assert body["package_file"] is None  # a folder without __init__.py is a package

    steps = mscripts.write(f"warehouse/{n}_steps.py", STEPS)
    r = step(mclient, steps, "first", [["x", "y"]])
    assert r.status_code == 200, r.text
    assert r.json()["result"] == {"pick": "x", "imported": "v1", "now": "v1"}

    edit(utils, UTILS.format(version="v2"))
    r = mclient.post("/script-engine/reload", json={"script_id": started["script_id"]})
    assert r.status_code == 200, r.text
    assert mclient.get(f"/script-api/{n}/pick").json()["version"] == "v2"
    # the worker drops the old helper and the step module that imported its names
    r = step(mclient, steps, "first", [["x", "y"]])
    assert r.status_code == 200, r.text
    assert r.json()["result"] == {"pick": "x", "imported": "v2", "now": "v2"}
    assert step(mclient, steps, "first", [["z"]]).json()["result"]["imported"] == "v2"

    edit(utils, UTILS.format(version="v3"))
    r = mclient.post("/script-engine/restart", json={"script_path": controller})
    assert r.status_code == 200, r.text
    assert mclient.get(f"/script-api/{n}/pick").json()["version"] == "v3"


def test_replicas_import_the_root(mscripts, mclient):
    mscripts.write("common/utils.py", UTILS.format(version="rep"))
    n = unique("rep")
    mscripts.write(f"warehouse/{n}.py", CONTROLLER.format(n=n))
    r = mclient.post(
        "/script-engine/start", json={"script_path": f"warehouse/{n}.py", "replicas": 2}
    )
    assert r.status_code == 200, r.text
    mscripts.started.append(r.json()["script_id"])
    pids = {k["pid"] for k in r.json()["kernels"]}
    assert len(pids) == 2
    seen = [mclient.get(f"/script-api/{n}/pick").json() for _ in range(4)]
    assert {s["pid"] for s in seen} == pids
    assert {(s["pick"], s["version"], s["loader"]) for s in seen} == {
        ("a", "rep", "RootModuleLoader")
    }


NO_READS = """
import importlib, sys

ACTIVE = []
OPENED = []

def _hook(event, args):
    if ACTIVE and event in ("open", "os.listdir", "os.scandir") and args:
        OPENED.append(str(args[0]))

sys.addaudithook(_hook)

def load(name):
    ACTIVE.append(1)
    try:
        module = importlib.import_module(name)
    finally:
        ACTIVE.clear()
    return {"value": module.VALUE, "opened": [p for p in OPENED if ROOT in p]}
"""


def test_the_kernel_does_not_read_the_root_itself(mscripts, mclient, root):
    """What a kernel without the gateway's disk needs: the helper's source comes over
    the comm; the kernel opens no file of the root (seen by an audit hook)."""
    helper = unique("remote")
    mscripts.write(f"lib/{helper}.py", "VALUE = 42\n")
    steps = mscripts.write(
        f"{unique('noreads')}.py", f"ROOT = {str(root.resolve())!r}\n" + NO_READS
    )
    r = step(mclient, steps, "load", [f"lib.{helper}"])
    assert r.status_code == 200, r.text
    assert r.json()["result"] == {"value": 42, "opened": []}


def test_packages_with_init_and_a_traceback_names_the_helper(mscripts, mclient, root):
    pkg = unique("pkg")
    mscripts.write(f"{pkg}/__init__.py", "NAME = 'init'\n")
    mscripts.write(
        f"{pkg}/sub/deep.py",
        """
        from .. import NAME

        def fail():
            raise ValueError("deep failure " + NAME)
        """,
    )
    steps = mscripts.write(
        f"{unique('tb')}.py",
        f"""
        from {pkg}.sub import deep

        def go():
            deep.fail()
        """,
    )
    r = step(mclient, steps, "go")
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "STEP_FAILED" and "deep failure init" in body["error"]
    deep = str((root / pkg / "sub" / "deep.py").resolve())
    assert deep in body["traceback"]
    assert 'raise ValueError("deep failure " + NAME)' in body["traceback"]


def test_a_missing_module_is_named_and_found_once_it_exists(mscripts, mclient, root):
    late = unique("late")
    steps = mscripts.write(f"{unique('miss')}.py", PROBE + f"\ndef use():\n    import {late}\n")
    r = step(mclient, steps, "use")
    assert r.status_code == 422 and r.json()["type"] == "ModuleNotFoundError"
    assert f"No module named '{late}'" in r.json()["error"]
    # the worker remembered the name is missing; the gateway tells it the name appeared
    mscripts.write(f"{late}.py", "")
    r = step(mclient, steps, "use")
    assert r.status_code == 200, r.text

    n = unique("bootmiss")
    mscripts.write(f"{n}.py", "import nowhere_at_all\n\ndef boot():\n    pass\n")
    r = mclient.post("/script-engine/start", json={"script_path": f"{n}.py"})
    assert r.status_code == 422, r.text
    assert "No module named 'nowhere_at_all'" in r.json()["error"]


def test_nothing_outside_the_root_is_importable(mscripts, mclient, root, tmp_path):
    outside = tmp_path / "outside"
    (outside / "pkg").mkdir(parents=True)
    (outside / "pkg" / "x.py").write_text("SECRET = 1\n")
    (outside / "loose.py").write_text("SECRET = 2\n")
    (tmp_path / "x.py").write_text("SECRET = 3\n")
    link, filelink = unique("outlink"), unique("evil")
    os.symlink(outside / "pkg", root / link)
    os.symlink(outside / "loose.py", root / f"{filelink}.py")
    probe = mscripts.write(f"{unique('probe')}.py", PROBE)
    for name in (f"{link}.x", link, filelink, "../x", "..x"):
        r = step(mclient, probe, "try_import", [name])
        assert r.status_code == 200, r.text
        result = r.json()["result"]
        assert result["type"] == "ModuleNotFoundError", (name, result)
    result = step(mclient, probe, "try_import", [link]).json()["result"]
    assert "leaves the scripts root" in result["message"]
    result = step(mclient, probe, "try_import", ["no_such_helper"]).json()["result"]
    assert result["message"] == "No module named 'no_such_helper'"
    assert result["name"] == "no_such_helper"

    # a script at the root: the root is not on its sys.path, so the same rules hold
    n = unique("atroot")
    mscripts.write(f"{n}_helper.py", "VALUE = 1\n")
    mscripts.start(
        f"{n}.py",
        PROBE
        + f"""
import {n}_helper

def boot():
    VWED.api.register_route("/{n}/try", "POST", lambda request: try_import(request["body"]))
    VWED.api.register_route("/{n}/loader", "GET", loader)

def loader(request):
    return type({n}_helper.__loader__).__name__
""",
    )
    assert mclient.get(f"/script-api/{n}/loader").json() == "RootModuleLoader"
    for name in (filelink, f"{link}.x"):
        result = mclient.post(f"/script-api/{n}/try", json=name).json()
        assert result["type"] == "ModuleNotFoundError", (name, result)


def test_lookup_rules(tmp_path):
    """The gateway's lookup on a real store: Python's order, the size limit."""
    root = tmp_path / "root"
    (root / "both").mkdir(parents=True)
    (root / "both" / "__init__.py").write_text("KIND = 'package'\n")
    (root / "both.py").write_text("KIND = 'module'\n")
    (root / "plain.py").write_text("KIND = 'module'\n")
    (root / "folder").mkdir()
    (root / "big.py").write_text("x = 1\n" * 100)
    modules = SharedModules(ScriptStore(root, max_file_size=100))
    both = modules.lookup("both")
    assert both.found and both.is_package and both.origin == "both/__init__.py"
    plain = modules.lookup("plain")
    assert plain.found and not plain.is_package and plain.source == "KIND = 'module'\n"
    folder = modules.lookup("folder")
    assert folder.found and folder.is_package and folder.file == "" and folder.source == ""
    big = modules.lookup("big")
    assert not big.found and "larger than 100 bytes" in big.reason
    assert not modules.lookup("nothing").found and not modules.lookup("nothing").reason
    assert "not a module name" in modules.lookup("a..b").reason


def test_a_kernel_without_gateway_does_not_find_them(root, tmp_path):
    """A VWED kernel nobody attached to (plain JupyterLab): the names are not found,
    at once, and the kernel works on."""
    write_gateway_kernelspec(tmp_path)
    (root / "common").mkdir(exist_ok=True)
    km = KernelManager(kernel_name="vwed", kernel_spec_manager=make_kernelspec_manager(tmp_path))
    km.start_kernel(cwd=str(tmp_path))
    kc = km.client()
    kc.start_channels()
    outputs: list[str] = []
    try:
        kc.wait_for_ready(timeout=60)
        code = "try:\n    import common.utils\nexcept ModuleNotFoundError as e:\n    print(e)\n"
        reply = kc.execute_interactive(
            code,
            timeout=30,
            output_hook=lambda msg: outputs.append(msg["content"].get("text", "")),
        )
        assert reply["content"]["status"] == "ok"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert "No module named 'common'" in "".join(outputs)
