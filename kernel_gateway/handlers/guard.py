"""Guards against browsers used as a weapon: cross-site requests and DNS rebinding.

Security: a web page the operator visits can send requests to the gateway. It can
send a ``text/plain`` POST without a CORS preflight, and with DNS rebinding (a
foreign name that resolves to 127.0.0.1) it can even read the answers. So:

- a state-changing request (POST, PUT, PATCH, DELETE) whose ``Origin`` is neither
  the gateway's own nor listed in ``--allow-origins`` is 403 ``ORIGIN_NOT_ALLOWED``
  (script routes included; ``curl`` and task flows send no ``Origin``);
- the gateway's own API (``/script-engine/*``, ``/api/*``) takes JSON bodies only:
  415 ``UNSUPPORTED_MEDIA_TYPE`` for any other ``Content-Type`` (a form or a
  ``text/plain`` body is what a page can send without a preflight);
- while the gateway listens on loopback only, a ``Host`` that is not a loopback
  name or address, nor listed in ``--allow-hosts``, is 403 ``HOST_NOT_ALLOWED``.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from urllib.parse import urlsplit

from tornado.httputil import HTTPServerRequest

from ..errors import Forbidden, UnsupportedMediaType

__all__ = ["check_request", "origin_allowed", "redact_uri"]

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
GATEWAY_API = ("/script-engine/", "/api/")
_TOKEN_QUERY = re.compile(r"(?i)((?:^|[?&;])token=)[^&;#]*")


def origin_allowed(origin: str, allowed: tuple[str, ...]) -> bool:
    return bool(origin) and ("*" in allowed or origin in allowed)


def redact_uri(uri: str) -> str:
    """``uri`` with the value of any ``token`` query argument hidden (for logs)."""
    if "token" not in uri.lower():
        return uri
    return _TOKEN_QUERY.sub(r"\1[redacted]", uri)


def _host_name(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:8765
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    return host.rstrip(".")


@functools.lru_cache(maxsize=256)  # the same few Host values on every request
def _loopback_name(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_host(request: HTTPServerRequest, allowed: tuple[str, ...] | None) -> None:
    """Refuse a foreign ``Host`` while on loopback (``allowed`` None: not checked)."""
    if allowed is None or "*" in allowed:
        return
    host = _host_name(request.headers.get("Host", "") or request.host or "")
    if _loopback_name(host) or host in allowed:
        return
    raise Forbidden(
        f"Host {host!r} is not allowed: the gateway listens on loopback and answers loopback "
        "names only (list other names in --allow-hosts)",
        "HOST_NOT_ALLOWED",
    )


def _same_origin(request: HTTPServerRequest, origin: str) -> bool:
    parts = urlsplit(origin)
    return bool(parts.netloc) and parts.netloc.lower() == (request.host or "").lower()


def check_origin(request: HTTPServerRequest, allowed: tuple[str, ...]) -> None:
    """Refuse a state-changing request from a foreign page (no ``Origin``: not a browser's)."""
    if request.method not in STATE_CHANGING:
        return
    origin = request.headers.get("Origin")
    if origin is None or origin_allowed(origin, allowed) or _same_origin(request, origin):
        return
    raise Forbidden(
        f"requests from the origin {origin!r} may not change anything here "
        "(list it in --allow-origins)",
        "ORIGIN_NOT_ALLOWED",
    )


def check_content_type(request: HTTPServerRequest) -> None:
    """The gateway's own API takes JSON bodies only; an empty body needs no type."""
    if request.method not in STATE_CHANGING or not request.path.startswith(GATEWAY_API):
        return
    if not request.body and not request.headers.get("Content-Length", "").strip("0 "):
        return
    media = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if media == "application/json":
        return
    raise UnsupportedMediaType(
        f"{request.path} takes a JSON body: send 'Content-Type: application/json' "
        f"(got {media or 'none'!r})"
    )


def check_request(
    request: HTTPServerRequest,
    allow_origins: tuple[str, ...],
    allow_hosts: tuple[str, ...] | None,
) -> None:
    """All three guards, in the order a refusal is most telling."""
    check_host(request, allow_hosts)
    check_origin(request, allow_origins)
    check_content_type(request)
