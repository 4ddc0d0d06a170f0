"""Benchmark suite of the call path (docs/performance.md reports its tables).

In one run, on this machine:

1. calls: a trivial route and a trivial function through the gateway at
   concurrency 1, 8 and 32, one script and the same script with replicas=2,
   against the in-process Tornado floor, the subprocess-per-call runner (the old
   way) and Jupyter Kernel Gateway's notebook-http mode serving the same endpoint
   (installed by the benchmark in its own virtual environment);
2. payload: a 1 MB JSON body into a route and back;
3. start: ``start`` of a small script with a warm pool, route latency while
   the pool refills, and the private memory of an idle script kernel
   (``/proc/PID/smaps_rollup``), with kernels forked from the fork server and
   with plain launches (``--no-fork-server``), in the same run;
4. scale: N scripts running at once (``--scripts``; RSS and private memory per
   kernel, the gateway's RSS growth per script, routing p50 with N running, the
   median over five of them, against one script's before the others start and
   after they stopped), forked, and plain for ``--plain-scripts`` of them;
5. mqtt: a route that publishes one MQTT message per call (QoS 0, and QoS 1
   waiting for the broker's PUBACK) against the same route without publishing
   (the broker: ``--mqtt-url``, default the local Mosquitto).

Servers run as their own processes; the load comes from this process over
keep-alive HTTP/1.1 connections on loopback (a minimal client, the same for
every row).

    python bench/calls.py                # everything
    python bench/calls.py --quick        # fewer requests, no JKG, 10 scripts for scale
    python bench/calls.py --only calls payload

Section ``sinks`` (issue 20): a route writing one log record per call with three
log sinks attached (a JSON lines file, a webhook and UDP syslog to loopback
receivers) against none.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HANDLER = """
def ping(request=None):
    return {"ok": True, "n": 1}
"""

SCRIPT = (
    HANDLER
    + """
def echo(request):
    return request["json"]

def boot():
    VWED.api.register_route("/{name}/ping", "GET", ping)
    VWED.api.register_route("/{name}/echo", "POST", echo)
    VWED.function.register("{name}_ping", ping)
"""
)

FLOOR_SERVER = (
    HANDLER
    + """
import asyncio, json, sys
from tornado import httpserver, netutil, web

class Ping(web.RequestHandler):
    def get(self):
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(ping({"method": "GET"})))

class Echo(web.RequestHandler):
    def post(self):
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(json.loads(self.request.body)))

async def main():
    sockets = netutil.bind_sockets(0, "127.0.0.1")  # a free port, said on stdout
    httpserver.HTTPServer(web.Application([(r"/ping", Ping), (r"/echo", Echo)])).add_sockets(
        sockets
    )
    print("listening on port", sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""
)

OLD_RUNNER = (
    HANDLER
    + """
import json, sys
with open(sys.argv[sys.argv.index("--variables-file") + 1]) as f:
    variables = json.load(f)
print(json.dumps(ping(variables)))
"""
)

JKG_NOTEBOOK_CELLS = [
    "import json",
    "# GET /ping\nprint(json.dumps({'ok': True, 'n': 1}))",
]


# -- plumbing -------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    timeout: float = 120,
    token: str = "",
) -> tuple[int, Any]:
    raw = b"" if body is None else json.dumps(body).encode()
    auth = f"Authorization: token {token}\r\n" if token else ""
    req = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(raw)}\r\n"
        f"Content-Type: application/json\r\n{auth}Connection: close\r\n\r\n"
    ).encode() + raw
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(req)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, payload


def wait_http(port: int, path: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if http(port, "GET", path, timeout=2)[0] < 500:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"port {port} did not answer {path}")


