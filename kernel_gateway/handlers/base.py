"""Behaviour every JSON endpoint shares: token auth, JSON bodies, JSON errors."""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from tornado import web, websocket

from ..errors import BadRequest, Forbidden, GatewayError, NotFound, Unauthorized
from .guard import check_content_type, check_host, check_origin, origin_allowed, redact_uri

__all__ = [
    "JSONHandler",
    "NotFoundHandler",
    "check_token",
    "json_body",
    "log_exception",
    "origin_allowed",
    "request_summary",
    "Tokens",
    "write_json_error",
]

log = logging.getLogger("kernel_gateway.http")


def check_token(handler: Any, token: Any) -> None:
    """Constant-time check of ``Authorization: token T`` / ``Bearer T`` (``?token=T`` on
    WebSocket upgrades only). ``handler``: a RequestHandler, or anything with its
    ``request`` and ``role`` (the call front, ``front.py``).

    ``token`` is a :class:`Tokens` (the endpoint's ``role`` says which it accepts) or
    one plain token (empty: no check).
    """
    if isinstance(token, Tokens):
        if not token.enabled:
            return
        accepted = token.accepted(getattr(handler, "role", "admin"))
    else:
        if not token:
            return
        accepted = [token]
    header = handler.request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    given = value.strip() if scheme.lower() in ("token", "bearer") else ""
    if not given and isinstance(handler, websocket.WebSocketHandler):
        # Security: ?token= only where a header cannot be sent (a browser's WebSocket);
        # elsewhere a token in a URL ends up in proxies', browsers' and servers' logs.
        given = handler.get_query_argument("token", "")
    matches = [hmac.compare_digest(given.encode(), t.encode()) for t in accepted]
    if any(matches):
        return
    if isinstance(token, Tokens) and hmac.compare_digest(given.encode(), token.caller.encode()):
        raise Forbidden("the caller token may call scripts, not manage the gateway")
    raise Unauthorized("a valid token is required (Authorization: token <T>)")


def write_json_error(
    handler: web.RequestHandler, status_code: int, exc: BaseException | None
) -> None:
    """The error answer of every endpoint: ``{"success": false, "error", "code"}``
    (Tornado's own would be HTML)."""
    if isinstance(exc, GatewayError):
        handler.set_status(exc.status)
        for name, value in exc.headers.items():
            handler.set_header(name, value)
        body = exc.to_json()
    elif isinstance(exc, web.HTTPError):
        body = {
            "success": False,
            "error": exc.log_message or handler._reason,
            "code": f"HTTP_{status_code}",
        }
    else:
        body = {
            "success": False,
            "error": "internal error in the gateway",
            "code": "INTERNAL_ERROR",
        }
    handler.set_header("Content-Type", "application/json; charset=utf-8")
    handler.finish(json.dumps(body, default=str))


def _no_constant(name: str) -> Any:
    """``NaN``/``Infinity`` are not JSON (Python's parser accepts them by default)."""
    raise ValueError(f"{name} is not a JSON value")


# one decoder for every body: json.loads() with parse_constant builds a new one each call
_decoder = json.JSONDecoder(parse_constant=_no_constant)


def _loads(raw: bytes) -> Any:
    """``json.loads(raw, parse_constant=_no_constant)`` with the decoder built once."""
    return _decoder.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))


def json_body(raw: bytes, *, required: bool = True) -> dict[str, Any]:
    """A request body that must be a JSON object (400 ``INVALID_JSON`` otherwise;
    empty: ``{}`` unless ``required``)."""
    if not raw.strip():
        if required:
            raise BadRequest("the request body must be a JSON object", "INVALID_JSON")
        return {}
    try:
        body = _loads(raw)
    except RecursionError:
        raise BadRequest("the request body is nested too deeply", "INVALID_JSON") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}", "INVALID_JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object", "INVALID_JSON")
    return body


def log_exception(handler: Any, typ: Any, value: Any, tb: Any) -> None:
    """Tornado's ``log_exception`` without the request's ``repr`` (it holds the full URI,
    a ``?token=`` included): method, redacted URI, status and code, or the traceback."""
    summary = request_summary(handler)
    if isinstance(value, GatewayError):
        level = logging.WARNING if value.status >= 500 else logging.DEBUG
        log.log(
            level,
            "%s -> %s %s: %s",
            summary,
            value.status,
            value.code,
            value.log_message or value.message,
        )
    elif isinstance(value, web.HTTPError):
        if value.log_message:
            message = value.log_message % value.args if value.args else value.log_message
            log.warning("%d %s: %s", value.status_code, summary, message)
    else:
        log.error("uncaught exception in %s", summary, exc_info=(typ, value, tb))


