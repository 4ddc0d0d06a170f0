"""Benchmark: task-flow steps through the HTTP API and the WebSocket, synchronous and
asynchronous (issue 18), each against a baseline measured in the same run.

Sections (``--only`` picks some):

- ``sync``: a trivial step (``add(a, b)``, mode ``SCRIPT``) through ``POST
  /script-engine/execute``, with and without task variables, against the
  subprocess-per-step runner the platform had (temp ``.py`` + temp variables JSON +
  ``python file.py --variables-file``, stdout parsed).
- ``async``: the same step with ``"async": true``: the 202's latency beside the
  synchronous step's; the submission alone while both run slots are held (nothing
  runs beside it: the cost of storing and queueing); end to end, N async steps
  submitted by C submitters, then waited for (``GET .../wait``), against N
  synchronous ones at the same concurrency.
- ``progress``: a step calling ``VWED.progress(i, total=10000)`` 10,000 times against
  the same loop without the call: the step's ``duration_ms`` (median of several runs)
  and the per-call cost, synchronous and asynchronous.
- ``cancel``: the time from ``POST .../cancel`` to the execution's record saying
  ``cancelled``, for a step cancelled as soon as its record says ``running``, one
  handed to a worker whose event loop is busy (its code not started), and one whose
  code runs (after its first progress), interleaved round by round. A step that was
  not stopped runs on to its timeout (``--cancel-timeout``).
- ``ws``: steps over ``/script-engine/execute/ws`` (the multiplexed protocol: C steps
  in flight on one connection; and C connections with one in flight each) against
  keep-alive HTTP at the same concurrency.

Servers run as their own processes; the load comes from this process over keep-alive
HTTP/1.1 connections (and WebSockets) on loopback.

    python bench/steps.py                      # everything
    python bench/steps.py --quick              # fewer steps and runs
    python bench/steps.py --only async progress
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from calls import Gateway, http, load, pct, table  # noqa: E402

STEP = """
def add(a, b):
    return {"sum": a + b}

def hold(seconds):
    import time
    time.sleep(seconds)
    return True

def nap(seconds):
    import time
    VWED.progress(None, message="napping")  # its code runs now
    time.sleep(seconds)
    return seconds

def hold_loop(seconds):
    # this worker's event loop is blocked for ``seconds`` right after the step answers
    import asyncio, time
    time.sleep(0.2)  # the other worker takes the other one of two at once
    asyncio.get_running_loop().call_soon(time.sleep, seconds)
    return True
"""

PROGRESS_STEP = """
import time

def with_progress(n):
    t0 = time.perf_counter()
    for i in range(n):
        VWED.progress(i, total=n)
    return {"in_step_ms": (time.perf_counter() - t0) * 1000}

def without_progress(n):
    t0 = time.perf_counter()
    for i in range(n):
        pass
    return {"in_step_ms": (time.perf_counter() - t0) * 1000}
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

EXECUTE = "/script-engine/execute"
ADD = {"script_path": "step.py", "function_name": "add", "args": {"a": 1, "b": 2}}


# -- a keep-alive HTTP client that keeps the answers ------------------------------------
class Conn:
    """One keep-alive HTTP/1.1 connection; ``request`` answers (status, body bytes)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> Conn:
        self.reader, self.writer = await asyncio.open_connection(
            "127.0.0.1", self.port, limit=16 * 1024 * 1024
        )
        return self

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        assert self.reader is not None and self.writer is not None
        self.writer.write(
            (
                f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
                "Content-Type: application/json\r\n\r\n"
            ).encode()
            + body
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


Job = tuple[str, str, bytes]
Answer = tuple[int, bytes, float]  # status, body, seconds


async def run_jobs(port: int, conc: int, jobs: list[Job]) -> tuple[list[Answer], float]:
    """Every job over ``conc`` keep-alive connections (each takes the next job when its
    last one answered); the answers in the jobs' order, and the wall time."""
    conns = [await Conn(port).open() for _ in range(conc)]
    out: list[Answer | None] = [None] * len(jobs)
    next_job = iter(range(len(jobs)))

    async def worker(conn: Conn) -> None:
        for i in next_job:
            t0 = time.perf_counter()
            status, body = await conn.request(*jobs[i])
            out[i] = (status, body, time.perf_counter() - t0)

    t0 = time.perf_counter()
    try:
        await asyncio.gather(*(worker(c) for c in conns))
    finally:
        for c in conns:
            c.close()
    took = time.perf_counter() - t0
    return [a for a in out if a is not None], took


