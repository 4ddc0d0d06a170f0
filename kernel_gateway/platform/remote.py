"""The HTTP backend: forwards ``VWED.<module>.<method>(**args)`` to a VWED server as
``POST <base>/api/vwed/<module>/<method>`` with the arguments as a JSON object; the
server answers the result as JSON (2xx), or an error (4xx/5xx, ``{"error", "code"}``)."""

from __future__ import annotations

from typing import Any

import httpx

from ..errors import NotFound, PlatformError
from .base import PlatformBackend, check_call

__all__ = ["HttpBackend"]


class HttpBackend(PlatformBackend):
    def __init__(self, base_url: str, token: str = "", timeout: float = 10.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout
        )

    async def call(self, module: str, method: str, args: dict[str, Any]) -> Any:
        check_call(module, method, args)
        try:
            response = await self._client.post(f"/api/vwed/{module}/{method}", json=args)
        except httpx.HTTPError as exc:
            raise PlatformError(
                f"the VWED server did not answer VWED.{module}.{method}: {exc}"
            ) from exc
        try:
            body = response.json()
        except ValueError:
            body = {"error": response.text[:200]}
        if response.status_code == 404:
            raise NotFound(
                str(body.get("error") or "not found"), str(body.get("code") or "NOT_FOUND")
            )
        if response.status_code >= 400:
            raise PlatformError(
                f"the VWED server refused VWED.{module}.{method}: "
                f"{body.get('error') if isinstance(body, dict) else body}"
            )
        return body

    async def close(self) -> None:
        await self._client.aclose()
