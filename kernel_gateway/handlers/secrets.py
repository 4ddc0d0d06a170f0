"""``/script-engine/secrets``: secrets scripts read with ``VWED.secrets.get`` (admin only).
Values go in and never come out: the list shows names, scopes, who set them and when."""

from __future__ import annotations

from typing import Any

from ..errors import BadRequest
from ..secrets.vault import Secrets
from .base import JSONHandler

__all__ = ["SecretsHandler", "SecretHandler"]


class SecretsHandler(JSONHandler):
    """``GET``: every secret without its value."""

    secrets: Secrets

    async def get(self) -> None:
        self.send_json({"secrets": await self.secrets.list()})


class SecretHandler(JSONHandler):
    """``PUT {"value", "scripts"?}``: set (or replace) a secret; ``DELETE``: remove it."""

    secrets: Secrets

    async def put(self, name: str) -> None:
        body = self.json_body()
        unknown = sorted(set(body) - {"value", "scripts"})
        if unknown:
            raise BadRequest(f"unknown field(s): {', '.join(unknown)}", "BAD_REQUEST")
        result: dict[str, Any] = await self.secrets.put(
            name, body.get("value"), body.get("scripts"), self.author()
        )
        self.send_json(result, 201 if result["created"] else 200)

    async def delete(self, name: str) -> None:
        await self.secrets.delete(name, self.author())
        self.send_json({"name": name, "deleted": True})
