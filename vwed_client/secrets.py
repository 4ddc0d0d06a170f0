"""``vwed secrets ls|set|rm``: the gateway's secrets (admin token). A value is read from
stdin (or typed without echo at a terminal), never from an argument: arguments end up in
the shell's history and in ``ps``."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from .client import Client, UsageError
from .output import table, to_json

__all__ = ["add_secrets_parser", "cmd_secrets"]


def add_secrets_parser(
    command: Callable[[str, str], argparse.ArgumentParser],
    common: Callable[[argparse.ArgumentParser, bool], None],
) -> None:
    p = command("secrets", "secrets scripts read with VWED.secrets.get: ls, set, rm")
    sub = p.add_subparsers(dest="secrets_command", metavar="SECRETS_COMMAND", required=True)

    def secrets_command(name: str, help: str) -> argparse.ArgumentParser:
        q = sub.add_parser(name, help=help, description=help)
        common(q, True)
        return q

    secrets_command("ls", "list the secrets: names, scopes, who set them and when (no values)")
    q = secrets_command("set", "set a secret; its value is read from stdin (never an argument)")
    q.add_argument("name", metavar="NAME")
    q.add_argument(
        "--scripts",
        metavar="P,...",
        help="script paths and folders (ending /) that may read it (default: every script)",
    )
    q.add_argument("--author", help="who sets it (X-VWED-Author; default: VWED_AUTHOR or $USER)")
    q = secrets_command("rm", "delete a secret")
    q.add_argument("name", metavar="NAME")
    q.add_argument("--author", help="who deletes it (default: VWED_AUTHOR or $USER)")


def _author(ns: argparse.Namespace) -> str:
    if ns.author:
        return str(ns.author)
    try:
        return os.environ.get("VWED_AUTHOR") or getpass.getuser()
    except (OSError, KeyError):  # no login name (a container without /etc/passwd entry)
        return ""


def _read_value(name: str) -> str:
    if sys.stdin.isatty():
        value = getpass.getpass(f"value of {name} (not echoed): ")
    else:
        try:
            value = sys.stdin.buffer.read().decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"the value of {name} must be UTF-8 text") from None
        if value.endswith("\r\n"):
            value = value[:-2]
        elif value.endswith("\n"):
            value = value[:-1]
    if not value:
        raise UsageError('the value is empty (give it on stdin: printf %s "$VALUE" | vwed ...)')
    return value


def _when(ts: Any) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(ts)))
    except (TypeError, ValueError, OverflowError):
        return "?"


def cmd_secrets(client: Client, ns: argparse.Namespace) -> int:
    if ns.secrets_command == "ls":
        answer = client.secrets()
        rows = answer.get("secrets") or []
        if ns.json:
            print(to_json(answer), flush=True)
        elif not rows:
            print("no secret is set", flush=True)
        else:
            body = [
                [
                    str(s.get("name")),
                    ", ".join(s["scripts"]) if s.get("scripts") else "(all scripts)",
                    str(s.get("set_by")),
                    _when(s.get("set_at")),
                    "" if s.get("readable", True) else "NOT READABLE (another key)",
                ]
                for s in rows
            ]
            print(table(["NAME", "SCRIPTS", "SET BY", "SET AT", ""], body).rstrip(), flush=True)
        return 0
    if ns.secrets_command == "set":
        scope = None
        if ns.scripts is not None:
            scope = [p.strip() for p in ns.scripts.split(",") if p.strip()]
        answer = client.set_secret(ns.name, _read_value(ns.name), scope, _author(ns))
        verb = "set" if answer.get("created") else "replaced"
        where = ", ".join(scope) if scope else "every script"
        print(to_json(answer) if ns.json else f"{ns.name}: {verb} (for {where})", flush=True)
        return 0
    answer = client.delete_secret(ns.name, _author(ns))
    print(to_json(answer) if ns.json else f"{ns.name}: deleted", flush=True)
    return 0
