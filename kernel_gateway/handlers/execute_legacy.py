"""The legacy protocol of ``/script-engine/execute/ws``: the WebSocket script server
this product replaces, spoken unchanged so its Node.js client works against the
gateway (only its URL changes).

A request is a JSON object without ``"id"``, ``{"script_path": "job.py"}``: the file
runs as the ``RUN`` mode of a step does (the file as ``__main__``, then its
``execute()`` if it has one; without one, the last line it printed, as JSON when it
is). Requests run one at a time, in the order they came, and each is answered
``{"status": "success", "result": <value>}`` or ``{"status": "error", "message":
"..."}`` with the old server's messages, word for word (its client shows them).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from ..errors import GatewayError, PathInvalid
from ..steps import StepService

__all__ = ["LegacyRequests", "INVALID_JSON", "NOT_AN_OBJECT"]

log = logging.getLogger("kernel_gateway.steps")

# the old server's messages
INVALID_JSON = "Invalid JSON format"
PATH_REQUIRED = "script_path is required"
NOT_FOUND = "Script file not found"
OUTSIDE = "Script must be in the allowed directory"
NOT_PYTHON = "File must be a Python script"
# ours, where the old server had only "Unexpected error: ..." (it crashed on these)
NOT_AN_OBJECT = "the message must be a JSON object"
NOT_A_STRING = "script_path must be a string"


class _Answer:
    """An answer decided when its message came (bad JSON), sent in its turn."""

    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer


class _Refused(Exception):
    """A request refused before it runs; the text is the old server's message."""


class LegacyRequests:
    """The legacy requests of one connection: queued (at most ``limit`` waiting), run
    one at a time by :meth:`loop`, each answer handed to ``send`` in order. ``spawn``
    runs a coroutine as a task the connection keeps."""

    def __init__(
        self,
        steps: StepService,
        *,
        admin: bool,
        send: Callable[[dict[str, Any]], None],
        spawn: Callable[[Coroutine[Any, Any, Any]], Any],
        limit: int,
    ) -> None:
        self.steps = steps
        self.admin = admin
        self.send = send
        self.spawn = spawn
        self.limit = limit
        self.queue: asyncio.Queue[dict[str, Any] | _Answer | None] = asyncio.Queue()
        self.running = False  # a request runs now
        self.execution_id: str | None = None  # of the step running, once it has its worker
        self.cancel_requested = False

    def put(self, data: dict[str, Any]) -> bool:
        """Queue a request; False when ``limit`` are waiting already."""
        return self._put(data)

    def answer_error(self, message: str) -> bool:
        """Queue an error answer (a message that is no request), for its turn."""
        return self._put(_Answer({"status": "error", "message": message}))

    def _put(self, item: dict[str, Any] | _Answer) -> bool:
        if self.queue.qsize() >= self.limit:
            return False
        self.queue.put_nowait(item)
        return True

    async def loop(self) -> None:
        while True:
            item = await self.queue.get()
            if item is None:  # the connection closed
                return
            if isinstance(item, _Answer):
                self.send(item.answer)
                continue
            self.running, self.cancel_requested = True, False
            try:
                self.send(await self.run(item))
            finally:
                self.running, self.execution_id = False, None

    def close(self) -> None:
        """The connection closed: drop what waits, cancel the request that runs (its
        worker is freed); the loop ends after it (never cancelled inside a step)."""
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)
        if self.running:
            self.spawn(self._cancel())

    async def run(self, data: dict[str, Any]) -> dict[str, Any]:
        path = data.get("script_path")
        if not path:
            return {"status": "error", "message": PATH_REQUIRED}
        if not isinstance(path, str):
            return {"status": "error", "message": NOT_A_STRING}
        try:
            rel = self.relative(path)
        except _Refused as exc:
            return {"status": "error", "message": str(exc)}

        def listener(event: dict[str, Any]) -> None:
            if event.get("type") == "started":
                self.execution_id = event.get("execution_id")
                if self.cancel_requested:
                    self.spawn(self._cancel())

        try:
            answer = await self.steps.execute(
                {"script_path": rel, "mode": "RUN"}, admin=self.admin, listener=listener
            )
        except GatewayError as exc:
            # a step that raised: the exception's str, as the old server's str(e)
            raised = exc.details.get("message") if exc.code == "STEP_FAILED" else None
            return {
                "status": "error",
                "message": str(raised if raised is not None else exc.message),
            }
        except Exception as exc:  # the old server's last resort, word for word
            log.exception("a legacy request over the WebSocket failed in the gateway")
            return {"status": "error", "message": f"Unexpected error: {exc}"}
        return {"status": "success", "result": answer["result"]}

    def relative(self, path: str) -> str:
        """The file of a request, relative to the scripts root. The old client may send
        an absolute path: accepted when, symlinks resolved, it is inside the root. The
        confinement is the store's own (``ScriptStore.resolve``), never a prefix test."""
        store = self.steps.store
        rel = path
        if os.path.isabs(path):
            try:
                rel = store.relative(Path(os.path.realpath(path)))
            except ValueError:  # not under the root
                raise _Refused(OUTSIDE) from None
        try:
            real = store.resolve(rel)
        except PathInvalid:
            raise _Refused(OUTSIDE) from None
        if not real.is_file():
            raise _Refused(NOT_FOUND)
        if real.suffix != ".py":
            raise _Refused(NOT_PYTHON)
        return rel

    async def _cancel(self) -> None:
        self.cancel_requested = True
        target = self.execution_id
        if target is None or target not in self.steps.running:
            return  # cancelled as soon as it has its worker
        try:
            await self.steps.cancel(target)
        except GatewayError as exc:  # it ended meanwhile
            log.debug("cancel of a legacy request: %s", exc.message)
