"""The HTTP side of a gateway that is not the active one: every request but health is
answered 503 ``STANDBY`` with ``Retry-After``, before it reaches a handler (a route, a
WebSocket, the Jupyter API: all of them), and health says ``standby``, not ready.

It sits, like ``BodyLimit``, between the server and the application; while the
gateway is active it only passes requests on. A refused request's body is not read:
the answer closes the connection, and a client (or a load balancer) tries again,
here or at the other gateway.
"""

from __future__ import annotations

import json
import time
from typing import Any

from tornado import httputil

from .. import __version__
from .failover import Failover

__all__ = ["StandbyGate", "HEALTH_PATH"]

HEALTH_PATH = "/script-engine/health"
RETRY_AFTER = "1"


class StandbyGate(httputil.HTTPServerConnectionDelegate):
    def __init__(self, app: httputil.HTTPServerConnectionDelegate, failover: Failover) -> None:
        self.app = app
        self.failover = failover

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        return _Gate(self.app.start_request(server_conn, request_conn), request_conn, self.failover)

    def on_close(self, server_conn: object) -> None:
        self.app.on_close(server_conn)


def _answer(failover: Failover, path: str) -> tuple[int, str, dict[str, Any]]:
    """What a gateway that is not active says: health, or 503 STANDBY."""
    state = failover.status()
    if path == HEALTH_PATH:
        # 200: the process is alive (a liveness probe must not kill a standby);
        # "ready": false keeps it out of a load balancer that checks readiness
        return (
            200,
            "OK",
            {
                "success": True,
                "status": failover.role,
                "ready": False,
                "checks": {"active": False},
                "version": __version__,
                "ha": state,
            },
        )
    what = {
        "standby": "this gateway is a standby: another one holds the active lock",
        "activating": "this gateway is taking over as the active one",
        "fenced": "this gateway lost the active lock and is stopping its scripts",
    }.get(failover.role, "this gateway is not the active one")
    return (
        503,
        "Service Unavailable",
        {
            "success": False,
            "error": f"{what}; try again, or the other gateway",
            "code": "STANDBY",
            "ha": {**state, "for_s": round(time.time() - state["since"], 3)},
        },
    )


class _Gate(httputil.HTTPMessageDelegate):
    def __init__(
        self,
        inner: httputil.HTTPMessageDelegate,
        conn: httputil.HTTPConnection,
        failover: Failover,
    ) -> None:
        self.inner = inner
        self.conn = conn
        self.failover = failover
        self.refused = False

    def headers_received(self, start_line: Any, headers: httputil.HTTPHeaders) -> Any:
        if self.failover.serving:
            return self.inner.headers_received(start_line, headers)
        self.refused = True
        status, reason, payload = _answer(self.failover, start_line.path.partition("?")[0])
        body = json.dumps(payload).encode()
        answer = {
            "Content-Type": "application/json; charset=utf-8",
            "Content-Length": str(len(body)),
            "Cache-Control": "no-store",
            "Connection": "close",
        }
        if status == 503:
            answer["Retry-After"] = RETRY_AFTER
        self.conn.write_headers(
            httputil.ResponseStartLine("HTTP/1.1", status, reason),
            httputil.HTTPHeaders(answer),
            body,
        )
        self.conn.finish()
        return None

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
