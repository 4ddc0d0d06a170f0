"""Benchmark of the operator's web console (docs/console.md reports its table).

A real gateway (its own process, with a token, the bundled examples as scripts root,
`warehouse/controller.py` started) and Debian's Chromium through Playwright. N cold loads
(a new browser context each: empty cache, no session) of:

- the console, ``/``: bytes over the wire (the sum of CDP ``Network.loadingFinished``
  ``encodedDataLength``: bodies as sent plus headers) and requests until the sign-in form
  works; time from navigation start to the form working (the page's
  ``performance.mark("vwed-signin-ready")``, set once its modules ran); then time from the
  "Sign in" click to the scripts tree showing the running script's status, and the bytes
  of that (the API answers);
- a baseline in the same run: a bare static HTML page served by the same gateway through
  the same static file handler (mounted by this benchmark only, from a temporary folder):
  its bytes and its navigation start -> load event.

Prints a markdown table: median and p90 of each.

    python bench/console.py            # 10 loads
    python bench/console.py --runs 30
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("VWED_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# The gateway as `python -m kernel_gateway`, plus one route for the baseline page: the
# console's own static file handler over a folder holding an empty HTML page.
LAUNCHER = """
import sys
from kernel_gateway import routes
from kernel_gateway.app import main
from kernel_gateway.handlers.console import ConsoleFileHandler

BLANK = sys.argv.pop(1)


class Blank(ConsoleFileHandler):
    def initialize(self, **kwargs):
        super().initialize(**kwargs)
        self.root = BLANK


routes.ROUTES.append((r"/bench-blank/(.+)", Blank, ()))
raise SystemExit(main(sys.argv[1:]))
"""

BLANK_PAGE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>blank</title></head>'
    "<body><p>blank</p></body></html>\n"
)

WAIT_FOR_TREE = """
async (path) => {
  const t0 = performance.now();
  document.getElementById("signin-button").click();
  return await new Promise((resolve) => {
    const look = () => {
      const badge = document.querySelector(`#tree .tree-file[data-path="${path}"] .badge.running`);
      if (badge) resolve(performance.now() - t0);
      else requestAnimationFrame(look);
    };
    look();
  });
}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_up(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the gateway exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/script-engine/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("the gateway did not come up in 90 s")


class Wire:
    """Bytes and requests over the wire of one page, from the DevTools protocol."""

    def __init__(self, context: Any, page: Any) -> None:
        self.bytes = 0.0
        self.requests = 0
        self.cdp = context.new_cdp_session(page)
        self.cdp.send("Network.enable")
        self.cdp.on("Network.loadingFinished", self._finished)

    def _finished(self, event: dict[str, Any]) -> None:
        self.bytes += float(event.get("encodedDataLength", 0))
        self.requests += 1

    def take(self) -> tuple[float, int]:
        got = (self.bytes, self.requests)
        self.bytes, self.requests = 0.0, 0
        return got


def settle(page: Any, wire: Wire) -> None:
    """Wait until no response has finished for 300 ms (the page's requests are done)."""
    last = -1.0
    while wire.bytes != last:
        last = wire.bytes
        page.wait_for_timeout(300)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def run(runs: int) -> list[tuple[str, list[float], str]]:
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="vwed-bench-console-"))
    scripts = tmp / "scripts"
    shutil.copytree(ROOT / "examples", scripts)
    blank = tmp / "blank"
    blank.mkdir()
    (blank / "index.html").write_text(BLANK_PAGE)
    token = uuid.uuid4().hex
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp / "gateway.log"
    # fmt: off
    cmd = [sys.executable, "-c", LAUNCHER, str(blank), "--scripts-dir", str(scripts),
           "--data-dir", str(tmp / "data"), "--port", str(port), "--pool-size", "1",
           "--workers", "1", "--token", token]
    # fmt: on
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    rows: dict[str, list[float]] = {k: [] for k in KEYS}
    try:
        wait_up(url, proc, log)
        api = httpx.Client(base_url=url, headers={"Authorization": f"token {token}"}, timeout=60)
        r = api.post("/script-engine/start", json={"script_path": "warehouse/controller.py"})
        assert r.status_code == 200, r.text
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for _ in range(runs):
                # the baseline: a bare page through the same handler
                context = browser.new_context()
                page = context.new_page()
                wire = Wire(context, page)
                page.goto(f"{url}/bench-blank/index.html", wait_until="load")
                settle(page, wire)
                nav = page.evaluate("performance.getEntriesByType('navigation')[0].toJSON()")
                size, _ = wire.take()
                rows["blank_bytes"].append(size)
                rows["blank_ms"].append(nav["loadEventEnd"])
                context.close()

                # the console, cold
                context = browser.new_context()
                page = context.new_page()
                wire = Wire(context, page)
                page.goto(f"{url}/", wait_until="load")
                page.wait_for_function("performance.getEntriesByName('vwed-signin-ready').length")
                settle(page, wire)
                ready = page.evaluate(
                    "performance.getEntriesByName('vwed-signin-ready')[0].startTime"
                )
                size, requests = wire.take()
                rows["page_bytes"].append(size)
                rows["page_requests"].append(requests)
                rows["form_ms"].append(ready)
                page.fill("#signin-token", token)
                rows["tree_ms"].append(page.evaluate(WAIT_FOR_TREE, "warehouse/controller.py"))
                settle(page, wire)
                rows["signin_bytes"].append(wire.take()[0])
                context.close()
            browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    return [(LABELS[k], v, UNITS[k]) for k, v in rows.items()]


KEYS = [
    "page_bytes",
    "page_requests",
    "form_ms",
    "tree_ms",
    "signin_bytes",
    "blank_bytes",
    "blank_ms",
]
LABELS = {
    "page_bytes": "console `/`: bytes over the wire until the sign-in form works",
    "page_requests": "console `/`: requests",
    "form_ms": "console: navigation start -> sign-in form works",
    "tree_ms": "console: Sign in click -> tree shows the running script",
    "signin_bytes": "console: bytes after Sign in (whoami, tree, running, ...)",
    "blank_bytes": "baseline: bare HTML page, bytes over the wire",
    "blank_ms": "baseline: bare HTML page, navigation start -> load event",
}
UNITS = {
    "page_bytes": "KB",
    "page_requests": "",
    "form_ms": "ms",
    "tree_ms": "ms",
    "signin_bytes": "KB",
    "blank_bytes": "KB",
    "blank_ms": "ms",
}


def table(rows: list[tuple[str, list[float], str]], runs: int) -> str:
    def fmt(v: float, unit: str) -> str:
        if unit == "KB":
            return f"{v / 1000:.1f} KB"
        if unit == "ms":
            return f"{v:.0f} ms"
        return f"{v:.0f}"

    lines = [
        f"| measure ({runs} cold loads, loopback) | median | p90 |",
        "|---|---|---|",
    ]
    for label, values, unit in rows:
        med = statistics.median(values)
        lines.append(f"| {label} | {fmt(med, unit)} | {fmt(pct(values, 0.9), unit)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="also print the raw numbers")
    args = parser.parse_args()
    rows = run(args.runs)
    print(table(rows, args.runs))
    if args.json:
        print(json.dumps({label: values for label, values, _ in rows}, indent=1))


if __name__ == "__main__":
    main()