def request_summary(handler: Any) -> str:
    """Tornado's ``METHOD uri (ip)`` for logs, with any token in the query hidden."""
    req = handler.request
    return f"{req.method} {redact_uri(req.uri or '')} ({req.remote_ip})"


class Tokens:
    """The gateway's two tokens: ``admin`` (everything) and ``caller`` (calls into
    scripts: /script-api, functions, events, steps), so a task flow cannot rewrite code."""

    def __init__(self, admin: str, caller: str, enabled: bool = True) -> None:
        self.admin = admin
        self.caller = caller
        self.enabled = enabled

    def accepted(self, role: str) -> list[str]:
        return [self.admin, self.caller] if role == "caller" else [self.admin]


class JSONHandler(web.RequestHandler):
    """Base of every endpoint: errors are ``{"success": false, "error", "code"}``."""

    token: Any = ""
    role: str = "admin"  # "caller" for endpoints a task flow may use
    allow_origins: tuple[str, ...] = ()  # CORS: off unless configured (--allow-origins)
    allow_hosts: tuple[str, ...] | None = ()  # Host names besides loopback (None: any)

    def initialize(self, **services: Any) -> None:
        for name, value in services.items():
            setattr(self, name, value)

    def author(self) -> str:
        """Who writes (a commit, a secret): ``"<name> (<role>)"``, the name from the
        ``X-VWED-Author`` header (printable, no ``<>``, 64 characters at most), or the
        role alone."""
        raw = self.request.headers.get("X-VWED-Author", "")
        name = "".join(c for c in raw if c.isprintable() and c not in "<>").strip()[:64]
        return f"{name} ({self.role})" if name else self.role

    def prepare(self) -> None:
        self._cors()  # here: set_default_headers runs before initialize() on a new handler
        check_host(self.request, self.allow_hosts)
        if self._preflight():
            return
        self.guard_writes()
        check_token(self, self.token)

    def guard_writes(self) -> None:
        """Cross-site writes: a foreign ``Origin``, a body that is not JSON (guard.py)."""
        check_origin(self.request, self.allow_origins)
        check_content_type(self.request)

    def _request_summary(self) -> str:
        return request_summary(self)

    def _cors(self) -> None:
        origin = self.request.headers.get("Origin", "")
        if origin and origin_allowed(origin, self.allow_origins):
            self.set_header("Access-Control-Allow-Origin", origin)
            self.set_header("Vary", "Origin")

    def _preflight(self) -> bool:
        """Answer a CORS preflight (no token on those) when the origin is allowed."""
        req = self.request
        if req.method != "OPTIONS" or "Access-Control-Request-Method" not in req.headers:
            return False
        if not origin_allowed(req.headers.get("Origin", ""), self.allow_origins):
            return False
        self.set_header("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE, OPTIONS")
        self.set_header(
            "Access-Control-Allow-Headers", "Authorization, Content-Type, X-VWED-Task-Id"
        )
        self.set_header("Access-Control-Max-Age", "600")
        self.set_status(204)
        self.finish()
        return True

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self._cors()  # again after clear() (error pages)

    # -- bodies ----------------------------------------------------------------------
    def json_body(self, *, required: bool = True) -> dict[str, Any]:
        return json_body(self.request.body, required=required)

    def send_json(self, payload: dict[str, Any], status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps({"success": True, **payload}, default=str))

    # -- errors ----------------------------------------------------------------------
    def write_error(self, status_code: int, **kwargs: Any) -> None:
        write_json_error(self, status_code, kwargs.get("exc_info", (None, None, None))[1])

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        log_exception(self, typ, value, tb)


class NotFoundHandler(JSONHandler):
    """Any path the gateway does not serve: a JSON 404, never an HTML page."""

    def prepare(self) -> None:
        check_host(self.request, self.allow_hosts)
        raise NotFound(f"no endpoint {self.request.path}", "ENDPOINT_NOT_FOUND")
