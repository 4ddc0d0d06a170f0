"""The backend interface: one ``call(module, method, args)`` entry, the methods listed."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from ..errors import BadRequest

__all__ = ["PlatformBackend", "METHODS", "check_call"]

# module -> method -> the argument names it takes (required ones first, then optional)
METHODS: dict[str, dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "storage": {
        "get_location": (("location_code",), ()),
        "lock_location": (("location_code", "task_id"), ()),
        "unlock_location": (("location_code",), ("task_id",)),
        "list_locations": ((), ("zone",)),
    },
    "task": {
        "create": (("task_label",), ("input_params",)),
        "get_status": (("task_id",), ()),
        "stop": (("task_id",), ()),
    },
    "robot": {
        "get_status": (("robot_id",), ()),
        "get_all": ((), ()),
        "dispatch": (("robot_id", "task_id"), ()),
    },
}


def check_call(module: str, method: str, args: Any) -> dict[str, Any]:
    """Validate a call against :data:`METHODS`; returns the arguments."""
    spec = METHODS.get(module, {}).get(method)
    if spec is None:
        raise BadRequest(f"VWED.{module}.{method} does not exist", "UNKNOWN_SERVICE")
    if not isinstance(args, dict):
        raise BadRequest("arguments must be an object", "BAD_ARGUMENTS")
    required, optional = spec
    missing = [a for a in required if args.get(a) is None]
    unknown = [a for a in args if a not in required and a not in optional]
    if missing or unknown:
        raise BadRequest(
            f"VWED.{module}.{method}: missing {missing or 'nothing'}, "
            f"unknown {unknown or 'nothing'}",
            "BAD_ARGUMENTS",
        )
    return args


class PlatformBackend(ABC):
    """Where the platform's storage locations, tasks and robots live.

    ``call`` is awaited on the event loop; implementations do blocking work in
    threads. Errors are ``GatewayError``s (``NotFound`` for an unknown location,
    task or robot).
    """

    @abstractmethod
    async def call(self, module: str, method: str, args: dict[str, Any]) -> Any:
        """Run ``VWED.<module>.<method>(**args)`` and return its JSON-able result."""

    async def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release connections."""
        return None