def expect(answers: list[Answer], status: int, what: str) -> list[dict[str, Any]]:
    bodies = []
    for code, body, _ in answers:
        if code != status:
            raise RuntimeError(f"{what}: HTTP {code}: {body[:300]!r}")
        bodies.append(json.loads(body))
    return bodies


def submit_jobs(count: int, body: dict[str, Any]) -> list[Job]:
    raw = json.dumps({**body, "async": True}).encode()
    return [("POST", EXECUTE, raw)] * count


def wait_jobs(ids: list[str]) -> list[Job]:
    return [("GET", f"/script-engine/executions/{i}/wait?timeout=300", b"") for i in ids]


async def wait_all(port: int, conc: int, ids: list[str]) -> tuple[list[dict[str, Any]], float]:
    """Wait until every execution ended (asking again for one that has not)."""
    t0 = time.perf_counter()
    records: dict[str, dict[str, Any]] = {}
    left = list(ids)
    while left:
        answers, _ = await run_jobs(port, conc, wait_jobs(left))
        for rec in expect(answers, 200, "wait"):
            if rec["status"] not in ("queued", "running"):
                records[rec["execution_id"]] = rec
        left = [i for i in left if i not in records]
    return [records[i] for i in ids], time.perf_counter() - t0


# -- the old runner ----------------------------------------------------------------------
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


def ms(value: float) -> str:
    return f"{value:.2f}"


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base else "-"


# -- sections ---------------------------------------------------------------------------
def section_sync(args: argparse.Namespace, gw: Gateway, work: Path) -> None:
    plain = json.dumps(ADD).encode()
    with_task = json.dumps({**ADD, "task_id": "bench"}).encode()
    rows = []
    for conc in args.concurrency:
        for name, body in (
            ("gateway step (SCRIPT)", plain),
            ("gateway step (SCRIPT + task variables stored)", with_task),
        ):
            lat, took = load(gw.port, "POST", EXECUTE, body, args.steps, conc)
            rows.append([name, conc, len(lat), pct(lat, 50), pct(lat, 99), len(lat) / took])
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
    base = {r[1]: r for r in rows if not r[0].startswith("gateway")}
    table(
        "sync: a trivial step, p50/p99 per step, steps/s",
        ["method", "conc", "n", "p50 ms", "p99 ms", "steps/s", "faster than subprocess (p50)"],
        [
            [
                *r[:3],
                ms(r[3]),
                ms(r[4]),
                f"{r[5]:.0f}",
                f"{base[r[1]][3] / r[3]:.0f}x" if r[0].startswith("gateway") else "1x",
            ]
            for r in rows
        ],
    )


def hold_slots(gw: Gateway, slots: int) -> list[str]:
    """Occupy every asynchronous run slot with a sleeping step: what is submitted next
    stays queued (nothing runs beside the submissions)."""
    ids = []
    for _ in range(slots):
        status, body = http(
            gw.port,
            "POST",
            EXECUTE,
            {**ADD, "function_name": "hold", "args": [600], "timeout": 900, "async": True},
        )
        assert status == 202, body
        ids.append(body["execution_id"])
    deadline = time.monotonic() + 60
    for ex_id in ids:
        while http(gw.port, "GET", f"/script-engine/executions/{ex_id}")[1]["status"] != "running":
            if time.monotonic() > deadline:
                raise TimeoutError("the holding steps did not start")
            time.sleep(0.05)
    return ids


