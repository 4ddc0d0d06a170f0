"""The Jupyter kernels API, as Jupyter Server's gateway client expects it, so
``jupyter lab --gateway-url=...`` can attach a notebook (or the debugger) to a
running script's kernel: ``/api``, ``/api/kernelspecs`` (and their resources under
``/kernelspecs/{name}/{file}``), ``/api/kernels[/{id}]``,
``/api/kernels/{id}/interrupt|restart``, WebSocket ``/api/kernels/{id}/channels``
(kernel_channels.py).

Script kernels are listed under a stable id per script replica (kernel_ids.py) with
``{"vwed": {"script_id", "script_path", "replica", "kernel_id"}}``; deleting or
restarting one goes through the script lifecycle, and a restart keeps the id.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jupyter_client.jsonutil import json_default

from ..engine import ScriptEngine
from ..errors import Conflict, NotFound
from ..logs import LogHub
from ..scratch import ScratchKernels
from .attach_audit import token_role
from .base import JSONHandler
from .kernel_channels import KernelChannelsHandler
from .kernel_ids import Target, listed, resolve, restarting

__all__ = [
    "ApiRootHandler",
    "KernelSpecsHandler",
    "KernelSpecResourceHandler",
    "KernelsHandler",
    "KernelHandler",
    "KernelActionHandler",
    "KernelChannelsHandler",
    "KernelConnectionHandler",
]

log = logging.getLogger("kernel_gateway.jupyter")

# what a kernelspec folder may serve: Jupyter's resource files, nothing else in it
RESOURCES = ("logo-32x32.png", "logo-64x64.png", "logo-svg.svg", "kernel.js", "kernel.css")


class _Jupyter(JSONHandler):
    engine: ScriptEngine
    scratch: ScratchKernels

    def write_json(self, payload: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(payload, default=json_default))

    def _target(self, kernel_id: str) -> Target | None:
        return resolve(self.engine, kernel_id)

    def _script_model(self, target: Target, kernel_id: str | None = None) -> dict[str, Any]:
        kernel, script = target.kernel, target.script
        if kernel is None:
            state = "restarting"
        else:
            state = "busy" if kernel.bridge.in_flight else "idle"
        if kernel is not None:
            started = kernel.started_at
        else:
            started = script.started_at if script is not None else time.time()
        return {
            "id": kernel_id or target.id,
            "name": self.scratch.default_name,
            "execution_state": state,
            "connections": 0,
            # always with microseconds: Jupyter Server's gateway client parses this format
            "last_activity": datetime.fromtimestamp(started, timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%S.%fZ"
            ),
            "vwed": {
                "script_id": script.script_id if script is not None else None,
                "script_path": target.path,
                "replica": target.replica,
                "replicas": script.replicas if script is not None else None,
                "kernel_id": kernel.kernel_id if kernel is not None else None,
            },
        }

    def _models(self) -> list[dict[str, Any]]:
        models = [self._script_model(t) for t in listed(self.engine)]
        models += [self.scratch.model(k) for k in self.scratch.kernels.values()]
        return models

    def _model(self, kernel_id: str) -> dict[str, Any]:
        target = self._target(kernel_id)
        if target is not None:  # under the id asked for (a kernel id is an alias)
            return self._script_model(target, kernel_id)
        if kernel_id in self.scratch.kernels:
            return self.scratch.model(self.scratch.kernels[kernel_id])
        raise NotFound(f"no kernel {kernel_id!r}", "KERNEL_NOT_FOUND")


class ApiRootHandler(_Jupyter):
    def get(self) -> None:
        from .. import __version__

        self.write_json({"version": "2.14.0", "vwed": __version__})


class KernelSpecsHandler(_Jupyter):
    def get(self, name: str | None = None) -> None:
        ksm = self.scratch.ksm
        specs = {}
        for spec_name in ksm.find_kernel_specs():
            try:
                spec = ksm.get_kernel_spec(spec_name)
            except Exception as exc:  # a broken kernel.json: the others are still listed
                log.warning("kernelspec %r cannot be read, not listed: %s", spec_name, exc)
                continue
            folder = Path(spec.resource_dir)
            resources = {
                Path(f).stem: f"/kernelspecs/{spec_name}/{f}"
                for f in RESOURCES
                if (folder / f).is_file()
            }
            specs[spec_name] = {"name": spec_name, "spec": spec.to_dict(), "resources": resources}
        if name is not None:
            if name not in specs:
                raise NotFound(f"no kernelspec {name!r}", "KERNELSPEC_NOT_FOUND")
            self.write_json(specs[name])
            return
        self.write_json({"default": self.scratch.default_name, "kernelspecs": specs})


class KernelSpecResourceHandler(_Jupyter):
    """``/kernelspecs/{name}/{file}``: a kernelspec's logo (what Jupyter Server's
    gateway client fetches for JupyterLab's launcher and kernel icon)."""

    def get(self, name: str, filename: str) -> None:
        try:
            folder = Path(self.scratch.ksm.get_kernel_spec(name).resource_dir)
        except Exception:
            raise NotFound(f"no kernelspec {name!r}", "KERNELSPEC_NOT_FOUND") from None
        path = folder / filename
        if filename not in RESOURCES or not path.is_file():
            raise NotFound(
                f"kernelspec {name!r} has no resource {filename!r}", "KERNELSPEC_RESOURCE_NOT_FOUND"
            )
        self.set_header("Content-Type", mimetypes.guess_type(filename)[0] or "text/plain")
        self.set_header("Cache-Control", "max-age=3600")
        self.finish(path.read_bytes())


