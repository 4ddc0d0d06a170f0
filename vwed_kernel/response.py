"""``VWED.api.Response``: a route's full HTTP answer (status, headers, body).

A plain value checked when it is built; ``encoding.py`` turns it into the
``result`` message for the wire (docs/protocol.md).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["Response", "HOP_BY_HOP"]

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

    def __repr__(self) -> str:
        return f"Response(status={self.status}, content_type={self.content_type!r})"
