"""The README's tour works as written when copied line by line (issue 12, item 16):
the gateway started as the README's first command starts it, the tour's shell lines
run by bash in a second process, the log-following snippet run as printed."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import wait_until

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def sh_blocks(after: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", README[README.index(after) :], re.S)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.timeout(180)
@pytest.mark.skipif(shutil.which("curl") is None, reason="the tour uses curl, not installed")
def test_the_readme_tour_runs_as_written(tmp_path):
    port = free_port()
    gateway = subprocess.Popen(
        [sys.executable, "-m", "kernel_gateway", "--scripts-dir", str(REPO / "examples")]
        + ["--port", str(port), "--pool-size", "1", "--workers", "1"],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(lambda: (tmp_path / ".vwed" / "token").exists(), 60, "the token file")
        wait_until(lambda: _answers(port), 60, "the gateway to listen")
        tour = sh_blocks("## A short tour")[0].replace("8765", str(port))
        done = subprocess.run(
            ["bash", "-c", "shopt -s expand_aliases\nset -e\n" + tour],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        answers = _documents(done.stdout)  # curl prints no newline after an answer
        assert len(answers) == 7, done.stdout
        assert all(a.get("success", True) for a in answers), done.stdout
        assert answers[0]["script_id"].startswith("warehouse/controller.py_")
        assert answers[1] == {"total": 10, "free": 10, "occupied": 0}
        assert answers[2]["result"]["locations"] == ["A-01", "A-02", "A-03"]
        assert [s["script_path"] for s in answers[3]["scripts"]] == ["warehouse/controller.py"]
        assert answers[5]["success"] is True and len(answers[5]["kernels"]) == 2, answers[5]
        assert answers[6] == {"percent": 80.0, "range_m": 9600}

        follow = next(b for b in sh_blocks("## Logs") if "websocket_connect" in b)
        follow = follow.replace(".venv/bin/python", sys.executable).replace("8765", str(port))
        tail = subprocess.Popen(
            ["bash", "-c", follow],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            line = ""
            deadline = time.monotonic() + 30
            while "controller ready" not in line and time.monotonic() < deadline:
                line = tail.stdout.readline() if tail.stdout else ""
                if not line and tail.poll() is not None:
                    break
            assert "controller ready" in line, tail.stderr.read() if tail.poll() is not None else ""
            assert json.loads(line)["type"] == "record"
        finally:
            tail.kill()
            tail.wait(10)
    finally:
        gateway.terminate()
        try:
            out, _ = gateway.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            gateway.kill()
            out, _ = gateway.communicate(timeout=10)
        token = (tmp_path / ".vwed" / "token").read_text().strip()
        assert token not in out, "the gateway printed its token"


def _documents(text: str) -> list[dict]:
    decoder, found, at = json.JSONDecoder(), [], 0
    while at < len(text.rstrip()):
        value, at = decoder.raw_decode(text, at)
        found.append(value)
        while at < len(text) and text[at].isspace():
            at += 1
    return found


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 1):
            return True
    except OSError:
        return False
