"""Calls into scripts: ``ANY /script-api/{path}`` and ``/script-engine/functions``."""

from __future__ import annotations

import json
import time
from typing import Any

from ..bridge import Reply
from ..drafts import PREFIX as DRAFTS
from ..errors import BadRequest, HandlerError
from ..inputs import parse_timeout
from ..registrations import normalize_path
from ..routing import CallRouter
from ..scratch import ScratchKernels
from .base import JSONHandler, check_token

__all__ = ["ScriptApiHandler", "FunctionCallHandler", "FunctionListHandler", "EventHandler"]

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
        query: dict[str, Any] = {}
        for key, values in req.query_arguments.items():
            decoded = [v.decode("utf-8", "replace") for v in values]
            query[key] = decoded[0] if len(decoded) == 1 else decoded
        query.pop("token", None)
        route_path = normalize_path(path)
        request: dict[str, Any] = {
            "method": req.method,
            "path": route_path,
            "query_params": query,
            "headers": {k: v for k, v in req.headers.items() if k.lower() not in _HIDDEN_HEADERS},
            "content_type": req.headers.get("Content-Type", ""),
            "client_ip": req.remote_ip,
        }
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
        response = reply.data.get("response")
        if response is None:
            self.set_status(200)
            self.finish(reply.json_bytes())
            return
        try:
            self.set_status(int(response.get("status", 200)))
            for name, value in (response.get("headers") or {}).items():
                if str(name).lower() in HOP_BY_HOP:
                    raise ValueError(f"{name!r} is a connection header, set by the gateway")
                self.set_header(name, value)
            if response.get("content_type"):
                self.set_header("Content-Type", response["content_type"])
        except ValueError as exc:  # a header Tornado refuses (CR/LF): never sent
            self.clear()
            raise HandlerError(
                f"the script's Response is not a valid HTTP answer: {exc}", "UNSAFE_RESPONSE"
            ) from None
        if response.get("body_type") == "none":
            self.clear_header("Content-Type")
        self.finish(reply.buffers[0] if reply.buffers else b"")

    get = post = put = delete = patch = head = options = _serve  # type: ignore[assignment]


class FunctionCallHandler(JSONHandler):
    """``POST /script-engine/functions/{name}/call``; a draft's function is named
    ``drafts/<id8>/<name>`` (``drafts%2F<id8>%2F<name>`` in the URL; admin token only)."""

    role = "caller"
    router: CallRouter
    scratch: ScratchKernels

    async def post(self, name: str) -> None:
        body = self.json_body(required=False)
        timeout = parse_timeout(body.get("timeout"), self.router.max_timeout)
        task_id = body.get("task_id")
        if task_id is not None and not isinstance(task_id, (str, int)):
            raise BadRequest("'task_id' must be a string", "BAD_REQUEST")
        started = time.perf_counter()
        task = None if task_id is None else str(task_id)
        if name.startswith(DRAFTS + "/") and self.scratch.drafts is not None:
            require_admin(self)
            draft, fn = self.scratch.drafts.function(name)
            script_id = draft.script_id
            reply = await draft.call_function(fn, body.get("args"), timeout, task)
        else:
            script_id, reply = await self.router.call_function(
                name, body.get("args"), timeout, task
            )
        took = (time.perf_counter() - started) * 1000
        # The kernel serialized the result once; splice its bytes in, no re-parse.
        self.finish(
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
