"""Query parameters of the history endpoints (logs, calls, stats): unknown names
refused, integers in bounds, times as ISO 8601 or epoch seconds, a since/until window
and cursor paging; each bad value is a 400 ``BAD_PARAMETER`` naming it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tornado import web

from ..errors import BadParameter

__all__ = ["MAX_LIMIT", "query_args", "int_param", "time_param", "window_and_page"]

MAX_LIMIT = 1000


def query_args(handler: web.RequestHandler, known: set[str]) -> dict[str, str]:
    """The query's parameters (the last of repeated ones); 400 on an unknown one."""
    args = {k: handler.get_query_argument(k) for k in handler.request.query_arguments}
    for name in args:
        if name not in known:
            raise BadParameter(name, "unknown parameter")
    return args


def time_param(name: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        stamp = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadParameter(name, "give an ISO 8601 time or seconds since the epoch") from None
    if stamp.tzinfo is None:
        stamp = stamp.astimezone()  # local time, as a person would type it
    return stamp.timestamp()


def int_param(name: str, raw: str, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise BadParameter(name, "must be an integer") from None
    if not low <= value <= high:
        raise BadParameter(name, f"must be between {low} and {high}")
    return value


def window_and_page(args: dict[str, str], query: Any) -> None:
    """``since``, ``until`` (after ``since``), ``limit`` (1..MAX_LIMIT) and ``cursor``
    (an id) of ``args`` onto ``query``'s attributes of the same names."""
    if "since" in args:
        query.since = time_param("since", args["since"])
    if "until" in args:
        query.until = time_param("until", args["until"])
    if query.since is not None and query.until is not None and query.since >= query.until:
        raise BadParameter("until", "must be after 'since'")
    if "limit" in args:
        query.limit = int_param("limit", args["limit"], 1, MAX_LIMIT)
    if "cursor" in args:
        query.cursor = int_param("cursor", args["cursor"], 0, 2**62)