class KernelsHandler(_Jupyter):
    def get(self) -> None:
        self.write_json(self._models())

    async def post(self) -> None:
        body = self.json_body(required=False)
        kernel = await self.scratch.start(body.get("name"))
        self.write_json(self.scratch.model(kernel), status=201)


class KernelHandler(_Jupyter):
    def get(self, kernel_id: str) -> None:
        self.write_json(self._model(kernel_id))

    async def delete(self, kernel_id: str) -> None:
        target = self._target(kernel_id)
        if target is not None:
            if target.script is None:
                raise Conflict(
                    f"script {target.path!r} is restarting; stop it once it runs",
                    "KERNEL_RESTARTING",
                )
            await self.engine.stop(target.script, "stopped through the kernels API")
            await self.engine.forget_desired(target.path)
        else:
            await self.scratch.shutdown(kernel_id)
        self.set_status(204)
        self.finish()


class KernelActionHandler(_Jupyter):
    async def post(self, kernel_id: str, action: str) -> None:
        target = self._target(kernel_id)
        if target is not None and target.script is None:
            raise Conflict(f"script {target.path!r} is restarting", "KERNEL_RESTARTING")
        if action == "interrupt":
            if target is not None:
                if target.kernel is not None:
                    await target.kernel.interrupt()
            else:
                await self.scratch.get(kernel_id).km.interrupt_kernel()
            self.set_status(204)
            self.finish()
            return
        # restart: the script's lifecycle (a stop and a new boot of its file); the
        # stable id is listed meanwhile and names the new kernel after
        if target is not None:
            assert target.script is not None
            pending = restarting(self.engine)
            pending[target.path] = target.script.replicas
            try:
                await self.engine.restart(target.script)
            finally:
                pending.pop(target.path, None)
            self.write_json(self._model(target.id))
            return
        kernel = await self.scratch.restart(kernel_id)  # a draft is connected again
        self.write_json(self.scratch.model(kernel))


class KernelConnectionHandler(_Jupyter):
    """The connection info of a kernel on this machine, for ``jupyter console --existing``
    (write it to a file). Security: it holds the kernel's key; like every endpoint it
    needs the gateway's token when one is set."""

    hub: LogHub

    def get(self, kernel_id: str) -> None:
        target = self._target(kernel_id)
        if target is not None and target.kernel is None:
            raise Conflict(f"script {target.path!r} is restarting", "KERNEL_RESTARTING")
        km = target.kernel.km if target is not None else self.scratch.get(kernel_id).km
        if target is not None and target.script is not None:
            # a client holding the key talks ZeroMQ to the kernel directly, past the
            # channels proxy and its audit: the hand-out is what can be recorded
            self.hub.engine(
                target.script.script_id,
                "WARNING",
                f"connection info (with the key) of kernel {kernel_id} of script "
                f"{target.path} handed out (token role: {token_role(self, self.token)}; "
                f"to {self.request.remote_ip or 'unknown address'}); what a client runs "
                "over it directly is not recorded",
            )
        info = dict(km.get_connection_info())
        info["key"] = (
            info["key"].decode() if isinstance(info.get("key"), bytes) else info.get("key")
        )
        self.write_json(info)
