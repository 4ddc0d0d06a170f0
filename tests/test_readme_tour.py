"""The README's tour works as written when copied line by line (issue 12, item 16; issue 15:
the tour uses the `vwed` command line): the gateway started as the README's first command
starts it, the tour's shell lines run by bash in a second process beside it (vwed reads the
token in .vwed/token, as the README says), the live-log command run as printed."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import listening_port, wait_until

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
BIN = Path(sys.executable).parent  # where pip put `vwed` beside this Python


def sh_blocks(after: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", README[README.index(after) :], re.S)


def as_run_here(block: str, port: int) -> str:
    """The README's lines, with this test's port and this venv's bin folder."""
    return block.replace("8765", str(port)).replace("$PWD/.venv/bin", str(BIN))


@pytest.mark.timeout(180)
@pytest.mark.skipif(shutil.which("curl") is None, reason="the tour uses curl, not installed")
@pytest.mark.skipif(not (BIN / "vwed").exists(), reason="vwed is not installed (pip install -e .)")
def test_the_readme_tour_runs_as_written(tmp_path):
    # port 0: the gateway binds a free port and says which (one picked here and bound
    # by the gateway later could be taken in between by another xdist worker's process)
    output = tmp_path / "gateway.log"
    with open(output, "w") as out:
        gateway = subprocess.Popen(
            [sys.executable, "-m", "kernel_gateway", "--scripts-dir", str(REPO / "examples")]
            + ["--port", "0", "--pool-size", "1", "--workers", "1"],
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        port = wait_until(lambda: _listening(gateway, output), 60, "the gateway to listen")
        # a second terminal: no VWED_* setting of the test's own environment
        env = {k: v for k, v in os.environ.items() if not k.startswith("VWED_")}
        env["VWED_URL"] = f"http://127.0.0.1:{port}"  # the README's gateway is on 8765
        wait_until(lambda: (tmp_path / ".vwed" / "token").exists(), 60, "the token file")
        wait_until(lambda: _answers(port), 60, "the gateway to listen")
        tour = as_run_here(sh_blocks("## A short tour")[0], port)
        done = subprocess.run(
            ["bash", "-c", "shopt -s expand_aliases\nset -e\n" + tour],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        out = done.stdout
        assert re.search(
            r"^started warehouse/controller.py as warehouse/controller.py_\d+ "
            r"\(1 replica\): 2 routes, 1 function at revision [0-9a-f]{12}$",
            out,
            re.M,
        ), out
        answers = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        assert answers == [
            {"total": 10, "free": 10, "occupied": 0},
            {"locations": ["A-01", "A-02", "A-03"], "goods_type": "box"},
            {"percent": 80.0, "range_m": 9600},
        ], out
        assert re.search(r"^warehouse/controller.py +running +1 +0 ", out, re.M), out
        assert re.search(r" INFO +warehouse/controller.py  warehouse: controller ready", out), out
        assert re.search(
            r"^stopped warehouse/controller.py \(warehouse/controller.py_\d+\)$", out, re.M
        )
        assert re.search(r"^started robot/battery.py as \S+ \(2 replicas\)", out, re.M), out

        follow = next(b for b in sh_blocks("## Logs") if " -f" in b)
        follow = as_run_here(follow, port)
        tail = subprocess.Popen(
            ["bash", "-c", f"export PATH={BIN}:$PATH\n" + follow],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # bash and vwed, ended together below
        )
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(
            target=lambda: [lines.put(x) for x in tail.stdout or ()], daemon=True
        ).start()
        seen: list[str] = []

        def ready() -> bool:
            while not lines.empty():
                seen.append(lines.get_nowait())
            if tail.poll() is not None:
                raise AssertionError(
                    f"vwed logs -f ended: {tail.stderr.read() if tail.stderr else ''}"
                )
            return any("controller ready" in line for line in seen)

        try:
            wait_until(ready, 30, "vwed logs -f to print the controller's line")
            line = next(line for line in seen if "controller ready" in line)
            assert "warehouse/controller.py  warehouse: controller ready" in line, line
        finally:
            os.killpg(tail.pid, signal.SIGTERM)
            tail.wait(10)
    finally:
        gateway.terminate()
        try:
            gateway.wait(timeout=30)
        except subprocess.TimeoutExpired:
            gateway.kill()
            gateway.wait(timeout=10)
        token = (tmp_path / ".vwed" / "token").read_text().strip()
        assert token not in output.read_text(), "the gateway printed its token"


def _listening(gateway: subprocess.Popen[bytes], output: Path) -> int | None:
    if gateway.poll() is not None:
        raise AssertionError(f"the gateway exited: {output.read_text()[-2000:]}")
    return listening_port(output)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 1):
            return True
    except OSError:
        return False
