"""Benchmark of the scripts' own packages (issue 16; docs/performance.md keeps its tables).

In one run, on this machine:

1. start: ``POST /script-engine/start`` of a script that declares packages, cold (resolved
   and installed into an empty deps dir, a fresh uv cache) and warm (its environment
   installed already), against the same script without a declaration; ``--rounds``
   rounds, each on a fresh gateway, the three kinds interleaved (warm and plain in
   alternating order); the kernels come from the warm pool in every case;
2. memory: RSS, PSS and private memory (``/proc/PID/smaps_rollup``) of an idle script
   kernel with the layered environment (the engine's kernel from the warm pool with
   ``site.addsitedir``, what the gateway does) against a plain one, both after the
   script ran (the layered one imported its package);
3. the alternative layering: a virtual environment per lock whose kernel sees the
   engine's packages through a ``.pth`` file (``site.addsitedir`` of the engine's
   site-packages), the lock's packages installed into it with uv; its kernel started
   fresh (a venv's kernel cannot come from the engine's warm pool); building it, and the
   start and memory of its kernel, against a fresh kernel of the engine's interpreter.

The packages are wheels the benchmark builds (tests/wheels.py): ``vwedbulk``, 200 modules
of about 2 kB, all imported by its ``__init__`` (a small library), and ``vwedtiny``. No
index is used (``--deps-find-links``), so the numbers are the engine's, not the network's.

    python bench/deps.py                 # 5 rounds
    python bench/deps.py --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from calls import free_port, http, pct, table, wait_http  # noqa: E402
from wheels import build_wheel  # noqa: E402

REQUIREMENTS = ["vwedbulk==1.0", "vwedtiny==2.0"]
# the scripts of the start section: (declared packages, what the script imports)
KINDS: dict[str, tuple[list[str], str]] = {
    "plain": ([], "json"),
    "tiny": (["vwedtiny==2.0"], "vwedtiny"),
    "bulk": (REQUIREMENTS, "vwedbulk, vwedtiny"),
}

SCRIPT = """\
{header}import {imports}

def ping():
    return {{"ok": True}}

def boot():
    VWED.function.register("{name}_ping", ping)
