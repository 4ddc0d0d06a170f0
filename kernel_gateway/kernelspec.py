"""The gateway's own ``vwed`` kernelspec, written into its data directory at start,
so the gateway never depends on a manual ``vwed-kernel install``, with its logos
(``logo-32x32.png``, ``logo-64x64.png``: drawn here, no image library needed) that
``/kernelspecs/vwed/...`` serves so JupyterLab shows the VWED icon."""

from __future__ import annotations

import json
import logging
import os
import struct
import sys
import zlib
from pathlib import Path

from jupyter_client.kernelspec import KernelSpecManager

__all__ = [
    "write_gateway_kernelspec",
    "make_kernelspec_manager",
    "logo_png",
    "fork_server_argv",
]

KERNEL_NAME = "vwed"
FORK_PROVISIONER = "vwed-fork-provisioner"  # kernel_gateway.forkserver's entry point

log = logging.getLogger("kernel_gateway")


def _fork_provisioner_installed() -> bool:
    """Whether jupyter_client can find the fork provisioner (an install made before
    it existed has no entry point: a kernelspec naming it would start no kernel)."""
    from importlib.metadata import entry_points

    group = entry_points(group="jupyter_client.kernel_provisioners")
    return any(ep.name == FORK_PROVISIONER for ep in group)


def fork_server_argv(python: str) -> list[str]:
    """The fork server's command: the kernel's public fork entry point."""
    return [python, "-m", "vwed_kernel.forkserver"]


def write_gateway_kernelspec(data_dir: str | os.PathLike[str], fork_server: bool = False) -> Path:
    """Write ``<data_dir>/kernels/vwed/kernel.json`` running this Python's VWED kernel
    (``fork_server``: through the fork provisioner, ``kernel_gateway.forkserver``)."""
    folder = Path(data_dir).resolve() / "kernels" / KERNEL_NAME
    folder.mkdir(parents=True, exist_ok=True)
    metadata: dict[str, object] = {"debugger": True}
    if fork_server and _fork_provisioner_installed():
        metadata["kernel_provisioner"] = {"provisioner_name": FORK_PROVISIONER}
    elif fork_server:
        log.warning(
            "the fork server is on but its provisioner is not installed "
            "(reinstall the package: pip install -e .): plain kernel launches"
        )
    spec = {
        # The kernel's public entry point (``python -m vwed_kernel``), not its internals.
        "argv": [sys.executable, "-m", "vwed_kernel", "-f", "{connection_file}"],
        "display_name": "Python 3 (VWED)",
        "language": "python",
        "interrupt_mode": "signal",
        "env": {"PYDEVD_DISABLE_FILE_VALIDATION": "1"},
        "metadata": metadata,
    }
    _write(folder / "kernel.json", json.dumps(spec, indent=2).encode())
    for size in (32, 64):
        _write(folder / f"logo-{size}x{size}.png", logo_png(size))
    return folder


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


BLUE = (0x1F, 0x5F, 0xBF)
WHITE = (0xFF, 0xFF, 0xFF)


def _in_v(x: float, y: float) -> bool:
    """Whether (x, y), in a unit square (y down), is on the white "V"."""
    if not 0.2 <= y <= 0.8:
        return False
    t = (y - 0.2) / 0.6  # 0 at the top, 1 at the point
    half = 0.07  # half the stroke's width
    left = 0.18 + 0.32 * t  # the left stroke goes from x=0.18 to the middle
    right = 0.82 - 0.32 * t
    return abs(x - left) <= half or abs(x - right) <= half


def logo_png(size: int) -> bytes:
    """The VWED logo: a white "V" on a blue rounded square, as an RGBA PNG."""
    rows = []
    radius = size * 0.18
    for j in range(size):
        row = bytearray([0])  # filter: none
        for i in range(size):
            x, y = (i + 0.5) / size, (j + 0.5) / size
            # rounded corners: transparent outside the corner circles
            cx = min(max(i + 0.5, radius), size - radius)
            cy = min(max(j + 0.5, radius), size - radius)
            inside = (i + 0.5 - cx) ** 2 + (j + 0.5 - cy) ** 2 <= radius**2
            if not inside:
                row += bytes((0, 0, 0, 0))
            else:
                row += bytes((*(WHITE if _in_v(x, y) else BLUE), 255))
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
        + chunk(b"IEND", b"")
    )


def make_kernelspec_manager(data_dir: str | os.PathLike[str]) -> KernelSpecManager:
    """A spec manager that finds the gateway's own specs first, then Jupyter's."""
    ours = str(Path(data_dir).resolve() / "kernels")
    ksm = KernelSpecManager()
    ksm.kernel_dirs = [ours, *[d for d in ksm.kernel_dirs if d != ours]]
    return ksm
