"""The VWED kernel class: IPython with ``VWED`` in the user namespace and the
``vwed`` comm target served for the gateway."""

from __future__ import annotations

import atexit
import sys
from typing import Any

from ipykernel.ipkernel import IPythonKernel

from . import COMM_TARGET, __version__, forkmemory, importer
from .bridge import GatewayLink
from .debugsource import ScriptSources
from .registrations import Registrations
from .vwed import VWED

__all__ = ["VWEDKernel", "OUTPUT_FLUSH_INTERVAL"]

OUTPUT_FLUSH_INTERVAL = 0.005


class VWEDKernel(IPythonKernel):
    """An ``IPythonKernel`` with ``VWED`` preloaded.

    Works the same in JupyterLab (no gateway: registrations stay in the kernel)
    and in the gateway (which opens the ``vwed`` comm and drives the script).
    """

    implementation = "vwed"
    implementation_version = __version__

    def __init__(self, **kwargs: Any) -> None:
        # in a forked kernel, ipykernel's walk of every module object is avoided
        with forkmemory.kernel_modules_view():
            super().__init__(**kwargs)
        shell = self.shell
        assert shell is not None
        # one Registrations: VWED's modules fill it, the comm end looks calls up in it
        registrations = Registrations()
        # the script's files as the debugger names them (debugsource.py)
        self.vwed_sources = ScriptSources(shell)
        self.vwed_sources.install()
        self.vwed_link = GatewayLink(
            lambda: shell.user_ns,
            registrations,
            lambda: self.vwed,
            lambda: self,
            sources=self.vwed_sources,
        )
        self.vwed = VWED(self.vwed_link, registrations=registrations)
        # module plugins (vwed_kernel/plugins.py): VWED.<name>; a failing one is an ERROR
        # record (sent to the script's log at prepare), never a kernel that does not start
        self.vwed._plugin_loader.discover()
        self._plugins_stopped = False
        atexit.register(self._stop_plugins)  # a kernel that ends without a shutdown_request
        # push(interactive=False) hides VWED from %who and keeps it across %reset.
        shell.push({"VWED": self.vwed}, interactive=False)
        self.comm_manager.register_target(COMM_TARGET, self.vwed_link.on_comm_open)
        # the scripts root's modules, asked of the gateway (docs/vwed.md, "Shared modules")
        importer.install(self.vwed_link)
        # ipykernel sends buffered stdout/stderr every 0.2 s; gateway calls skip the
        # per-message flush, so flush sooner: a print reaches the logs within a few
        # ms, and a flood still makes at most 1/interval messages per second.
        for stream in (sys.stdout, sys.stderr):
            if hasattr(stream, "flush_interval"):
                stream.flush_interval = OUTPUT_FLUSH_INTERVAL
        _warm_up(shell)

    def do_shutdown(self, restart: bool) -> Any:
        # the script stops (the gateway shuts its kernel down) or JupyterLab ends it:
        # the module plugins stop (on the control thread; the shell's loop is ending)
        self._stop_plugins()
        return super().do_shutdown(restart)

    def _stop_plugins(self) -> None:
        if not self._plugins_stopped:
            self._plugins_stopped = True
            self.vwed._plugin_loader.stop_all()

    async def do_debug_request(self, msg: dict[str, Any]) -> Any:
        reply = await super().do_debug_request(msg)
        return self.vwed_sources.on_debug_reply(msg, reply)

    @property
    def banner(self) -> str:  # type: ignore[override]
        return (
            super().banner + "\nVWED script kernel: the `VWED` object is preloaded (try `VWED?`).\n"
        )


def _warm_up(shell: Any) -> None:
    """What the first cell would pay once, paid while the kernel waits in the pool: the
    tokenizer's regular expressions (compiled on first use), IPython's transformers,
    the temporary folder the debugger's cell names live in (``gettempdir`` probes it),
    the compiler. About 4 ms of a warm start's 5 ms in the kernel, measured. Nothing of
    the user's namespace, history or the debugger's table is touched."""
    code = "def _vwed_warm_up():\n    return 1\n"
    try:
        transformed = shell.transform_cell(code)
        shell.should_run_async(code, transformed_cell=transformed, preprocessing_exc_tuple=None)
        name = shell.compile.get_code_name(code, transformed, 0)
        compile(transformed, name, "exec", dont_inherit=True)
    except Exception:  # only a cost moved: a kernel that cannot warm up still serves
        pass
