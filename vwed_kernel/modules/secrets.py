"""``VWED.secrets``: values the admin set on the gateway (``PUT /script-engine/secrets``),
asked for by name when the script needs them, over the gateway channel; never in the
kernel's environment, never cached here (a new value is seen by the next ``get``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import GatewayUnavailableError, RemoteCallError, SecretNotAllowed, SecretNotFound

if TYPE_CHECKING:
    from ..context import Context

__all__ = ["SecretsModule"]

_BY_CODE: dict[str, type[RemoteCallError]] = {
    "SECRET_NOT_FOUND": SecretNotFound,
    "SECRET_NOT_ALLOWED": SecretNotAllowed,
}


def _mapped(exc: RemoteCallError) -> RemoteCallError:
    cls = _BY_CODE.get(exc.code)
    return exc if cls is None else cls(str(exc), exc.code, exc.remote_type)


class SecretsModule:
    """``VWED.secrets.get("plc_password")`` (``aget`` in a coroutine). Raises
    ``SecretNotFound`` or ``SecretNotAllowed`` (a name outside the script's scope); the
    value printed or in a traceback is written ``***`` in the script's logs."""

    def __init__(self, context: Context) -> None:
        self._context = context

    def _link(self) -> Any:
        link = self._context.link
        if not link.attached:
            raise GatewayUnavailableError(
                "VWED.secrets reads secrets from the gateway; no gateway is attached"
            )
        return link

    def get(self, name: str, timeout: float = 10.0) -> str:
        """The value of secret ``name``."""
        try:
            answer = self._link().request("secret.get", {"name": str(name)}, timeout=timeout)
        except RemoteCallError as exc:
            raise _mapped(exc) from None
        return str(answer["value"])

    async def aget(self, name: str, timeout: float = 10.0) -> str:
        """``get`` for a coroutine (does not block the kernel's event loop)."""
        try:
            answer = await self._link().arequest("secret.get", {"name": str(name)}, timeout=timeout)
        except RemoteCallError as exc:
            raise _mapped(exc) from None
        return str(answer["value"])

    def __repr__(self) -> str:
        return "<VWED.secrets: get(name), aget(name)>"
