"""``VWED.storage``, ``VWED.task``, ``VWED.robot``: the VWED platform's data, reached
through the gateway (its embedded backend, or the VWED server it forwards to).
Scripts never open the database themselves."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..context import Context

__all__ = ["PlatformModule"]


class PlatformModule:
    module = ""

    def __init__(self, context: Context) -> None:
        self._context = context

    def _call(self, method: str, **args: Any) -> Any:
        args = {k: v for k, v in args.items() if v is not None}
        return self._context.link.request(
            "platform", {"module": self.module, "method": method, "args": args}
        )
