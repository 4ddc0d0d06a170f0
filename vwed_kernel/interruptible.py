"""A call's coroutine that an interrupt (SIGINT) can stop while it runs.

A coroutine handler runs as an asyncio task, stepped by the kernel's event loop,
outside the window in which SIGINT raises ``KeyboardInterrupt`` (the synchronous
part of a call, ``fastpath.py``). Cancelling its task stops it at its next await
only: one blocked in synchronous code (``time.sleep``, a blocking call inside
``async def``) ran to its end, whatever the gateway's interrupt. ``interruptible``
wraps it so that each step of it runs with SIGINT raising ``KeyboardInterrupt``,
turned into ``asyncio.CancelledError`` (a ``KeyboardInterrupt`` out of a task
would stop the event loop): the task ends cancelled.
"""

from __future__ import annotations

import _signal
import asyncio
import signal
import threading
from collections.abc import Coroutine, Generator
from typing import Any

__all__ = ["interruptible"]

_SIGINT = int(signal.SIGINT)
_INT_HANDLER = signal.default_int_handler


class _Steps:
    """The iterator ``__await__`` gives: each ``send``/``throw`` of the coroutine with
    SIGINT raising ``KeyboardInterrupt``."""

    __slots__ = ("_coro",)

    def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
        self._coro = coro

    def __iter__(self) -> _Steps:
        return self

    def __next__(self) -> Any:
        return self.send(None)

    def send(self, value: Any) -> Any:
        previous = _signal.signal(_SIGINT, _INT_HANDLER)
        try:
            return self._coro.send(value)
        except KeyboardInterrupt:
            raise asyncio.CancelledError("the call was interrupted") from None
        finally:
            _signal.signal(_SIGINT, previous)

    def throw(self, *exc: Any) -> Any:
        previous = _signal.signal(_SIGINT, _INT_HANDLER)
        try:
            return self._coro.throw(*exc)
        except KeyboardInterrupt:
            raise asyncio.CancelledError("the call was interrupted") from None
        finally:
            _signal.signal(_SIGINT, previous)

    def close(self) -> None:
        self._coro.close()


async def interruptible(coro: Coroutine[Any, Any, Any]) -> Any:
    """Await ``coro``, each of its steps interruptible (module docstring). Off the main
    thread (where signal handlers cannot be set, and SIGINT never lands), plainly."""
    if threading.current_thread() is not threading.main_thread():
        return await coro
    return await _Awaitable(coro)


class _Awaitable:
    __slots__ = ("_coro",)

    def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
        self._coro = coro

    def __await__(self) -> Generator[Any, Any, Any]:
        return _Steps(self._coro)  # type: ignore[return-value]
