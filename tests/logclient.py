"""A WebSocket client for the log stream tests (tornado's own client, a real connection)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from tornado.websocket import websocket_connect


async def collect(
    url: str,
    done: Callable[[list[dict[str, Any]]], bool],
    timeout: float,
    started: asyncio.Event | None = None,
) -> list[dict[str, Any]]:
    """Read messages until ``done(messages)`` or the server closes; fail at ``timeout``."""
    conn = await asyncio.wait_for(websocket_connect(url), 10)
    if started is not None:
        started.set()
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while not done(messages):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out; got {len(messages)} messages: {messages[-3:]}")
            raw = await asyncio.wait_for(conn.read_message(), left)
            if raw is None:
                break
            messages.append(json.loads(raw))
    finally:
        conn.close()
    return messages


def records(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if m.get("type") == "record"]
