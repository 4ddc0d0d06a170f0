"""Calls from a plain notebook to a running gateway, over its HTTP API.

With ``VWED_GATEWAY_URL`` (and ``VWED_GATEWAY_TOKEN`` if the gateway has a token)
set in the environment of a kernel that no gateway drives, ``VWED.function.call``
and ``VWED.function.list_all`` reach the functions of the scripts running there.
"""

from __future__ import annotations

import os
from typing import Any

from .errors import RemoteCallError

__all__ = ["RemoteGateway", "from_environment"]


class RemoteGateway:
    def __init__(self, url: str, token: str = "", timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.headers = {"Authorization": f"token {token}"} if token else {}
        self.timeout = timeout

    def _post(self, path: str, body: dict[str, Any], timeout: float | None) -> Any:
        import httpx

        try:
            r = httpx.post(
                self.url + path, json=body, headers=self.headers, timeout=timeout or self.timeout
            )
        except httpx.HTTPError as exc:
            raise RemoteCallError(
                f"the gateway at {self.url} did not answer: {exc}", "GATEWAY_UNREACHABLE"
            ) from exc
        data = r.json()
        if not data.get("success"):
            raise RemoteCallError(
                data.get("error", r.text), data.get("code", ""), data.get("type", "")
            )
        return data

    def call_function(self, name: str, args: Any, timeout: float | None = None) -> Any:
        body: dict[str, Any] = {"args": args}
        if timeout is not None:
            body["timeout"] = timeout
        return self._post(f"/script-engine/functions/{name}/call", body, timeout)["result"]

    def list_functions(self) -> list[dict[str, Any]]:
        import httpx

        r = httpx.get(
            self.url + "/script-engine/functions", headers=self.headers, timeout=self.timeout
        )
        return list(r.json().get("functions", []))


def from_environment() -> RemoteGateway | None:
    url = os.environ.get("VWED_GATEWAY_URL", "").strip()
    if not url:
        return None
    return RemoteGateway(url, os.environ.get("VWED_GATEWAY_TOKEN", ""))
