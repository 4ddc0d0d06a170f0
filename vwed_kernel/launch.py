"""Start a VWED kernel process (what the kernelspec's argv runs)."""

from __future__ import annotations

import sys


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

    VWEDKernelApp.launch_instance(argv=argv, kernel_class=VWEDKernel)
