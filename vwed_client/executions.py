"""``vwed step`` and ``vwed exec ls|show|wait|follow|cancel``: task-flow steps and their
executions (docs/executions.md) from a terminal.

A step runs synchronously (its result printed when it returns) or, with ``--async``, is
submitted and answered at once with its execution id; ``--follow`` then reads the
execution's WebSocket (``/script-engine/executions/{id}/ws``) to its end, as ``vwed logs
-f`` reads the log stream. The caller token is enough for everything here but ``exec
ls`` (the listing is an admin endpoint). Text from the step (its output, messages,
errors) is printed without terminal control characters: a step's print could otherwise
move the cursor or set the clipboard of whoever follows it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from .client import ApiError, Client, Unreachable, UsageError
from .execview import (
    end_line,
    executions_table,
    progress_text,
    record_text,
    step_of,
    step_output,
    usage_facts,
)
from .output import _printable as printable
from .output import to_json

__all__ = ["add_executions_parser", "cmd_step", "cmd_exec"]

OK, FAILED, INTERRUPTED = 0, 1, 130
MODES = ("SCRIPT", "SET_TASK_VARIABLES", "RUN")
STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "timed_out")
FINISHED = frozenset(STATUSES[2:])
WAIT_MAX = 300.0  # the most one long poll of the gateway waits
BASE = "/script-engine/executions"


def _json_arg(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(
            f"not JSON ({exc.msg} at character {exc.pos}); quote it for the shell, e.g. "
            """vwed step warehouse/steps.py pick_location '{"goods_type": "box"}'"""
        ) from None


def _count(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError("must be a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}")
        return value

    return parse


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a number of seconds") from None
    if not 0 < value < 10**7:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def add_executions_parser(
    command: Callable[[str, str], argparse.ArgumentParser],
    common: Callable[[argparse.ArgumentParser, bool], None],
) -> None:
    p = command("step", "run a task-flow step (a function of a script file), or submit it")
    p.add_argument("path", metavar="PATH", help="the script file, under the scripts root")
    p.add_argument("function", metavar="FUNCTION", help="its function (RUN mode: give -)")
    p.add_argument("args", metavar="JSON", nargs="?", type=_json_arg, help="arguments: {...}/[...]")
    p.add_argument("--mode", choices=MODES, help="SCRIPT (default), SET_TASK_VARIABLES or RUN")
    p.add_argument("--task", metavar="ID", help="the task id (its variables are stored)")
    p.add_argument(
        "--step-timeout",
        type=_positive,
        metavar="S",
        help="the step's timeout (default: the gateway's)",
    )
    p.add_argument("--retry", type=_count(1, 20), metavar="N", help="run it up to N times")
    p.add_argument("--backoff", choices=("constant", "exponential"), help="between attempts")
    p.add_argument("--retry-on", metavar="NAME,...", help="retry these exception types only")
    p.add_argument("--async", dest="run_async", action="store_true", help="submit, do not wait")
    p.add_argument("--follow", action="store_true", help="follow it live (implies --async)")
    p.add_argument("--key", metavar="IDEMPOTENCY_KEY", help="submit at most once under this key")
    p.add_argument(
        "--at-most-once", action="store_true", help="not run again if the gateway dies first"
    )
    p = command("exec", "asynchronous executions: ls, show, wait, follow, cancel")
    sub = p.add_subparsers(dest="exec_command", metavar="EXEC_COMMAND", required=True)

    def exec_command(name: str, help: str) -> argparse.ArgumentParser:
        q = sub.add_parser(name, help=help, description=help)
        common(q, True)
        return q

    q = exec_command("ls", "the asynchronous executions, newest first (admin token)")
    q.add_argument("--status", choices=STATUSES)
    q.add_argument("--task", metavar="ID")
    q.add_argument("--path", metavar="P", help="one script file")
    q.add_argument("-n", dest="limit", type=_count(1, 1000), default=50, help="at most (50)")
    for name, text in (
        ("show", "an execution's whole record"),
        ("follow", "follow an execution live to its end"),
        ("cancel", "cancel an execution (queued, waiting or running)"),
        ("wait", "wait until an execution ends; exit 0 if it succeeded"),
    ):
        q = exec_command(name, text)
        q.add_argument(
            "id",
            metavar="ID",
            help="the execution id (admin: its first characters, as exec ls shows them)",
        )
    q.add_argument("--wait", type=_positive, metavar="S", help="give up after S seconds")


# -- step -------------------------------------------------------------------------------
def _step_body(ns: argparse.Namespace) -> dict[str, Any]:
    if ns.follow:
        ns.run_async = True
    if not ns.run_async and (ns.key is not None or ns.at_most_once):
        raise UsageError("--key and --at-most-once are for an --async step")
    if ns.retry is None and (ns.backoff or ns.retry_on):
        raise UsageError("--backoff and --retry-on need --retry N")
    path = ns.path[2:] if ns.path.startswith("./") else ns.path
    body: dict[str, Any] = {"script_path": path}
    if not (ns.mode == "RUN" and ns.function == "-"):
        body["function_name"] = ns.function
    for key, value in (("args", ns.args), ("mode", ns.mode), ("task_id", ns.task)):
        if value is not None:
            body[key] = value
    if ns.step_timeout is not None:
        body["timeout"] = ns.step_timeout
    if ns.retry is not None:
        retry: dict[str, Any] = {"attempts": ns.retry}
        if ns.backoff:
            retry["backoff"] = ns.backoff
        if ns.retry_on:
            retry["on"] = [n.strip() for n in ns.retry_on.split(",") if n.strip()]
        body["retry"] = retry
    if ns.run_async:
        body["async"] = True
        if ns.key is not None:
            body["idempotency_key"] = ns.key
        if ns.at_most_once:
            body["at_most_once"] = True
    return body


def cmd_step(client: Client, ns: argparse.Namespace) -> int:
    body = _step_body(ns)
    if not ns.run_async:
        return _sync_step(client, body, ns.json)
    answer = client.request("POST", "/script-engine/execute", json=body)
    execution_id = str(answer.get("execution_id"))
    if ns.follow:
        if not ns.json:
            again = " (the earlier submission with this key)" if answer.get("duplicate") else ""
            _out(f"submitted {execution_id}{again}")
        return _follow(client, execution_id, ns.json)
    if ns.json:
        _out(to_json(answer))
        return OK
    _out(execution_id)
    again = " (the earlier submission with this key)" if answer.get("duplicate") else ""
    _out(f"{answer.get('status')}{again}: {client.url}{answer.get('status_url')}")
    return OK


def _sync_step(client: Client, body: dict[str, Any], as_json: bool) -> int:
    """The result on stdout (one line of JSON, as ``vwed call`` prints it); what the step
    printed and what it used on stderr, so ``$(vwed step ...)`` is the result alone."""
    try:
        answer = client.request("POST", "/script-engine/execute", json=body)
    except ApiError as exc:
        details = exc.body.get("details") or exc.body  # the gateway puts them at the top
        if as_json or not isinstance(details, dict) or not details.get("traceback"):
            raise
        _err(f"vwed: error {exc}")
        step_output(details, _err)
        _err(printable(str(details.get("traceback") or "")).rstrip())
        return FAILED
    if as_json:
        _out(to_json(answer))
        return OK
    _out(json.dumps(answer.get("result"), ensure_ascii=False))
    step_output(answer, _err)
    facts = [f"execution {answer.get('execution_id')}", *usage_facts(answer)]
    if len(answer.get("attempts") or []) > 1:
        facts.append(f"{len(answer['attempts'])} attempts")
    _err(", ".join(facts))
    return OK


# -- exec -------------------------------------------------------------------------------
def cmd_exec(client: Client, ns: argparse.Namespace) -> int:
    if ns.exec_command == "ls":
        params = {"status": ns.status, "task_id": ns.task, "script_path": ns.path}
        params = {k: v for k, v in params.items() if v is not None}
        answer = client.request("GET", BASE, params={**params, "limit": ns.limit})
        rows = answer.get("async") or []
        _out(to_json(rows) if ns.json else executions_table(rows))
        return OK
    execution_id = _resolve(client, ns.id)
    if ns.exec_command == "follow":
        return _follow(client, execution_id, ns.json)
    if ns.exec_command == "show":
        record = client.request("GET", f"{BASE}/{quote(execution_id, safe='')}")
        _out(to_json(record) if ns.json else record_text(record))
        return OK
    if ns.exec_command == "cancel":
        answer = client.request("POST", f"{BASE}/{quote(execution_id, safe='')}/cancel")
        status = answer.get("status") or ("cancelled" if answer.get("cancelled") else "?")
        _out(to_json(answer) if ns.json else f"{execution_id}: {status}")
        return OK
    record = _wait(client, execution_id, ns.wait)
    _out(to_json(record) if ns.json else record_text(record))
    if record.get("status") not in FINISHED:
        _err(f"vwed: {execution_id} is still {record.get('status')} after {ns.wait:g} s")
    return OK if record.get("status") == "succeeded" else FAILED


def _resolve(client: Client, given: str) -> str:
    """A full id from its first characters (``exec ls`` shows 12), through the listing;
    the id as given when it is whole, or when the token may not list (a caller)."""
    if len(given) >= 32 or len(given) < 6:
        return given
    try:
        rows = client.request("GET", BASE, params={"limit": 1000}).get("async") or []
    except ApiError:
        return given
    found = {str(r.get("execution_id")) for r in rows}
    matches = sorted(i for i in found if i.startswith(given))
    if len(matches) > 1:
        raise UsageError(f"{given!r} is the start of {len(matches)} executions: give more of it")
    return matches[0] if matches else given


def _wait(client: Client, execution_id: str, limit: float | None) -> dict[str, Any]:
    """Long polls until it ends (or ``limit`` seconds): each one shorter than the
    client's own ``--timeout``, so the gateway answers before the client gives up."""
    deadline = None if limit is None else time.monotonic() + limit
    path = f"{BASE}/{quote(execution_id, safe='')}/wait"
    while True:
        left = WAIT_MAX if deadline is None else deadline - time.monotonic()
        chunk = max(0.1, min(left, WAIT_MAX, client.timeout - 5))
        asked = time.monotonic()
        record: dict[str, Any] = client.request("GET", path, params={"timeout": f"{chunk:.3f}"})
        if record.get("status") in FINISHED:
            return record
        if deadline is not None and time.monotonic() >= deadline:
            return record
        if time.monotonic() - asked < 0.5:  # a running synchronous step answers at once
            time.sleep(0.5)


