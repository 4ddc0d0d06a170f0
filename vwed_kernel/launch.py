"""Start a VWED kernel process (what the kernelspec's argv runs)."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> None:
    from ipykernel.kernelapp import IPKernelApp

    from .kernel import VWEDKernel

    IPKernelApp.launch_instance(argv=argv, kernel_class=VWEDKernel)
