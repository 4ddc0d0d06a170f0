"""A request body over ``--max-body-size`` gets a JSON 413 before it is read.

Tornado's own limit (``HTTPServer(max_body_size=...)``) answers such a request with
a bare ``400 Bad Request`` and no body; this delegate sits between the server and
the application, looks at ``Content-Length`` when the headers arrive, and answers
413 ``BODY_TOO_LARGE`` like every other error of the gateway. A chunked body has
no length up front: Tornado's limit still stops it (400) once it grows too large.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from tornado import httputil

__all__ = ["BodyLimit"]

log = logging.getLogger("kernel_gateway.http")


class BodyLimit(httputil.HTTPServerConnectionDelegate):
    def __init__(self, app: httputil.HTTPServerConnectionDelegate, limit: int) -> None:
        self.app = app
        self.limit = limit

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        return _Guard(self.app.start_request(server_conn, request_conn), request_conn, self.limit)

    def on_close(self, server_conn: object) -> None:
        self.app.on_close(server_conn)


class _Guard(httputil.HTTPMessageDelegate):
    def __init__(
        self, inner: httputil.HTTPMessageDelegate, conn: httputil.HTTPConnection, limit: int
    ) -> None:
        self.inner = inner
        self.conn = conn
        self.limit = limit
        self.refused = False

    def headers_received(self, start_line: Any, headers: httputil.HTTPHeaders) -> Any:
        length = headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self.limit:
            self.refused = True
            log.warning(
                "413 %s %s: body of %s bytes over the limit of %d",
                start_line.method,
                start_line.path[:200],
                length,
                self.limit,
            )
            body = json.dumps(
                {
                    "success": False,
                    "code": "BODY_TOO_LARGE",
                    "limit": self.limit,
                    "error": f"the request body ({length} bytes) is over the limit of {self.limit} "
                    "bytes (--max-body-size)",
                }
            ).encode()
            # The body is not kept: let the connection drain it until it closes, rather
            # than have Tornado answer a second time with its own 400.
            self.conn.set_max_body_size(int(length))  # type: ignore[attr-defined]
            self.conn.write_headers(
                httputil.ResponseStartLine("HTTP/1.1", 413, "Payload Too Large"),
                httputil.HTTPHeaders(
                    {
                        "Content-Type": "application/json; charset=utf-8",
                        "Content-Length": str(len(body)),
                        "Connection": "close",
                    }
                ),
                body,
            )
            self.conn.finish()
            return None
        return self.inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Any:
        if not self.refused:
            return self.inner.data_received(chunk)
        return None

    def finish(self) -> None:
        if not self.refused:
            self.inner.finish()

    def on_connection_close(self) -> None:
        if not self.refused:
            self.inner.on_connection_close()
