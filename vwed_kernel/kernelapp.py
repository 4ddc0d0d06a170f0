"""``VWEDKernelApp``: ipykernel's ``IPKernelApp`` that reads the kernelspec's usual
command line itself (``quick_config``) and ends without waiting on itself (``start``)."""

from __future__ import annotations

import sys

from ipykernel.kernelapp import IPKernelApp
from traitlets.config import Config
from traitlets.config.loader import DeferredConfigString

__all__ = ["VWEDKernelApp", "quick_config"]

# The settings the gateway adds to a script kernel's command line
# (kernel_gateway/launch.py), as traitlets' parser reads them.
_QUICK_SETTINGS = {
    "--HistoryManager.enabled=False": ("HistoryManager", "enabled", "False"),
    "--HistoryManager.enabled=True": ("HistoryManager", "enabled", "True"),
}


def quick_config(argv: list[str], app: str = "IPKernelApp") -> Config | None:
    """The ``Config`` of the command line a kernelspec gives a VWED kernel
    (``-f CONNECTION_FILE``, then ``--HistoryManager.enabled=False`` for the
    gateway's script kernels), the same as ``IPKernelApp.parse_command_line``
    makes of it for an application of class ``app``; None for any other command
    line (traitlets parses that one).

    Why: to read those arguments traitlets builds an ``argparse`` parser with an
    option for every configurable trait of every class of the application. In a
    kernel forked from the fork server that cost 2.4 MiB of private memory (the
    copy-on-write of the pages of every trait object it reads), and some
    milliseconds of every kernel's start."""
    if len(argv) < 2 or argv[0] != "-f" or argv[1].startswith("-"):
        return None
    config = Config()
    config[app]["connection_file"] = argv[1]  # the alias -f, as traitlets maps it
    for arg in argv[2:]:
        setting = _QUICK_SETTINGS.get(arg)
        if setting is None:
            return None
        section, name, value = setting
        config[section][name] = DeferredConfigString(value)
    return config


# how long close() waits for the control thread to end while IOPub still runs
CONTROL_JOIN = 5.0


class VWEDKernelApp(IPKernelApp):  # type: ignore[misc]
    """``IPKernelApp`` with ``quick_config`` for the usual command line."""

    def start(self) -> None:
        """As ipykernel's; once the main loop ended (a ``shutdown_request``), the
        control thread is ended too, while the IOPub thread still runs.

        The request is handled on the control thread, which tells the main loop to stop
        and then flushes stdout: a flush waits (up to 10 s) for the IOPub thread. At
        exit, ipykernel stops IOPub first (its ``atexit`` handler) and then joins the
        control thread (``close``, the next handler): about one shutdown in three here
        hung in that flush until the gateway's SIGTERM 1.5 s later (a script's stop
        took 1.6 s instead of 0.1)."""
        super().start()
        control = self.control_thread
        if control is not None and control.is_alive():
            control.stop()
            control.join(CONTROL_JOIN)

    def parse_command_line(self, argv: list[str] | None = None) -> None:
        args = sys.argv[1:] if argv is None else list(argv)
        config = quick_config(args, type(self).__name__)
        if config is None:
            super().parse_command_line(argv)
            return
        self.argv = args
        self.cli_config = config
        self.update_config(config)
        self.extra_args: list[str] = []
