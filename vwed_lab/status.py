"""``GET <base_url>/vwed-lab/status``: whether this Jupyter Server is in front of a VWED gateway.

The ``@vwed/lab`` JupyterLab plugin (``vwed_lab/labextension``) asks it at start-up:
``{"vwed": "<the gateway's version>", "generation": 3, "poll": 1.0}`` once ``ScriptSessions``
recognised a VWED gateway, ``{"vwed": null, ...}`` otherwise (no ``--gateway-url``, another kind
of gateway, or not yet probed). ``generation`` moves whenever a script's session came or went
(``ScriptSessions`` looks at the gateway every ``poll`` s). While it says a version, the plugin
asks again every 0.25 s (a local answer, no gateway round trip) and refreshes JupyterLab's
running kernels and sessions when ``generation`` moved, and at least every second; it asks
before a script's kernel is shut down.
"""

from __future__ import annotations

import json
from typing import Any

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

from .sessions import POLL

__all__ = ["StatusHandler", "add_handlers", "PATH"]

PATH = "vwed-lab/status"


class StatusHandler(APIHandler):
    @web.authenticated
    def get(self) -> None:
        sessions = self.settings.get("vwed_lab")
        version = getattr(sessions, "vwed", None)
        self.set_header("Content-Type", "application/json")
        generation = getattr(sessions, "generation", 0)
        self.finish(json.dumps({"vwed": version, "generation": generation, "poll": POLL}))


def add_handlers(serverapp: Any) -> None:
    base = serverapp.web_app.settings["base_url"]
    serverapp.web_app.add_handlers(".*$", [(url_path_join(base, PATH), StatusHandler)])
