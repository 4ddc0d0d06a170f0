"""A client of the VWED gateway's documented HTTP/WebSocket API, and the ``vwed`` command
line built on it. It imports nothing of the gateway's packages (tests/test_package_wall.py):
it speaks the API, like any outside client."""

from __future__ import annotations

from .client import ApiError, Client, NoToken, Unreachable, UsageError, connect

__all__ = ["ApiError", "Client", "NoToken", "Unreachable", "UsageError", "connect"]