def section_async(args: argparse.Namespace, gw: Gateway, work: Path) -> None:
    sync_body = json.dumps(ADD).encode()
    latency_rows: list[list[Any]] = []
    e2e_rows: list[list[Any]] = []
    n = args.steps

    async def measure(conc: int) -> None:
        # warm both paths
        await run_jobs(gw.port, conc, [("POST", EXECUTE, sync_body)] * 20)
        warm, _ = await run_jobs(gw.port, conc, submit_jobs(20, ADD))
        await wait_all(gw.port, conc, [b["execution_id"] for b in expect(warm, 202, "submit")])
        # synchronous: each answered when the step ended
        sync, sync_took = await run_jobs(gw.port, conc, [("POST", EXECUTE, sync_body)] * n)
        expect(sync, 200, "sync step")
        sync_lat = [a[2] for a in sync]
        # asynchronous: submit all, then wait for each
        subs, sub_took = await run_jobs(gw.port, conc, submit_jobs(n, ADD))
        ids = [b["execution_id"] for b in expect(subs, 202, "submit")]
        records, wait_took = await wait_all(gw.port, conc, ids)
        bad = [r for r in records if r["status"] != "succeeded"]
        if bad:
            raise RuntimeError(f"{len(bad)} async steps did not succeed: {bad[0]}")
        sub_lat = [a[2] for a in subs]
        sp50 = pct(sync_lat, 50)
        latency_rows.append(
            [
                "sync step, answered at its end (baseline)",
                conc,
                len(sync_lat),
                ms(sp50),
                ms(pct(sync_lat, 99)),
                "1.00x",
            ]
        )
        latency_rows.append(
            [
                "async submission -> 202 (steps run meanwhile)",
                conc,
                len(sub_lat),
                ms(pct(sub_lat, 50)),
                ms(pct(sub_lat, 99)),
                ratio(pct(sub_lat, 50), sp50),
            ]
        )
        # the submission alone: both run slots held, so nothing runs beside it
        holders = hold_slots(gw, gw_slots(gw))
        quiet, _ = await run_jobs(gw.port, conc, submit_jobs(n, ADD))
        quiet_ids = [b["execution_id"] for b in expect(quiet, 202, "submit")]
        for h in holders:
            status, body = http(gw.port, "POST", f"/script-engine/executions/{h}/cancel")
            assert status == 200, body
        await wait_all(gw.port, conc, quiet_ids)
        q_lat = [a[2] for a in quiet]
        latency_rows.append(
            [
                "async submission -> 202 (queue held: nothing runs)",
                conc,
                len(q_lat),
                ms(pct(q_lat, 50)),
                ms(pct(q_lat, 99)),
                ratio(pct(q_lat, 50), sp50),
            ]
        )
        sync_rate = n / sync_took
        e2e_rows.append(
            [
                f"{n} sync steps (baseline)",
                conc,
                f"{sync_took:.2f}",
                "-",
                f"{sync_rate:.0f}",
                "1.00x",
            ]
        )
        total = sub_took + wait_took
        e2e_rows.append(
            [
                f"{n} async steps: submit all, then wait each",
                conc,
                f"{total:.2f}",
                f"{sub_took:.2f}",
                f"{n / total:.0f}",
                ratio(n / total, sync_rate),
            ]
        )

    for conc in args.concurrency:
        asyncio.run(measure(conc))
    table(
        "async: submission latency beside the synchronous step (p50/p99)",
        ["request", "conc", "n", "p50 ms", "p99 ms", "p50 / sync p50"],
        latency_rows,
    )
    table(
        "async: end to end, every step ended (wall time, steps/s)",
        ["run", "conc", "wall s", "of it submitting s", "steps/s", "steps/s / sync"],
        e2e_rows,
    )