# -- following ----------------------------------------------------------------------------
async def _connect(client: Client, path: str) -> WebSocketClientConnection:
    url = client.ws_url(path, {})
    try:
        return await websocket_connect(HTTPRequest(url, connect_timeout=10, request_timeout=30))
    except HTTPClientError as exc:  # refused before the upgrade: the gateway's JSON error
        if exc.code == 599:
            raise Unreachable(f"the gateway at {client.url} did not answer in time") from None
        try:
            body = json.loads(exc.response.body) if exc.response is not None else {}
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        code = body.get("code") if isinstance(body.get("code"), str) else f"HTTP_{exc.code}"
        raise ApiError(exc.code, str(code), str(body.get("error") or exc.message), body) from None
    except OSError as exc:  # never the URL in a message: it holds the token
        raise Unreachable(
            f"cannot reach the gateway at {client.url}: {exc.strerror or type(exc).__name__}"
        ) from None


class Live:
    """Lines of a followed execution; at a terminal the progress is one line redrawn in
    place under the others, elsewhere (a pipe, a log file) one line per update."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self.bar = ""

    def line(self, text: str) -> None:
        if self.bar:
            sys.stdout.write("\r\x1b[K")
        print(printable(text), flush=not self.bar)
        if self.bar:
            self._draw()

    def progress(self, text: str) -> None:
        if not self.tty:
            self.line(text)
            return
        self.bar = printable(text)
        self._draw()

    def close(self) -> None:
        if self.bar:
            sys.stdout.write("\r\x1b[K")
            sys.stdout.flush()
            self.bar = ""

    def _draw(self) -> None:
        sys.stdout.write("\r\x1b[K" + self.bar)
        sys.stdout.flush()


def _follow(client: Client, execution_id: str, as_json: bool) -> int:
    """Exit 0 if the execution succeeded, 1 if it did not; Ctrl-C stops following only."""
    live = Live()
    try:
        end = asyncio.run(_stream(client, execution_id, live, as_json))
    except KeyboardInterrupt:
        live.close()
        _err(
            f"vwed: stopped following; execution {execution_id} goes on "
            f"(`vwed exec cancel {execution_id}` cancels it)"
        )
        return INTERRUPTED
    finally:
        live.close()
    if not as_json:
        _out(end_line(end))
    return OK if end.get("status") == "succeeded" else FAILED


async def _stream(client: Client, execution_id: str, live: Live, as_json: bool) -> dict[str, Any]:
    ws = await _connect(client, f"{BASE}/{quote(execution_id, safe='')}/ws")
    told: set[Any] = set()
    try:
        while True:
            message = await ws.read_message()
            if message is None:
                why = f" ({ws.close_code}: {ws.close_reason})" if ws.close_code else ""
                raise Unreachable(f"the gateway closed the execution's stream early{why}")
            try:
                event = json.loads(message)
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            if as_json:
                live.line(json.dumps(event, ensure_ascii=False))
            else:
                _show(event, live, told)
            if event.get("type") == "end":
                return dict(event.get("execution") or {})
    finally:
        ws.close()


def _show(event: dict[str, Any], live: Live, told: set[Any]) -> None:
    """A line (or the progress) for an event; ``told``: the failed attempts already
    printed from the first record, whose ``retry`` event may follow it."""
    kind = event.get("type")
    if kind == "state":
        record = event.get("execution") or {}
        live.line(f"{record.get('execution_id')}: {record.get('status')}, {step_of(record)}")
        for attempt in record.get("attempts") or []:  # those that failed before we came
            if not attempt.get("ok") and record.get("status") not in FINISHED:
                told.add(attempt.get("attempt"))
                live.line(
                    f"attempt {attempt.get('attempt')} failed ({attempt.get('code')}: "
                    f"{attempt.get('message')})"
                )
        if record.get("progress") and record.get("status") not in FINISHED:
            live.progress(progress_text(record["progress"]))
    elif kind == "status":
        live.line(str(event.get("status")))
    elif kind == "progress":
        live.progress(progress_text(event))
    elif kind == "output":
        stream = event.get("stream")
        head = stream if stream != "log" else f"log {event.get('level')} {event.get('tag')}"
        live.line(f"{head}: {event.get('text', '')}")
    elif kind == "retry" and event.get("attempt") not in told:
        error = event.get("error") or {}
        live.line(
            f"attempt {event.get('attempt')} failed ({error.get('code')}: "
            f"{error.get('message')}); the next in {float(event.get('in_s') or 0):g} s"
        )
    elif kind == "dropped":
        live.line(f"({event.get('count')} output lines not shown: this reader was too slow)")


def _out(text: str) -> None:
    print(text, flush=True)


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
