"""A start is one ``load`` op (prepare, the script's cells, boot, answered once); a
kernel without that op (an older ``vwed_kernel``, e.g. on a remote host) is booted
with ``prepare``, ``execute_request``s and ``boot`` as before, with the same answers
and the same errors. Real kernels: the "old" one is the VWED kernel launched with its
``load`` op taken out."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from kernel_gateway.boot import boot_kernel
from kernel_gateway.errors import GatewayError
from kernel_gateway.kernelenv import kernel_environment
from kernel_gateway.kernels import KernelEvents, ScriptKernel
from kernel_gateway.kernelspec import make_kernelspec_manager
from kernel_gateway.launch import LaunchOptions
from kernel_gateway.scripts import ScriptSource

pytestmark = pytest.mark.timeout(120)

OLD = """
import sys
from vwed_kernel import bridge
init = bridge.GatewayLink.__init__
def without_load(self, *args, **kwargs):
    init(self, *args, **kwargs)
    del self._ops["load"]
bridge.GatewayLink.__init__ = without_load
from vwed_kernel.launch import main
main(["-f", sys.argv[1]])
"""

GOOD = """
print("loading")
def boot():
    VWED.api.register_route("/lo/a", "GET", lambda: 1)
    VWED.function.register("lo_f", lambda: 2)
"""


def _specs(data: Path) -> None:
    for name, argv in (
        ("new", [sys.executable, "-m", "vwed_kernel", "-f", "{connection_file}"]),
        ("old", [sys.executable, "-c", OLD, "{connection_file}"]),
    ):
        folder = data / "kernels" / name
        folder.mkdir(parents=True)
        spec = {"argv": argv, "display_name": name, "language": "python"}
        (folder / "kernel.json").write_text(json.dumps(spec))


def _answer_module_lookups(kernel: ScriptKernel) -> None:
    """No gateway here: the kernel's ``module.find`` requests (IPython's traceback
    machinery imports what it may lack) are answered "not found", as a gateway would."""

    def on_event(kernel: Any, data: dict[str, Any], buffers: list[bytes], parent: Any) -> None:
        if data.get("op") == "request" and data.get("id"):
            kernel.bridge.respond(str(data["id"]), True, b'{"found": false}')

    kernel.wire(KernelEvents(on_event, lambda k, m: None, lambda k: None))


async def _boot(data: Path, name: str, text: str, policy: Any = None) -> Any:
    """The registrations of ``text`` booted in a fresh kernel of spec ``name``, or the
    gateway error (code and details) the start would answer."""
    kernel = await ScriptKernel.start(
        make_kernelspec_manager(data), name, launch=LaunchOptions(env=kernel_environment())
    )
    _answer_module_lookups(kernel)
    # the new kernel takes its load on the fast channel (its hello says so); the old one
    # says nothing of it and gets the comm
    assert ("load" in kernel.bridge._fast_ops) == (name == "new"), kernel.bridge._fast_ops
    try:
        file = data / "lo.py"
        file.write_text(text)
        source = ScriptSource("lo.py", str(file), [text], 0.0, len(text))
        try:
            regs = await boot_kernel(
                kernel, "lo_1", source, replica=0, replicas=1, timeout=30, debug=True, policy=policy
            )
        except GatewayError as exc:
            # the same traceback text, naming the script's file (not the debugger's name)
            traceback = str(exc.details.get("traceback", "")).replace(str(data), "<data>")
            assert "ipykernel_" not in traceback, traceback
            details = dict(exc.details)
            if exc.code == "BAD_POLICY":  # the frames of the kernel's own code (--debug)
                details.pop("traceback")
            return exc.code, exc.message, details, "\x1b[" in traceback
        return sorted(regs.routes), sorted(regs.functions)
    finally:
        await kernel.shutdown(now=True)


ASYNC = """
import asyncio
await asyncio.sleep(0.01)  # a top-level await: the cell runs as a coroutine
async def boot():
    await asyncio.sleep(0.01)
    VWED.api.register_route("/lo/a", "GET", lambda: 1)
    VWED.function.register("lo_f", lambda: 2)
"""

# a top-level await that relies on the running task: a timeout cancels the cell's own
# task (not the kernel's dispatcher), a cancel scope is left in the task it was entered
TIMEOUT = """
import asyncio
timed_out = False
try:
    async with asyncio.timeout(0.05):
        await asyncio.sleep(1)
except TimeoutError:
    timed_out = True
def boot():
    assert timed_out, "the timeout did not fire"
    VWED.api.register_route("/lo/a", "GET", lambda: 1)
    VWED.function.register("lo_f", lambda: 2)
"""

ANYIO = """
import anyio
with anyio.fail_after(5):
    await anyio.sleep(0.01)
def boot():
    VWED.api.register_route("/lo/a", "GET", lambda: 1)
    VWED.function.register("lo_f", lambda: 2)
