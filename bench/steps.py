"""Benchmark: a trivial task-flow step through the HTTP API, against the
subprocess-per-step runner measured in the same run.

The old runner (as the platform had it): per step, write the script to a temp
``.py`` file and the variables to a temp JSON file, run ``python file.py
--variables-file vars.json``, parse the last stdout line as JSON.

    python bench/steps.py [--steps 1000] [--concurrency 1 4] [--subprocess-steps 40]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from calls import Gateway, http, load, pct, table  # noqa: E402

STEP = """
def add(a, b):
    return {"sum": a + b}
"""

OLD_STEP = (
    STEP
    + """
import json, sys
with open(sys.argv[sys.argv.index("--variables-file") + 1]) as f:
    variables = json.load(f)
print(json.dumps(add(**variables)))
"""
)


def subprocess_steps(count: int, conc: int, folder: Path) -> tuple[list[float], float]:
    def one(_: int) -> float:
        t0 = time.perf_counter()
        with tempfile.NamedTemporaryFile("w", suffix=".py", dir=folder, delete=False) as code:
            code.write(OLD_STEP)
        with tempfile.NamedTemporaryFile("w", suffix=".json", dir=folder, delete=False) as var:
            json.dump({"a": 1, "b": 2}, var)
        out = subprocess.run(
            [sys.executable, code.name, "--variables-file", var.name],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        assert json.loads(out.stdout.strip().splitlines()[-1]) == {"sum": 3}
        os.unlink(code.name)
        os.unlink(var.name)
        return time.perf_counter() - t0

    t0 = time.perf_counter()
    with ThreadPoolExecutor(conc) as pool:
        lat = list(pool.map(one, range(count)))
    return lat, time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--subprocess-steps", type=int, default=40)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vwed-bench-steps-"))
    gw = Gateway(work, pool=0)
    print(
        f"bench/steps.py: python {sys.version.split()[0]}, {os.cpu_count()} cpus, "
        f"{time.strftime('%Y-%m-%d %H:%M')}"
    )
    rows = []
    try:
        (gw.scripts / "step.py").write_text(STEP)
        deadline = time.monotonic() + 120
        while http(gw.port, "GET", "/script-engine/health")[1]["workers"]["idle"] < 2:
            if time.monotonic() > deadline:
                raise TimeoutError("workers did not start")
            time.sleep(0.1)
        plain = json.dumps(
            {"script_path": "step.py", "function_name": "add", "args": {"a": 1, "b": 2}}
        ).encode()
        with_task = json.dumps(
            {
                "script_path": "step.py",
                "function_name": "add",
                "args": {"a": 1, "b": 2},
                "task_id": "bench",
            }
        ).encode()
        for conc in args.concurrency:
            lat, took = load(gw.port, "POST", "/script-engine/execute", plain, args.steps, conc)
            rows.append(
                [
                    "gateway step (SCRIPT)",
                    conc,
                    len(lat),
                    pct(lat, 50),
                    pct(lat, 99),
                    len(lat) / took,
                ]
            )
            lat, took = load(gw.port, "POST", "/script-engine/execute", with_task, args.steps, conc)
            rows.append(
                [
                    "gateway step (SCRIPT + task variables stored)",
                    conc,
                    len(lat),
                    pct(lat, 50),
                    pct(lat, 99),
                    len(lat) / took,
                ]
            )
            lat, took = subprocess_steps(args.subprocess_steps, conc, work)
            rows.append(
                [
                    "subprocess per step (old runner)",
                    conc,
                    len(lat),
                    pct(lat, 50),
                    pct(lat, 99),
                    len(lat) / took,
                ]
            )
    finally:
        gw.close()
    by = {(r[0].startswith("gateway"), r[1]): r for r in rows}
    out = []
    for r in rows:
        base = by[(False, r[1])]
        out.append(
            [
                r[0],
                r[1],
                r[2],
                f"{r[3]:.2f}",
                f"{r[4]:.2f}",
                f"{r[5]:.0f}",
                f"{base[3] / r[3]:.0f}x" if r[0].startswith("gateway") else "1x",
            ]
        )
    table(
        "a trivial step: p50/p99 per step, steps/s",
        ["method", "conc", "n", "p50 ms", "p99 ms", "steps/s", "faster than subprocess (p50)"],
        out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