def gw_slots(gw: Gateway) -> int:
    """How many asynchronous executions run at once (the gateway's queue status)."""
    status, body = http(gw.port, "GET", "/script-engine/executions?limit=1")
    assert status == 200, body
    return int(body["queue"]["concurrency"])


def section_progress(args: argparse.Namespace, gw: Gateway, work: Path) -> None:
    (gw.scripts / "progress.py").write_text(PROGRESS_STEP)
    calls = args.progress_calls

    def body(fn: str, mode_async: bool) -> bytes:
        doc: dict[str, Any] = {
            "script_path": "progress.py",
            "function_name": fn,
            "args": [calls],
            "timeout": 120,
        }
        if mode_async:
            doc["async"] = True
        return json.dumps(doc).encode()

    async def once(fn: str, mode_async: bool) -> tuple[float, float]:
        """(the step's duration_ms, the loop's own ms inside the step)."""
        if not mode_async:
            answers, _ = await run_jobs(gw.port, 1, [("POST", EXECUTE, body(fn, False))])
            answer = expect(answers, 200, fn)[0]
            return answer["duration_ms"], answer["result"]["in_step_ms"]
        answers, _ = await run_jobs(gw.port, 1, [("POST", EXECUTE, body(fn, True))])
        ex_id = expect(answers, 202, fn)[0]["execution_id"]
        record = (await wait_all(gw.port, 1, [ex_id]))[0][0]
        assert record["status"] == "succeeded", record
        return record["attempts"][-1]["duration_ms"], record["result"]["in_step_ms"]

    async def measure() -> list[list[Any]]:
        rows = []
        for mode_async in (False, True):
            samples: dict[str, list[tuple[float, float]]] = {
                "without_progress": [],
                "with_progress": [],
            }
            await once("without_progress", mode_async)  # warm: the file loaded
            await once("with_progress", mode_async)
            for _ in range(args.progress_runs):  # interleaved, so noise hits both
                for fn in samples:
                    samples[fn].append(await once(fn, mode_async))
            mode = "async" if mode_async else "sync"
            base = statistics.median(d for d, _ in samples["without_progress"])
            base_in = statistics.median(i for _, i in samples["without_progress"])
            for fn, got in samples.items():
                dur = statistics.median(d for d, _ in got)
                inside = statistics.median(i for _, i in got)
                per_call = (dur - base) * 1000 / calls if fn == "with_progress" else None
                per_call_in = (inside - base_in) * 1000 / calls if fn == "with_progress" else None
                rows.append(
                    [
                        mode,
                        f"loop of {calls:,} " + ("with VWED.progress" if per_call else "without"),
                        len(got),
                        ms(dur),
                        ms(max(d for d, _ in got)),
                        ms(inside),
                        ratio(dur, base),
                        "-" if per_call is None else f"{per_call:.2f}",
                        "-" if per_call_in is None else f"{per_call_in:.2f}",
                    ]
                )
        return rows

    table(
        f"progress: {calls:,} VWED.progress calls in a step (medians of the runs)",
        [
            "mode",
            "step",
            "runs",
            "duration_ms",
            "max",
            "loop in step ms",
            "/ without",
            "us per call (duration)",
            "us per call (loop)",
        ],
        asyncio.run(measure()),
    )


