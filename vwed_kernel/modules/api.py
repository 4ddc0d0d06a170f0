"""``VWED.api``: HTTP routes served by the gateway under ``/script-api/...``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..calling import call_handler_with_request, call_tcp_handler
from ..errors import NotRegisteredError, RegistrationError
from ..registrations import RouteSpec, SocketSpec, normalize_method, normalize_route_path
from ..replies import failure_text
from ..response import Response

if TYPE_CHECKING:
    from ..context import Context

__all__ = ["ApiModule"]


class ApiModule:
    """Register HTTP routes that task flows call at ``/script-api/<path>``.

    Path parameters are written ``/robots/{robot_id}``; the handler receives the
    request dict ``{method, path, path_params, query_params, headers, json,
    body, script_id}`` (or nothing, if it takes no parameter) and returns a
    JSON-serializable value or a :class:`Response`.
    """

    Response = Response

    def __init__(self, context: Context) -> None:
        self._context = context

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
        self._context.registrations.routes[spec.key] = spec
        self._context.link.notify_register("api", spec.describe())
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
        spec = self._context.registrations.routes.pop(key, None)
        if spec is not None:
            self._context.link.notify_unregister("api", spec.describe())
        return spec is not None

    def clear_all(self) -> int:
        """Remove every HTTP route of this script (here and at the gateway); returns how
        many were removed. WebSocket routes and TCP servers stay (they end with the
        script). ``VWED.timer.clear_all()`` and ``VWED.event.clear_all()`` do the same
        for timers and listeners."""
        routes = self._context.registrations.routes
        keys = list(routes)
        for key in keys:
            spec = routes.pop(key, None)
            if spec is not None:
                self._context.link.notify_unregister("api", spec.describe())
        return len(keys)

    def register_websocket(self, path: str, handler: Callable[..., Any]) -> None:
        """Serve a WebSocket at ``/script-ws/<path>``: every text message a client sends
        calls ``handler(message)`` (or ``handler(connection_id, message)``); a return
        value other than ``None`` is sent back (JSON unless it is a string)."""
        if not callable(handler):
            raise RegistrationError(f"handler for WebSocket {path!r} is not callable")
        key = normalize_route_path(path)
        spec = SocketSpec("websocket", key, handler)
        self._context.registrations.websockets[key] = spec
        self._context.link.notify_register("websocket", spec.describe())

    def register_tcp(self, port: int, handler: Callable[..., Any], host: str = "127.0.0.1") -> None:
        """Run a TCP server inside this kernel on ``host:port``: each chunk of bytes a
        client sends calls ``handler(data)`` (or ``handler(data, peer)``); bytes or text
        returned are written back. The server closes when the script stops.

        Security: binds 127.0.0.1 unless ``host`` says otherwise.
        """
        if not callable(handler):
            raise RegistrationError(f"handler for TCP port {port} is not callable")
        if not isinstance(port, int) or not 0 < port < 65536:
            raise RegistrationError(f"TCP port must be 1-65535, not {port!r}")

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
                self._context.log("ERROR", "tcp", failure_text(f"TCP handler of port {port}", exc))
            finally:
                writer.close()

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RegistrationError("register_tcp needs a running event loop (a kernel)") from None
        spec = SocketSpec("tcp", str(port), handler)

        def started(task: asyncio.Task[asyncio.Server]) -> None:
            if task.cancelled() or task.exception() is not None:
                self._context.log(
                    "ERROR", "tcp", f"port {port} could not be opened: {task.exception()!r}"
                )
                self._context.registrations.tcp.pop(str(port), None)
            else:
                spec.server = task.result()

        loop.create_task(asyncio.start_server(serve, host, port)).add_done_callback(started)
        self._context.registrations.tcp[str(port)] = spec
        self._context.link.notify_register("tcp", spec.describe())

    def list_routes(self) -> list[dict[str, Any]]:
        """The routes this script registered."""
        return [r.describe() for r in self._context.registrations.routes.values()]

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
        found = self._context.registrations.match_route(method, normalize_route_path(path))
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
            "script_id": self._context.link.script_id,
            **(request or {}),
        }
        return call_handler_with_request(spec.handler, full)
