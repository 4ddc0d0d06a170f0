"""`vwed step` and `vwed exec ...` (issue 18) against a real gateway: the installed `vwed`
run as a subprocess with VWED_URL/VWED_TOKEN, as a shell runs it; a synchronous step, an
asynchronous one followed to its end with its progress, retries seen live, the listing,
a record, a long poll, cancels, Ctrl-C while following, and the errors' exit codes."""

from __future__ import annotations

import json
import os
import pty
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import GatewayThread, token_gateway, wait_until

pytestmark = pytest.mark.timeout(180)

ADMIN, CALLER = "cli-exec-admin-token", "cli-exec-caller-token"

JOB = """
import sys
import time
from pathlib import Path


class DeviceError(Exception):
    pass


def quick(x):
    print(f"quick {x}")
    print("careful\\x1b[2J", file=sys.stderr)
    return {"x": x}


def report(n, go):
    deadline = time.monotonic() + 30
    while not Path(go).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    for i in range(1, n + 1):
        VWED.progress(i, total=n, message=f"pallet {i}")
        print(f"moved pallet {i}")
        time.sleep(0.3)
    return {"moved": n}


def nap(seconds):
    time.sleep(seconds)
    return seconds


def flaky(counter, failures):
    path = Path(counter)
    seen = int(path.read_text()) if path.exists() else 0
    path.write_text(str(seen + 1))
    if seen < failures:
        raise DeviceError(f"the lift is busy (try {seen + 1})")
    return {"tries": seen + 1}


def broken():
    raise ValueError("not a device problem")
"""


def _vwed_command() -> list[str]:
    installed = Path(sys.executable).parent / "vwed"
    return [str(installed)] if installed.exists() else [sys.executable, "-m", "vwed_client"]


VWED = _vwed_command()


class Cli:
    def __init__(self, gw: GatewayThread) -> None:
        self.gw = gw

    def env(self, token: str = ADMIN) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VWED_")}
        return {**env, "VWED_URL": self.gw.url, "VWED_TOKEN": token}

    def run(self, *args: str, token: str = ADMIN) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*VWED, *args], env=self.env(token), capture_output=True, text=True, timeout=90
        )
        assert token not in done.stdout + done.stderr, "vwed printed the token"
        return done

    def popen(self, *args: str, token: str = ADMIN) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*VWED, *args],
            env=self.env(token),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def submit(self, *args: str) -> str:
        done = self.run("step", "job.py", *args, "--async", token=CALLER)
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()[0]

    def status(self, execution_id: str) -> str:
        r = httpx.get(
            f"{self.gw.url}/script-engine/executions/{execution_id}",
            headers={"Authorization": f"token {ADMIN}"},
            timeout=30,
        )
        return str(r.json()["status"])


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    # one asynchronous execution at a time: the second one submitted waits queued
    for gw, root in token_gateway(
        tmp_path_factory,
        "cli-exec",
        ADMIN,
        CALLER,
        workers=2,
        async_concurrency=1,
        call_timeout=90.0,
    ):
        (root / "job.py").write_text(JOB)
        yield Cli(gw)


