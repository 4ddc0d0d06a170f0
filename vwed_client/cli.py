"""``vwed``: the gateway from a terminal or a shell script (docs/cli.md).

Exit codes: 0 success; 1 the gateway answered an error (its code and message on stderr)
or ``check`` found an error; 2 usage error; 3 gateway unreachable or no token found;
130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .client import DEFAULT_URL, ApiError, Client, NoToken, Unreachable, UsageError, connect
from .executions import add_executions_parser, cmd_exec, cmd_step
from .follow import follow, history
from .output import (
    environments_table,
    finding_line,
    findings_summary,
    log_line,
    packages_text,
    running_table,
    started_line,
    to_json,
)
from .revisions import REVISION_HELP, commits_of, history_table, revision_arg, revision_suffix
from .secrets import add_secrets_parser, cmd_secrets

__all__ = ["main", "build_parser", "script_ref"]

OK, FAILED, USAGE, UNREACHABLE, INTERRUPTED = 0, 1, 2, 3, 130
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
RESTART_POLICIES = ("never", "on-failure", "always")

EPILOG = f"""\
environment:
  VWED_URL        the gateway (default {DEFAULT_URL}; --url wins)
  VWED_TOKEN      the admin token (default: the file <data-dir>/token)
  VWED_DATA_DIR   the gateway's data directory (default ./.vwed; --data-dir wins)