# -- the WebSocket ----------------------------------------------------------------------
class StepSocket:
    """One connection to ``/script-engine/execute/ws`` speaking the multiplexed protocol:
    several requests in flight, each answered by its ``result`` (or ``error``)."""

    def __init__(self, port: int) -> None:
        self.url = f"ws://127.0.0.1:{port}/script-engine/execute/ws"
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.next_id = 0
        self.conn: Any = None
        self.reader: asyncio.Task[None] | None = None

    async def open(self) -> StepSocket:
        from tornado.websocket import websocket_connect

        self.conn = await websocket_connect(self.url)
        # as a task engine's client would (asyncio's streams and Node's ws do it by default)
        self.conn.protocol.stream.set_nodelay(True)
        self.reader = asyncio.ensure_future(self._read())
        return self

    async def _read(self) -> None:
        while True:
            raw = await self.conn.read_message()
            if raw is None:
                for fut in self.pending.values():
                    if not fut.done():
                        fut.set_exception(ConnectionError("the WebSocket closed"))
                return
            msg = json.loads(raw)
            if msg.get("type") in ("result", "error"):
                fut = self.pending.pop(msg["id"], None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)

    async def step(self, body: dict[str, Any]) -> dict[str, Any]:
        self.next_id += 1
        ident = self.next_id
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[ident] = fut
        await self.conn.write_message(json.dumps({**body, "id": ident}))
        msg = await fut
        if msg["type"] != "result":
            raise RuntimeError(f"step failed over the WebSocket: {msg}")
        return msg

    def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
        if self.conn is not None:
            self.conn.close()


async def ws_run(port: int, conc: int, count: int, sockets: int) -> tuple[list[float], float]:
    """``count`` steps, ``conc`` in flight, over ``sockets`` connections (1: all in
    flight on one; ``conc``: one in flight on each)."""
    conns = [await StepSocket(port).open() for _ in range(sockets)]
    lat: list[float] = []
    left = iter(range(count))

    async def flight(sock: StepSocket) -> None:
        for _ in left:
            t0 = time.perf_counter()
            await sock.step(ADD)
            lat.append(time.perf_counter() - t0)

    try:
        for _ in range(20):  # warm
            await conns[0].step(ADD)
        t0 = time.perf_counter()
        await asyncio.gather(*(flight(conns[i % sockets]) for i in range(conc)))
        took = time.perf_counter() - t0
    finally:
        for c in conns:
            c.close()
    return lat, took


def section_ws(args: argparse.Namespace, gw: Gateway, work: Path) -> None:
    body = json.dumps(ADD).encode()
    rows: list[list[Any]] = []
    for conc in args.concurrency:
        lat, took = load(gw.port, "POST", EXECUTE, body, args.steps, conc)
        base = pct(lat, 50)
        base_rate = len(lat) / took
        rows.append(
            [
                f"keep-alive HTTP, {conc} connection(s) (baseline)",
                conc,
                len(lat),
                ms(base),
                ms(pct(lat, 99)),
                f"{base_rate:.0f}",
                "1.00x",
                "1.00x",
            ]
        )
        cases = [(f"WebSocket, {conc} in flight on 1 connection", 1)]
        if conc > 1:
            cases.append((f"WebSocket, {conc} connections, 1 in flight each", conc))
        for name, sockets in cases:
            lat, took = asyncio.run(ws_run(gw.port, conc, args.steps, sockets))
            rows.append(
                [
                    name,
                    conc,
                    len(lat),
                    ms(pct(lat, 50)),
                    ms(pct(lat, 99)),
                    f"{len(lat) / took:.0f}",
                    ratio(pct(lat, 50), base),
                    ratio(len(lat) / took, base_rate),
                ]
            )
    table(
        "ws: a trivial step over /script-engine/execute/ws against keep-alive HTTP",
        ["transport", "conc", "n", "p50 ms", "p99 ms", "steps/s", "p50 / HTTP", "steps/s / HTTP"],
        rows,
    )