class Lines:
    """The lines a running `vwed` prints, read by a thread, waited on with a deadline."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.seen: list[str] = []
        self._q: queue.Queue[str] = queue.Queue()
        self._pumping = threading.Thread(target=self._pump, daemon=True)
        self._pumping.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._q.put(line.rstrip("\n"))

    def wait(self, needle: str) -> str:
        def found() -> str | None:
            while not self._q.empty():
                self.seen.append(self._q.get_nowait())
            return next((line for line in self.seen if needle in line), None)

        return str(wait_until(found, 30, f"a line with {needle!r}; seen {self.seen}"))

    def finish(self) -> tuple[int, str]:
        """The exit code and stderr once it ends (stdout stays with the pump: two readers
        of one pipe would split its lines between them)."""
        code = self.proc.wait(timeout=60)
        self._pumping.join(10)
        assert self.proc.stderr is not None
        err = self.proc.stderr.read()
        while not self._q.empty():
            self.seen.append(self._q.get_nowait())
        return code, err


def test_a_synchronous_step_prints_its_result_output_and_usage(cli: Cli) -> None:
    done = cli.run("step", "job.py", "quick", "[3]", "--task", "T-cli", token=CALLER)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"x": 3}  # the result alone on stdout
    err = done.stderr.splitlines()
    assert err[:2] == ["--- stdout", "quick 3"], done.stderr
    assert err[2:4] == ["--- stderr", "careful[2J"], done.stderr  # the escape dropped
    facts = err[-1]
    assert facts.startswith("execution ") and ", worker " in facts and ", took " in facts
    assert ", cpu " in facts, facts

    full = json.loads(
        cli.run("--json", "step", "./job.py", "quick", "[4]", "--mode", "SET_TASK_VARIABLES").stdout
    )
    assert full["success"] is True and full["variables"] == {"x": 4}

    failed = cli.run("step", "job.py", "broken")
    assert failed.returncode == 1
    assert failed.stderr.startswith("vwed: error STEP_FAILED ("), failed.stderr
    assert failed.stdout == ""
    # the step's traceback under the error, ending with the exception
    assert 'in broken\n    raise ValueError("not a device problem")' in failed.stderr
    assert failed.stderr.rstrip().endswith("ValueError: not a device problem"), failed.stderr


def test_an_async_step_followed_to_its_end_with_progress(cli: Cli, tmp_path: Path) -> None:
    go = tmp_path / "go"
    args = json.dumps({"n": 5, "go": str(go)})
    proc = cli.popen(
        "step", "job.py", "report", args, "--task", "T-follow", "--async", "--follow", token=CALLER
    )
    try:
        lines = Lines(proc)
        execution_id = lines.wait("submitted ").split()[1]
        lines.wait(f"{execution_id}: ")  # the stream is open: its state came
        go.write_text("go")
        code, err = lines.finish()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, err
    progress = [line for line in lines.seen if "% (" in line]
    assert progress == [f"{i * 20}% ({i}/5) pallet {i}" for i in range(1, 6)], lines.seen
    output = [line for line in lines.seen if line.startswith("stdout: ")]
    assert output == [f"stdout: moved pallet {i}" for i in range(1, 6)]
    assert lines.seen[-1].startswith("succeeded in ") and lines.seen[-1].endswith(
        ': {"moved": 5}'
    ), lines.seen
    # in order: progress i before its output line
    assert lines.seen.index("20% (1/5) pallet 1") < lines.seen.index("stdout: moved pallet 1")

    shown = cli.run("exec", "show", execution_id, token=CALLER)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert f"execution  {execution_id} (asynchronous)" in text
    assert "status     succeeded" in text and "progress   100% (5/5) pallet 5" in text
    assert "step       job.py report, task T-follow, mode SCRIPT" in text
    assert "  1. ok in " in text and "--- stdout\nmoved pallet 1" in text
    assert text.rstrip().endswith('--- result\n{\n  "moved": 5\n}'), text


def test_retries_are_seen_live(cli: Cli, tmp_path: Path) -> None:
    args = json.dumps({"counter": str(tmp_path / "tries"), "failures": 2})
    done = cli.run(
        "step",
        "job.py",
        "flaky",
        args,
        "--retry",
        "3",
        "--backoff",
        "constant",
        "--retry-on",
        "DeviceError",
        "--follow",
        token=CALLER,
    )
    assert done.returncode == 0, done.stderr
    # the first attempt may fail before the stream is open: then it comes with the record
    retries = [line for line in done.stdout.splitlines() if line.startswith("attempt ")]
    assert [line.split()[:3] for line in retries] == [["attempt", str(n), "failed"] for n in (1, 2)]
    assert retries[0].startswith("attempt 1 failed (STEP_FAILED: ") and "(try 1)" in retries[0]
    assert retries[1].endswith("(try 2)); the next in 1 s"), retries
    assert done.stdout.splitlines()[-1].endswith(': {"tries": 3}')
    execution_id = done.stdout.splitlines()[0].split()[1]
    shown = cli.run("exec", "show", execution_id).stdout
    assert "retry      up to 3 attempts, constant 1-30 s, on DeviceError" in shown
    assert "  1. failed in " in shown and "-1): STEP_FAILED: " in shown and "  3. ok in " in shown


def test_ls_show_wait_cancel(cli: Cli) -> None:
    running = cli.submit("nap", "[30]")
    queued = cli.submit("nap", "[0.1]")
    wait_until(lambda: cli.status(running) == "running", 30, "the first one running")

    submitted = cli.run("step", "job.py", "nap", "[1]", "--async", "--key", "k-" + running)
    lines = submitted.stdout.splitlines()
    assert len(lines[0]) == 32 and lines[1] == (
        f"queued: {cli.gw.url}/script-engine/executions/{lines[0]}"
    ), lines
    again = cli.run("step", "job.py", "nap", "[1]", "--async", "--key", "k-" + running)
    assert again.stdout.splitlines()[0] == lines[0]
    assert again.stdout.splitlines()[1].startswith(
        "queued (the earlier submission with this key): "
    )
    assert cli.run("exec", "cancel", lines[0]).returncode == 0

    listed = cli.run("exec", "ls", "-n", "10")
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == [
        "ID",
        "STATUS",
        "PROGRESS",
        "PATH",
        "FUNCTION",
        "TASK",
        "ATTEMPTS",
        "DURATION",
        "SUBMITTED",
    ]
    by_id = {row.split()[0]: row.split() for row in rows}
    assert by_id[running[:12]][1:7] == ["running", "-", "job.py", "nap", "-", "1"]
    assert by_id[queued[:12]][1:7] == ["queued", "-", "job.py", "nap", "-", "0"]
    only = cli.run("exec", "ls", "--status", "queued").stdout.splitlines()[1:]
    assert [row.split()[0] for row in only] == [queued[:12]], only
    as_json = json.loads(cli.run("exec", "ls", "--json", "--path", "job.py").stdout)
    assert running in [e["execution_id"] for e in as_json]

    # a long poll that gives up: the record as it is, exit 1
    waited = cli.run("exec", "wait", running, "--wait", "0.5", token=CALLER)
    assert waited.returncode == 1 and "status     running" in waited.stdout
    assert f"{running} is still running after 0.5 s" in waited.stderr

    # the 12 characters `ls` shows name it (admin: through the listing)
    cancelled = cli.run("exec", "cancel", queued[:12])
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.strip() == f"{queued}: cancelled"
    cancelled = cli.run("exec", "cancel", running, token=CALLER)
    assert cancelled.stdout.strip() == f"{running}: cancelled", cancelled.stderr
    shown = cli.run("exec", "show", running).stdout
    assert "status     cancelled\n" in shown and "error      CANCELLED: " in shown
    ended = cli.run("exec", "cancel", running)
    assert ended.returncode == 1 and "EXECUTION_FINISHED (409)" in ended.stderr
    assert cli.run("exec", "wait", queued).returncode == 1  # it ended, not well

    quick = cli.submit("quick", "[2]")
    waited = cli.run("exec", "wait", quick, token=CALLER)
    assert waited.returncode == 0, waited.stderr
    assert "status     succeeded" in waited.stdout and '"x": 2' in waited.stdout
    assert json.loads(cli.run("exec", "wait", quick, "--json").stdout)["result"] == {"x": 2}
    followed = cli.run("exec", "follow", quick, token=CALLER)  # it has ended: state, end
    assert followed.returncode == 0
    assert followed.stdout.splitlines()[-1].endswith(': {"x": 2}'), followed.stdout


def test_ctrl_c_stops_following_only(cli: Cli) -> None:
    execution_id = cli.submit("nap", "[30]")
    proc = cli.popen("exec", "follow", execution_id, token=CALLER)
    try:
        lines = Lines(proc)
        lines.wait(f"{execution_id}: ")
        proc.send_signal(signal.SIGINT)
        code, err = lines.finish()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 130
    assert f"execution {execution_id} goes on" in err
    assert f"vwed exec cancel {execution_id}" in err
    assert cli.status(execution_id) in ("queued", "running")
    assert cli.run("exec", "cancel", execution_id).returncode == 0


def test_errors_and_exit_codes(cli: Cli) -> None:
    unknown = "0" * 32
    for args in (["show"], ["wait"], ["follow"], ["cancel"]):
        done = cli.run("exec", *args, unknown, token=CALLER)
        assert done.returncode == 1, (args, done.stderr)
        assert done.stderr.startswith("vwed: error EXECUTION_NOT_FOUND (404): "), done.stderr

    refused = cli.run("exec", "ls", token=CALLER)
    assert refused.returncode == 1 and "FORBIDDEN (403)" in refused.stderr
    missing = cli.run("step", "nothere.py", "f")
    assert missing.returncode == 1 and "SCRIPT_NOT_FOUND (404)" in missing.stderr

    for bad in (
        ["step", "job.py", "quick", "{x: 1}"],
        ["step", "job.py", "quick", "--key", "k"],
        ["step", "job.py", "quick", "--backoff", "constant"],
        ["step", "job.py", "quick", "--retry", "0"],
        ["step", "job.py", "quick", "--mode", "FAST"],
        ["exec", "ls", "--status", "lost"],
        ["exec", "wait", unknown, "--wait", "soon"],
    ):
        done = cli.run(*bad)
        assert done.returncode == 2, (bad, done.stderr)
        assert "error" in done.stderr and done.stdout == "", (bad, done.stderr)
        assert "Traceback" not in done.stderr


def test_at_a_terminal_the_progress_is_one_line_redrawn(cli: Cli, tmp_path: Path) -> None:
    go = tmp_path / "go"
    execution_id = cli.submit("report", json.dumps({"n": 3, "go": str(go)}))
    main, secondary = pty.openpty()
    proc = subprocess.Popen(
        [*VWED, "exec", "follow", execution_id],
        env=cli.env(CALLER),
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=subprocess.PIPE,
    )
    os.close(secondary)
    chunks: list[bytes] = []

    def pump() -> None:
        while True:
            try:
                data = os.read(main, 4096)
            except OSError:  # EIO: the terminal's other side closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        wait_until(lambda: f"{execution_id}: ".encode() in b"".join(chunks), 30, "the state")
        go.write_text("go")
        assert proc.wait(timeout=60) == 0
        reader.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(main)
    screen = b"".join(chunks).decode()
    # each update rewrites the line in place (no newline); other lines are printed above it
    assert "\r\x1b[K33% (1/3) pallet 1" in screen, repr(screen)
    assert "\r\x1b[K67% (2/3) pallet 2" in screen and "\r\x1b[Kstdout: moved pallet 2" in screen
    assert "(1/3) pallet 1\r\n" not in screen  # the progress never got a line of its own
    assert screen.rstrip().endswith(': {"moved": 3}'), repr(screen)