exit codes:
  0    success
  1    the gateway answered an error (code and message on stderr), or check found an error
  2    usage error (bad arguments; call's JSON argument is not JSON)
  3    the gateway is unreachable, or no token was found
  130  interrupted (Ctrl-C)
"""

_SCRIPT_ID = re.compile(r".+_\d{10,}_*")


def script_ref(text: str) -> dict[str, str]:
    """``PATH|ID`` of stop/restart/reload: an id is a path, ``_`` and the start's
    milliseconds (``warehouse/a.py_1732412345678``); anything else is a path."""
    if _SCRIPT_ID.fullmatch(text):
        return {"script_id": text}
    return {"script_path": normal_path(text)}


def normal_path(text: str) -> str:
    """A path under the scripts root as the gateway records it (``./a.py`` -> ``a.py``)."""
    while text.startswith("./"):
        text = text[2:]
    return text


def _level(text: str) -> str:
    value = text.strip().upper()
    value = "WARNING" if value == "WARN" else value
    if value not in LEVELS:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(LEVELS)}")
    return value


def _tail(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a whole number") from None
    if not 0 <= value <= 1000:
        raise argparse.ArgumentTypeError("must be from 0 to 1000")
    return value


def _replicas(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a number of seconds") from None
    if not 0 < value < 10**6:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


class JsonArgs:
    """A command line argument parsed as JSON (``vwed call FUNCTION JSON``)."""

    def __init__(self, text: str) -> None:
        try:
            self.value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise argparse.ArgumentTypeError(
                f"not JSON ({exc.msg} at character {exc.pos}); quote it for the shell, e.g. "
                """vwed call allocate_storage '{"goods_type": "box", "quantity": 3}'"""
            ) from None


def _common(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """Options accepted before and after the command (``vwed --json ls``, ``vwed ls --json``)."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "--url", default=default(None), help=f"the gateway (VWED_URL; {DEFAULT_URL})"
    )
    parser.add_argument(
        "--data-dir",
        default=default(None),
        help="where the token file is when VWED_TOKEN is unset (VWED_DATA_DIR; ./.vwed)",
    )
    parser.add_argument(
        "--json", action="store_true", default=default(False), help="print the API's JSON"
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=default(300.0),
        help="seconds to wait for an answer (default 300)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vwed",
        description="The VWED script engine's gateway from a terminal: start, stop, "
        "watch and call scripts.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help,
            description=help,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _common(p, suppress=True)
        return p

    command("ls", "list the running scripts")
    p = command("start", "start a script")
    p.add_argument("path", metavar="PATH", help="the script, under the scripts root")
    p.add_argument("--replicas", type=_replicas, help="kernels to run it in (default 1)")
    p.add_argument(
        "--restart", choices=RESTART_POLICIES, help="restart policy (default on-failure)"
    )
    p.add_argument("--revision", type=revision_arg, help=REVISION_HELP)
    for name, text in (
        ("stop", "stop a running script"),
        ("restart", "restart a running script in new kernels"),
        ("reload", "reload a running script without downtime (--revision: a rollback)"),
    ):
        p = command(name, text)
        p.add_argument("script", metavar="PATH|ID", help="the script's path or its script id")
        if name != "stop":
            p.add_argument("--revision", type=revision_arg, help=REVISION_HELP)
    p = command("history", "the commits of a script file (revision, time, author, message)")
    p.add_argument("path", metavar="PATH", help="the script, under the scripts root")
    p = command("logs", "print a script's (or all) log records; -f follows them live")
    p.add_argument("path", metavar="PATH", nargs="?", help="one script (default: all)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new records")
    p.add_argument("--level", type=_level, help="this level and above (DEBUG ... ERROR)")
    p.add_argument("--tag", help="records with this tag only")
    p.add_argument(
        "-n",
        "--lines",
        type=_tail,
        default=20,
        help="print the last N records first (default 20, at most 1000)",
    )
    p = command("call", "call a function a running script registered")
    p.add_argument("function", metavar="FUNCTION")
    p.add_argument(
        "args",
        metavar="JSON",
        nargs="?",
        type=JsonArgs,
        help="its arguments as JSON: {...} or [...]",
    )
    p = command("check", "check a script's code on the gateway (syntax, names, boot, conflicts)")
    p.add_argument("path", metavar="PATH")
    command("whoami", "the token's role, the gateway's version and JupyterLab's URL")
    p = command("deps", "the scripts' packages: prefetch, list environments, show a script's")
    deps = p.add_subparsers(dest="deps_command", metavar="DEPS_COMMAND", required=True)

    def deps_command(name: str, help: str) -> argparse.ArgumentParser:
        q = deps.add_parser(name, help=help, description=help)
        _common(q, suppress=True)
        return q

    q = deps_command(
        "prefetch", "resolve and install the packages of scripts now, ahead of their start"
    )
    q.add_argument("paths", metavar="PATH", nargs="+", help="scripts under the scripts root")
    deps_command("ls", "list the installed environments (lock, packages, size, scripts)")
    q = deps_command("show", "a script's declared packages and whether they are installed")
    q.add_argument("path", metavar="PATH")
    add_secrets_parser(command, _common)
    add_executions_parser(command, _common)
    return parser


# -- the commands: each prints and returns the exit code -------------------------------
def _print(text: str) -> None:
    print(text, flush=True)


def cmd_ls(client: Client, ns: argparse.Namespace) -> int:
    answer = client.running()
    _print(to_json(answer) if ns.json else running_table(answer.get("scripts") or []))
    return OK


def cmd_start(client: Client, ns: argparse.Namespace) -> int:
    answer = client.start(normal_path(ns.path), ns.replicas, ns.restart, ns.revision)
    _print(
        to_json(answer) if ns.json else started_line("started", answer) + revision_suffix(answer)
    )
    return OK


def cmd_stop(client: Client, ns: argparse.Namespace) -> int:
    answer = client.lifecycle("stop", script_ref(ns.script))
    text = f"stopped {answer.get('script_path')} ({answer.get('script_id')})"
    _print(to_json(answer) if ns.json else text)
    return OK


def cmd_restart(client: Client, ns: argparse.Namespace) -> int:
    answer = client.lifecycle("restart", script_ref(ns.script), ns.revision)
    text = started_line("restarted", answer) + f" (was {answer.get('previous_script_id')})"
    text += revision_suffix(answer)
    _print(to_json(answer) if ns.json else text)
    return OK


def cmd_reload(client: Client, ns: argparse.Namespace) -> int:
    answer = client.lifecycle("reload", script_ref(ns.script), ns.revision)
    _print(
        to_json(answer) if ns.json else started_line("reloaded", answer) + revision_suffix(answer)
    )
    return OK


def cmd_history(client: Client, ns: argparse.Namespace) -> int:
    answer = client.history(normal_path(ns.path))
    _print(to_json(answer) if ns.json else history_table(commits_of(answer)))
    return OK


def cmd_logs(client: Client, ns: argparse.Namespace) -> int:
    path = normal_path(ns.path) if ns.path else None

    def emit(record: dict[str, Any]) -> None:
        _print(json.dumps(record, ensure_ascii=False) if ns.json else log_line(record))

    if not ns.follow:
        if ns.lines:
            for record in history(client, path, ns.level, ns.tag, ns.lines):
                emit(record)
        return OK

    def notice(text: str) -> None:
        print(f"vwed: {text}", file=sys.stderr, flush=True)

    asyncio.run(follow(client, path, ns.level, ns.tag, ns.lines, emit, notice))
    return OK


def cmd_call(client: Client, ns: argparse.Namespace) -> int:
    answer = client.call(ns.function, None if ns.args is None else ns.args.value)
    _print(to_json(answer) if ns.json else json.dumps(answer.get("result"), ensure_ascii=False))
    return OK


def cmd_check(client: Client, ns: argparse.Namespace) -> int:
    path = normal_path(ns.path)
    answer = client.check(path)
    findings = answer.get("findings") or []
    if ns.json:
        _print(to_json(answer))
    else:
        for finding in findings:
            _print(finding_line(path, finding))
        _print(findings_summary(findings))
    failed = answer.get("ok") is False or any(f.get("severity") == "error" for f in findings)
    return FAILED if failed else OK


def cmd_whoami(client: Client, ns: argparse.Namespace) -> int:
    answer = client.whoami()
    text = (
        f"{answer.get('role')} at {client.url} (gateway {answer.get('version')}); "
        f"JupyterLab: {answer.get('jupyter_url') or 'not configured'}"
    )
    _print(to_json(answer) if ns.json else text)
    return OK


def cmd_deps(client: Client, ns: argparse.Namespace) -> int:
    return DEPS_COMMANDS[ns.deps_command](client, ns)


def cmd_deps_prefetch(client: Client, ns: argparse.Namespace) -> int:
    """Every path's packages, or its error (the gateway prepares each path on its own and
    answers 422 with every path's result if one failed): exit 1 if any failed."""
    try:
        answer = client.prefetch([normal_path(p) for p in ns.paths])
    except ApiError as exc:
        results = exc.body.get("results")  # an error's details are in its body
        if not isinstance(results, list):
            raise  # the request itself was refused (a bad path, the token): one error
        answer = {"results": results}
    results = [r for r in answer.get("results") or [] if isinstance(r, dict)]
    failed = [r for r in results if not r.get("ok")]
    if ns.json:
        _print(to_json(answer))
        return FAILED if failed else OK
    for result in results:
        path = result.get("script_path")
        if result.get("ok"):
            _print(f"{path}: {prefetched_line(result)}")
        else:
            code, message = result.get("code"), result.get("error")
            print(f"vwed: {path}: error {code}: {message}", file=sys.stderr, flush=True)
    return FAILED if failed else OK


def prefetched_line(result: dict[str, Any]) -> str:
    """``environment 1a2b3c4d5e6f: vwedtiny 2.0, vweddep 1.0`` (or: no packages)."""
    env = result.get("environment")
    if not result.get("declaration") or not env:
        return "declares no packages (it runs with the engine's own)"
    return f"environment {str(env.get('lock') or '')[:12]}: {packages_text(env.get('packages'))}"


def cmd_deps_ls(client: Client, ns: argparse.Namespace) -> int:
    answer = client.environments()
    envs = answer.get("environments") or []
    _print(to_json(answer) if ns.json else environments_table(envs))
    return OK


def cmd_deps_show(client: Client, ns: argparse.Namespace) -> int:
    path = normal_path(ns.path)
    answer = client.dependencies(path)
    if ns.json:
        _print(to_json(answer))
        return OK
    decl = answer.get("declaration")
    if not decl:
        _print(f"{path}: declares no packages (it runs with the engine's own)")
        return OK
    where = decl.get("origin") or "?"
    if decl.get("file"):
        where += f" {decl['file']}"
    _print(f"{path}: {len(decl.get('requirements') or [])} requirement(s) from {where}")
    for requirement in decl.get("requirements") or []:
        _print(f"  {requirement}")
    env = answer.get("environment") or {}
    if answer.get("ready"):
        lock = str(env.get("lock") or "")[:12]
        _print(f"installed: environment {lock}: {packages_text(env.get('packages'))}")
    else:
        _print("not installed: an admin's start or `vwed deps prefetch` installs it")
    return OK


DEPS_COMMANDS: dict[str, Callable[[Client, argparse.Namespace], int]] = {
    "prefetch": cmd_deps_prefetch,
    "ls": cmd_deps_ls,
    "show": cmd_deps_show,
}


COMMANDS: dict[str, Callable[[Client, argparse.Namespace], int]] = {
    "ls": cmd_ls,
    "start": cmd_start,
    "stop": cmd_stop,
    "restart": cmd_restart,
    "reload": cmd_reload,
    "history": cmd_history,
    "logs": cmd_logs,
    "call": cmd_call,
    "check": cmd_check,
    "whoami": cmd_whoami,
    "deps": cmd_deps,
    "secrets": cmd_secrets,
    "step": cmd_step,
    "exec": cmd_exec,
}


def _fail(text: str, code: int) -> int:
    print(f"vwed: {text}", file=sys.stderr, flush=True)
    return code


def _api_error(exc: ApiError, path: str | None) -> int:
    """The error on stderr; the findings of a start refused for its code under it."""
    print(f"vwed: error {exc}", file=sys.stderr)
    findings = exc.body.get("findings") or (exc.body.get("details") or {}).get("findings") or []
    path = str(exc.body.get("script_path") or path or "")
    for finding in findings if isinstance(findings, list) else []:
        print(finding_line(str(path), finding), file=sys.stderr)
    sys.stderr.flush()
    return FAILED


def run(argv: Sequence[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)  # exits 2 on a usage error
    try:
        with connect(ns.url, ns.data_dir, ns.timeout) as client:
            return COMMANDS[ns.command](client, ns)
    except UsageError as exc:
        return _fail(f"error: {exc}", USAGE)
    except ApiError as exc:
        return _api_error(exc, getattr(ns, "path", None))
    except (Unreachable, NoToken) as exc:
        return _fail(str(exc), UNREACHABLE)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``vwed`` console script."""
    try:
        return run(argv)
    except KeyboardInterrupt:
        return INTERRUPTED
    except BrokenPipeError:  # `vwed logs | head`: the reader left; say nothing
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return OK


if __name__ == "__main__":
    sys.exit(main())
