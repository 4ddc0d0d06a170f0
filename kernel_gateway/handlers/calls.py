"""Calls into scripts: ``ANY /script-api/{path}`` and ``/script-engine/functions``."""

from __future__ import annotations

import datetime
import json
import numbers
import re
import time
from typing import Any

from tornado import httputil
from tornado.httputil import HTTPServerRequest

from ..bridge import Reply
from ..drafts import PREFIX as DRAFTS
from ..errors import BadRequest, HandlerError
from ..inputs import parse_timeout
from ..registrations import normalize_path
from ..routing import CallRouter
from ..scratch import ScratchKernels
from .base import JSONHandler, check_token

__all__ = [
    "ScriptApiHandler",
    "FunctionCallHandler",
    "FunctionListHandler",
    "EventHandler",
    "call_function",
    "script_answer",
    "script_request",
]

# Headers a script never sees: the gateway's own credentials.
_HIDDEN_HEADERS = frozenset({"authorization", "cookie"})
# Security: framing and connection headers are the gateway's; a script that could set
# Content-Length or Transfer-Encoding could split or desynchronise the HTTP answer.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "content-length",
        "keep-alive",
        "proxy-authenticate",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


def script_request(req: HTTPServerRequest, route_path: str) -> dict[str, Any]:
    """What a route handler gets as ``request`` (without the path parameters, which the
    router adds): the caller's credentials are not in it."""
    query: dict[str, Any] = {}
    for key, values in req.query_arguments.items():
        decoded = [v.decode("utf-8", "replace") for v in values]
        query[key] = decoded[0] if len(decoded) == 1 else decoded
    query.pop("token", None)
    return {
        "method": req.method,
        "path": route_path,
        "query_params": query,
        "headers": {k: v for k, v in req.headers.items() if k.lower() not in _HIDDEN_HEADERS},
        "content_type": req.headers.get("Content-Type", ""),
        "client_ip": req.remote_ip,
    }


# what Tornado's RequestHandler.set_header accepts in a header value
_VALID_HEADER_CHARS = re.compile(r"[\x09\x20-\x7e\x80-\xff]*")


def header_value(value: Any) -> str:
    """A header value as ``RequestHandler.set_header`` converts it: ``ValueError`` for
    CR/LF and other control characters, ``TypeError`` for a type it does not take."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, bytes):
        text = value.decode("latin1")
    elif isinstance(value, numbers.Integral):
        return str(value)
    elif isinstance(value, datetime.datetime):
        return httputil.format_timestamp(value)
    else:
        raise TypeError(f"Unsupported header value {value!r}")
    if _VALID_HEADER_CHARS.fullmatch(text) is None:
        raise ValueError(f"Unsafe header value {text!r}")
    return text


Header = tuple[str, "str | None"]  # (name, value); None: the header is removed


def script_answer(reply: Reply) -> tuple[int, list[Header], bytes]:
    """A route's answer as HTTP: status, the headers to set over the defaults (in order;
    ``None`` removes one) and the body. A header the gateway must not send (framing,
    CR/LF) is ``HandlerError`` ``UNSAFE_RESPONSE``."""
    response = reply.data.get("response")
    if response is None:
        return 200, [], reply.json_bytes()
    headers: list[Header] = []
    try:
        status = int(response.get("status", 200))
        for name, value in (response.get("headers") or {}).items():
            if str(name).lower() in HOP_BY_HOP:
                raise ValueError(f"{name!r} is a connection header, set by the gateway")
            headers.append((name, header_value(value)))
        if response.get("content_type"):
            headers.append(("Content-Type", header_value(response["content_type"])))
    except ValueError as exc:  # a header Tornado refuses (CR/LF): never sent
        raise HandlerError(
            f"the script's Response is not a valid HTTP answer: {exc}", "UNSAFE_RESPONSE"
        ) from None
    if response.get("body_type") == "none":
        headers.append(("Content-Type", None))
    return status, headers, reply.buffers[0] if reply.buffers else b""


def function_arguments(router: CallRouter, body: dict[str, Any]) -> tuple[float | None, str | None]:
    """The timeout and task id of a function call's body (400 if malformed)."""
    timeout = parse_timeout(body.get("timeout"), router.max_timeout)
    task_id = body.get("task_id")
    if task_id is not None and not isinstance(task_id, (str, int)):
        raise BadRequest("'task_id' must be a string", "BAD_REQUEST")
    return timeout, None if task_id is None else str(task_id)