def section_cancel(args: argparse.Namespace, gw: Gateway, work: Path) -> None:
    nap = {
        "script_path": "step.py",
        "function_name": "nap",
        "args": [60],
        "timeout": args.cancel_timeout,
        "async": True,
    }

    def record(ex_id: str) -> dict[str, Any]:
        return dict(http(gw.port, "GET", f"/script-engine/executions/{ex_id}")[1])

    def until(ex_id: str, ready: Callable[[dict[str, Any]], bool]) -> None:
        deadline = time.monotonic() + 60
        while not ready(record(ex_id)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution {ex_id} never got there")
            time.sleep(0.002)

    def busy_workers() -> bool:
        """Both workers answer a step and then block their event loop for 1 s; False
        if the two steps went to the same worker (the round is not counted)."""
        body = {**ADD, "function_name": "hold_loop", "args": [1.0]}
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda _: http(gw.port, "POST", EXECUTE, body)[1], [0, 1]))
        return answers[0]["worker"] != answers[1]["worker"]

    cases: dict[str, Callable[[str], None]] = {
        "as soon as 'running'": lambda ex_id: until(ex_id, lambda r: r["status"] == "running"),
        "handed to a busy worker": lambda ex_id: until(ex_id, lambda r: bool(r["worker"])),
        "while its code runs": lambda ex_id: until(
            ex_id, lambda r: (r.get("progress") or {}).get("message") == "napping"
        ),
    }
    took: dict[str, list[float]] = {name: [] for name in cases}
    skipped = 0
    for _ in range(args.cancel_rounds):
        for name, ready in cases.items():
            if name == "handed to a busy worker" and not busy_workers():
                skipped += 1
                continue
            status, body = http(gw.port, "POST", EXECUTE, nap)
            assert status == 202, body
            ex_id = body["execution_id"]
            ready(ex_id)
            t0 = time.perf_counter()
            status, body = http(gw.port, "POST", f"/script-engine/executions/{ex_id}/cancel")
            assert status == 200, body
            end = http(gw.port, "GET", f"/script-engine/executions/{ex_id}/wait?timeout=120")[1]
            took[name].append(time.perf_counter() - t0)
            assert end["status"] == "cancelled", end
    rows = [
        [
            name,
            len(values),
            f"{pct(values, 50):.1f}",
            f"{pct(values, 90):.1f}",
            f"{max(values) * 1000:.1f}",
            sum(1 for v in values if v > 2.0),
        ]
        for name, values in took.items()
    ]
    table(
        f"cancel: from POST .../cancel to 'cancelled' (ms), {args.cancel_rounds} rounds "
        f"interleaved, step timeout {args.cancel_timeout:g} s"
        + (
            f", {skipped} busy-worker rounds not counted (both holds on one worker)"
            if skipped
            else ""
        ),
        ["cancelled", "n", "p50", "p90", "max", "over 2 s"],
        rows,
    )


SECTIONS: dict[str, Callable[[argparse.Namespace, Gateway, Path], None]] = {
    "sync": section_sync,
    "async": section_async,
    "progress": section_progress,
    "ws": section_ws,
    "cancel": section_cancel,
}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--subprocess-steps", type=int, default=40)
    parser.add_argument("--progress-calls", type=int, default=10_000)
    parser.add_argument("--progress-runs", type=int, default=7)
    parser.add_argument("--cancel-rounds", type=int, default=20)
    parser.add_argument("--cancel-timeout", type=float, default=10.0)
    parser.add_argument("--only", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--quick", action="store_true", help="fewer steps and runs")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.subprocess_steps, args.progress_runs = 200, 10, 3
    work = Path(tempfile.mkdtemp(prefix="vwed-bench-steps-"))
    gw = Gateway(work, pool=0)
    print(
        f"bench/steps.py: python {sys.version.split()[0]}, {os.cpu_count()} cpus, "
        f"{time.strftime('%Y-%m-%d %H:%M')}, load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}, sections {' '.join(args.only)}"
    )
    try:
        (gw.scripts / "step.py").write_text(STEP)
        deadline = time.monotonic() + 120
        while http(gw.port, "GET", "/script-engine/health")[1]["workers"]["idle"] < 2:
            if time.monotonic() > deadline:
                raise TimeoutError("workers did not start")
            time.sleep(0.1)
        for name in args.only:
            SECTIONS[name](args, gw, work)
    finally:
        gw.close()
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
