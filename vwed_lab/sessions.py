"""One Jupyter session per running script replica of a VWED gateway.

Jupyter Server in gateway mode lists only the kernels it started or adopted; a
session naming a kernel id adopts that kernel (``SessionManager.create_session`` ->
``GatewayMappingKernelManager.start_kernel(kernel_id=...)``). This keeps such a
session, of type ``console`` and named by the script's path and replica, for every
script kernel the gateway lists under ``/api/kernels`` (its ``vwed.script_path``),
polled every second; the session of a script that stopped goes, and Jupyter Server
forgets its kernel (other sessions on it, a notebook attached through the kernel
picker, go with it). The gateway lists each replica under a stable id that survives
its restarts, so the session survives them too.

Jupyter Server stops every kernel it knows when it exits; script kernels are left
running (they are production scripts, not the server's).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from jupyter_server.gateway.gateway_client import gateway_request

__all__ = ["ScriptSessions", "label", "POLL"]

POLL = 1.0  # s between looks at the gateway's kernels
# a script kernel missing this long is gone: a restart (stop, then start under the same
# kernel id) leaves it out of the gateway's list for a moment, and the sessions on it
# (a notebook's "Use Kernel from Other Session") must survive that
GONE_AFTER = 3.0

log = logging.getLogger("vwed_lab")


def label(vwed: dict[str, Any]) -> str:
    """``warehouse/controller.py``, or ``warehouse/controller.py (replica 1)``."""
    path = str(vwed["script_path"])
    replica = vwed.get("replica") or 0
    return f"{path} (replica {replica})" if replica else path


def is_script(model: Any) -> bool:
    return isinstance(model, dict) and bool((model.get("vwed") or {}).get("script_path"))


class ScriptSessions:
    def __init__(self, serverapp: Any) -> None:
        self.log = serverapp.log
        self.sm = serverapp.session_manager
        self.km = serverapp.kernel_manager
        self.url = str(serverapp.gateway_config.url).rstrip("/")
        self.sessions: dict[str, tuple[str, str]] = {}  # kernel id -> (session id, label)
        self._missing: dict[str, float] = {}  # kernel id -> when it was first missing
        self.vwed: str | None = None  # the gateway's version, once recognised
        self.task: asyncio.Task[None] | None = None
        self._last_error = ""
        # +1 whenever a script's session comes or goes: the @vwed/lab JupyterLab plugin asks
        # it often (vwed_lab/status.py) and refreshes JupyterLab's running list when it moved
        self.generation = 0

    # -- life ---------------------------------------------------------------------
    def start(self) -> None:
        self._keep_scripts_running()
        self.task = asyncio.ensure_future(self.run())

    async def run(self) -> None:
        while True:
            try:
                if self.vwed is None:
                    if not await self.probe():
                        return  # another kind of gateway: nothing to do
                await self.sync()
                self._last_error = ""
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the gateway down or restarting: try again
                message = f"{type(exc).__name__}: {exc}"
                if message != self._last_error:  # once, not every second
                    self.log.warning("vwed_lab: the gateway %s: %s (retrying)", self.url, message)
                    self._last_error = message
            await asyncio.sleep(POLL)

    async def probe(self) -> bool:
        """Whether the gateway is a VWED gateway (its ``/api`` says ``vwed``)."""
        body = await self._get("/api")
        if not isinstance(body, dict) or "vwed" not in body:
            self.log.info(
                "vwed_lab: the gateway %s is not a VWED gateway; script kernels are not listed",
                self.url,
            )
            return False
        self.vwed = str(body["vwed"])
        self.log.info(
            "vwed_lab: VWED gateway %s (version %s): its running scripts are listed as "
            "sessions named by their paths",
            self.url,
            self.vwed,
        )
        return True

    async def _get(self, path: str) -> Any:
        response = await gateway_request(self.url + path, method="GET")
        return json.loads(response.body)

    # -- sync ---------------------------------------------------------------------
    async def sync(self) -> None:
        models = await self._get("/api/kernels")
        want = {m["id"]: label(m["vwed"]) for m in models if is_script(m)}
        for kernel_id, name in want.items():
            known = self.sessions.get(kernel_id)
            if known is not None and self._exists(known[0]):
                continue
            try:
                model = await self.sm.create_session(
                    path=name, name=name, type="console", kernel_id=kernel_id
                )
            except Exception as exc:  # stopped meanwhile, say: next time
                self.log.debug("vwed_lab: no session for %s yet: %s", name, exc)
                continue
            self.sessions[kernel_id] = (model["id"], name)
            self.generation += 1
            self.log.info("vwed_lab: script %s listed (kernel %s)", name, kernel_id)
        now = time.monotonic()
        for kernel_id in want:
            self._missing.pop(kernel_id, None)
        for kernel_id in [k for k in self.sessions if k not in want]:
            if now - self._missing.setdefault(kernel_id, now) >= GONE_AFTER:
                del self._missing[kernel_id]
                self._drop(kernel_id)

    def _exists(self, session_id: str) -> bool:
        row = self.sm.cursor.execute(
            "SELECT 1 FROM session WHERE session_id=?", (session_id,)
        ).fetchone()
        return row is not None

    def _drop(self, kernel_id: str) -> None:
        """The script stopped: its sessions go, and its kernel from Jupyter Server's
        list (as Jupyter Server does for a kernel its gateway culled)."""
        session_id, name = self.sessions.pop(kernel_id)
        self.generation += 1
        self.sm.cursor.execute("DELETE FROM session WHERE kernel_id=?", (kernel_id,))
        self.km.remove_kernel(kernel_id)
        self.log.info("vwed_lab: script %s stopped; its session %s closed", name, session_id)

    def _keep_scripts_running(self) -> None:
        """Jupyter Server's exit shuts down every kernel it knows: not script kernels."""
        km = self.km
        shutdown_all = km.shutdown_all

        async def shutdown_all_but_scripts(now: bool = False) -> None:
            for kernel_id in list(km.list_kernel_ids()):
                if is_script(getattr(km.get_kernel(kernel_id), "kernel", None)):
                    km.remove_kernel(kernel_id)  # forgotten, not stopped
            await shutdown_all(now=now)

        km.shutdown_all = shutdown_all_but_scripts
