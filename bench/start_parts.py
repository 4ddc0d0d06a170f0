"""Where a warm start's time goes inside the gateway (issue 19, "start of a small script
p50 <= 10 ms with the pool warm").

Starts a gateway (fork server, warm pool of 2) whose start path is wrapped with timers
(``ScriptEngine.start`` and the parts it awaits: reading the revision, the compile check,
the kernel boot, the git processes, the database writes), then starts a new small file,
stops it, starts it again (committed by then), ``--starts`` times, and prints the p50 of
each part for both cases beside the HTTP round trip. Parts that overlap (the run's record
is written while the kernel boots) do not add up to the total.

    python bench/start_parts.py                  # this checkout
    python bench/start_parts.py --python /work/main/.venv/bin/python   # another one

The timers wrap functions by name; one a checkout does not have is left out.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# (module, class or "", attribute, label)
PARTS = [
    ("kernel_gateway.engine.lifecycle", "", "load_source", "read the revision"),
    ("kernel_gateway.engine.lifecycle", "", "compiles", "compile check"),
    ("kernel_gateway.engine.booting", "Booting", "_boot_all", "boot (all replicas)"),
    ("kernel_gateway.pool", "KernelPool", "acquire", "pool: a kernel handed out"),
    ("kernel_gateway.engine.booting", "", "boot_kernel", "boot_kernel (one replica)"),
    ("kernel_gateway.bridge", "KernelBridge", "call", "kernel round trips (load)"),
    ("kernel_gateway.kernels", "ScriptKernel", "execute", "kernel round trips (execute)"),
    ("kernel_gateway.repo.git", "Git", "run", "git processes"),
    ("kernel_gateway.engine.persistence", "RunHistory", "started", "db: run recorded"),
    ("kernel_gateway.engine.persistence", "RunHistory", "remember", "db: desired"),
    ("kernel_gateway.engine.persistence", "RunHistory", "serving", "db: running + desired"),
]


def _gateway(out: str, argv: list[str]) -> int:
    """Run the gateway with the timers (in the gateway's own interpreter)."""
    import importlib

    sink = open(out, "a", buffering=1)  # noqa: SIM115 - the process's lifetime
    current: dict[str, float] = {}
    counts: dict[str, int] = {}

    def wrap(owner: Any, attr: str, label: str) -> None:
        fn = getattr(owner, attr)

        @functools.wraps(fn)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                current[label] = current.get(label, 0.0) + time.perf_counter() - t0
                counts[label] = counts.get(label, 0) + 1

        setattr(owner, attr, timed)

    for module, cls, attr, label in PARTS:
        owner: Any = importlib.import_module(module)
        if cls:
            owner = getattr(owner, cls, None)
        if owner is not None and hasattr(owner, attr):
            wrap(owner, attr, label)
    from kernel_gateway.engine.lifecycle import ScriptEngine

    start = ScriptEngine.start

    async def timed_start(self: Any, *args: Any, **kwargs: Any) -> Any:
        current.clear()
        counts.clear()
        t0 = time.perf_counter()
        try:
            return await start(self, *args, **kwargs)
        finally:
            current["start (inside the gateway)"] = time.perf_counter() - t0
            row = {k: round(v * 1000, 3) for k, v in current.items()}
            row["git processes (count)"] = counts.get("git processes", 0)
            sink.write(json.dumps(row) + "\n")

    ScriptEngine.start = timed_start  # type: ignore[method-assign]
    from kernel_gateway.app import main

    return main(argv)


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--gateway":
        return _gateway(sys.argv[2], sys.argv[3:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=12)
    parser.add_argument("--python", default=sys.executable, help="the gateway's interpreter")
    parser.add_argument("--no-fork-server", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import calls as bc  # bench/calls.py: its HTTP helpers and script

    work = Path(tempfile.mkdtemp(prefix="vwed-start-parts-"))
    marks = work / "parts.jsonl"
    scripts = work / "scripts"
    scripts.mkdir()
    port = bc.free_port()
    launch = "--no-fork-server" if args.no_fork_server else "--fork-server"
    proc = subprocess.Popen(
        [args.python, str(Path(__file__).resolve()), "--gateway", str(marks)]
        + ["--scripts-dir", str(scripts), "--data-dir", str(work / "data")]
        + ["--port", str(port), "--pool-size", "2", "--no-auth", launch],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    load_before = os.getloadavg()
    http: dict[str, list[float]] = {"new file": [], "committed file": []}
    try:
        bc.wait_http(port, "/script-engine/health")

        def ready() -> bool:
            health = bc.http(port, "GET", "/script-engine/health")[1]
            return int(health["pool"]["ready"]) >= 2

        for i in range(args.starts):
            name = f"small{i}"
            for case in ("new file", "committed file"):
                bc.until(ready, 120, "a warm pool")
                if case == "new file":
                    (scripts / f"{name}.py").write_text(bc.SCRIPT.replace("{name}", name))
                t0 = time.perf_counter()
                status, body = bc.http(
                    port, "POST", "/script-engine/start", {"script_path": f"{name}.py"}
                )
                http[case].append((time.perf_counter() - t0) * 1000)
                assert status == 200, body
                bc.http(port, "POST", "/script-engine/stop", {"script_path": f"{name}.py"})
    finally:
        proc.terminate()
        proc.wait(60)
    rows = [json.loads(line) for line in marks.read_text().splitlines()]
    load_after = os.getloadavg()
    print(
        f"bench/start_parts.py: {args.python}, {launch}, {args.starts} starts of each, "
        f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    print("\n| part | new file p50 ms | committed file p50 ms |\n|---|---|---|")
    labels = [label for _, _, _, label in PARTS if any(label in r for r in rows)]
    by_case = {"new file": rows[0::2], "committed file": rows[1::2]}
    for label in ["start (inside the gateway)", *labels, "git processes (count)"]:
        cells = [
            f"{statistics.median(r.get(label, 0.0) for r in by_case[c]):.2f}"
            for c in ("new file", "committed file")
        ]
        print(f"| {label} | {cells[0]} | {cells[1]} |")
    print(
        f"| HTTP round trip (the client's) | {statistics.median(http['new file']):.2f} "
        f"| {statistics.median(http['committed file']):.2f} |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
