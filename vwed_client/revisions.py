"""``vwed history PATH``: the commits of a script file (the scripts root is a Git
repository, issue 17), and how a revision is shown in the other commands' lines."""

from __future__ import annotations

import argparse
import re
from datetime import datetime
from typing import Any

from .output import table

__all__ = [
    "REVISION_HELP",
    "commits_of",
    "history_table",
    "revision_arg",
    "revision_suffix",
    "short",
]

REVISION_HELP = "a commit of the scripts repository, short or full (default: the latest)"


def revision_arg(text: str) -> str:
    """``--revision``: 4 to 40 hex digits (the gateway says whether it exists)."""
    if not re.fullmatch(r"[0-9a-fA-F]{4,40}", text):
        raise argparse.ArgumentTypeError("must be a commit: 4 to 40 hex digits")
    return text


def short(revision: Any) -> str:
    """The first 12 hex digits of a revision ('-' when there is none)."""
    return str(revision)[:12] if revision else "-"


def revision_suffix(answer: dict[str, Any]) -> str:
    """`` at revision 1a2b3c4d5e6f`` of a start/reload/restart answer (empty: none)."""
    revision = answer.get("revision")
    return f" at revision {short(revision)}" if revision else ""


def commits_of(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """The list of commits of a history answer."""
    for key in ("history", "commits", "revisions"):
        value = answer.get(key)
        if isinstance(value, list):
            return [c for c in value if isinstance(c, dict)]
    return []


def history_table(commits: list[dict[str, Any]]) -> str:
    """``REVISION  TIME  AUTHOR  MESSAGE``, newest first."""
    if not commits:
        return "no commit touched this file"
    rows = []
    for c in commits:
        ts = c.get("time")
        when = (
            datetime.fromtimestamp(float(ts)).isoformat(sep=" ", timespec="seconds")
            if isinstance(ts, (int, float))
            else "-"
        )
        message = str(c.get("message") or "").strip().splitlines() or [""]
        rows.append([short(c.get("revision")), when, str(c.get("author") or ""), message[0]])
    return table(["REVISION", "TIME", "AUTHOR", "MESSAGE"], rows)