def function_answer(script_id: str, reply: Reply, started: float) -> bytes:
    """The body of a function call's answer: the kernel serialized the result once, its
    bytes are spliced in (no re-parse)."""
    took = (time.perf_counter() - started) * 1000
    return (
        b'{"success":true,"script_id":'
        + json.dumps(script_id).encode()
        + b',"call_id":'
        + json.dumps(reply.data.get("id")).encode()
        + b',"duration_ms":'
        + f"{took:.3f}".encode()
        + b',"result":'
        + reply.json_bytes()
        + b"}"
    )


async def call_function(router: CallRouter, name: str, body: dict[str, Any]) -> bytes:
    """A (production) function call: the answer's body."""
    timeout, task = function_arguments(router, body)
    started = time.perf_counter()
    script_id, reply = await router.call_function(name, body.get("args"), timeout, task)
    return function_answer(script_id, reply, started)


def require_admin(handler: JSONHandler) -> None:
    """Security: a draft (a notebook's registrations, docs/vwed.md "Drafts") is untested
    code, so it is served to the admin token only: 403 for the caller token."""
    handler.role = "admin"
    check_token(handler, handler.token)


class ScriptApiHandler(JSONHandler):
    """Routes that scripts registered, served at ``/script-api/<path>``; a draft's at
    ``/script-api/drafts/<id8>/<path>`` (admin token only)."""

    role = "caller"

    SUPPORTED_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")
    router: CallRouter
    scratch: ScratchKernels

    async def _serve(self, path: str) -> None:
        req = self.request
        route_path = normalize_path(path)
        request = script_request(req, route_path)
        task_id = req.headers.get("X-VWED-Task-Id") or None
        method = req.method or "GET"
        drafts = self.scratch.drafts
        if drafts is not None and drafts.claims(method, route_path):
            require_admin(self)  # before saying whether such a draft exists
            draft, draft_path = drafts.route(route_path)
            reply = await draft.call_route(method, draft_path, request, req.body, task_id)
        else:
            _, reply = await self.router.call_route(
                method, route_path, request, req.body, task_id=task_id
            )
        self._answer(reply)

    def _answer(self, reply: Reply) -> None:
        try:
            status, headers, body = script_answer(reply)
        except HandlerError:
            self.clear()
            raise
        self.set_status(status)
        for name, value in headers:
            if value is None:
                self.clear_header(name)
            else:
                self._headers[name] = value  # checked by script_answer (as set_header does)
        # no chunk at all for an empty body: Tornado refuses even b"" with a 204 or 304
        self.finish(body or None)

    get = post = put = delete = patch = head = options = _serve  # type: ignore[assignment]


class FunctionCallHandler(JSONHandler):
    """``POST /script-engine/functions/{name}/call``; a draft's function is named
    ``drafts/<id8>/<name>`` (``drafts%2F<id8>%2F<name>`` in the URL; admin token only)."""

    role = "caller"
    router: CallRouter
    scratch: ScratchKernels

    async def post(self, name: str) -> None:
        body = self.json_body(required=False)
        if name.startswith(DRAFTS + "/") and self.scratch.drafts is not None:
            timeout, task = function_arguments(self.router, body)
            started = time.perf_counter()
            require_admin(self)
            draft, fn = self.scratch.drafts.function(name)
            reply = await draft.call_function(fn, body.get("args"), timeout, task)
            self.finish(function_answer(draft.script_id, reply, started))
            return
        self.finish(await call_function(self.router, name, body))


class FunctionListHandler(JSONHandler):
    role = "caller"
    router: CallRouter

    def get(self) -> None:
        items = [f.describe() for f in self.router.registry.functions()]
        self.send_json({"count": len(items), "functions": items})


class EventHandler(JSONHandler):
    """``POST /script-engine/events/{name} {"data": ...}``: emit an event from a task flow."""

    role = "caller"

    router: CallRouter

    async def post(self, name: str) -> None:
        body = self.json_body(required=False)
        task_id = body.get("task_id")
        report = await self.router.emit(
            name, body.get("data"), None if task_id is None else str(task_id)
        )
        self.send_json(report)
