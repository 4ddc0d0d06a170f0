"""What the fork server does to its memory before forking (``vwed_kernel/forkmemory.py``)
and the kernel's quick command line (``vwed_kernel/kernelapp.py``): the same results
as the code paths they spare a forked kernel, and nothing left changed in the fork
server's process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from conftest import GatewayThread
from kernel_gateway.config import Settings

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")


def _parsed(argv: list[str]) -> object:
    """What traitlets' own parser makes of ``argv`` for the kernel's application."""
    from ipykernel.kernelapp import IPKernelApp

    from vwed_kernel.kernelapp import VWEDKernelApp

    app = VWEDKernelApp()
    IPKernelApp.parse_command_line(app, argv)
    return app.cli_config


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "argv",
    [
        ["-f", "/tmp/kernel-1.json"],
        ["-f", "/tmp/kernel-1.json", "--HistoryManager.enabled=False"],
        ["-f", "/tmp/kernel-1.json", "--HistoryManager.enabled=True"],
    ],
)
def test_quick_config_is_what_traitlets_makes_of_the_kernelspecs_command_line(argv):
    from vwed_kernel.kernelapp import VWEDKernelApp

    app = VWEDKernelApp()
    app.parse_command_line(argv)
    assert app.cli_config == _parsed(argv)
    assert app.connection_file == "/tmp/kernel-1.json" and app.extra_args == []


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["-f"],
        ["--f=/tmp/k.json"],
        ["-f", "--HistoryManager.enabled=False"],
        ["-f", "/tmp/k.json", "--Session.username=bob"],
        ["-f", "/tmp/k.json", "--HistoryManager.enabled=0"],
    ],
)
def test_any_other_command_line_goes_to_traitlets(argv):
    from vwed_kernel.kernelapp import VWEDKernelApp, quick_config

    assert quick_config(argv) is None
    if argv == ["-f", "/tmp/k.json", "--Session.username=bob"]:
        app = VWEDKernelApp()
        app.parse_command_line(argv)
        assert app.cli_config == _parsed(argv)
        assert app.cli_config.Session.username == "bob"


# Run in a fresh interpreter: the state of the process that a kernel's construction
# changes, before and after ``forkmemory.warm()``.
STATE = textwrap.dedent(
    """
    import atexit, builtins, gc, json, logging, os, sys, threading, warnings
    sys.argv = ["fork-server"]
    import vwed_kernel.forkserver as fs
    fs._preload()
    from vwed_kernel import forkmemory
    import comm
    from ipykernel.ipkernel import IPythonKernel
    from IPython.core.interactiveshell import InteractiveShell

    def state():
        return {
            "builtins": sorted(builtins.__dict__),
            "sys": {n: repr(getattr(sys, n, None)) for n in (
                "stdin", "stdout", "stderr", "excepthook", "displayhook", "ps1", "ps2", "ps3")},
            "main": repr(sys.modules["__main__"]),
            "path": list(sys.path),
            "environ": dict(os.environ),
            "threads": threading.active_count(),
            "fds": sorted(os.listdir("/proc/self/fd")),
            "filters": len(warnings.filters),
            "loggers": sorted(logging.root.manager.loggerDict),
            "handlers": {n: len(getattr(l, "handlers", [])) for n, l in
                         logging.root.manager.loggerDict.items()},
            "singletons": [InteractiveShell.initialized(), IPythonKernel.initialized()],
            "comm": repr(comm._comm_manager),
            "cwd_files": sorted(os.listdir(".")),
            "alive": gc.collect() * 0 + sum(
                isinstance(o, (InteractiveShell, IPythonKernel)) for o in gc.get_objects()),
        }

    # the exit functions the throwaway shell registered are gone
    InteractiveShell.atexit_operations = lambda self: print("the shell's atexit ran")
    before = state()
    forkmemory.warm()
    after = state()
    atexit._run_exitfuncs()
    print(json.dumps({k: [before[k], after[k]] for k in before if before[k] != after[k]}))
    """
)


def _python(code: str, folder: Path) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter with a bare environment; it must exit 0."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=100,
        env={"PATH": "/usr/bin:/bin", "HOME": str(folder)},
    )
    assert done.returncode == 0, done.stderr
    return done


@pytest.mark.timeout(120)
def test_warm_leaves_the_fork_servers_process_as_it_was(tmp_path):
    done = _python(STATE, tmp_path)
    assert "the shell's atexit ran" not in done.stdout
    changed = json.loads(done.stdout.strip().splitlines()[-1])
    assert changed == {}
    assert not (tmp_path / ".ipython").exists()  # its profile was a temporary folder


@pytest.mark.timeout(60)
def test_the_allocators_statistics_are_read():
    """``fill_pools`` reads ``sys._debugmallocstats``'s report: if its format changed,
    the fill would silently do nothing."""
    from vwed_kernel.forkmemory import _pymalloc_free

    free, unused_pools = _pymalloc_free()
    assert free, "no free blocks read from sys._debugmallocstats"
    assert all(size % 16 == 0 and 16 <= size <= 512 for size in free)
    assert unused_pools >= 0


SCRIPT = """
import sys

