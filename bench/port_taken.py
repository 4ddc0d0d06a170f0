"""Benchmark: starting a plain (no fork server) VWED kernel whose port another process took
between jupyter_client picking it and the kernel binding it, against a start with its ports
free, interleaved. The kernelspec's launcher holds the kernel's iopub port on the first launch
of a start (the socket is inherited by the kernel, as another process's would be in the way);
``ScriptKernel.start`` with its default 60 s start timeout.

    python bench/port_taken.py --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from kernel_gateway.kernelenv import kernel_environment
from kernel_gateway.kernels import ScriptKernel
from kernel_gateway.kernelspec import make_kernelspec_manager
from kernel_gateway.launch import LaunchOptions

sys.path.insert(0, str(Path(__file__).parent))
from calls import table  # noqa: E402

HOLDER = """
import json, os, socket, sys
count, connection_file, case = sys.argv[1], sys.argv[2], sys.argv[3]
with open(count, "a") as f:
    f.write("launch\\n")
if case == "taken" and len(open(count).read().split()) == 1:
    info = json.load(open(connection_file))
    held = socket.socket()
    held.bind((info["ip"], info["iopub_port"]))
    held.listen()
    held.set_inheritable(True)
os.execv(sys.executable, [sys.executable, "-m", "vwed_kernel", "-f", connection_file])
"""


async def start(case: str) -> tuple[float, int, str]:
    """Seconds to a ready kernel, launches, and the error ('' when it started)."""
    tmp = Path(tempfile.mkdtemp(prefix="vwed-bench-port-"))
    folder = tmp / "kernels" / "k"
    folder.mkdir(parents=True)
    argv = [sys.executable, "-c", HOLDER, str(tmp / "count"), "{connection_file}", case]
    spec = {"argv": argv, "display_name": "k", "language": "python"}
    (folder / "kernel.json").write_text(json.dumps(spec))
    launch = LaunchOptions(env=kernel_environment())
    t0 = time.monotonic()
    try:
        kernel = await ScriptKernel.start(make_kernelspec_manager(tmp), "k", launch=launch)
    except Exception as exc:
        error = str(exc)[:60]
    else:
        error = ""
        await kernel.shutdown(now=True)
    took = time.monotonic() - t0
    return took, len((tmp / "count").read_text().split()), error


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(
        f"bench/port_taken.py: python {sys.version.split()[0]}, {os.cpu_count()} cpus, "
        f"{time.strftime('%Y-%m-%d %H:%M')}, load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    results: dict[str, list[tuple[float, int, str]]] = {"ports free": [], "iopub port taken": []}
    for _ in range(args.rounds):
        results["ports free"].append(asyncio.run(start("free")))
        results["iopub port taken"].append(asyncio.run(start("taken")))
    rows = []
    for name, runs in results.items():
        ok = [t for t, _, e in runs if not e]
        failed = [(t, e) for t, _, e in runs if e]
        rows.append(
            [
                name,
                len(runs),
                f"{statistics.median(ok):.2f}" if ok else "-",
                f"{max(ok):.2f}" if ok else "-",
                "/".join(str(n) for _, n, _ in runs),
                f"{len(failed)}"
                + (f" ({failed[0][1]}, after {failed[0][0]:.1f} s)" if failed else ""),
            ]
        )
    table(
        f"start of a plain kernel, {args.rounds} rounds interleaved (s)",
        ["ports", "n", "p50 ready", "max ready", "launches", "failed"],
        rows,
    )
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