"""

try:
    import anyio  # noqa: F401

    HAS_ANYIO = True
except ImportError:
    HAS_ANYIO = False


@pytest.mark.parametrize(
    "text,policy",
    [
        (GOOD, None),
        (ASYNC, None),
        ("x = 1\n", None),  # BOOT_MISSING
        ("x = {}['missing']\ndef boot(): pass\n", None),  # load: a KeyError
        ("def boot():\n    raise RuntimeError('no PLC')\n", None),  # boot
        (GOOD, {"network": "nonsense"}),  # prepare: the policy cannot be understood
        ("import asyncio\nawait asyncio.sleep(0.01)\nraise ValueError('late')\n", None),
        ("import asyncio\nasync def boot():\n    await asyncio.sleep(0)\n    1 / 0\n", None),
        (TIMEOUT, None),
        pytest.param(
            ANYIO, None, marks=pytest.mark.skipif(not HAS_ANYIO, reason="anyio not installed")
        ),
    ],
    ids=[
        "registrations",
        "async",
        "boot-missing",
        "load-error",
        "boot-error",
        "bad-policy",
        "async-load-error",
        "async-boot-error",
        "asyncio-timeout",
        "anyio-fail-after",
    ],
)
def test_the_load_op_and_the_three_messages_answer_the_same(tmp_path, text, policy):
    _specs(tmp_path)

    async def both() -> tuple[Any, Any]:
        return (
            await _boot(tmp_path, "new", text, policy),
            await _boot(tmp_path, "old", text, policy),
        )

    new, old = asyncio.run(both())
    assert new == old
    if text in (GOOD, ASYNC, TIMEOUT, ANYIO) and policy is None:
        assert new == (["GET /lo/a"], ["lo_f"])
    else:
        assert new[0] in ("BOOT_MISSING", "BOOT_FAILED", "BAD_POLICY"), new
        assert new[3] is False  # no ANSI colour in a traceback


def test_an_op_the_fast_channel_does_not_carry_is_answered_not_dropped(tmp_path):
    """A gateway that sends the fast channel an op it does not carry gets an error at
    once (a ``protocol`` error, as the comm answers an unknown op), not a wait for its
    timeout."""
    _specs(tmp_path)

    async def run() -> Any:
        kernel = await ScriptKernel.start(
            make_kernelspec_manager(tmp_path), "new", launch=LaunchOptions(env=kernel_environment())
        )
        try:
            assert kernel.bridge.fast
            kernel.bridge._fast_ops = kernel.bridge._fast_ops | {"nonsense"}
            return await kernel.bridge.call({"op": "nonsense"}, timeout=10)
        finally:
            await kernel.shutdown(now=True)

    reply = asyncio.run(run())
    assert not reply.ok and reply.error["kind"] == "protocol", reply.error
    assert "on the fast channel" in reply.error["message"]


def test_a_multi_cell_script_names_the_cell_that_failed(tmp_path):
    _specs(tmp_path)

    async def run(name: str) -> str:
        kernel = await ScriptKernel.start(
            make_kernelspec_manager(tmp_path), name, launch=LaunchOptions(env=kernel_environment())
        )
        _answer_module_lookups(kernel)
        try:
            cells = ["a = 1\n", "b = a / 0\n", "def boot(): pass\n"]
            source = ScriptSource("nb.ipynb", str(tmp_path / "nb.ipynb"), cells, 0.0, 1)
            with pytest.raises(GatewayError) as caught:
                await boot_kernel(
                    kernel, "nb_1", source, replica=0, replicas=1, timeout=30, debug=True
                )
            return caught.value.message
        finally:
            await kernel.shutdown(now=True)

    async def both() -> tuple[str, str]:
        return await run("new"), await run("old")

    new, old = asyncio.run(both())
    assert new == old and "ZeroDivisionError while loading (cell 2)" in new, new


def test_a_load_computes_a_cells_transform_and_name_once_and_leaves_nothing_behind():
    """``load.py``'s ``_OncePerText`` on IPython's own shell: the same answers as without
    it, the second ask answered from the first (the same object), nothing of it left
    on the shell after the load."""
    import types

    from IPython.core.interactiveshell import InteractiveShell

    from vwed_kernel.load import _OncePerText

    shell = InteractiveShell.instance()
    text = "x = 1\n%time y = 2\n"
    plain = (shell.transform_cell(text), shell.compile.get_code_name(text, text, 0))
    with _OncePerText(types.SimpleNamespace(shell=shell)):
        first = shell.transform_cell(text)
        assert first is shell.transform_cell(text)
        assert (first, shell.compile.get_code_name(text, text, 0)) == plain
        assert shell.transform_cell("z = 3\n") == "z = 3\n"
    assert "transform_cell" not in vars(shell) and "get_code_name" not in vars(shell.compile)
    assert shell.transform_cell(text) == plain[0]
