"""The gateway's own ``vwed`` kernelspec, written into its data directory at start,
so the gateway never depends on a manual ``vwed-kernel install``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from jupyter_client.kernelspec import KernelSpecManager

__all__ = ["write_gateway_kernelspec", "make_kernelspec_manager"]

KERNEL_NAME = "vwed"


def write_gateway_kernelspec(data_dir: str | os.PathLike[str]) -> Path:
    """Write ``<data_dir>/kernels/vwed/kernel.json`` running this Python's VWED kernel."""
    folder = Path(data_dir).resolve() / "kernels" / KERNEL_NAME
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        # The kernel's public entry point (``python -m vwed_kernel``), not its internals.
        "argv": [sys.executable, "-m", "vwed_kernel", "-f", "{connection_file}"],
        "display_name": "Python 3 (VWED)",
        "language": "python",
        "interrupt_mode": "signal",
        "env": {"PYDEVD_DISABLE_FILE_VALIDATION": "1"},
        "metadata": {"debugger": True},
    }
    tmp = folder / "kernel.json.tmp"
    tmp.write_text(json.dumps(spec, indent=2))
    os.replace(tmp, folder / "kernel.json")
    return folder


def make_kernelspec_manager(data_dir: str | os.PathLike[str]) -> KernelSpecManager:
    """A spec manager that finds the gateway's own specs first, then Jupyter's."""
    ours = str(Path(data_dir).resolve() / "kernels")
    ksm = KernelSpecManager()
    ksm.kernel_dirs = [ours, *[d for d in ksm.kernel_dirs if d != ours]]
    return ksm
