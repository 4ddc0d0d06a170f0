"""Benchmark: a trivial route through the gateway, against its baselines.

Prints one table (medians and percentiles, requests per second) with, in the
same run:

* ``tornado floor``: the same handler as a plain in-process Tornado handler;
* ``gateway route``: ``GET /script-api/bench/ping`` answered by a script kernel;
* ``gateway function``: ``POST /script-engine/functions/bench_ping/call``;
* ``subprocess per call``: the same function run per call in a fresh ``python``
  (the old runner: temp file, run, parse stdout as JSON).

Servers run as their own processes; the load comes from this process over
keep-alive HTTP/1.1 connections on loopback.

    python bench/calls.py [--requests 2000] [--concurrency 1 8] [--subprocess-calls 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HANDLER_SOURCE = '''
def ping(request=None):
    return {"ok": True, "n": 1}
'''

SCRIPT = HANDLER_SOURCE + '''
def boot():
    VWED.api.register_route("/bench/ping", "GET", ping)
    VWED.function.register("bench_ping", ping)
'''

FLOOR_SERVER = HANDLER_SOURCE + '''
import asyncio, json, sys
from tornado import web

class Ping(web.RequestHandler):
    def get(self):
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(ping({"method": "GET"})))

async def main():
    app = web.Application([(r"/ping", Ping)])
    app.listen(int(sys.argv[1]), "127.0.0.1")
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
'''

OLD_RUNNER = HANDLER_SOURCE + '''
import json, sys
with open(sys.argv[sys.argv.index("--variables-file") + 1]) as f:
    variables = json.load(f)
print(json.dumps(ping(variables)))
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port: int, path: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                if s.recv(64).startswith(b"HTTP/1.1"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"port {port} did not answer")


def http_call(port: int, method: str, path: str, body: bytes = b"") -> bytes:
    req = (f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
           "Connection: close\r\n\r\n").encode() + body
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(req)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


async def _connection(port: int, request: bytes, count: int, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(count):
            t0 = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"unexpected answer: {head[:80]!r}")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
    finally:
        writer.close()


async def load(port: int, method: str, path: str, body: bytes, total: int, conc: int) -> tuple[list[float], float]:
    request = (f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
               "Content-Type: application/json\r\n\r\n").encode() + body
    warm: list[float] = []
    await asyncio.gather(*(_connection(port, request, 20, warm) for _ in range(conc)))
    latencies: list[float] = []
    t0 = time.perf_counter()
    await asyncio.gather(*(_connection(port, request, total // conc, latencies) for _ in range(conc)))
    return latencies, time.perf_counter() - t0


def old_way(calls: int, conc: int, folder: Path) -> tuple[list[float], float]:
    runner = folder / "old_runner.py"
    runner.write_text(OLD_RUNNER)

    def one(i: int) -> float:
        t0 = time.perf_counter()
        with tempfile.NamedTemporaryFile("w", suffix=".json", dir=folder, delete=False) as f:
            json.dump({"method": "GET"}, f)
        out = subprocess.run([sys.executable, str(runner), "--variables-file", f.name],
                             capture_output=True, text=True, check=True, timeout=60)
        json.loads(out.stdout.strip().splitlines()[-1])
        os.unlink(f.name)
        return time.perf_counter() - t0

    from concurrent.futures import ThreadPoolExecutor

    t0 = time.perf_counter()
    with ThreadPoolExecutor(conc) as pool:
        latencies = list(pool.map(one, range(calls)))
    return latencies, time.perf_counter() - t0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))] * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--subprocess-calls", type=int, default=40)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="vwed-bench-"))
    (work / "scripts").mkdir()
    (work / "scripts" / "bench.py").write_text(textwrap.dedent(SCRIPT))
    (work / "floor.py").write_text(FLOOR_SERVER)
    gw_port, floor_port = free_port(), free_port()
    procs = [
        subprocess.Popen([sys.executable, "-m", "kernel_gateway", "--scripts-dir", str(work / "scripts"),
                          "--data-dir", str(work / "data"), "--port", str(gw_port), "--pool-size", "1"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen([sys.executable, str(work / "floor.py"), str(floor_port)],
                         stdout=subprocess.DEVNULL),
    ]
    rows = []
    try:
        wait_http(gw_port, "/script-engine/health")
        wait_http(floor_port, "/ping")
        answer = http_call(gw_port, "POST", "/script-engine/start", b'{"script_path": "bench.py"}')
        if b" 200 " not in answer.split(b"\r\n")[0]:
            raise RuntimeError(answer.decode(errors="replace"))
        cases = [
            ("tornado floor (in-process handler)", floor_port, "GET", "/ping", b""),
            ("gateway route GET /script-api/bench/ping", gw_port, "GET", "/script-api/bench/ping", b""),
            ("gateway function call", gw_port, "POST", "/script-engine/functions/bench_ping/call", b"{}"),
        ]
        for conc in args.concurrency:
            for name, port, method, path, body in cases:
                lat, took = asyncio.run(load(port, method, path, body, args.requests, conc))
                rows.append((name, conc, len(lat), lat, took))
        for conc in sorted({1, max(args.concurrency)}):
            lat, took = old_way(args.subprocess_calls, conc, work)
            rows.append(("subprocess per call (old runner)", conc, len(lat), lat, took))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)

    floor = {conc: statistics.median(lat) for name, conc, _, lat, _ in rows if name.startswith("tornado")}
    print(f"\nbench/calls.py  python {sys.version.split()[0]}  cpus {os.cpu_count()}  "
          f"requests/case {args.requests}\n")
    header = f"| {'method':42} | conc | {'n':>5} | {'p50 ms':>7} | {'p90 ms':>7} | {'p99 ms':>7} | {'req/s':>7} | p50 / floor |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for name, conc, n, lat, took in rows:
        ratio = statistics.median(lat) / floor[conc] if conc in floor else float("nan")
        print(f"| {name:42} | {conc:>4} | {n:>5} | {pct(lat, 50):7.2f} | {pct(lat, 90):7.2f} | "
              f"{pct(lat, 99):7.2f} | {n / took:7.0f} | {ratio:10.1f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