"""

HEADER = "# /// script\n# dependencies = {deps}\n# ///\n"


def build_packages(folder: Path) -> Path:
    """vwedtiny 2.0 and vwedbulk 1.0 (200 modules imported by its ``__init__``)."""
    build_wheel(folder, "vwedtiny", "2.0")
    path = build_wheel(folder, "vwedbulk", "1.0")
    # rewrite the bulk wheel with its modules (build_wheel makes one ``__init__``)
    import base64
    import hashlib
    import zipfile

    body = "\n".join(
        f"def f{i}(x):\n    return [x * {i}, str(x) * 2, {{'k{i}': x}}]" for i in range(60)
    )
    files = {f"vwedbulk/m{i:03d}.py": f"# module {i}\n{body}\n".encode() for i in range(200)}
    files["vwedbulk/__init__.py"] = (
        "VERSION = '1.0'\n" + "".join(f"from . import m{i:03d}\n" for i in range(200))
    ).encode()
    with zipfile.ZipFile(path) as zf:
        meta = {n: zf.read(n) for n in zf.namelist() if ".dist-info/" in n and "RECORD" not in n}
    files.update(meta)
    info = next(n.split("/")[0] for n in meta)

    def record(p: str, d: bytes) -> str:
        digest = base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b"=").decode()
        return f"{p},sha256={digest},{len(d)}"

    lines = [record(p, d) for p, d in files.items()] + [f"{info}/RECORD,,"]
    files[f"{info}/RECORD"] = ("\n".join(lines) + "\n").encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for p, d in files.items():
            zf.writestr(p, d)
    return folder


def memory(pid: int) -> dict[str, float]:
    """MiB of RSS, PSS and private (clean + dirty) from ``/proc/PID/smaps_rollup``."""
    values: dict[str, float] = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[2] == "kB":
                values[parts[0].rstrip(":")] = int(parts[1]) / 1024
    return {
        "rss": values.get("Rss", float("nan")),
        "pss": values.get("Pss", float("nan")),
        "private": values.get("Private_Clean", 0.0) + values.get("Private_Dirty", 0.0),
    }


def stats(values: list[float]) -> list[str]:
    return [
        str(len(values)),
        f"{pct(values, 50):.0f}",
        f"{pct(values, 90):.0f}",
        f"{min(values) * 1000:.0f}",
        f"{max(values) * 1000:.0f}",
    ]


class DepsGateway:
    """A vwed-gateway process with an empty deps dir, wheels from ``--deps-find-links``."""

    def __init__(self, work: Path, wheels: Path) -> None:
        self.port = free_port()
        self.scripts = work / "scripts"
        self.scripts.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "UV_CACHE_DIR": str(work / "uv-cache")}  # a cold cache too
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kernel_gateway",
                "--scripts-dir",
                str(self.scripts),
                "--data-dir",
                str(work / "data"),
                "--deps-find-links",
                str(wheels),
                "--port",
                str(self.port),
                "--pool-size",
                "2",
                "--workers",
                "1",
                "--no-auth",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        wait_http(self.port, "/script-engine/health")

    def pool_ready(self) -> int:
        return int(http(self.port, "GET", "/script-engine/health")[1]["pool"]["ready"])

    def wait_pool(self, n: int = 2) -> None:
        deadline = time.monotonic() + 120
        while self.pool_ready() < n:
            if time.monotonic() > deadline:
                raise TimeoutError("warm pool")
            time.sleep(0.05)

    def write(self, name: str, kind: str) -> str:
        deps, imports = KINDS[kind]
        header = HEADER.format(deps=json.dumps(deps)) if deps else ""
        text = SCRIPT.format(header=header, imports=imports, name=name)
        (self.scripts / f"{name}.py").write_text(textwrap.dedent(text))
        return f"{name}.py"

    def start(self, path: str) -> tuple[float, dict[str, Any]]:
        self.wait_pool()
        t0 = time.perf_counter()
        status, body = http(self.port, "POST", "/script-engine/start", {"script_path": path})
        took = time.perf_counter() - t0
        if status != 200:
            raise RuntimeError(f"start of {path}: {status} {body}")
        return took, body

    def stop(self, path: str) -> None:
        http(self.port, "POST", "/script-engine/stop", {"script_path": path})

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# -- 1 and 2: through the gateway ---------------------------------------------------------------
def section_gateway(args: argparse.Namespace, work: Path, wheels: Path) -> None:
    starts: dict[str, list[float]] = {"cold bulk": [], "cold tiny": [], **{k: [] for k in KINDS}}
    mem: dict[str, list[dict[str, float]]] = {k: [] for k in KINDS}
    for r in range(args.rounds):
        gw = DepsGateway(work / f"round{r}", wheels)
        try:
            gw.wait_pool()
            for kind in ("bulk", "tiny"):  # the first start of each: resolve and install
                path = gw.write(f"cold{kind}{r}", kind)
                starts[f"cold {kind}"].append(gw.start(path)[0])
                gw.stop(path)
            kinds = list(KINDS)
            for i in range(args.starts):
                random.Random(r * 1000 + i).shuffle(kinds)  # interleaved, order varied
                for kind in kinds:
                    path = gw.write(f"{kind}{r}_{i}", kind)
                    took, body = gw.start(path)
                    starts[kind].append(took)
                    if i == args.starts - 1:  # an idle kernel of each kind, after its script ran
                        time.sleep(1.0)
                        mem[kind].append(memory(int(body["kernels"][0]["pid"])))
                    gw.stop(path)
        finally:
            gw.close()
    ratio = statistics.median(starts["tiny"]) / statistics.median(starts["plain"])
    bulk = statistics.median(starts["bulk"]) / statistics.median(starts["plain"])
    table(
        f"start of a script (warm pool), {args.rounds} rounds, interleaved; warm with "
        f"packages / without: {ratio:.2f}x (goal <= 1.2x); importing vwedbulk too: {bulk:.2f}x",
        ["start", "n", "p50 ms", "p90 ms", "min ms", "max ms"],
        [
            ["without packages (imports json)", *stats(starts["plain"])],
            ["with packages, warm: vwedtiny (one module)", *stats(starts["tiny"])],
            ["with packages, warm: vwedbulk (200 modules) + vwedtiny", *stats(starts["bulk"])],
            [
                "cold: vwedbulk + vwedtiny (resolve + install, empty deps dir)",
                *stats(starts["cold bulk"]),
            ],
            ["cold: vwedtiny (resolve + install; uv's cache has it)", *stats(starts["cold tiny"])],
        ],
    )

    def mem_row(name: str, rows: list[dict[str, float]]) -> list[str]:
        return [
            name,
            str(len(rows)),
            f"{statistics.median(m['rss'] for m in rows):.1f}",
            f"{statistics.median(m['pss'] for m in rows):.1f}",
            f"{statistics.median(m['private'] for m in rows):.1f}",
        ]

    table(
        "memory of an idle script kernel from the warm pool (MiB, medians; smaps_rollup)",
        ["kernel", "n", "RSS", "PSS", "private"],
        [
            mem_row("plain (engine's packages only)", mem["plain"]),
            mem_row("layered (site.addsitedir), vwedtiny imported", mem["tiny"]),
            mem_row("layered (site.addsitedir), vwedbulk imported", mem["bulk"]),
        ],
    )


# -- 3: the alternative, a venv per environment --------------------------------------------------
def build_venv(work: Path, wheels: Path) -> tuple[Path, float]:
    """A venv seeing the engine's packages through a .pth, the packages installed in it."""
    from uv import find_uv_bin

    venv = work / "venv"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    engine = sysconfig.get_paths()["purelib"]
    # an "import" line of a .pth runs: addsitedir also processes the engine's own .pth files
    # (its editable installs); appended AFTER the venv's own site-packages
    Path(purelib, "_vwed_engine.pth").write_text(f"import site; site.addsitedir({engine!r})\n")
    env = {**os.environ, "UV_CACHE_DIR": str(work / "uv-cache")}
    subprocess.run(
        [
            find_uv_bin(),
            "pip",
            "install",
            "--quiet",
            "--compile-bytecode",  # as the gateway installs (kernels may not write .pyc)
            "--python",
            str(python),
            "--no-index",
            "--find-links",
            str(wheels),
            *REQUIREMENTS,
        ],
        check=True,
        env=env,
    )
    return python, time.perf_counter() - t0


