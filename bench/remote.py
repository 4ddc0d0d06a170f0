"""Route calls to a script kernel on another host against a local one, in the same
run (docs/performance.md, "Remote kernels (issue 19)").

The other host is a network namespace made here (``tests/netns.py``: a veth link,
sshd inside; root only); its kernel is started through gateway_provisioners' SSH
``DistributedProvisioner`` from a kernelspec written by ``vwed-kernel install
--remote-host``. When a Docker daemon answers (``tests/dockerd.py``), a third copy
runs in a Docker container (gateway_provisioners' ``DockerProvisioner``, the image
of this checkout built by deploy/docker/build-kernel-image.sh, ``vwed-kernel install
--docker-image``). One gateway runs all the scripts (the same code), and the load
alternates between them round by round, so every row sees the same machine:
latency at concurrency 1, requests/s at concurrency 8; medians over the rounds.

    sudo .venv/bin/python bench/remote.py             # 5 rounds
    sudo .venv/bin/python bench/remote.py --rounds 3 --calls 1000
    sudo .venv/bin/python bench/remote.py --no-docker
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

import dockerd  # noqa: E402
from calls import http, load, pct, table  # noqa: E402
from netns import Hosts, why_not  # noqa: E402

SCRIPT = """
def boot():
    VWED.api.register_route("/{name}/ping", "GET", lambda: "pong")
"""


def start_gateway(work: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    log = work / "gateway.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "kernel_gateway", "--scripts-dir", str(work / "scripts")]
        + ["--data-dir", str(work / "data"), "--port", "0", "--pool-size", "1"]
        + ["--workers", "1", "--no-auth"],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env={**os.environ, **env},
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = re.search(r"on http://127\.0\.0\.1:(\d+)", log.read_text())
        if found and http(int(found.group(1)), "GET", "/script-engine/health")[0] == 200:
            return proc, int(found.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise RuntimeError(f"the gateway did not start: {log.read_text()[-2000:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000, help="calls per row and round")
    parser.add_argument(
        "--gp-socket-timeout",
        metavar="S",
        help="GP_SOCKET_TIMEOUT for the gateway (default: the gateway's 0; "
        "gateway_provisioners' own 0.01 shows what kernel_gateway/remote.py avoids)",
    )
    parser.add_argument("--no-docker", action="store_true", help="no row of a Docker kernel")
    args = parser.parse_args()
    problem = why_not()
    if problem:
        print(f"bench/remote.py: {problem}", file=sys.stderr)
        return 2
    names = ["local", "remote"]
    image = None
    if not args.no_docker:
        no_docker = dockerd.why_not()
        if no_docker is None:
            image = dockerd.ensure_image()
            names.append("docker")
        else:
            print(f"bench/remote.py: no Docker row: {no_docker}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="vwed-bench-remote-") as tmp:
        work = Path(tmp)
        hosts = Hosts(work / "hosts", count=1)
        proc = None
        try:
            hosts.open()
            (work / "scripts").mkdir()
            for name in names:
                (work / "scripts" / f"{name}.py").write_text(SCRIPT.format(name=name))
            address = hosts.hosts[0].address
            install = [sys.executable, "-m", "vwed_kernel.cli", "install", "--data-dir"]
            subprocess.run(
                [*install, str(work / "data"), "--name", "vwed-remote", "--remote-host", address],
                check=True,
                capture_output=True,
            )
            if image is not None:
                subprocess.run(
                    [*install, str(work / "data"), "--name", "vwed-docker"]
                    + ["--docker-image", image],
                    check=True,
                    capture_output=True,
                )
            env = hosts.env()
            if args.gp_socket_timeout is not None:
                env["GP_SOCKET_TIMEOUT"] = args.gp_socket_timeout
            proc, port = start_gateway(work, env)
            started: dict[str, float] = {}
            before: list[float] = []  # local, before the gateway started any remote kernel
            bodies = {
                "local": {},
                "remote": {"kernel_name": "vwed-remote"},
                "docker": {"kernel_name": "vwed-docker"},
            }
            for name in names:
                body = bodies[name]
                if name == "remote":
                    before, _ = load(port, "GET", "/script-api/local/ping", b"", args.calls // 2, 1)
                t0 = time.perf_counter()
                status, reply = http(
                    port, "POST", "/script-engine/start", {"script_path": f"{name}.py", **body}
                )
                started[name] = time.perf_counter() - t0
                if status != 200:
                    raise RuntimeError(reply)
            rows: dict[str, dict[str, list[float]]] = {
                n: {"p50": [], "p99": [], "rps": []} for n in names
            }
            for _ in range(args.rounds):
                for name in names:
                    path = f"/script-api/{name}/ping"
                    lat, _ = load(port, "GET", path, b"", args.calls // 2, 1)
                    rows[name]["p50"].append(pct(lat, 50))
                    rows[name]["p99"].append(pct(lat, 99))
                    _, wall = load(port, "GET", path, b"", args.calls, 8)
                    rows[name]["rps"].append((args.calls // 8) * 8 / wall)
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(60)
            hosts.close()

    med = {n: {k: statistics.median(v) for k, v in r.items()} for n, r in rows.items()}
    labels = {
        "local": "kernel on this host",
        "remote": f"kernel in a namespace ({address}), over SSH",
        "docker": f"kernel in a Docker container ({image})",
    }
    out = []
    for name in names:
        m = med[name]
        out.append(
            [
                labels[name],
                f"{started[name] * 1000:.0f}",
                f"{m['p50']:.2f}",
                f"{m['p99']:.2f}",
                f"{m['rps']:.0f}",
            ]
        )
    out.insert(
        0,
        [
            "kernel on this host, no remote kernel started yet (1 round)",
            f"{started['local'] * 1000:.0f}",
            f"{pct(before, 50):.2f}",
            f"{pct(before, 99):.2f}",
            "",
        ],
    )
    loc = med["local"]
    for name in names[1:]:
        rem = med[name]
        out.append(
            [
                f"{'namespace' if name == 'remote' else 'Docker'} / local",
                f"{started[name] / started['local']:.2f}x",
                f"{rem['p50'] / loc['p50']:.2f}x",
                f"{rem['p99'] / loc['p99']:.2f}x",
                f"{rem['rps'] / loc['rps']:.2f}x",
            ]
        )
    timeout = args.gp_socket_timeout or "0 (the gateway's)"
    table(
        f"GP_SOCKET_TIMEOUT={timeout}: GET route, medians of {args.rounds} rounds ({args.calls // 2} calls at "
        f"concurrency 1, {args.calls} at 8, per row and round)",
        ["kernel", "start ms (first)", "p50 ms (c=1)", "p99 ms (c=1)", "req/s (c=8)"],
        out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