def port_in(output: Path, pattern: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> int:
    """The port a server started on port 0 names in its output (``pattern``'s group 1): a
    port picked here and bound later could be taken by another process meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, output.read_text(errors="replace"))
        if found:
            return int(found.group(1))
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:3]} exited: {output.read_text()[-2000:]}")
        time.sleep(0.05)
    raise TimeoutError(f"{proc.args[:3]} named no port in {timeout} s")


def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


async def _connection(port: int, request: bytes, count: int, out: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=16 * 1024 * 1024)
    try:
        for _ in range(count):
            t0 = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"unexpected answer: {head[:120]!r}")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            out.append(time.perf_counter() - t0)
    finally:
        writer.close()


def load(
    port: int,
    method: str,
    path: str,
    body: bytes,
    total: int,
    conc: int,
    warmup: int = 20,
    token: str = "",
) -> tuple[list[float], float]:
    auth = f"Authorization: token {token}\r\n" if token else ""
    request = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
        f"Content-Type: application/json\r\n{auth}\r\n"
    ).encode() + body

    async def run() -> tuple[list[float], float]:
        warm: list[float] = []
        await asyncio.gather(*(_connection(port, request, warmup, warm) for _ in range(conc)))
        lat: list[float] = []
        t0 = time.perf_counter()
        await asyncio.gather(
            *(_connection(port, request, max(1, total // conc), lat) for _ in range(conc))
        )
        return lat, time.perf_counter() - t0

    return asyncio.run(run())


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))] * 1000


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(header)]
    print(f"\n### {title}\n")
    print("| " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(
            "| "
            + " | ".join(
                str(c).rjust(w) if not isinstance(c, str) else c.ljust(w)
                for c, w in zip(r, widths, strict=True)
            )
            + " |"
        )


class Gateway:
    """A vwed-gateway process on a scripts folder."""

    def __init__(
        self,
        work: Path,
        pool: int,
        extra: tuple[str, ...] = (),
        token: str = "",
        tree: str = "",
    ) -> None:
        """``token``: auth on, with that admin token (and ``caller-<token>`` for calls);
        ``tree``: run the gateway (and its kernels) from another checkout's packages
        (``PYTHONPATH``), for an A/B of two trees in one run."""
        self.token = token
        auth = ["--token", token, "--caller-token", f"caller-{token}"] if token else ["--no-auth"]
        self.scripts = work / "scripts"
        self.scripts.mkdir(parents=True, exist_ok=True)
        log = (work / "gateway.log").open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kernel_gateway",
                "--scripts-dir",
                str(self.scripts),
                "--data-dir",
                str(work / "data"),
                "--port",
                "0",  # a free port, named in its first INFO line (its log: work/gateway.log)
                "--pool-size",
                str(pool),
                *auth,
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env={**os.environ, "PYTHONPATH": tree} if tree else None,
            cwd=tree or None,  # `python -m` puts the working directory first on sys.path
        )
        log.close()  # the gateway writes to its own copy
        self.port = port_in(
            work / "gateway.log", r"VWED gateway \S+ on http://[^:\s]+:(\d+) ", self.proc
        )
        wait_http(self.port, "/script-engine/health")

    def add(self, name: str) -> str:
        (self.scripts / f"{name}.py").write_text(textwrap.dedent(SCRIPT.replace("{name}", name)))
        return f"{name}.py"

    def start(
        self, name: str, replicas: int = 1, policy: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        status, body = http(
            self.port,
            "POST",
            "/script-engine/start",
            {"script_path": self.add(name), "replicas": replicas, "policy": policy},
            token=self.token,
        )
        if status != 200:
            raise RuntimeError(body)
        return body

    def pool_ready(self) -> int:
        return int(
            http(self.port, "GET", "/script-engine/health", token=self.token)[1]["pool"]["ready"]
        )

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# -- baselines --------------------------------------------------------------------------
def start_floor(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    (work / "floor.py").write_text(FLOOR_SERVER)
    fd, out = tempfile.mkstemp(".out", "floor-", work)
    proc = subprocess.Popen([sys.executable, str(work / "floor.py")], stdout=fd)
    os.close(fd)
    port = port_in(Path(out), r"listening on port (\d+)", proc)
    wait_http(port, "/ping")
    return proc, port


def old_way(calls: int, conc: int, folder: Path) -> tuple[list[float], float]:
    runner = folder / "old_runner.py"
    runner.write_text(OLD_RUNNER)

    def one(_: int) -> float:
        t0 = time.perf_counter()
        with tempfile.NamedTemporaryFile("w", suffix=".json", dir=folder, delete=False) as f:
            json.dump({"method": "GET"}, f)
        out = subprocess.run(
            [sys.executable, str(runner), "--variables-file", f.name],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        json.loads(out.stdout.strip().splitlines()[-1])
        os.unlink(f.name)
        return time.perf_counter() - t0

    from concurrent.futures import ThreadPoolExecutor

    t0 = time.perf_counter()
    with ThreadPoolExecutor(conc) as pool:
        latencies = list(pool.map(one, range(calls)))
    return latencies, time.perf_counter() - t0


def start_jkg(work: Path) -> tuple[subprocess.Popen[bytes] | None, int, str]:
    """Jupyter Kernel Gateway in notebook-http mode, in its own virtual environment."""
    venv = Path(tempfile.gettempdir()) / "vwed-bench-jkg-venv"
    py = venv / "bin" / "python"
    try:
        if not (venv / "installed").exists():
            print("installing jupyter-kernel-gateway into", venv, "...", flush=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
            # ipykernel too: the notebook's python3 kernel runs from that environment
            subprocess.run(
                [str(py), "-m", "pip", "install", "-q", "jupyter-kernel-gateway", "ipykernel"],
                check=True,
                timeout=900,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            (venv / "installed").write_text("ok")
        import nbformat

        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(c) for c in JKG_NOTEBOOK_CELLS]
        nb.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3",
            "language": "python",
        }
        (work / "jkg.ipynb").write_text(nbformat.writes(nb))
        port = free_port()
        proc = subprocess.Popen(
            [
                str(venv / "bin" / "jupyter"),
                "kernelgateway",
                "--KernelGatewayApp.api=kernel_gateway.notebook_http",
                f"--KernelGatewayApp.seed_uri={work / 'jkg.ipynb'}",
                f"--KernelGatewayApp.port={port}",
                "--KernelGatewayApp.ip=127.0.0.1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=work,
        )
        wait_http(port, "/ping", timeout=120)
        return proc, port, ""
    except Exception as exc:  # reported in the table, not hidden
        return None, 0, f"{type(exc).__name__}: {exc}"


# -- sections ---------------------------------------------------------------------------
BENCH_TOKEN = "bench-token-0123456789abcdef"
CALLER = f"caller-{BENCH_TOKEN}"


def throughput_table(
    args: argparse.Namespace,
    work: Path,
    gw: Gateway,
    kernel_pid: int,
    floor: subprocess.Popen[bytes],
    floor_port: int,
    baseline: tuple[Gateway, int] | None = None,
) -> None:
    """wrk against the floor, the gateway (auth on) and Node-RED: medians of rounds,
    interleaved, and each server's CPU per request (bench/throughput.py); with
    ``baseline`` (a gateway of another tree and its kernel's pid), its rows too."""
    import throughput

    if shutil.which("wrk") is None:
        print("\n(throughput: wrk is not installed; apt-get install -y wrk)")
        return
    red, red_port, red_error = throughput.start_nodered(work, CALLER)
    try:
        cases: list[tuple[str, int, str, str, str, tuple[int, ...]]] = [
            ("tornado floor (in-process handler)", floor_port, "GET", "/ping", "", (floor.pid,)),
            (
                "gateway route",
                gw.port,
                "GET",
                "/script-api/one/ping",
                "",
                (gw.proc.pid, kernel_pid),
            ),
            (
                "gateway function call",
                gw.port,
                "POST",
                "/script-engine/functions/one_ping/call",
                "{}",
                (gw.proc.pid, kernel_pid),
            ),
        ]
        if baseline is not None:
            base_gw, base_kernel = baseline
            for name, _, method, path, body, _ in cases[1:3]:
                cases.append(
                    (
                        f"{name}, baseline",
                        base_gw.port,
                        method,
                        path,
                        body,
                        (base_gw.proc.pid, base_kernel),
                    )
                )
        if red is not None:
            version = throughput.version_of_nodered()
            cases.append(
                (f"node-red {version} (function node)", red_port, "GET", "/ping", "", (red.pid,))
            )
        runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for _ in range(args.wrk_rounds):
            for conc in args.wrk_concurrency:
                for name, port, method, path, body, pids in cases:
                    runs.setdefault((name, conc), []).append(
                        throughput.wrk(
                            port,
                            method,
                            path,
                            body,
                            token=CALLER if port != floor_port else "",
                            connections=conc,
                            seconds=args.wrk_seconds,
                            pids=pids,
                        )
                    )
        med = statistics.median
        rows: list[list[Any]] = []
        for conc in args.wrk_concurrency:
            base = runs[(cases[0][0], conc)]
            base_rps, base_p50 = med(r["rps"] for r in base), med(r["p50"] for r in base)
            for name, *_ in cases:
                rs = runs[(name, conc)]
                cpu = [med(r["cpu_ms"][i] for r in rs) for i in range(len(rs[0]["cpu_ms"]))]
                rows.append(
                    [
                        name,
                        conc,
                        sum(r["requests"] for r in rs),
                        sum(r["errors"] for r in rs),
                        f"{med(r['p50'] for r in rs):.2f}",
                        f"{med(r['p99'] for r in rs):.2f}",
                        f"{med(r['rps'] for r in rs):.0f}",
                        f"{med(r['rps'] for r in rs) / base_rps:.2f}x",
                        f"{med(r['p50'] for r in rs) / base_p50:.2f}x",
                        f"{cpu[0]:.3f}",
                        f"{min(r['cpu_ms'][0] for r in rs):.3f}",
                        f"{cpu[1]:.3f}" if len(cpu) > 1 else "-",
                    ]
                )
        table(
            f"throughput: wrk, auth on, medians of {args.wrk_rounds} interleaved rounds "
            f"of {args.wrk_seconds:g} s",
            [
                "server",
                "conc",
                "requests",
                "errors",
                "p50 ms",
                "p99 ms",
                "req/s",
                "req/s / floor",
                "p50 / floor",
                "server CPU ms/req",
                "(min of rounds)",
                "kernel CPU ms/req",
            ],
            rows,
        )
        if red is None:
            print(f"\n(node-red: {red_error})")
    finally:
        if red is not None:
            red.terminate()


def section_throughput(args: argparse.Namespace, work: Path) -> None:
    """The wrk table alone (it is also the end of section ``calls``)."""
    gw = Gateway(work / "throughput", pool=1, token=BENCH_TOKEN)
    base = None
    if args.baseline:
        base = Gateway(work / "baseline", pool=1, token=BENCH_TOKEN, tree=args.baseline)
    floor, floor_port = start_floor(work)
    try:
        kernel_pid = gw.start("one")["kernels"][0]["pid"]
        baseline = None if base is None else (base, base.start("one")["kernels"][0]["pid"])
        throughput_table(args, work, gw, kernel_pid, floor, floor_port, baseline)
    finally:
        gw.close()
        if base is not None:
            base.close()
        floor.terminate()


def section_calls(args: argparse.Namespace, work: Path) -> None:
    gw = Gateway(work / "calls", pool=3, token=BENCH_TOKEN)
    floor, floor_port = start_floor(work)
    jkg, jkg_port, jkg_error = (None, 0, "skipped (--quick)") if args.quick else start_jkg(work)
    try:
        kernel_pid = gw.start("one")["kernels"][0]["pid"]
        gw.start("two", replicas=2)
        gw.start("three", policy={"network": ["127.0.0.1"], "subprocess": False, "write": ["."]})
        cases = [
            ("tornado floor (in-process handler)", floor_port, "GET", "/ping", b""),
            ("gateway route", gw.port, "GET", "/script-api/one/ping", b""),
            (
                "gateway function call",
                gw.port,
                "POST",
                "/script-engine/functions/one_ping/call",
                b"{}",
            ),
            ("gateway route, replicas=2", gw.port, "GET", "/script-api/two/ping", b""),
            ("gateway route, script with a policy", gw.port, "GET", "/script-api/three/ping", b""),
        ]
        if jkg is not None:
            cases.append(("jupyter kernel gateway notebook-http", jkg_port, "GET", "/ping", b""))
        rows: list[list[Any]] = []
        for conc in args.concurrency:
            floor_p50 = None
            for name, port, method, path, body in cases:
                n = args.requests if "jupyter" not in name else max(200, args.requests // 5)
                lat, took = load(port, method, path, body, n, conc, token=CALLER)
                p50 = pct(lat, 50)
                floor_p50 = floor_p50 or p50
                rows.append(
                    [
                        name,
                        conc,
                        len(lat),
                        f"{p50:.2f}",
                        f"{pct(lat, 90):.2f}",
                        f"{pct(lat, 99):.2f}",
                        f"{len(lat) / took:.0f}",
                        f"{p50 / floor_p50:.1f}x",
                    ]
                )
        for conc in (1, 8):
            lat, took = old_way(args.subprocess_calls, conc, work)
            rows.append(
                [
                    "subprocess per call (old runner)",
                    conc,
                    len(lat),
                    f"{pct(lat, 50):.2f}",
                    f"{pct(lat, 90):.2f}",
                    f"{pct(lat, 99):.2f}",
                    f"{len(lat) / took:.0f}",
                    "-",
                ]
            )
        table(
            "calls: a trivial route / function",
            ["method", "conc", "n", "p50 ms", "p90 ms", "p99 ms", "req/s", "p50 / floor"],
            rows,
        )
        if jkg is None:
            print(f"\n(jupyter kernel gateway: {jkg_error})")
        throughput_table(args, work, gw, kernel_pid, floor, floor_port)
    finally:
        gw.close()
        floor.terminate()
        if jkg is not None:
            jkg.terminate()


def section_payload(args: argparse.Namespace, work: Path) -> None:
    gw = Gateway(work / "payload", pool=1)
    floor, floor_port = start_floor(work)
    try:
        gw.start("big")
        docs = {
            # 10,000 small records: JSON parsing and dumping dominate, on both sides
            "10k records": {
                "items": [
                    {
                        "sku": f"SKU-{i:07d}",
                        "qty": i % 17,
                        "loc": f"A-{i % 100:02d}",
                        "note": "x" * 40,
                    }
                    for i in range(10_000)
                ]
            },
            # 100 records of 10 KB strings (e.g. encoded images or logs)
            "100 x 10 KB strings": {"items": [{"id": i, "data": "y" * 10_000} for i in range(100)]},
        }
        rows = []
        for shape, doc in docs.items():
            body = json.dumps(doc).encode()
            for name, port, path in (
                ("tornado floor (parse + dump)", floor_port, "/echo"),
                ("gateway route (echo request['json'])", gw.port, "/script-api/big/echo"),
            ):
                lat, took = load(port, "POST", path, body, args.payload_requests, 1, warmup=5)
                rows.append(
                    [
                        name,
                        shape,
                        f"{len(body) / 1e6:.2f} MB",
                        len(lat),
                        f"{pct(lat, 50):.2f}",
                        f"{pct(lat, 99):.2f}",
                    ]
                )
        table(
            "payload: about 1 MB of JSON in and out of a route (concurrency 1)",
            ["method", "document", "body", "n", "p50 ms", "p99 ms"],
            rows,
        )
    finally:
        gw.close()
        floor.terminate()


# -- log sinks (issue 20) ------------------------------------------------------------
SINKS_SCRIPT = """
def logged(request=None):
    VWED.log.info("bench", "one record per call")
    return {"ok": True}

def boot():
    VWED.api.register_route("/{name}/logged", "GET", logged)
"""

SINK_RECEIVER = """
import http.server, json, socket, sys, threading
count = {"http": 0, "syslog": 0}

class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        count["http"] += len(json.loads(body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        data = json.dumps(count).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("127.0.0.1", 0))

def syslog():
    while True:
        udp.recv(70000)
        count["syslog"] += 1

threading.Thread(target=syslog, daemon=True).start()
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
print(server.server_address[1], udp.getsockname()[1], flush=True)
server.serve_forever()
"""


def _sink_metrics(gw: Gateway) -> dict[str, list[float]]:
    """``{sink: [sent, dropped, queued]}`` from the gateway's /metrics."""
    _, text = http(gw.port, "GET", "/metrics", token=gw.token)
    names = (
        "vwed_log_sink_records_sent_total",
        "vwed_log_sink_records_dropped_total",
        "vwed_log_sink_queue_depth",
    )
    out: dict[str, list[float]] = {}
    for line in (text.decode() if isinstance(text, bytes) else str(text)).splitlines():
        for i, kind in enumerate(names):
            if line.startswith(kind + '{sink="'):
                sink = line.split('"')[1]
                out.setdefault(sink, [0.0, 0.0, 0.0])[i] = float(line.rsplit(" ", 1)[1])
    return out


def section_sinks(args: argparse.Namespace, work: Path) -> None:
    """Routing a call that writes one log record, with three log sinks attached (a JSON
    lines file, a webhook and UDP syslog to loopback receivers in their own process)
    against none: interleaved rounds, medians."""
    receiver = subprocess.Popen(
        [sys.executable, "-c", SINK_RECEIVER], stdout=subprocess.PIPE, text=True
    )
    assert receiver.stdout is not None
    hook_port, syslog_port = (int(x) for x in receiver.stdout.readline().split())
    sinks = (
        f"file://{work / 'sinks-vwed.jsonl'}?max_bytes=67108864&keep=2",
        f"http://127.0.0.1:{hook_port}/hook",
        f"syslog://127.0.0.1:{syslog_port}",
    )
    extra = tuple(a for url in sinks for a in ("--log-sink", url))
    gateways = {
        "no sinks": Gateway(work / "sinks-none", pool=1, token=BENCH_TOKEN),
        "file + http + syslog": Gateway(
            work / "sinks-three", pool=1, extra=extra, token=BENCH_TOKEN
        ),
    }
    try:
        for gw in gateways.values():
            (gw.scripts / "logged.py").write_text(SINKS_SCRIPT.replace("{name}", "logged"))
            status, body = http(
                gw.port,
                "POST",
                "/script-engine/start",
                {"script_path": "logged.py"},
                token=gw.token,
            )
            if status != 200:
                raise RuntimeError(body)
        from throughput import cpu_seconds

        rounds = 7 if not args.quick else 1
        # (p50 ms, p99 ms, req/s, gateway CPU ms per call: its sink threads included)
        results: dict[tuple[str, int], list[tuple[float, float, float, float]]] = {}
        for _ in range(rounds):
            for conc in (1, 8):
                for name, gw in gateways.items():
                    cpu0 = cpu_seconds(gw.proc.pid)
                    lat, took = load(
                        gw.port,
                        "GET",
                        "/script-api/logged/logged",
                        b"",
                        args.requests,
                        conc,
                        token=CALLER,
                    )
                    cpu = (cpu_seconds(gw.proc.pid) - cpu0) * 1000 / len(lat)
                    results.setdefault((name, conc), []).append(
                        (pct(lat, 50), pct(lat, 99), len(lat) / took, cpu)
                    )
        med = statistics.median
        rows: list[list[Any]] = []
        for conc in (1, 8):
            base = results[("no sinks", conc)]
            for name in gateways:
                rs = results[(name, conc)]
                # cost: the median of each round's ratio to the round's run without sinks
                # (the two runs of a round are back to back: drift of the machine cancels)
                rps_cost = med(1 - r[2] / b[2] for r, b in zip(rs, base, strict=True))
                cpu_cost = med(r[3] / b[3] - 1 for r, b in zip(rs, base, strict=True))
                p50_ratio = med(r[0] / b[0] for r, b in zip(rs, base, strict=True))
                rows.append(
                    [
                        name,
                        conc,
                        rounds * args.requests,
                        f"{med(r[0] for r in rs):.2f}",
                        f"{med(r[1] for r in rs):.2f}",
                        f"{med(r[2] for r in rs):.0f}",
                        f"{rps_cost * 100:+.1f}%",
                        f"{p50_ratio:.2f}x",
                        f"{med(r[3] for r in rs):.3f}",
                        f"{cpu_cost * 100:+.1f}%",
                    ]
                )
        table(
            f"log sinks: a route writing one log record per call, medians of {rounds} "
            "interleaved rounds (cost: median of the rounds' ratios to no sinks; goal <= 10% "
            "at conc 8)",
            [
                "gateway",
                "conc",
                "calls",
                "p50 ms",
                "p99 ms",
                "req/s",
                "req/s cost",
                "p50 / none",
                "gateway CPU ms/call",
                "CPU cost",
            ],
            rows,
        )
        gw = gateways["file + http + syslog"]

        def settled() -> bool:  # every sink done with the same records
            m = _sink_metrics(gw).values()
            return (
                len(m) == 3 and all(q == 0 for _, _, q in m) and len({s + d for s, d, _ in m}) == 1
            )

        until(settled, 60, "the sinks to send what they hold")
        path = work / "sinks-vwed.jsonl"
        sent = {k: v[0] for k, v in _sink_metrics(gw).items()}

        def received() -> dict[str, int]:
            got = json.loads(urlopen_text(f"http://127.0.0.1:{hook_port}/"))
            with open(path, "rb") as f:
                got["file"] = sum(1 for _ in f)
            return got

        try:  # datagrams may still be in the receiver's socket buffer
            until(lambda: sum(received().values()) >= sum(sent.values()), 10, "the receivers")
        except TimeoutError:
            pass  # UDP may lose some: the table says how many
        delivered = received()
        sink_rows = []
        for sink, (sent_n, dropped, _) in _sink_metrics(gw).items():
            got = delivered[sink.split(":", 1)[0]]
            sink_rows.append([sink, int(sent_n), int(dropped), got])
        table(
            "log sinks: records sent and dropped (gateway metrics) and received",
            ["sink", "sent", "dropped", "received"],
            sink_rows,
        )
    finally:
        for gw in gateways.values():
            gw.close()
        receiver.terminate()


def urlopen_text(url: str) -> str:
    from urllib.request import urlopen

    with urlopen(url, timeout=10) as answer:  # noqa: S310 - loopback receiver of this run
        return answer.read().decode()


def private_mib(pid: int) -> float:
    """Private memory of a process (``Private_Clean + Private_Dirty``): what it does
    not share with any other (the fork server's pages shared copy-on-write are out)."""
    total = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total / 1024


def fork_server_private(gateway_pid: int, kernel_pid: int) -> float | None:
    """Private MiB of the fork server that forked ``kernel_pid`` (its parent, when
    that is not the gateway), or None for a plain kernel. Shared by all its
    kernels: the pages they copied on write stay the server's alone."""
    with open(f"/proc/{kernel_pid}/stat") as f:
        parent = int(f.read().rsplit(")", 1)[1].split()[1])
    return None if parent == gateway_pid else private_mib(parent)


MODES = (("plain", ("--no-fork-server",)), ("fork server", ("--fork-server",)))


def _start_run(args: argparse.Namespace, work: Path, extra: tuple[str, ...]) -> dict[str, Any]:
    gw = Gateway(work, pool=2, extra=extra)
    try:
        steady = gw.start("steady")
        until(lambda: gw.pool_ready() >= 2, 120, "warm pool")
        idle, _ = load(gw.port, "GET", "/script-api/steady/ping", b"", args.requests // 2, 1)
        starts: list[float] = []
        during: list[float] = []
        private: list[float] = []
        rss: list[float] = []
        refill: list[float] = []
        again: list[float] = []
        for i in range(args.starts):
            until(lambda: gw.pool_ready() >= 2, 120, "a warm pool")
            name = f"small{i}"
            gw.add(name)
            t0 = time.perf_counter()
            status, body = http(
                gw.port, "POST", "/script-engine/start", {"script_path": f"{name}.py"}
            )
            starts.append(time.perf_counter() - t0)
            assert status == 200, body
            # calls while the pool starts a kernel to refill
            lat, _ = load(gw.port, "GET", "/script-api/steady/ping", b"", 100, 1, warmup=0)
            during.extend(lat)
            until(lambda: gw.pool_ready() >= 2, 120, "the pool refilled")
            refill.append(time.perf_counter() - t0)
            pid = body["kernels"][0]["pid"]
            private.append(private_mib(pid))
            rss.append(rss_mib(pid))
            http(gw.port, "POST", "/script-engine/stop", {"script_path": f"{name}.py"})
            # the same file again: committed already (a start commits a file changed
            # on disk first: a few git processes, the same with either launch)
            until(lambda: gw.pool_ready() >= 2, 120, "a warm pool")
            t0 = time.perf_counter()
            status, body = http(
                gw.port, "POST", "/script-engine/start", {"script_path": f"{name}.py"}
            )
            again.append(time.perf_counter() - t0)
            assert status == 200, body
            http(gw.port, "POST", "/script-engine/stop", {"script_path": f"{name}.py"})
        steady_pid = steady["kernels"][0]["pid"]
        return {
            "server": fork_server_private(gw.proc.pid, steady_pid),
            "starts": starts,
            "idle": idle,
            "during": during,
            "refill": refill,
            "again": again,
            "private": [private_mib(steady_pid), *private],
            "rss": [rss_mib(steady_pid), *rss],
        }
    finally:
        gw.close()


def _load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def section_start(args: argparse.Namespace, work: Path) -> None:
    before = _load_average()
    runs = {
        mode: _start_run(args, work / f"start-{i}", extra) for i, (mode, extra) in enumerate(MODES)
    }
    # the machine is shared: what else ran during the starts shows here
    print(f"\nload average (1, 5, 15 min): {before} before the starts, {_load_average()} after")

    def ms(values: list[float]) -> list[str]:
        return [f"{pct(values, 50):.1f}", f"{pct(values, 90):.1f}", f"{pct(values, 99):.1f}"]

    rows = []
    for label, key in (
        ("start (warm pool), new file", "starts"),
        ("start (warm pool), committed file", "again"),
        ("route call, idle pool", "idle"),
        ("route call, pool refilling", "during"),
        ("start until the pool is full again", "refill"),
    ):
        for mode, run in runs.items():
            rows.append([label, mode, len(run[key]), *ms(run[key])])
    table(
        "start: a small script with a warm pool, and calls while the pool refills",
        ["measure", "kernels", "n", "p50 ms", "p90 ms", "p99 ms"],
        rows,
    )
    base = statistics.median(runs["plain"]["private"])
    mem_rows = []
    for mode, run in runs.items():
        private = statistics.median(run["private"])
        mem_rows.append(
            [
                mode,
                len(run["private"]),
                f"{private:.1f}",
                f"{max(run['private']):.1f}",
                f"{statistics.median(run['rss']):.1f}",
                f"{private / base:.2f}x",
                "-" if run["server"] is None else f"{run['server']:.1f}",
            ]
        )
    table(
        "memory of an idle script kernel (smaps_rollup, Private_Clean + Private_Dirty)",
        [
            "kernels",
            "n",
            "private MiB p50",
            "private MiB max",
            "RSS MiB p50",
            "vs plain",
            "fork server private MiB (once)",
        ],
        mem_rows,
    )


def _scale_run(work: Path, extra: tuple[str, ...], scripts: int, requests: int) -> list[Any]:
    """One script's route p50 before the others start and again after they stopped
    (the machine's drift over the run shows as their difference), against the p50
    with ``scripts`` running: the median of the p50s of five of them, spread over
    the start order (a kernel's p50 varies by about 10% from one to another)."""
    gw = Gateway(work, pool=4, extra=extra)
    try:
        first = gw.start("s0")
        before, _ = load(gw.port, "GET", "/script-api/s0/ping", b"", requests, 1)
        gw_one = rss_mib(gw.proc.pid)
        pids = [first["kernels"][0]["pid"]]
        t0 = time.perf_counter()
        started = 1
        failure = ""
        for i in range(1, scripts):
            try:
                pids.append(gw.start(f"s{i}")["kernels"][0]["pid"])
            except RuntimeError as exc:  # the limit of this machine: say what it was
                failure = f"start {i + 1} failed: {str(exc)[:160]}"
                break
            started += 1
        took = time.perf_counter() - t0
        picks = sorted({0, started // 4, started // 2, 3 * started // 4, started - 1})
        many_p50s, many_all = [], []
        for k in picks:
            lat, _ = load(gw.port, "GET", f"/script-api/s{k}/ping", b"", requests, 1)
            many_p50s.append(pct(lat, 50))
            many_all += lat
        gw_many = rss_mib(gw.proc.pid)
        private = [private_mib(p) for p in pids]
        kernel_rss = [rss_mib(p) for p in pids]
        server = fork_server_private(gw.proc.pid, pids[0])
        growth = (gw_many - gw_one) / max(1, started - 1)
        for i in range(1, started):
            http(gw.port, "POST", "/script-engine/stop", {"script_path": f"s{i}.py"})
        after, _ = load(gw.port, "GET", "/script-api/s0/ping", b"", requests, 1)
        one = (pct(before, 50) + pct(after, 50)) / 2
        many = statistics.median(many_p50s)
        return [
            started,
            f"{took:.1f}",
            f"{statistics.median(private):.1f}",
            f"{statistics.median(kernel_rss):.1f}",
            f"{sum(private) / 1024:.2f}",
            "-" if server is None else f"{server:.1f}",
            f"{growth * 1024:.0f}",
            f"{pct(before, 50):.2f} / {pct(after, 50):.2f}",
            f"{many:.2f} ({min(many_p50s):.2f}-{max(many_p50s):.2f})",
            f"{many / one:.2f}x",
            f"{pct(many_all, 99):.2f}",
            failure or "-",
        ]
    finally:
        gw.close()


def section_scale(args: argparse.Namespace, work: Path) -> None:
    rows = []
    for i, (mode, extra) in enumerate(MODES):
        count = args.scripts if mode != "plain" else min(args.scripts, args.plain_scripts)
        rows.append([mode, *_scale_run(work / f"scale-{i}", extra, count, args.requests // 2)])
    table(
        "scale: scripts running at once (route p50 against one script, gateway RSS growth)",
        [
            "kernels",
            "scripts",
            "started in s",
            "private MiB p50",
            "RSS MiB p50",
            "private GiB total",
            "fork server private MiB",
            "gateway KiB/script",
            "route p50 1 script, before / after",
            "route p50 N scripts, median of 5 (range)",
            "ratio to the mean of before and after",
            "route p99 N",
            "limit hit",
        ],
        rows,
    )


MQTT_SCRIPT = """
import uuid

TOPIC = "vwedbench/" + uuid.uuid4().hex[:12] + "/tick"

def plain(request=None):
    return {"ok": True, "n": 1}

def publish0(request=None):
    VWED.mqtt.publish(TOPIC, b"1")
    return {"ok": True, "n": 1}

def publish1(request=None):
    VWED.mqtt.publish(TOPIC, b"1", qos=1)
    return {"ok": True, "n": 1}

def boot():
    VWED.api.register_route("/mq/plain", "GET", plain)
    VWED.api.register_route("/mq/publish0", "GET", publish0)
    VWED.api.register_route("/mq/publish1", "GET", publish1)
    VWED.mqtt.publish(TOPIC, b"boot")  # the connection is opened in boot(), not in the timing
"""


def section_mqtt(args: argparse.Namespace, work: Path) -> None:
    """A route that publishes one MQTT message per call, against the same route without."""
    from urllib.parse import urlsplit

    where = urlsplit(args.mqtt_url)
    try:
        socket.create_connection((where.hostname, where.port or 1883), timeout=2).close()
    except OSError as exc:
        print(f"\n### mqtt: skipped, no broker at {args.mqtt_url} ({exc})")
        return
    gw = Gateway(work / "mqtt", pool=1, extra=("--mqtt-url", args.mqtt_url))
    try:
        (gw.scripts / "mq.py").write_text(MQTT_SCRIPT)
        status, body = http(gw.port, "POST", "/script-engine/start", {"script_path": "mq.py"})
        if status != 200:
            raise RuntimeError(body)
        cases = [
            ("route without publishing", "/script-api/mq/plain"),
            ("route publishing 1 message, QoS 0", "/script-api/mq/publish0"),
            ("route publishing 1 message, QoS 1 (waits for the PUBACK)", "/script-api/mq/publish1"),
        ]
        rows: list[list[Any]] = []
        for conc in [c for c in args.concurrency if c <= 8] or [1]:
            # the cases alternate over five rounds, so drift of the machine hits them alike
            got: dict[str, tuple[list[float], float]] = {name: ([], 0.0) for name, _ in cases}
            for _ in range(5):
                for name, path in cases:
                    lat, took = load(gw.port, "GET", path, b"", args.requests // 5, conc, 5)
                    got[name] = (got[name][0] + lat, got[name][1] + took)
            base = pct(got[cases[0][0]][0], 50)
            base_rate = len(got[cases[0][0]][0]) / got[cases[0][0]][1]
            for name, _ in cases:
                lat, took = got[name]
                rate = len(lat) / took
                rows.append(
                    [
                        name,
                        conc,
                        len(lat),
                        f"{pct(lat, 50):.2f}",
                        f"{pct(lat, 99):.2f}",
                        f"{rate:.0f}",
                        f"{(pct(lat, 50) / base - 1) * 100:+.0f}%",
                        f"{(1 - rate / base_rate) * 100:+.0f}%",
                    ]
                )
        table(
            f"mqtt: a route publishing one message per call (broker {args.mqtt_url})",
            ["route", "conc", "n", "p50 ms", "p99 ms", "req/s", "p50 cost", "req/s cost"],
            rows,
        )
    finally:
        gw.close()


SECTIONS = {
    "calls": section_calls,
    "sinks": section_sinks,
    "payload": section_payload,
    "start": section_start,
    "scale": section_scale,
    "throughput": section_throughput,
    "mqtt": section_mqtt,
}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--subprocess-calls", type=int, default=40)
    parser.add_argument("--payload-requests", type=int, default=60)
    parser.add_argument("--starts", type=int, default=20)
    parser.add_argument("--scripts", type=int, default=50)
    parser.add_argument(
        "--plain-scripts", type=int, default=50, help="scale: scripts of the plain-launch row"
    )
    parser.add_argument("--mqtt-url", default="mqtt://127.0.0.1:1883", help="mqtt: the broker")
    parser.add_argument("--wrk-rounds", type=int, default=3)
    parser.add_argument("--wrk-seconds", type=float, default=5.0)
    parser.add_argument("--wrk-concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument(
        "--baseline",
        default="",
        metavar="TREE",
        help="throughput: also a gateway run from the packages of another checkout "
        "(e.g. a `git archive main` copy), interleaved: an A/B in one run",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=sorted(SECTIONS),
        default=[s for s in SECTIONS if s != "throughput"],  # part of calls
    )
    parser.add_argument("--quick", action="store_true", help="smaller run, no JKG")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.subprocess_calls, args.starts, args.scripts = 500, 10, 8, 10
        args.payload_requests = 20
        args.wrk_rounds, args.wrk_seconds = 1, 3.0
    work = Path(tempfile.mkdtemp(prefix="vwed-bench-"))
    print(
        f"bench/calls.py: python {sys.version.split()[0]}, {os.cpu_count()} cpus, "
        f"{time.strftime('%Y-%m-%d %H:%M')}, sections {' '.join(args.only)}"
    )
    for name in args.only:
        SECTIONS[name](args, work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
