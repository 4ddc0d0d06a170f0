"""The OpenAPI 3.1 document of the gateway, served at /script-engine/openapi.json.

One module per area of the API (lifecycle, check, calls, files, versions, steps, executions, platform_backend, logs,
observe, ops, jupyter, environments), their building blocks in `schema`. A test checks that every route of the
application appears here, and that docs/openapi.json is this document
(regenerate: python -m kernel_gateway.openapi > docs/openapi.json).
"""

from __future__ import annotations

from typing import Any

from .. import __version__
from .calls import function_and_event_paths, script_route_paths, script_websocket_paths
from .check import check_paths
from .console import console_paths
from .environments import environments_paths
from .executions import executions_paths
from .files import files_paths
from .jupyter import jupyter_paths
from .lifecycle import lifecycle_paths
from .logs import logs_paths
from .modules import modules_paths
from .observe import observe_paths
from .ops import ops_paths
from .platform_backend import platform_paths
from .schema import common_responses, components
from .secrets import secrets_paths
from .steps import steps_paths
from .versions import versions_paths

__all__ = ["build_openapi"]


def build_openapi() -> dict[str, Any]:
    """The document, a new dict on each call."""
    # The areas in the order docs/openapi.json lists them (the script routes sit apart
    # from the other calls), so the file stays the same byte for byte.
    paths: dict[str, Any] = {
        **lifecycle_paths(),
        **check_paths(),
        **function_and_event_paths(),
        **files_paths(),
        **versions_paths(),
        **steps_paths(),
        **executions_paths(),
        **platform_paths(),
        **logs_paths(),
        **observe_paths(),
        **ops_paths(),
        **script_route_paths(),
        **jupyter_paths(),
        **script_websocket_paths(),
        **console_paths(),
        **environments_paths(),
        **secrets_paths(),
        **modules_paths(),
    }
    common_responses(paths)
    return {
        "openapi": "3.1.0",
        "info": {"title": "VWED script engine gateway", "version": __version__},
        "components": components(),
        "security": [{"token": []}],
        "paths": paths,
    }
