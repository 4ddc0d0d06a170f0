"""``VWED.api``: HTTP routes served by the gateway under ``/script-api/...``."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..calling import call_handler_with_request
from ..errors import NotRegisteredError, RegistrationError
from ..registrations import RouteSpec, SocketSpec, normalize_method, normalize_route_path

if TYPE_CHECKING:
    from ..vwed import VWED

__all__ = ["ApiModule", "Response"]

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# Framing headers belong to the gateway's connection, not to a script's answer: a wrong
# Content-Length or Transfer-Encoding would desynchronise the client (response splitting).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "content-length",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


class Response:
    """Full control of a route's HTTP answer.

    ``body`` may be ``bytes`` (sent as is), ``str`` (sent as UTF-8 text) or any
    JSON-serializable value (sent as JSON). ``content_type`` defaults to
    ``application/octet-stream``, ``text/plain; charset=utf-8`` or
    ``application/json`` accordingly.

    >>> VWED.api.Response({"queued": True}, status=202, headers={"X-Queue": "3"})
    """

    def __init__(
        self,
        body: Any = None,
        status: int = 200,
        headers: dict[str, str] | None = None,
        content_type: str | None = None,
    ) -> None:
        if not isinstance(status, int) or not 100 <= status <= 599:
            raise ValueError(f"status must be an HTTP status code (100-599), not {status!r}")
        self.body = body
        self.status = status
        self.headers = {str(k): str(v) for k, v in (headers or {}).items()}
        for name, value in [*self.headers.items(), ("Content-Type", content_type or "")]:
            if not _TOKEN.match(name) or any(c in value for c in "\r\n\x00"):
                raise ValueError(
                    f"unsafe HTTP header {name!r}: names are tokens, values have no CR, LF or NUL"
                )
            if name.lower() in HOP_BY_HOP:
                raise ValueError(f"HTTP header {name!r} is set by the gateway, not by a script")
        self.content_type = content_type

    def encoded_body(self) -> tuple[bytes, str, str | None]:
        """``(bytes, body_type, content_type)`` for the wire."""
        body = self.body
        if body is None:
            return b"", "none", self.content_type
        if isinstance(body, (bytes, bytearray, memoryview)):
            return bytes(body), "bytes", self.content_type or "application/octet-stream"
        if isinstance(body, str):
            return body.encode(), "text", self.content_type or "text/plain; charset=utf-8"
        from ..encoding import encode_value

        return encode_value(body), "json", self.content_type or "application/json"

    def __repr__(self) -> str:
        return f"Response(status={self.status}, content_type={self.content_type!r})"


class ApiModule:
    """Register HTTP routes that task flows call at ``/script-api/<path>``.

    Path parameters are written ``/robots/{robot_id}``; the handler receives the
    request dict ``{method, path, path_params, query_params, headers, json,
    body, script_id}`` (or nothing, if it takes no parameter) and returns a
    JSON-serializable value or a :class:`Response`.
    """

    Response = Response

    def __init__(self, vwed: VWED) -> None:
        self._vwed = vwed

    def register_route(
        self,
        path: str,
        method: str = "GET",
        handler: Callable[..., Any] | None = None,
        description: str = "",
    ) -> Any:
        """Register ``handler`` for ``method path``; without a handler, return a decorator.

        ``VWED.api.register_route("/warehouse/status", "GET", get_status)``
        """
        if handler is None:
            return lambda h: self.register_route(path, method, h, description) or h
        if not callable(handler):
            raise RegistrationError(f"handler for route {path!r} is not callable")
        spec = RouteSpec(
            normalize_method(method),
            normalize_route_path(path),
            handler,
            description or (handler.__doc__ or "").strip().split("\n")[0],
        )
        self._vwed._registrations.routes[spec.key] = spec
        self._vwed._link.notify_register("api", spec.describe())
        return None

    def route(
        self, path: str, methods: Iterable[str] = ("GET",), description: str = ""
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator form: ``@VWED.api.route("/robots/{robot_id}", methods=["GET"])``."""
        if isinstance(methods, str):
            methods = [methods]

        def decorate(handler: Callable[..., Any]) -> Callable[..., Any]:
            for m in methods:
                self.register_route(path, m, handler, description)
            return handler

        return decorate

    def unregister_route(self, path: str, method: str = "GET") -> bool:
        """Remove a route; returns whether it was registered."""
        key = f"{normalize_method(method)} {normalize_route_path(path)}"
        spec = self._vwed._registrations.routes.pop(key, None)
        if spec is not None:
            self._vwed._link.notify_unregister("api", spec.describe())
        return spec is not None

    def register_websocket(self, path: str, handler: Callable[..., Any]) -> None:
        """Serve a WebSocket at ``/script-ws/<path>``: every text message a client sends
        calls ``handler(message)`` (or ``handler(connection_id, message)``); a return
        value other than ``None`` is sent back (JSON unless it is a string)."""
        if not callable(handler):
            raise RegistrationError(f"handler for WebSocket {path!r} is not callable")
        key = normalize_route_path(path)
        spec = SocketSpec("websocket", key, handler)
        self._vwed._registrations.websockets[key] = spec
        self._vwed._link.notify_register("websocket", spec.describe())

    def register_tcp(self, port: int, handler: Callable[..., Any], host: str = "127.0.0.1") -> None:
        """Run a TCP server inside this kernel on ``host:port``: each chunk of bytes a
        client sends calls ``handler(data)`` (or ``handler(data, peer)``); bytes or text
        returned are written back. The server closes when the script stops.

        Security: binds 127.0.0.1 unless ``host`` says otherwise.
        """
        import asyncio

        if not callable(handler):
            raise RegistrationError(f"handler for TCP port {port} is not callable")
        if not isinstance(port, int) or not 0 < port < 65536:
            raise RegistrationError(f"TCP port must be 1-65535, not {port!r}")
        from ..calling import call_tcp_handler

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peer = writer.get_extra_info("peername")
            try:
                while data := await reader.read(65536):
                    reply = call_tcp_handler(handler, data, peer)
                    if hasattr(reply, "__await__"):
                        reply = await reply
                    if reply is not None:
                        writer.write(reply if isinstance(reply, bytes) else str(reply).encode())
                        await writer.drain()
            except Exception as exc:  # a handler error closes this connection only
                self._vwed.log.error("tcp", f"port {port}: {type(exc).__name__}: {exc}")
            finally:
                writer.close()

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RegistrationError("register_tcp needs a running event loop (a kernel)") from None
        spec = SocketSpec("tcp", str(port), handler)

        def started(task: asyncio.Task[asyncio.Server]) -> None:
            if task.cancelled() or task.exception() is not None:
                self._vwed.log.error(
                    "tcp", f"port {port} could not be opened: {task.exception()!r}"
                )
                self._vwed._registrations.tcp.pop(str(port), None)
            else:
                spec.server = task.result()

        loop.create_task(asyncio.start_server(serve, host, port)).add_done_callback(started)
        self._vwed._registrations.tcp[str(port)] = spec
        self._vwed._link.notify_register("tcp", spec.describe())

    def list_routes(self) -> list[dict[str, Any]]:
        """The routes this script registered."""
        return [r.describe() for r in self._vwed._registrations.routes.values()]

    def call_local(
        self,
        path: str,
        method: str = "GET",
        json_body: Any = None,
        *,
        body: str | bytes | None = None,
        query_params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        request: dict[str, Any] | None = None,
    ) -> Any:
        """Call a route registered in *this* kernel, as the gateway would, to test it.

        The handler gets the request dict the gateway would build; keys of
        ``request`` (if given) override it. Returns the handler's return value
        (a coroutine for ``async`` handlers: ``await`` it in a notebook).

        >>> VWED.api.call_local("/robots/7", "GET")
        >>> VWED.api.call_local("/orders", "POST", {"sku": "A1"}, headers={"X-Line": "2"})
        """
        found = self._vwed._registrations.match_route(method, normalize_route_path(path))
        if found is None:
            raise NotRegisteredError(f"no route {method.upper()} {path} in this kernel")
        spec, params = found
        if json_body is not None and body is None:
            body = json.dumps(json_body)
        full = {
            "method": spec.method,
            "path": normalize_route_path(path),
            "path_params": params,
            "query_params": dict(query_params or {}),
            "headers": dict(headers or {}),
            "json": json_body,
            "body": body,
            "script_id": self._vwed._link.script_id,
            **(request or {}),
        }
        return call_handler_with_request(spec.handler, full)
