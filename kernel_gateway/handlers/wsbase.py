"""What the gateway's WebSocket endpoints share: the token and the upgrade are
checked before Tornado's handshake, and a refusal is a JSON error like every
other endpoint's (Tornado's own answers are plain text or HTML)."""

from __future__ import annotations

from typing import Any

from tornado import websocket

from ..errors import BadRequest, GatewayError
from .base import check_token, log_exception, request_summary, write_json_error
from .guard import check_host, origin_allowed

__all__ = ["GatewaySocket"]


class GatewaySocket(websocket.WebSocketHandler):
    token: Any = ""
    allow_origins: tuple[str, ...] = ()
    allow_hosts: tuple[str, ...] | None = ()

    def check_origin(self, origin: str) -> bool:
        """Same origin (Tornado's default), or an origin listed in --allow-origins."""
        return origin_allowed(origin, self.allow_origins) or super().check_origin(origin)

    def admit(self) -> None:
        """The Host (DNS rebinding) and the token; raises a ``GatewayError`` to refuse."""
        check_host(self.request, self.allow_hosts)
        check_token(self, self.token)

    def _request_summary(self) -> str:
        return request_summary(self)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        log_exception(self, typ, value, tb)

    def require_upgrade(self) -> None:
        """A plain HTTP request gets a JSON 400 rather than Tornado's text answer."""
        if self.request.headers.get("Upgrade", "").lower() != "websocket":
            raise BadRequest(
                f"{self.request.path} is a WebSocket endpoint: connect with a WebSocket "
                "client (Upgrade: websocket)",
                "WEBSOCKET_REQUIRED",
            )

    def refuse(self, exc: GatewayError) -> None:
        write_json_error(self, exc.status, exc)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        write_json_error(self, status_code, kwargs.get("exc_info", (None, None, None))[1])
