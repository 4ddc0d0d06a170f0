"""A Jupyter Server extension for JupyterLab against a VWED gateway.

``jupyter lab --gateway-url=http://127.0.0.1:8765 --GatewayClient.auth_token=$TOKEN``:
installed with the ``lab`` extra, this extension is enabled by the config file
``etc/jupyter/jupyter_server_config.d/vwed_lab.json``. When the gateway answers
``/api`` as a VWED gateway, every running script replica appears in JupyterLab
within about a second as a session named by its path (``warehouse/controller.py``,
``warehouse/controller.py (replica 1)``): the Running panel lists it, the kernel
picker offers it under "Use Kernel from Other Session", and opening it attaches a
console. It does nothing on a server without a gateway or with another gateway.

Its JupyterLab plugin ``@vwed/lab`` (prebuilt, ``vwed_lab/labextension``, installed to
``share/jupyter/labextensions/@vwed/lab``; source in ``vwed_lab/labextension-src``) asks
``/vwed-lab/status`` and, before a VWED gateway, refreshes JupyterLab's running list every
second and asks before a script's kernel is shut down.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "_jupyter_labextension_paths",
    "_jupyter_server_extension_points",
    "_load_jupyter_server_extension",
]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """For ``jupyter labextension develop --overwrite .`` (an editable install)."""
    return [{"src": "labextension/@vwed/lab", "dest": "@vwed/lab"}]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "vwed_lab"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from .status import add_handlers

    add_handlers(serverapp)  # GET /vwed-lab/status, for the @vwed/lab JupyterLab plugin
    if not serverapp.gateway_config.gateway_enabled:
        serverapp.log.debug("vwed_lab: no --gateway-url, nothing to do")
        return
    from .sessions import ScriptSessions

    sessions = ScriptSessions(serverapp)
    serverapp.web_app.settings["vwed_lab"] = sessions
    serverapp.io_loop.add_callback(sessions.start)


# the name Jupyter Server 1 looked for
load_jupyter_server_extension = _load_jupyter_server_extension
