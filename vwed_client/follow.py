"""``vwed logs -f``: live records over the WebSocket ``/script-engine/logs/ws``.

The WebSocket filters by ``script_id``, the id of one run: a restart or a reload gives the
script a new id. To follow a script by its path across restarts, the stream is opened for
all scripts (level and tag filtered by the gateway) and a record is kept when the path in
its ``script_id`` is the one asked for.

The records before the live ones: without a path, the stream's own replay (``tail=N``).
With a path, the last N of the script from the history endpoint (filtered by
``script_path``), read after the stream is open, and the stream asked to replay its last
``REPLAY`` records: history holds only what the gateway's writer has stored, so the
replay brings what was logged but not stored yet. Replayed and live records already
printed from history (same id or older) are skipped: nothing is lost or doubled between
the two.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from .client import ApiError, Client, Unreachable
from .output import script_path_of

__all__ = ["REPLAY", "follow", "history"]

REPLAY = 1000  # the most the stream replays


def history(
    client: Client, path: str | None, level: str | None, tag: str | None, limit: int
) -> list[dict[str, Any]]:
    """The last ``limit`` matching records, oldest first."""
    answer = client.logs(script_path=path, level=level, tag=tag, limit=limit, order="desc")
    return list(reversed(answer.get("records") or []))


async def _open(
    client: Client, level: str | None, tag: str | None, tail: int
) -> WebSocketClientConnection:
    url = client.ws_url("/script-engine/logs/ws", {"level": level, "tag": tag, "tail": tail})
    try:
        return await websocket_connect(HTTPRequest(url, connect_timeout=10, request_timeout=30))
    except HTTPClientError as exc:  # refused before the upgrade: the gateway's JSON error
        body: dict[str, Any] = {}
        if exc.response is not None and exc.response.body:
            try:
                body = json.loads(exc.response.body)
            except ValueError:
                body = {}
        if exc.code == 599:  # no answer in time (tornado's code for a timeout)
            raise Unreachable(f"the gateway at {client.url} did not answer in time") from None
        if not isinstance(body, dict):
            body = {}
        code = body.get("code") if isinstance(body.get("code"), str) else f"HTTP_{exc.code}"
        raise ApiError(exc.code, str(code), str(body.get("error") or exc.message), body) from None
    except OSError as exc:  # the message of the exception, never the URL (it holds the token)
        raise Unreachable(
            f"cannot reach the gateway at {client.url}: {exc.strerror or type(exc).__name__}"
        ) from None


async def follow(
    client: Client,
    path: str | None,
    level: str | None,
    tag: str | None,
    tail: int,
    emit: Callable[[dict[str, Any]], None],
    notice: Callable[[str], None],
) -> None:
    """Emit the last ``tail`` records, then live ones until the gateway closes the stream
    (:class:`Unreachable`) or cuts off a slow reader (:class:`ApiError` ``SLOW_CONSUMER``).
    Returns only when cancelled (Ctrl-C)."""
    from_history = path is not None and tail > 0
    ws = await _open(client, level, tag, REPLAY if from_history else tail)
    try:
        last = 0
        if from_history:
            try:
                for record in history(client, path, level, tag, tail):
                    emit(record)
                    last = max(last, int(record.get("id") or 0))
            except ApiError as exc:  # no database, or it does not answer: live records only
                notice(f"no history: {exc}")
        while True:
            message = await ws.read_message()
            if message is None:
                why = f" ({ws.close_code}: {ws.close_reason})" if ws.close_code else ""
                raise Unreachable(f"the gateway closed the log stream{why}")
            try:
                data = json.loads(message)
            except ValueError:
                continue  # not a frame of the log stream (another service on that port?)
            if not isinstance(data, dict):
                continue
            if data.get("type") == "notice":
                if data.get("code") == "SLOW_CONSUMER":
                    raise ApiError(4008, "SLOW_CONSUMER", str(data.get("message", "")), data)
                notice(f"{data.get('code')}: {data.get('message')}")
                continue
            if data.get("type") != "record" or int(data.get("id") or 0) <= last:
                continue
            if path is not None and script_path_of(data.get("script_id")) != path:
                continue
            data.pop("type", None)
            emit(data)
    finally:
        ws.close()
