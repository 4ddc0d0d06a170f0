"""The call front: ``/script-api/<path>`` and ``POST /script-engine/functions/<name>/call``
served without a ``RequestHandler`` (issue 19, gateway CPU per call).

Tornado's web layer (rule matching, a ``RequestHandler`` per request with its default
headers, ``prepare``/``_execute``/``finish``/``flush``, the close callback) costs about
as much CPU as a whole bare request. This delegate sits between the HTTP server and
the application and serves the two call endpoints itself, with the same behaviour:
the Host guard, the caller token (constant time), the JSON body check of the
gateway's API, the same router (metrics, quotas, the call history), the script's
answer through the same code (``calls.script_answer``), the same default headers
(``Server``, ``Date``, ``Content-Type``, ``Cache-Control``), the ``ETag`` of a
200 GET/HEAD, errors as JSON with codes (``write_json_error``'s bodies) and the access
log (``routes.log_request``).

Everything else goes to the application unchanged, and so do the calls whose
handling the front does not repeat: a request with an ``Origin`` (CORS headers, the
cross-site guard, preflights), ``OPTIONS``, ``If-None-Match``, a draft's route or
function (admin token), a form body (Tornado parses it), a path that is not UTF-8, a
``Content-Length`` over ``--max-body-size`` (``BodyLimit``'s JSON 413, which sits
between this front and the application). The standby gate of ``--ha`` sits outside.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import tornado
from tornado import httputil, web
from tornado.escape import url_unescape

from ..bridge import Reply
from ..drafts import PREFIX as DRAFTS
from ..errors import GatewayError
from ..registrations import normalize_path
from ..routing import CallRouter
from .base import Tokens, check_token, json_body, log_exception, request_summary
from .calls import (
    call_function,
    function_answer,
    function_arguments,
    script_answer,
    script_request,
)
from .guard import check_content_type, check_host

__all__ = ["CallFront"]

log = logging.getLogger("kernel_gateway.http")

ROUTE_PREFIX = "/script-api/"
ROUTE_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"})
_FUNCTION = re.compile(r"/script-engine/functions/([^/]+)/call$")
_DRAFTS = f"/{DRAFTS}/"
_SERVER = f"TornadoServer/{tornado.version}"
_JSON = "application/json; charset=utf-8"
# bodies Tornado parses into arguments before a handler runs (a 400 if malformed)
_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")
_NO_CONTENT_HEADERS = ("Content-Encoding", "Content-Language", "Content-Type")


class _Clock:
    """The ``Date`` header, formatted once a second."""

    second = -1
    text = ""

    @classmethod
    def date(cls) -> str:
        now = time.time()
        if int(now) != cls.second:
            cls.second = int(now)
            cls.text = httputil.format_timestamp(now)
        return cls.text


def _defaults() -> httputil.HTTPHeaders:
    """What every JSON answer of the gateway starts with (``RequestHandler.clear`` and
    ``JSONHandler.set_default_headers``, no ``Origin`` here)."""
    return httputil.HTTPHeaders(
        {
            "Server": _SERVER,
            "Content-Type": _JSON,
            "Date": _Clock.date(),
            "Cache-Control": "no-store",
        }
    )


class CallFront(httputil.HTTPServerConnectionDelegate):
    """Serves the call endpoints; hands every other request to ``app``."""

    def __init__(
        self,
        app: httputil.HTTPServerConnectionDelegate,
        router: CallRouter,
        tokens: Tokens,
        allow_hosts: tuple[str, ...] | None,
        *,
        max_body_size: int,
        log_request: Callable[[Any], None],
    ) -> None:
        self.app = app  # the application (behind the body limit's JSON 413)
        self.router = router
        self.tokens = tokens
        self.allow_hosts = allow_hosts
        self.max_body_size = max_body_size
        self.log_request = log_request
        self.served = 0  # requests served here (not by the application)

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        return _Call(self, server_conn, request_conn)

    def on_close(self, server_conn: object) -> None:
        self.app.on_close(server_conn)

    def serve(
        self, conn: httputil.HTTPConnection, what: Any, request: httputil.HTTPServerRequest
    ) -> None:
        """Serve a request ``claims`` gave ``what`` for, read whole by another HTTP
        layer (``httpfront``): the answer goes to ``conn``."""
        call = _Call(self, None, conn)
        call.what = what
        call.request = request
        self.served += 1
        call.go()

    def claims(self, start_line: httputil.RequestStartLine, headers: httputil.HTTPHeaders) -> Any:
        """``("route", path)`` or ``("function", name)`` when the front serves this
        request, else None (the application does)."""
        if "Origin" in headers or "If-None-Match" in headers:
            return None
        if headers.get("Content-Type", "").startswith(_FORMS):  # Tornado parses those
            return None
        length = headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self.max_body_size:  # BodyLimit's 413
            return None
        method = start_line.method
        path = start_line.path.partition("?")[0]
        try:
            if path.startswith(ROUTE_PREFIX):
                if method not in ROUTE_METHODS:
                    return None
                route = url_unescape(path[len(ROUTE_PREFIX) :], encoding=None, plus=False)
                route_path = normalize_path(route.decode("utf-8"))
                if route_path.startswith(_DRAFTS):
                    return None
                return ("route", route_path)
            if method == "POST" and path.startswith("/script-engine/functions/"):
                match = _FUNCTION.match(path)
                if match is None:
                    return None
                name = url_unescape(match.group(1), encoding=None, plus=False).decode("utf-8")
                if name.startswith(DRAFTS + "/"):
                    return None
                return ("function", name)
        except UnicodeDecodeError:  # Tornado's 400 for it
            return None
        return None


class _Call(httputil.HTTPMessageDelegate):
    """One request on a connection: served here, or passed to the application."""

    role = "caller"  # for check_token: the caller token or the admin token

    def __init__(
        self, front: CallFront, server_conn: object, conn: httputil.HTTPConnection
    ) -> None:
        self.front = front
        self.server_conn = server_conn
        self.conn = conn
        self.inner: httputil.HTTPMessageDelegate | None = None
        self.what: Any = None
        self.chunks: list[bytes] = []
        self.status = 200
        self.request: httputil.HTTPServerRequest

    # -- the HTTP connection's side ----------------------------------------------------
    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> Any:
        assert isinstance(start_line, httputil.RequestStartLine)
        self.what = self.front.claims(start_line, headers)
        if self.what is None:
            self.inner = self.front.app.start_request(self.server_conn, self.conn)
            return self.inner.headers_received(start_line, headers)
        self.request = httputil.HTTPServerRequest(
            connection=self.conn, start_line=start_line, headers=headers
        )
        self.front.served += 1
        return None

    def data_received(self, chunk: bytes) -> Any:
        if self.inner is not None:
            return self.inner.data_received(chunk)
        self.chunks.append(chunk)
        return None

    def finish(self) -> None:
        if self.inner is not None:
            self.inner.finish()
            return
        self.request.body = b"".join(self.chunks)
        self.chunks = []
        self.go()

    def go(self) -> None:
        """Serve the request, its body read.

        The call is sent now and answered from the callback (no task, no extra loop
        iteration); a script that does not serve right now takes the async path,
        which waits for one that is restarting."""
        try:
            if not self._start():
                asyncio.ensure_future(self._serve())
        except Exception as exc:
            self._fail(exc)

    def on_connection_close(self) -> None:
        if self.inner is not None:
            self.inner.on_connection_close()
        # else: the call runs to its end (a RequestHandler's on_connection_close does
        # nothing either); its answer is dropped with the connection

    # -- serving ----------------------------------------------------------------------
    def _check(self) -> None:
        """``JSONHandler.prepare`` for these endpoints (no ``Origin`` here)."""
        front, req = self.front, self.request
        check_host(req, front.allow_hosts)
        if self.what[0] == "function":
            check_content_type(req)
        check_token(self, front.tokens)

    def _start(self) -> bool:
        """Send the call (False: use ``_serve``)."""
        self._check()
        front, req = self.front, self.request
        kind, target = self.what
        if kind == "route":
            return front.router.start_route(
                req.method or "GET",
                target,
                script_request(req, target),
                req.body,
                req.headers.get("X-VWED-Task-Id") or None,
                self._route_done,
            )
        body = json_body(req.body, required=False)
        timeout, task = function_arguments(front.router, body)
        started = time.perf_counter()

        def done(reply: Reply | None, exc: BaseException | None) -> None:
            if reply is None:
                self._fail(exc)
            else:
                self._function_done(script_id or "", reply, started)

        script_id = front.router.start_function(target, body.get("args"), timeout, task, done)
        return script_id is not None

    def _route_done(self, reply: Reply | None, exc: BaseException | None) -> None:
        if reply is None:
            self._fail(exc)
            return
        try:
            status, extra, body = script_answer(reply)
        except Exception as error:
            self._fail(error)
            return
        headers = _defaults()
        for name, value in extra:
            if value is None:
                if name in headers:
                    del headers[name]
            else:
                headers[name] = value
        self._send(status, headers, body)

    def _function_done(self, script_id: str, reply: Reply, started: float) -> None:
        self._send(200, _defaults(), function_answer(script_id, reply, started))

    async def _serve(self) -> None:
        """The same with coroutines (a script restarting after a crash is waited for)."""
        front, req = self.front, self.request
        try:
            self._check()
            kind, target = self.what
            if kind == "route":
                _, reply = await front.router.call_route(
                    req.method or "GET",
                    target,
                    script_request(req, target),
                    req.body,
                    task_id=req.headers.get("X-VWED-Task-Id") or None,
                )
            else:
                body = await call_function(
                    front.router, target, json_body(req.body, required=False)
                )
                self._send(200, _defaults(), body)
                return
        except Exception as exc:
            self._fail(exc)
            return
        self._route_done(reply, None)

    def _fail(self, exc: BaseException | None) -> None:
        """The error answer (``write_json_error``) and its log line (``log_exception``)."""
        if exc is None:  # not expected: a callback without an answer or an error
            exc = RuntimeError("a call ended without an answer")
        log_exception(self, type(exc), exc, exc.__traceback__)
        self._send(*_error(exc))

    def _send(self, status: int, headers: httputil.HTTPHeaders, body: bytes) -> None:
        try:
            self._write(status, headers, body)
        except Exception as exc:  # what RequestHandler.finish refuses (a body with a 204)
            log_exception(self, type(exc), exc, exc.__traceback__)
            self._write(*_error(exc))

    def _write(self, status: int, headers: httputil.HTTPHeaders, body: bytes) -> None:
        """``RequestHandler.finish``: the ETag of a 200 GET/HEAD, no body for 1xx, 204,
        304, the length, and the access log."""
        method = self.request.method
        if status == 200 and method in ("GET", "HEAD") and "Etag" not in headers:
            headers["Etag"] = f'"{hashlib.sha1(body).hexdigest()}"'
        if status in (204, 304) or 100 <= status < 200:
            if body:
                raise RuntimeError(f"Cannot send body with status code HTTP{status}")
            for name in _NO_CONTENT_HEADERS:
                if name in headers:
                    del headers[name]
        elif "Content-Length" not in headers:
            headers["Content-Length"] = str(len(body))
        self.status = status
        reason = httputil.responses.get(status, "Unknown")
        self.conn.write_headers(
            httputil.ResponseStartLine("", status, reason),
            headers,
            b"" if method == "HEAD" else body,
        )
        self.conn.finish()
        self.front.log_request(self)

    # what routes.log_request and base.request_summary ask of a handler
    def get_status(self) -> int:
        return self.status

    def _request_summary(self) -> str:
        return request_summary(self)


def _error(exc: BaseException) -> tuple[int, httputil.HTTPHeaders, bytes]:
    """``write_json_error``'s answer for ``exc``."""
    headers = _defaults()
    if isinstance(exc, GatewayError):
        status = exc.status
        for name, value in exc.headers.items():
            headers[name] = str(value)
        payload = exc.to_json()
    elif isinstance(exc, web.HTTPError):
        status = exc.status_code
        payload = {
            "success": False,
            "error": exc.log_message or httputil.responses.get(status, "Unknown"),
            "code": f"HTTP_{status}",
        }
    else:
        status = 500
        payload = {
            "success": False,
            "error": "internal error in the gateway",
            "code": "INTERNAL_ERROR",
        }
    return status, headers, json.dumps(payload, default=str).encode()
