"""Benchmark of the log path (docs/performance.md reports its tables).

1. latency from ``print`` (and ``VWED.log``) in a handler to the record arriving
   at a WebSocket client (p50, p99);
2. a flood: one script printing as fast as it can for ``--flood-seconds``:
   lines per second printed and stored, the gateway's RSS before and after;
3. routing p50/p99 for another script during the flood vs idle.

    python bench/logs.py                  # 60 s flood
    python bench/logs.py --flood-seconds 10 --marks 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from calls import Gateway, http, load, pct, rss_mib, table  # noqa: E402

SCRIPT = """
import time

def boot():
    VWED.api.register_route("/marks/print", "POST", mark_print)
    VWED.api.register_route("/marks/log", "POST", mark_log)
    VWED.function.register("flood", flood)

def mark_print(request):
    print(f"mark {request['json']['i']} {time.time():.6f}")
    return 1

def mark_log(request):
    VWED.log.info("mark", f"mark {request['json']['i']} {time.time():.6f}")
    return 1

def flood(seconds):
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        for _ in range(100):
            print(f"flood line {n} ................................................")
            n += 1
    return n
"""

CALM = """
def boot():
    VWED.api.register_route("/calm/ping", "GET", lambda: "pong")
"""


async def marks(port: int, sid: str, path: str, count: int) -> list[float]:
    from tornado.websocket import websocket_connect

    conn = await websocket_connect(f"ws://127.0.0.1:{port}/script-engine/logs/ws?script_id={sid}")
    delays: list[float] = []
    loop = asyncio.get_running_loop()

    async def reader() -> None:
        while len(delays) < count:
            raw = await conn.read_message()
            if raw is None:
                return
            msg = json.loads(raw)
            now = time.time()
            for line in msg.get("message", "").split("\n"):
                if line.startswith("mark "):
                    delays.append(now - float(line.split()[2]))

    task = asyncio.ensure_future(reader())
    for i in range(count):
        await loop.run_in_executor(None, http, port, "POST", path, {"i": i})
        await asyncio.sleep(0.01)
    await asyncio.wait_for(task, 30)
    conn.close()
    return delays


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--marks", type=int, default=300)
    parser.add_argument("--flood-seconds", type=float, default=60)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vwed-bench-logs-"))
    gw = Gateway(work, pool=2)
    print(
        f"bench/logs.py: python {sys.version.split()[0]}, {os.cpu_count()} cpus, "
        f"{time.strftime('%Y-%m-%d %H:%M')}, flood {args.flood_seconds:g} s"
    )
    try:
        (gw.scripts / "loud.py").write_text(SCRIPT)
        (gw.scripts / "calm.py").write_text(CALM)
        sid = http(gw.port, "POST", "/script-engine/start", {"script_path": "loud.py"})[1][
            "script_id"
        ]
        http(gw.port, "POST", "/script-engine/start", {"script_path": "calm.py"})
        lat_print = asyncio.run(marks(gw.port, sid, "/script-api/marks/print", args.marks))
        lat_log = asyncio.run(marks(gw.port, sid, "/script-api/marks/log", args.marks))
        table(
            "print / VWED.log in a handler -> record at a WebSocket client",
            ["source", "n", "p50 ms", "p90 ms", "p99 ms"],
            [
                [name, len(v), f"{pct(v, 50):.1f}", f"{pct(v, 90):.1f}", f"{pct(v, 99):.1f}"]
                for name, v in (("print (stdout)", lat_print), ("VWED.log.info", lat_log))
            ],
        )

        idle, _ = load(gw.port, "GET", "/script-api/calm/ping", b"", 1000, 1)
        rss_before = rss_mib(gw.proc.pid)
        stored_before = http(gw.port, "GET", "/script-engine/logs?limit=1")[1]["records"][0]["id"]
        result: dict[str, object] = {}

        def run_flood() -> None:
            t0 = time.perf_counter()
            status, body = http(
                gw.port,
                "POST",
                "/script-engine/functions/flood/call",
                {"args": [args.flood_seconds], "timeout": args.flood_seconds + 60},
                timeout=args.flood_seconds + 120,
            )
            result.update(status=status, lines=body.get("result"), seconds=time.perf_counter() - t0)

        flood = threading.Thread(target=run_flood)
        flood.start()
        time.sleep(min(2.0, args.flood_seconds / 4))
        during: list[float] = []
        peak = rss_before
        while flood.is_alive():
            lat, _ = load(gw.port, "GET", "/script-api/calm/ping", b"", 200, 1, warmup=0)
            during.extend(lat)
            peak = max(peak, rss_mib(gw.proc.pid))
        flood.join()
        time.sleep(2.0)  # let the writer catch up before counting
        rss_after = rss_mib(gw.proc.pid)
        stats = http(gw.port, "GET", "/script-engine/logs?limit=1")[1]["records"][0]["id"]
        dropped = http(
            gw.port, "GET", "/script-engine/logs?source=engine&q=were%20not%20stored&limit=1000"
        )[1]
        dropped_n = sum(int(r["message"].split()[0]) for r in dropped["records"])
        lines = int(result.get("lines") or 0)
        secs = float(result.get("seconds") or 1)
        table(
            "flood: one script printing as fast as it can",
            ["measure", "value"],
            [
                ["lines printed", f"{lines:,} in {secs:.1f} s ({lines / secs:,.0f} lines/s)"],
                ["records stored (coalesced lines)", f"{stats - stored_before:,}"],
                ["records dropped (counted)", f"{dropped_n:,}"],
                ["gateway RSS before", f"{rss_before:.1f} MiB"],
                ["gateway RSS peak during", f"{peak:.1f} MiB"],
                [
                    "gateway RSS after",
                    f"{rss_after:.1f} MiB (growth {rss_after - rss_before:+.1f} MiB)",
                ],
            ],
        )
        table(
            "routing for another script (GET /script-api/calm/ping, concurrency 1)",
            ["when", "n", "p50 ms", "p90 ms", "p99 ms"],
            [
                [
                    "idle",
                    len(idle),
                    f"{pct(idle, 50):.2f}",
                    f"{pct(idle, 90):.2f}",
                    f"{pct(idle, 99):.2f}",
                ],
                [
                    "during the flood",
                    len(during),
                    f"{pct(during, 50):.2f}",
                    f"{pct(during, 90):.2f}",
                    f"{pct(during, 99):.2f}",
                ],
            ],
        )
        print(f"\nrouting p50 during the flood / idle: {pct(during, 50) / pct(idle, 50):.2f}x")
    finally:
        gw.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
