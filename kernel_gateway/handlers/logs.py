"""``/script-engine/logs`` (history), ``/logs/export`` (download) and ``/logs/ws`` (live)."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import logging
from datetime import datetime
from typing import Any

from tornado import web, websocket

from ..errors import BadParameter, GatewayError, ServiceUnavailable
from ..logs import LogFilter, LogHub, Subscriber, level_number
from ..store.logquery import LogQuery
from ..store.service import StoreService
from .base import JSONHandler
from .params import MAX_LIMIT, int_param, query_args, window_and_page
from .wsbase import GatewaySocket

__all__ = ["LogHistoryHandler", "LogExportHandler", "LogStreamHandler", "RunsHandler"]

log = logging.getLogger("kernel_gateway.logs")
CSV_COLUMNS = (
    "id",
    "ts",
    "time",
    "script_id",
    "run_id",
    "level",
    "source",
    "tag",
    "message",
    "call_id",
    "task_id",
)


def parse_query(handler: web.RequestHandler, *, default_limit: int = 100) -> LogQuery:
    known = {
        "script_id",
        "script_path",
        "run_id",
        "level",
        "tag",
        "source",
        "call_id",
        "task_id",
        "since",
        "until",
        "q",
        "limit",
        "cursor",
        "order",
        "format",
        "token",
    }
    args = query_args(handler, known)
    query = LogQuery(limit=default_limit)
    for name in ("script_id", "script_path", "tag", "source", "call_id", "task_id"):
        if args.get(name):
            setattr(query, name, args[name])
    if "run_id" in args:
        query.run_id = int_param("run_id", args["run_id"], 0, 2**31)
    if "level" in args:
        try:
            query.min_level = level_number(args["level"])
        except ValueError as exc:
            raise BadParameter("level", str(exc)) from None
    window_and_page(args, query)
    if "q" in args:
        if len(args["q"]) > 200:
            raise BadParameter("q", "at most 200 characters")
        query.q = args["q"]
    order = args.get("order", "desc")
    if order not in ("asc", "desc"):
        raise BadParameter("order", "must be 'asc' (oldest first) or 'desc' (newest first)")
    query.newest_first = order == "desc"
    return query


class _LogsBase(JSONHandler):
    hub: LogHub

    def _db(self) -> StoreService:
        if self.hub.db is None:
            raise ServiceUnavailable("the gateway runs without a database", "NO_DATABASE")
        return self.hub.db


class LogHistoryHandler(_LogsBase):
    async def get(self) -> None:
        query = parse_query(self)
        records = await self._db().query_logs(query)
        next_cursor = records[-1]["id"] if len(records) == query.limit else None
        self.send_json(
            {
                "count": len(records),
                "records": records,
                "next_cursor": next_cursor,
                "order": "desc" if query.newest_first else "asc",
            }
        )


class RunsHandler(_LogsBase):
    """Script runs, newest first: start, stop, status and exit reason."""

    async def get(self) -> None:
        path = self.get_query_argument("script_path", None)
        limit = int_param("limit", self.get_query_argument("limit", "100"), 1, MAX_LIMIT)
        runs = await self._db().runs(path, limit)
        self.send_json({"count": len(runs), "runs": runs})


class LogExportHandler(_LogsBase):
    """All matching records (or ``limit`` of them), streamed page by page."""

    async def get(self) -> None:
        fmt = self.get_query_argument("format", "ndjson")
        if fmt not in ("ndjson", "csv"):
            raise BadParameter("format", "must be 'ndjson' or 'csv'")
        query = parse_query(self, default_limit=0)
        total = query.limit or None
        db = self._db()
        query.limit = MAX_LIMIT
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        self.set_header(
            "Content-Type", "application/x-ndjson" if fmt == "ndjson" else "text/csv; charset=utf-8"
        )
        self.set_header("Content-Disposition", f'attachment; filename="vwed-logs-{stamp}.{fmt}"')
        sent = 0
        if fmt == "csv":
            self.write(",".join(CSV_COLUMNS) + "\r\n")
        while True:
            if total is not None:
                query.limit = min(MAX_LIMIT, total - sent)
                if query.limit <= 0:
                    break
            page = await db.query_logs(query)
            if not page:
                break
            self.write(self._format(page, fmt))
            await self.flush()
            sent += len(page)
            query.cursor = page[-1]["id"]
            if len(page) < query.limit:
                break
        self.finish()

    @staticmethod
    def _format(records: list[dict[str, Any]], fmt: str) -> str:
        if fmt == "ndjson":
            return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        out = io.StringIO()
        writer = csv.writer(out)
        for r in records:
            when = datetime.fromtimestamp(r["ts"]).isoformat(timespec="milliseconds")
            writer.writerow(
                [
                    r["id"],
                    r["ts"],
                    when,
                    r["script_id"],
                    r["run_id"],
                    r["level"],
                    r["source"],
                    r["tag"],
                    r["message"],
                    r["call_id"],
                    r["task_id"],
                ]
            )
        return out.getvalue()


def _quiet(fut: Any) -> Any:
    """A write to a WebSocket that may be closed before it completes: its failure
    (WebSocketClosedError) is expected, so it is retrieved here, not logged by asyncio
    as "never retrieved"."""

    def retrieve(done: Any) -> None:
        if not done.cancelled():
            done.exception()

    fut.add_done_callback(retrieve)
    return fut


class LogStreamHandler(GatewaySocket):
    """Live records as JSON text messages ``{"type": "record", ...}``, after a replay of
    the last ``tail`` matching ones. A client that reads too slowly gets
    ``{"type": "notice", "code": "SLOW_CONSUMER"}`` and is disconnected (close code 4008).

    Security: the token is checked before the upgrade (``?token=T`` as browsers
    cannot set headers on a WebSocket); ``check_origin`` keeps Tornado's default
    (same origin only).
    """

    hub: LogHub
    token: str

    def initialize(  # type: ignore[override]
        self,
        hub: LogHub,
        token: Any = "",
        allow_origins: tuple[str, ...] = (),
        allow_hosts: tuple[str, ...] | None = (),
    ) -> None:
        self.hub = hub
        self.token = token
        self.allow_origins = allow_origins
        self.allow_hosts = allow_hosts
        self.subscriber: Subscriber | None = None
        self._pump: asyncio.Task[None] | None = None

    async def get(self, *args: Any, **kwargs: Any) -> None:
        try:
            self.admit()
            self.flt, self.tail_count = self._parse()
            self.require_upgrade()
        except GatewayError as exc:
            self.refuse(exc)
            return
        await super().get(*args, **kwargs)

    def _parse(self) -> tuple[LogFilter, int]:
        for name in self.request.query_arguments:
            if name not in ("script_id", "level", "tag", "tail", "token"):
                raise BadParameter(name, "unknown parameter")
        level = self.get_query_argument("level", "")
        try:
            min_level = level_number(level) if level else 0
        except ValueError as exc:
            raise BadParameter("level", str(exc)) from None
        tail = int_param("tail", self.get_query_argument("tail", "0"), 0, MAX_LIMIT)
        return LogFilter(
            self.get_query_argument("script_id", None),
            min_level,
            self.get_query_argument("tag", None),
        ), tail

    async def open(self, *args: Any, **kwargs: Any) -> None:
        self.subscriber = sub = self.hub.subscribe(self.flt)
        self._pump = asyncio.ensure_future(self._run(sub))

    async def _run(self, sub: Subscriber) -> None:
        watcher = asyncio.ensure_future(self._watch(sub))
        try:
            try:
                replay = await self.hub.tail(self.flt, self.tail_count, sub.cursor)
            except GatewayError as exc:  # the database does not answer: live records only
                replay = []
                await self._send({"type": "notice", "code": exc.code, "message": exc.message})
            for record in replay:
                await self._send({"type": "record", **record})
            while True:
                await sub.wake.wait()
                sub.wake.clear()
                for record in self.hub.after(sub.cursor):
                    if sub.overflowed.is_set():
                        return
                    if self.flt.matches(record):
                        await self._send({"type": "record", **record})
                    sub.cursor = record["id"]
        except (websocket.WebSocketClosedError, asyncio.CancelledError):
            pass
        finally:
            watcher.cancel()

    async def _watch(self, sub: Subscriber) -> None:
        await sub.overflowed.wait()
        # An expected event (the client's own doing), not a gateway error: one INFO line.
        log.info("log subscriber %s is too slow: disconnected", self.request.remote_ip)
        with contextlib.suppress(websocket.WebSocketClosedError):  # it left already
            # not awaited: the connection is clogged, that is the point
            _quiet(
                self.write_message(
                    json.dumps(
                        {
                            "type": "notice",
                            "code": "SLOW_CONSUMER",
                            "message": "you read too slowly: records you had not read yet left the gateway's "
                            f"buffer ({self.hub.ring_bytes // (1024 * 1024)} MiB); disconnected",
                        }
                    )
                )
            )
        self.close(4008, "too slow")
        if self._pump is not None:
            self._pump.cancel()

    async def _send(self, message: dict[str, Any]) -> None:
        # Shielded: cutting off a slow subscriber cancels the pump while it waits here;
        # cancelling tornado's write would make tornado log the CancelledError.
        await asyncio.shield(_quiet(self.write_message(json.dumps(message, ensure_ascii=False))))

    def on_message(self, message: str | bytes) -> None:
        pass  # the stream is one-way; anything sent by the client is ignored

    def on_close(self) -> None:
        if self.subscriber is not None:
            self.hub.unsubscribe(self.subscriber)
        if self._pump is not None:
            self._pump.cancel()
