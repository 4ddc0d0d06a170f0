"""The ``vwed`` kernelspec: write it to a folder, or install it for Jupyter."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

__all__ = ["KERNEL_NAME", "DISPLAY_NAME", "kernel_json", "write_kernelspec", "install"]

KERNEL_NAME = "vwed"
DISPLAY_NAME = "Python 3 (VWED)"


def kernel_json(python: str | None = None) -> dict[str, object]:
    """The kernel.json of the VWED kernel, running with ``python`` (default: this one)."""
    return {
        "argv": [python or sys.executable, "-m", "vwed_kernel", "-f", "{connection_file}"],
        "display_name": DISPLAY_NAME,
        "language": "python",
        # SIGINT raises KeyboardInterrupt in the code being run; a provisioner
        # that cannot send signals can still use the control channel.
        "interrupt_mode": "signal",
        "env": {"PYDEVD_DISABLE_FILE_VALIDATION": "1"},
        "metadata": {"debugger": True, "vwed": {"protocol": 1}},
    }


def write_kernelspec(folder: str | os.PathLike[str], python: str | None = None) -> Path:
    """Write ``kernel.json`` (and logos, if ipykernel ships them) into ``folder``."""
    dest = Path(folder)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        from ipykernel.kernelspec import RESOURCES

        for name in ("logo-32x32.png", "logo-64x64.png", "logo-svg.svg"):
            src = Path(RESOURCES) / name
            if src.exists():
                (dest / name).write_bytes(src.read_bytes())
    except ImportError:
        pass
    text = json.dumps(kernel_json(python), indent=2)
    tmp = dest / "kernel.json.tmp"
    tmp.write_text(text)
    os.replace(tmp, dest / "kernel.json")
    return dest


def install(user: bool = False, prefix: str | None = None, sys_prefix: bool = False) -> str:
    """Install the kernelspec for Jupyter; returns where it went."""
    from jupyter_client.kernelspec import KernelSpecManager

    if sys_prefix:
        prefix = sys.prefix
    with tempfile.TemporaryDirectory() as tmp:
        src = write_kernelspec(Path(tmp) / KERNEL_NAME)
        return KernelSpecManager().install_kernel_spec(
            str(src), KERNEL_NAME, user=user, prefix=prefix
        )
