"""``/script-engine/calls`` (the calls history), ``/stats`` (sampled series) and
``/whoami`` (which role a token has): what the console shows of a running gateway."""

from __future__ import annotations

import hmac
from typing import Any

from tornado import web

from ..errors import BadParameter, ServiceUnavailable
from ..logs import LogHub
from ..stats import CallStats
from ..store.callquery import CallQuery
from .base import JSONHandler, Tokens
from .params import int_param, query_args, window_and_page

__all__ = ["CallsHandler", "StatsHandler", "WhoamiHandler", "parse_calls_query"]

KINDS = ("api", "function", "ws")
_TEXT = {  # the text filters and their longest value (the column's width)
    "script_path": 480,
    "script_id": 512,
    "name": 512,
    "error_type": 128,
    "call_id": 64,
    "task_id": 128,
}


def parse_calls_query(handler: web.RequestHandler) -> CallQuery:
    """The filters of ``GET /script-engine/calls`` (400 ``BAD_PARAMETER`` on a bad one)."""
    args = query_args(handler, {*_TEXT, "kind", "ok", "since", "until", "limit", "cursor"})
    query = CallQuery()
    for name, longest in _TEXT.items():
        if args.get(name):
            if len(args[name]) > longest:
                raise BadParameter(name, f"at most {longest} characters")
            setattr(query, name, args[name])
    if "kind" in args:
        if args["kind"] not in KINDS:
            raise BadParameter("kind", f"must be one of {', '.join(KINDS)}")
        query.kind = args["kind"]
    if "ok" in args:
        if args["ok"] not in ("true", "false"):
            raise BadParameter("ok", "must be 'true' or 'false'")
        query.ok = args["ok"] == "true"
    window_and_page(args, query)
    return query


class CallsHandler(JSONHandler):
    """Calls served by scripts, newest first, with cursor paging (admin only)."""

    hub: LogHub

    async def get(self) -> None:
        query = parse_calls_query(self)
        if self.hub.db is None:
            raise ServiceUnavailable("the gateway runs without a database", "NO_DATABASE")
        calls = await self.hub.db.calls(query)
        next_cursor = calls[-1]["id"] if len(calls) == query.limit else None
        self.send_json({"calls": calls, "next_cursor": next_cursor})


class StatsHandler(JSONHandler):
    """Series sampled by the gateway: per script and per kernel, the last hour at most."""

    stats: CallStats

    def get(self) -> None:
        args = query_args(self, {"script_path", "minutes"})
        minutes = int_param("minutes", args["minutes"], 1, 60) if "minutes" in args else 60
        self.send_json(self.stats.series(args.get("script_path") or None, minutes))


class WhoamiHandler(JSONHandler):
    """The role of the token sent (either token is accepted), the gateway's version
    and where JupyterLab is (``--jupyter-url``)."""

    role = "caller"
    about: dict[str, Any]

    def get(self) -> None:
        self.send_json({"role": self._role(), **self.about})

    def _role(self) -> str:
        tokens = self.token
        if not isinstance(tokens, Tokens) or not tokens.enabled:
            return "admin"  # --no-auth: anyone is the admin
        scheme, _, value = self.request.headers.get("Authorization", "").partition(" ")
        given = value.strip() if scheme.lower() in ("token", "bearer") else ""
        # prepare() accepted the token: it is the admin's or the caller's
        return "admin" if hmac.compare_digest(given.encode(), tokens.admin.encode()) else "caller"
