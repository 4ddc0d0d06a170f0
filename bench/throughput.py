"""Throughput with wrk and the CPU each server spends per request (issue 19).

``bench/calls.py`` (section ``calls``, or ``--only throughput`` for this table alone)
drives every server with wrk, auth on where the server has auth, and reads the
server's own CPU time (``utime + stime`` of ``/proc/PID/stat``) before and after each
run: CPU per request is that difference over the requests wrk counted. The servers:
the bare Tornado handler (the floor), the gateway's route and function call, and
Node-RED 4.1 (``http in`` -> ``function`` -> ``http response``), installed by npm
into a temporary folder the first time, like Jupyter Kernel Gateway is.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import textwrap
from pathlib import Path
from typing import Any

__all__ = ["cpu_seconds", "wrk", "start_nodered", "NODE_RED_VERSION"]

NODE_RED_VERSION = "4.1"
_TICK = os.sysconf("SC_CLK_TCK")

# wrk's Lua hooks: the method, body and token of every request; a JSON summary at the end
_WRK_SCRIPT = """
wrk.method = "{method}"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
{auth}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK {{"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,'
    .. '"errors":%d,"non2xx":%d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), e.connect + e.read + e.write + e.timeout, e.status))
end
"""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (its threads included), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def wrk(
    port: int,
    method: str,
    path: str,
    body: str = "",
    *,
    token: str = "",
    connections: int = 1,
    seconds: float = 5.0,
    pids: tuple[int, ...] = (),
) -> dict[str, Any]:
    """One wrk run (one thread, ``connections`` keep-alive connections): requests,
    req/s, p50/p90/p99 ms, errors, and the CPU ms per request of each of ``pids``."""
    auth = f'wrk.headers["Authorization"] = "token {token}"' if token else ""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(_WRK_SCRIPT.format(method=method, body=body, auth=auth))
    before = [cpu_seconds(p) for p in pids]
    try:
        out = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{seconds:g}s",
                "--timeout",
                "10s",
                "-s",
                f.name,
                f"http://127.0.0.1:{port}{path}",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 60,
        ).stdout
    finally:
        os.unlink(f.name)
    after = [cpu_seconds(p) for p in pids]
    line = next(x for x in out.splitlines() if x.startswith("WRK "))
    raw = json.loads(line[4:])
    n = max(1, raw["requests"])
    return {
        "requests": raw["requests"],
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50": raw["p50_us"] / 1000,
        "p90": raw["p90_us"] / 1000,
        "p99": raw["p99_us"] / 1000,
        "errors": raw["errors"] + raw["non2xx"],
        "cpu_ms": [(a - b) * 1000 / n for a, b in zip(after, before, strict=True)],
    }


_NODE_RED_SETTINGS = """
const crypto = require("crypto");
const token = Buffer.from("token " + process.env.BENCH_TOKEN);
module.exports = {
  flowFile: "flows.json",
  uiHost: "127.0.0.1",
  uiPort: Number(process.env.BENCH_PORT),
  httpAdminRoot: false,
  logging: { console: { level: "warn" } },
  // auth on, as on the gateway: a constant-time check of the Authorization header
  httpNodeMiddleware: function (req, res, next) {
    const given = Buffer.from(req.headers.authorization || "");
    if (given.length === token.length && crypto.timingSafeEqual(given, token)) return next();
    res.status(401).json({ error: "a valid token is required" });
  },
};
"""

_NODE_RED_FLOW = [
    {"id": "tab1", "type": "tab", "label": "bench"},
    {
        "id": "in1",
        "type": "http in",
        "z": "tab1",
        "url": "/ping",
        "method": "get",
        "wires": [["fn1"]],
    },
    {
        "id": "fn1",
        "type": "function",
        "z": "tab1",
        "func": "msg.payload = {ok: true, n: 1};\nreturn msg;",
        "outputs": 1,
        "wires": [["out1"]],
    },
    {"id": "out1", "type": "http response", "z": "tab1", "statusCode": "", "wires": []},
]


def start_nodered(work: Path, token: str) -> tuple[subprocess.Popen[bytes] | None, int, str]:
    """Node-RED serving ``GET /ping`` (token checked), or ``(None, 0, why not)``."""
    from calls import free_port, wait_http  # the benchmark's plumbing

    folder = Path(tempfile.gettempdir()) / "vwed-bench-node-red"
    red = folder / "node_modules" / "node-red" / "red.js"
    try:
        if shutil.which("node") is None or shutil.which("npm") is None:
            raise RuntimeError("node and npm are not installed")
        if not red.exists():
            print(f"installing node-red@{NODE_RED_VERSION} into {folder} ...", flush=True)
            folder.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                ["npm", "install", "--prefix", str(folder), f"node-red@{NODE_RED_VERSION}"],
                check=True,
                timeout=900,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        user = work / "node-red"
        user.mkdir(parents=True, exist_ok=True)
        (user / "settings.js").write_text(textwrap.dedent(_NODE_RED_SETTINGS))
        (user / "flows.json").write_text(json.dumps(_NODE_RED_FLOW))
        port = free_port()
        proc = subprocess.Popen(
            ["node", str(red), "--userDir", str(user), "--settings", str(user / "settings.js")],
            env={**os.environ, "BENCH_PORT": str(port), "BENCH_TOKEN": token},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_http(port, "/ping", timeout=120)
        return proc, port, ""
    except Exception as exc:  # reported in the table, not hidden
        return None, 0, f"{type(exc).__name__}: {exc}"


def version_of_nodered() -> str:
    package = Path(tempfile.gettempdir()) / "vwed-bench-node-red/node_modules/node-red/package.json"
    try:
        return str(json.loads(package.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return NODE_RED_VERSION
