"""Start a VWED kernel process (what the kernelspec's argv runs).

A kernel that cannot bind one of its ports (jupyter_client picked them, and another
process took one before the kernel bound it: "Address already in use") exits at once
with ``BIND_FAILED`` (75, sysexits' EX_TEMPFAIL), and so does one whose setup failed
otherwise (1): ipykernel's exit handler would close the app and wait in the ZeroMQ
context's ``term()`` for the sockets made before the failure, which it does not close
(a plain launch hung there until the gateway's start timeout, about 60 s). The gateway
starts a kernel that exited before its first reply again, with new ports
(``kernel_gateway/kernels.py``).
"""

from __future__ import annotations

import errno
import os
import sys
import traceback

__all__ = ["BIND_FAILED", "main"]

BIND_FAILED = 75  # a port of the kernel was taken: start it again on new ones


def main(argv: list[str] | None = None) -> None:
    # the /proc files of step usage, opened before Landlock would refuse one (usage.py)
    from . import usage  # noqa: F401

    # Landlock holds only for threads started after it: apply the script's write
    # policy (when the gateway sent one) before ipykernel starts any (landlock.py).
    from .landlock import apply_from_environment

    problem = apply_from_environment()
    if problem:
        print(
            f"vwed-kernel: the write policy is enforced by the audit hook only: {problem}",
            file=sys.stderr,
        )

    from .kernel import VWEDKernel
    from .kernelapp import VWEDKernelApp

    # VWEDKernelApp.launch_instance(), with its setup's failure ending the process at once
    app = VWEDKernelApp.instance(kernel_class=VWEDKernel)
    try:
        app.initialize(argv)
    except BaseException as exc:
        _exit_now(exc)
    app.start()


def _exit_now(exc: BaseException) -> None:
    """Say why, and end the process without its exit handlers (see the docstring)."""
    if isinstance(exc, SystemExit):  # --help, a bad option: traitlets' own exit
        code = exc.code if isinstance(exc.code, int) else 1
    elif getattr(exc, "errno", None) == errno.EADDRINUSE:
        code = BIND_FAILED
        print(f"vwed-kernel: a port is taken: {exc}; exiting with {code}", file=sys.stderr)
    else:
        code = 1
        traceback.print_exception(type(exc), exc, exc.__traceback__)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
