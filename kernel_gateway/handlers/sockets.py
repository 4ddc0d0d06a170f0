"""``/script-ws/{path}``: WebSocket routes that scripts registered
(``VWED.api.register_websocket``)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from tornado import websocket

from ..errors import GatewayError, NotFound
from ..registrations import normalize_path
from ..routing import CallRouter
from .wsbase import GatewaySocket

__all__ = ["ScriptWebSocketHandler"]


class ScriptWebSocketHandler(GatewaySocket):
    """Each text message goes to the script's handler; its return value (if not None)
    comes back. A failing handler gets ``{"type": "error", ...}`` and the connection
    stays open; when the script stops, its connections are closed (code 1001).

    Security: token checked before the upgrade; ``check_origin`` keeps Tornado's
    same-origin default.
    """

    role = "caller"

    def initialize(  # type: ignore[override]
        self,
        router: CallRouter,
        token: Any = "",
        allow_origins: tuple[str, ...] = (),
        allow_hosts: tuple[str, ...] | None = (),
    ) -> None:
        self.router = router
        self.token = token
        self.allow_origins = allow_origins
        self.allow_hosts = allow_hosts
        self.connection_id = uuid.uuid4().hex[:12]
        self.path_key = ""
        self.script_id: str | None = None

    async def get(self, path: str, *args: Any, **kwargs: Any) -> None:
        try:
            self.admit()
            self.path_key = normalize_path(path)
            self.script_id = self.router.registry.websocket(self.path_key)
            if self.script_id is None:
                raise NotFound(
                    f"no script serves WebSocket /script-ws{self.path_key}", "ROUTE_NOT_FOUND"
                )
            self.require_upgrade()
        except GatewayError as exc:
            self.refuse(exc)
            return
        await super().get(path, *args, **kwargs)

    def open(self, *args: Any, **kwargs: Any) -> None:
        self.set_nodelay(True)  # a script's answers are small frames: no Nagle delay
        self.router.websockets.setdefault(self.script_id or "", set()).add(self)

    async def on_message(self, message: str | bytes) -> None:
        text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
        try:
            reply = await self.router.call_websocket(self.path_key, self.connection_id, text)
        except GatewayError as exc:
            await self._send(json.dumps({"type": "error", "code": exc.code, "error": exc.message}))
            return
        value = reply.value()
        if value is not None:
            await self._send(value if isinstance(value, str) else json.dumps(value))

    async def _send(self, text: str) -> None:
        try:
            await self.write_message(text)
        except websocket.WebSocketClosedError:
            pass

    def on_close(self) -> None:
        self.router.websockets.get(self.script_id or "", set()).discard(self)