async def fresh_kernel(python: str, work: Path, code: str) -> tuple[float, dict[str, float]]:
    """Start a VWED kernel of ``python`` fresh, run ``code``; seconds to that, its memory."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    specs = work / "kernels" / "bench"
    specs.mkdir(parents=True, exist_ok=True)
    (specs / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [python, "-m", "vwed_kernel", "-f", "{connection_file}"],
                "display_name": "bench",
                "language": "python",
            }
        )
    )
    ksm = KernelSpecManager(kernel_dirs=[str(work / "kernels")])
    km = AsyncKernelManager(kernel_name="bench", kernel_spec_manager=ksm)
    t0 = time.perf_counter()
    await km.start_kernel(stderr=subprocess.DEVNULL)
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=60)
        reply = await kc.execute_interactive(code, timeout=60)
        took = time.perf_counter() - t0
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"the kernel of {python} failed: {reply['content']}")
        await asyncio.sleep(1.0)
        pid = km.provisioner.process.pid  # type: ignore[union-attr]
        return took, memory(pid)
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)


def section_venv(args: argparse.Namespace, work: Path, wheels: Path) -> None:
    builds: list[float] = []
    venv_starts: list[float] = []
    engine_starts: list[float] = []
    venv_mem: list[dict[str, float]] = []
    engine_mem: list[dict[str, float]] = []
    code = "import vwedbulk, vwedtiny\nassert vwedbulk.VERSION == '1.0'"
    for r in range(args.rounds):
        python, took = build_venv(work / f"venv{r}", wheels)
        builds.append(took)
        engine_layered = work / f"venv{r}" / "layered"
        engine_layered.mkdir()
        for _ in range(2):
            took, mem = asyncio.run(fresh_kernel(str(python), work / f"venv{r}", code))
            venv_starts.append(took)
            venv_mem.append(mem)
            # the engine's interpreter, fresh, with the same packages by site.addsitedir
            site_dir = subprocess.run(
                [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
            layered = f"import site; site.addsitedir({site_dir!r})\n{code}"
            took, mem = asyncio.run(fresh_kernel(sys.executable, engine_layered, layered))
            engine_starts.append(took)
            engine_mem.append(mem)
        shutil.rmtree(work / f"venv{r}", ignore_errors=True)

    def mem(rows: list[dict[str, float]], key: str) -> str:
        return f"{statistics.median(m[key] for m in rows):.1f}"

    table(
        "the alternative layering: a venv per environment (engine's packages by a .pth), "
        "its kernel started fresh",
        ["measure", "n", "p50 ms", "p90 ms", "min ms", "max ms"],
        [
            ["build the venv: venv + .pth + uv pip install (cold uv cache)", *stats(builds)],
            ["fresh kernel of the venv: start + import the packages", *stats(venv_starts)],
            ["fresh kernel of the engine + site.addsitedir + import", *stats(engine_starts)],
        ],
    )
    table(
        "memory of those fresh kernels (MiB, medians)",
        ["kernel", "n", "RSS", "PSS", "private"],
        [
            [
                "venv kernel",
                str(len(venv_mem)),
                *(mem(venv_mem, k) for k in ("rss", "pss", "private")),
            ],
            [
                "engine kernel + site.addsitedir",
                str(len(engine_mem)),
                *(mem(engine_mem, k) for k in ("rss", "pss", "private")),
            ],
        ],
    )


SECTIONS = {"gateway": section_gateway, "venv": section_venv}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5, help="fresh gateways (cold starts)")
    parser.add_argument("--starts", type=int, default=4, help="warm and plain starts a round")
    parser.add_argument("--only", nargs="+", choices=sorted(SECTIONS), default=list(SECTIONS))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vwed-bench-deps-"))
    wheels = build_packages(work / "wheels")
    print(
        f"bench/deps.py: python {sys.version.split()[0]}, {os.cpu_count()} cpus, "
        f"{time.strftime('%Y-%m-%d %H:%M')}, rounds {args.rounds}, starts {args.starts}"
    )
    try:
        for name in args.only:
            SECTIONS[name](args, work, wheels)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
