"""The `vwed` command line against a real gateway (issue 15): a gateway with tokens on a
loopback port, the CLI run as a subprocess (the installed console script) with
VWED_URL/VWED_TOKEN in its environment, as a shell would run it."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from wheels import build_test_wheels

from conftest import GatewayThread, wait_until
from kernel_gateway.config import Settings
from kernel_gateway.routes import ROUTES

SCRIPT = """
def boot():
    VWED.function.register("cli_greet", greet, "say hello")
    VWED.api.register_route("/cli/ping", "GET", lambda request: {"pong": True})
    VWED.log.info("cli", "hello ready")


def greet(who, punctuation="!"):
    VWED.log.info("cli", f"greeted {who}")
    return {"hello": who}
"""

DEPS = """\
# /// script
# dependencies = [{requirement!r}]
# ///
import vwedtiny


def boot():
    pass
"""

OTHER = """
def boot():
    VWED.function.register("cli_other", other)


def other():
    VWED.log.info("cli", "other spoke")
    return 1
"""


def _vwed_command() -> list[str]:
    installed = Path(sys.executable).parent / "vwed"
    return [str(installed)] if installed.exists() else [sys.executable, "-m", "vwed_client"]


VWED = _vwed_command()


class Gateway:
    def __init__(self, thread: GatewayThread, data: Path, root: Path) -> None:
        self.thread = thread
        self.data = data
        self.root = root
        self.token = (data / "token").read_text().strip()
        self.http = httpx.Client(
            base_url=thread.url, headers={"Authorization": f"token {self.token}"}, timeout=60
        )

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VWED_")}
        env.update(VWED_URL=self.thread.url, VWED_TOKEN=self.token)
        env.update(extra)
        return env

    def vwed(
        self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*VWED, *args],
            env=self.env() if env is None else env,
            cwd=cwd or self.data.parent,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert self.token not in done.stdout + done.stderr, "vwed printed the token"
        assert "Traceback" not in done.stderr, done.stderr
        return done

    def stop_all(self) -> None:
        for script in self.http.get("/script-engine/running").json()["scripts"]:
            self.http.post("/script-engine/stop", json={"script_id": script["script_id"]})


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("cli-scripts")
    (root / "cli").mkdir()
    (root / "cli" / "hello.py").write_text(textwrap.dedent(SCRIPT))
    (root / "cli" / "other.py").write_text(textwrap.dedent(OTHER))
    (root / "cli" / "copy.py").write_text(textwrap.dedent(SCRIPT))  # the same names
    (root / "cli" / "broken.py").write_text("def boot():\n    x = (\n")
    (root / "cli" / "deps_ok.py").write_text(DEPS.format(requirement="vwedtiny==2.0"))
    (root / "cli" / "deps_missing.py").write_text(DEPS.format(requirement="vwednothere==1.0"))
    wheels = build_test_wheels(tmp_path_factory.mktemp("cli-wheels"))
    data = tmp_path_factory.mktemp("cli-data")
    settings = Settings(
        scripts_dir=str(root),
        port=0,
        data_dir=str(data),
        pool_size=1,
        workers=1,
        call_timeout=10.0,
        boot_timeout=30.0,
        deps_find_links=str(wheels),
    )
    thread = GatewayThread(settings.validated()).start()
    try:
        yield Gateway(thread, data, root)
    finally:
        thread.stop()


@pytest.fixture
def gw_cli(gateway: Gateway) -> Iterator[Gateway]:
    yield gateway
    gateway.stop_all()


def _has_route(path: str) -> bool:
    return any(pattern == path for pattern, _, _ in ROUTES)


@contextlib.contextmanager
def _refused_port() -> Iterator[int]:
    """A loopback port bound here but not listening: connections to it are refused, and no
    other process can take it while the test uses it (a port found free and closed could
    be bound by another xdist worker's process before the CLI connects to it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


@pytest.mark.timeout(120)
def test_start_ls_call_reload_stop(gw_cli: Gateway) -> None:
    started = gw_cli.vwed("start", "cli/hello.py")
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith("started cli/hello.py as cli/hello.py_"), started.stdout
    assert "(1 replica): 1 route, 1 function" in started.stdout

    listed = gw_cli.vwed("ls")
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()[:2]
    assert header.split()[:7] == [
        "PATH",
        "STATUS",
        "REPLICAS",
        "RESTARTS",
        "UPTIME",
        "CPU%",
        "RSS_MIB",
    ]
    assert row.split()[:4] == ["cli/hello.py", "running", "1", "0"], listed.stdout
    assert header.split()[-2:] == ["REVISION", "SCRIPT_ID"], listed.stdout

    as_json = json.loads(gw_cli.vwed("ls", "--json").stdout)
    assert [s["script_path"] for s in as_json["scripts"]] == ["cli/hello.py"]
    script_id = as_json["scripts"][0]["script_id"]

    called = gw_cli.vwed("call", "cli_greet", '{"who": "ann"}')
    assert called.returncode == 0, called.stderr
    assert json.loads(called.stdout) == {"hello": "ann"}
    full = json.loads(gw_cli.vwed("--json", "call", "cli_greet", '["bob"]').stdout)
    assert full["success"] is True and full["result"] == {"hello": "bob"}
    assert full["script_id"] == script_id

    reloaded = gw_cli.vwed("reload", script_id)  # by id
    assert reloaded.returncode == 0, reloaded.stderr
    assert reloaded.stdout.startswith("reloaded cli/hello.py as cli/hello.py_")

    def history() -> list[str]:  # the gateway stores records a moment after they happen
        done = gw_cli.vwed("logs", "cli/hello.py", "--tag", "cli", "-n", "5")
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        return (
            lines if any(line.endswith("cli/hello.py  cli: greeted ann") for line in lines) else []
        )

    lines = wait_until(history, 30, "the history of cli/hello.py")
    assert lines[0].split()[2] == "INFO", lines

    stopped = gw_cli.vwed("stop", "cli/hello.py")  # by path
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.startswith("stopped cli/hello.py (cli/hello.py_")
    assert gw_cli.vwed("ls").stdout.strip() == "no script is running"


def _reader(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _wait_line(lines: queue.Queue[str], seen: list[str], needle: str, what: str) -> str:
    def found() -> str | None:
        while not lines.empty():
            seen.append(lines.get_nowait())
        return next((line for line in seen if needle in line), None)

    return str(wait_until(found, 30, what))


@pytest.mark.timeout(120)
def test_logs_follow_prints_live_lines_of_one_script_across_restarts(gw_cli: Gateway) -> None:
    assert gw_cli.vwed("start", "cli/hello.py").returncode == 0
    assert gw_cli.vwed("start", "cli/other.py").returncode == 0
    follower = subprocess.Popen(
        [*VWED, "logs", "cli/hello.py", "-f", "--tag", "cli", "-n", "1"],
        env=gw_cli.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines, seen = _reader(follower), []
        # the stream is open before history is read: once history is printed, the follower
        # is subscribed, and what comes next arrives live
        _wait_line(lines, seen, "hello ready", "the history line")
        assert gw_cli.vwed("call", "cli_other").returncode == 0
        assert gw_cli.vwed("call", "cli_greet", '{"who": "live"}').returncode == 0
        _wait_line(lines, seen, "greeted live", "a live line")
        # a restart gives the script a new id: still followed, by its path
        assert gw_cli.vwed("restart", "cli/hello.py").returncode == 0
        assert gw_cli.vwed("call", "cli_greet", '{"who": "again"}').returncode == 0
        _wait_line(lines, seen, "greeted again", "a line after the restart")
        assert not [line for line in seen if "other spoke" in line], seen
        assert sum("hello ready" in line for line in seen) == 2, seen  # history, restart
        follower.send_signal(signal.SIGINT)  # Ctrl-C
        _, err = follower.communicate(timeout=30)
        assert follower.returncode == 130
        assert err == "", err  # quietly
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.communicate(timeout=10)


@pytest.mark.timeout(120)
def test_exit_codes(gw_cli: Gateway, tmp_path: Path) -> None:
    unknown = gw_cli.vwed("stop", "cli/nothere.py")
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("vwed: error NOT_RUNNING (404): ") and unknown.stdout == ""

    missing = gw_cli.vwed("start", "cli/missing.py")
    assert missing.returncode == 1 and "SCRIPT_NOT_FOUND" in missing.stderr, missing.stderr

    wrong = gw_cli.vwed("ls", env=gw_cli.env(VWED_TOKEN="not-the-token"))
    assert wrong.returncode == 1 and "UNAUTHORIZED (401)" in wrong.stderr
    wrong_ws = gw_cli.vwed("logs", "-f", env=gw_cli.env(VWED_TOKEN="not-the-token"))
    assert wrong_ws.returncode == 1 and "UNAUTHORIZED (401)" in wrong_ws.stderr

    caller = (gw_cli.data / "caller_token").read_text().strip()
    refused = gw_cli.vwed("ls", env=gw_cli.env(VWED_TOKEN=caller))
    assert refused.returncode == 1 and "FORBIDDEN (403)" in refused.stderr, refused.stderr

    with _refused_port() as port:
        away = gw_cli.vwed("ls", env=gw_cli.env(VWED_URL=f"http://127.0.0.1:{port}"))
        assert away.returncode == 3 and "cannot reach the gateway" in away.stderr, away.stderr
        away_ws = gw_cli.vwed("logs", "-f", env=gw_cli.env(VWED_URL=f"http://127.0.0.1:{port}"))
        assert away_ws.returncode == 3 and "cannot reach the gateway" in away_ws.stderr

    for bad in (
        ["start"],
        ["frobnicate"],
        ["start", "cli/hello.py", "--replicas", "0"],
        ["logs", "--level", "LOUD"],
        ["call", "cli_greet", "{who: ann}"],
        ["ls", "--url", "ftp://example.com"],
    ):
        done = gw_cli.vwed(*bad)
        assert done.returncode == 2, (bad, done.stderr)
        assert "error" in done.stderr and done.stdout == "", (bad, done.stderr)

    # no VWED_TOKEN, no ./.vwed/token: 3, saying where it looked
    env = gw_cli.env()
    del env["VWED_TOKEN"]
    none = gw_cli.vwed("ls", env=env, cwd=tmp_path)
    assert none.returncode == 3 and "no token" in none.stderr and ".vwed/token" in none.stderr
    # run beside the gateway (its data directory named): the token file is read
    beside = gw_cli.vwed("ls", env={**env, "VWED_DATA_DIR": str(gw_cli.data)}, cwd=tmp_path)
    assert beside.returncode == 0, beside.stderr
    flag = gw_cli.vwed("ls", "--data-dir", str(gw_cli.data), env=env, cwd=tmp_path)
    assert flag.returncode == 0, flag.stderr

    helped = gw_cli.vwed("--help")
    assert helped.returncode == 0 and "exit codes:" in helped.stdout


@pytest.mark.timeout(120)
@pytest.mark.skipif(
    not _has_route(r"/script-engine/check"),
    reason="POST /script-engine/check is missing: it is built by another engineer for issue 15",
)
def test_check_prints_findings_and_fails_on_an_error(gw_cli: Gateway) -> None:
    broken = gw_cli.vwed("check", "cli/broken.py")
    assert broken.returncode == 1, broken.stderr
    found = [line for line in broken.stdout.splitlines() if ": error SYNTAX_ERROR " in line]
    assert found and found[0].startswith("cli/broken.py:"), broken.stdout
    line, column = found[0].split(":")[1:3]
    assert int(line) >= 1 and int(column) >= 1
    assert broken.stdout.splitlines()[-1].startswith("1 error"), broken.stdout

    clean = gw_cli.vwed("check", "cli/hello.py")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout.strip() == "no findings"
    assert json.loads(gw_cli.vwed("check", "cli/hello.py", "--json").stdout)["ok"] is True

    # running, its own names are its own; a copy registering them conflicts
    assert gw_cli.vwed("start", "cli/hello.py").returncode == 0
    assert gw_cli.vwed("check", "cli/hello.py").returncode == 0
    copy = gw_cli.vwed("check", "cli/copy.py")
    assert copy.returncode == 1, copy.stdout
    assert ": error FUNCTION_TAKEN " in copy.stdout and ": error ROUTE_TAKEN " in copy.stdout

    # a start is refused before a kernel is taken, the finding printed under the error
    refused = gw_cli.vwed("start", "cli/broken.py")
    assert refused.returncode == 1
    assert refused.stderr.startswith("vwed: error SYNTAX_ERROR (422): "), refused.stderr
    assert "\ncli/broken.py:" in refused.stderr and ": error SYNTAX_ERROR " in refused.stderr


@pytest.mark.timeout(60)
@pytest.mark.skipif(
    not _has_route(r"/script-engine/whoami"),
    reason="GET /script-engine/whoami is missing: it is built by another engineer for issue 15",
)
def test_whoami(gw_cli: Gateway) -> None:
    done = gw_cli.vwed("whoami")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"admin at {gw_cli.thread.url} (gateway ")
    assert json.loads(gw_cli.vwed("whoami", "--json").stdout)["role"] == "admin"
    caller = (gw_cli.data / "caller_token").read_text().strip()
    as_caller = gw_cli.vwed("whoami", env=gw_cli.env(VWED_TOKEN=caller))
    assert as_caller.returncode == 0 and as_caller.stdout.startswith("caller at ")


@pytest.mark.timeout(180)
@pytest.mark.skipif(
    not _has_route(r"/script-engine/environments/prefetch"),
    reason="the environments endpoints are built by another engineer for issue 16",
)
def test_deps_prefetch_ls_show(gw_cli: Gateway) -> None:
    before = gw_cli.vwed("deps", "show", "cli/deps_ok.py")
    assert before.returncode == 0, before.stderr
    assert before.stdout.splitlines()[:2] == [
        "cli/deps_ok.py: 1 requirement(s) from pep723",
        "  vwedtiny==2.0",
    ], before.stdout
    assert "not installed" in before.stdout

    # one path failing: the others are prepared and printed all the same, exit 1
    mixed = gw_cli.vwed(
        "deps", "prefetch", "./cli/deps_ok.py", "cli/deps_missing.py", "cli/hello.py"
    )
    assert mixed.returncode == 1, mixed.stdout + mixed.stderr
    lines = mixed.stdout.splitlines()
    assert len(lines) == 2, mixed.stdout
    assert lines[0].startswith("cli/deps_ok.py: environment ")
    assert lines[0].endswith(": vwedtiny 2.0"), lines[0]
    assert lines[1] == "cli/hello.py: declares no packages (it runs with the engine's own)"
    assert mixed.stderr.startswith("vwed: cli/deps_missing.py: error DEPENDENCY_FAILED: ")
    assert "vwednothere" in mixed.stderr

    again = gw_cli.vwed("deps", "prefetch", "cli/deps_ok.py")
    assert again.returncode == 0 and again.stdout.strip() == lines[0], again.stdout
    as_json = json.loads(gw_cli.vwed("deps", "prefetch", "cli/deps_ok.py", "--json").stdout)
    assert as_json["results"][0]["environment"]["packages"] == [["vwedtiny", "2.0"]]

    listed = gw_cli.vwed("deps", "ls")
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["LOCK", "STATUS", "PACKAGES", "SIZE", "SCRIPTS", "LAST", "USED"]
    lock = lines[0].split()[2].rstrip(":")
    row = next(r for r in rows if r.startswith(lock))
    assert " ready " in row and "vwedtiny 2.0" in row
    envs = json.loads(gw_cli.vwed("deps", "ls", "--json").stdout)["environments"]
    assert any(e["lock"].startswith(lock) for e in envs)

    after = gw_cli.vwed("deps", "show", "cli/deps_ok.py")
    assert after.returncode == 0
    assert f"installed: environment {lock}: vwedtiny 2.0" in after.stdout, after.stdout
    plain = gw_cli.vwed("deps", "show", "cli/hello.py")
    assert (
        plain.stdout.strip() == "cli/hello.py: declares no packages (it runs with the engine's own)"
    )
    missing = gw_cli.vwed("deps", "show", "cli/nothere.py")
    assert missing.returncode == 1 and "SCRIPT_NOT_FOUND" in missing.stderr

    # installing runs code: the caller token may not
    caller = (gw_cli.data / "caller_token").read_text().strip()
    refused = gw_cli.vwed("deps", "prefetch", "cli/deps_ok.py", env=gw_cli.env(VWED_TOKEN=caller))
    assert refused.returncode == 1 and "FORBIDDEN" in refused.stderr, refused.stderr


@pytest.mark.timeout(120)
def test_history_and_a_start_and_reload_at_a_revision(gw_cli: Gateway) -> None:
    """`vwed history PATH` lists the commits of a file; `--revision` on start and reload
    runs that commit (a rollback); a bad revision is a usage error or the gateway's 404."""
    code = "def boot():\n    VWED.api.register_route('/cli/rev', 'GET', lambda: {v!r})\n"
    script = gw_cli.root / "cli" / "rev.py"
    script.write_text(code.format(v="one"))
    first = json.loads(gw_cli.vwed("--json", "start", "cli/rev.py").stdout)
    old = first["revision"]
    assert len(old) == 40, first
    script.write_text(code.format(v="two"))
    reloaded = gw_cli.vwed("reload", "cli/rev.py")  # the change on disk is committed first
    assert reloaded.returncode == 0, reloaded.stderr
    assert " at revision " in reloaded.stdout and old[:12] not in reloaded.stdout
    assert gw_cli.http.get("/script-api/cli/rev").json() == "two"

    listed = gw_cli.vwed("history", "cli/rev.py")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["REVISION", "TIME", "AUTHOR", "MESSAGE"], listed.stdout
    assert len(lines) == 3 and lines[2].startswith(old[:12]), listed.stdout
    assert "disk" in lines[1]
    commits = json.loads(gw_cli.vwed("history", "cli/rev.py", "--json").stdout)["history"]
    assert [c["revision"] for c in commits][1] == old

    rolled = gw_cli.vwed("reload", "cli/rev.py", "--revision", old[:8])
    assert rolled.returncode == 0, rolled.stderr
    assert rolled.stdout.rstrip().endswith(f"at revision {old[:12]}"), rolled.stdout
    assert gw_cli.http.get("/script-api/cli/rev").json() == "one"

    bad = gw_cli.vwed("reload", "cli/rev.py", "--revision", "not-hex")
    assert bad.returncode == 2 and "--revision" in bad.stderr, bad.stderr
    missing = gw_cli.vwed("reload", "cli/rev.py", "--revision", "deadbeef")
    assert missing.returncode == 1 and "REVISION_NOT_FOUND" in missing.stderr, missing.stderr
    stopped = gw_cli.vwed("stop", "cli/rev.py")
    assert stopped.returncode == 0, stopped.stderr
    started = gw_cli.vwed("start", "cli/rev.py", "--revision", old)
    assert started.returncode == 0 and f"at revision {old[:12]}" in started.stdout, started.stderr
    assert gw_cli.http.get("/script-api/cli/rev").json() == "one"
