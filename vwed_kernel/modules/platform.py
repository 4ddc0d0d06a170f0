"""``VWED.storage``, ``VWED.task``, ``VWED.robot``: the VWED platform's data, reached
through the gateway (its embedded backend, or the VWED server it forwards to).
Scripts never open the database themselves."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..vwed import VWED

__all__ = ["PlatformModule"]


class PlatformModule:
    module = ""

    def __init__(self, vwed: VWED) -> None:
        self._vwed = vwed

    def _call(self, method: str, **args: Any) -> Any:
        args = {k: v for k, v in args.items() if v is not None}
        return self._vwed._link.request(
            "platform", {"module": self.module, "method": method, "args": args}
        )