def kernel_modules():
    kernel = get_ipython().kernel
    files = {m.__file__ for m in list(sys.modules.values()) if getattr(m, "__file__", None)}
    return {
        "kernel_modules": list(kernel._kernel_modules),
        "debugger": list(kernel.debugger.kernel_modules),
        "files_now": sorted(files),
        "main": sys.modules["__main__"].__file__ if hasattr(sys.modules["__main__"], "__file__") else None,
    }

def boot():
    import colorsys  # imported by the script: not a kernel module
    VWED.function.register("mods_kernel_modules", kernel_modules)
"""


@pytest.mark.timeout(180)
def test_a_forked_kernels_debugger_knows_the_kernels_modules(tmp_path):
    """ipykernel's list of the kernel's own modules (its debugger's "just my code"),
    read from the fork server's snapshot in a forked kernel: the files of the
    modules loaded when the kernel started, those the kernel imported after the
    fork included, and not the script's."""
    root = tmp_path / "g"
    (root / "scripts").mkdir(parents=True)
    (root / "scripts" / "mods.py").write_text(SCRIPT)
    settings = Settings(
        scripts_dir=str(root / "scripts"),
        port=0,
        data_dir=str(root / "data"),
        pool_size=0,
        workers=1,
        call_timeout=30.0,
        auth=False,
    ).validated()
    gw = GatewayThread(settings).start()
    try:
        with httpx.Client(base_url=gw.url, timeout=60) as c:
            r = c.post("/script-engine/start", json={"script_path": "mods.py"})
            assert r.status_code == 200, r.text
            r = c.post("/script-engine/functions/mods_kernel_modules/call", json={"args": []})
            assert r.status_code == 200, r.text
            got = r.json()
    finally:
        gw.stop()
    body = got["result"]
    modules = body["kernel_modules"]
    assert modules == body["debugger"]
    main = {f for f in modules if f.endswith("vwed_kernel/__main__.py")}
    assert len(main) == 1  # runpy's __main__ then (IPython's own __main__ since)
    assert set(modules) - main <= set(body["files_now"])
    names = {Path(f).as_posix() for f in modules}
    for end in (
        "ipykernel/ipkernel.py",
        "vwed_kernel/kernel.py",
        "IPython/core/interactiveshell.py",
    ):
        assert any(n.endswith(end) for n in names), end
    # the kernel's __main__ (python -m vwed_kernel), not the fork server's
    assert not any(n.endswith("vwed_kernel/forkserver.py") for n in names)
    assert not any(n.endswith("/colorsys.py") for n in names)
    # nearly every module loaded now was loaded when the kernel started
    assert len(modules) > 0.9 * len(body["files_now"])


@pytest.mark.timeout(120)
def test_prepare_leaves_no_temporary_folder_cached(tmp_path):
    """tempfile caches the folder it finds: found in the fork server, every kernel would
    use it, whatever its own TMPDIR or its user's rights."""
    code = (
        "import sys, tempfile; sys.argv = ['fork-server']\n"
        "import vwed_kernel.forkserver as fs; fs._preload()\n"
        "from vwed_kernel import forkmemory; forkmemory.prepare()\n"
        "print(repr(tempfile.tempdir))\n"
    )
    done = _python(code, tmp_path)
    assert done.stdout.strip().splitlines()[-1] == "None"
