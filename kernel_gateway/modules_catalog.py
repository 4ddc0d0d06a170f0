"""What ``GET /script-engine/modules`` lists: the ``VWED`` modules a kernel gets
(built-ins and the plugins of entry-point group ``vwed.modules``), and the
gateway's service plugins (``vwed.services``, kernel_gateway/plugins.py).

The gateway never imports kernel code (the package wall): it asks the kernel's own
interpreter, the first word of the kernelspec's ``argv``, with the kernels'
environment, folder and user, to run ``python -m vwed_kernel.plugins``, which
builds a detached ``VWED`` and its plugins and prints them as JSON. So the list is
what a kernel of that interpreter would get, also when it is not the gateway's
Python; a kernelspec whose kernels run elsewhere (a remote provisioner) is
listed from the local interpreter its ``argv`` names, and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager

from .errors import CallTimeout, ServiceUnavailable
from .launch import LaunchOptions
from .plugins import ServicePlugins

__all__ = ["ModuleCatalog", "PROBE_MODULE"]

PROBE_MODULE = "vwed_kernel.plugins"  # run with ``-m``: the kernel's public listing
LOCAL_PROVISIONERS = (None, "local-provisioner", "vwed-fork-provisioner")


class ModuleCatalog:
    def __init__(
        self,
        ksm: KernelSpecManager,
        kernel_name: str,
        launch: LaunchOptions,
        plugins: ServicePlugins,
        timeout: float = 60.0,
    ) -> None:
        self.ksm = ksm
        self.kernel_name = kernel_name
        self.launch = launch
        self.plugins = plugins
        self.timeout = timeout
        self._lock = asyncio.Lock()  # one probe at a time

    async def listing(self, site: list[str] | None = None) -> dict[str, Any]:
        """The modules (``site``: a script environment's folders, added after the
        kernel's own paths as ``prepare`` does) and the service plugins."""
        spec = self.ksm.get_kernel_spec(self.kernel_name)
        argv = list(spec.argv or [sys.executable])
        python = shutil.which(argv[0]) or argv[0]
        provisioner = (spec.metadata or {}).get("kernel_provisioner", {}).get("provisioner_name")
        async with self._lock:
            answer = await self._probe(python, dict(spec.env or {}), site or [])
        note = f"what a kernel of kernelspec {self.kernel_name!r} ({python}) gets"
        if provisioner not in LOCAL_PROVISIONERS:
            note += (
                f"; its kernels are started by provisioner {provisioner!r}, possibly on "
                "another host: this lists the interpreter its argv names on the gateway's host"
            )
        if site:
            note += "; with the script's own environment"
        modules = answer.get("modules") or []
        return {
            "kernel_name": self.kernel_name,
            "python": answer.get("python", python),
            "python_version": answer.get("python_version"),
            "note": note,
            "count": len(modules),
            "modules": modules,
            "services": self.plugins.describe(),
        }

    async def _probe(
        self, python: str, spec_env: dict[str, str], site: list[str]
    ) -> dict[str, Any]:
        env = {**self.launch.env, **spec_env}
        kwargs: dict[str, Any] = {}
        user = self.launch.user
        if user is not None:
            env.update(user.env())
            kwargs.update(user.popen_kwargs())
        try:
            proc = await asyncio.create_subprocess_exec(
                python,
                "-m",
                PROBE_MODULE,
                *site,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                cwd=self.launch.cwd or os.getcwd(),
                start_new_session=True,
                **kwargs,
            )
        except OSError as exc:
            raise ServiceUnavailable(
                f"the kernel's interpreter {python!r} could not be run: {exc}",
                "MODULES_UNAVAILABLE",
            ) from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self.timeout)
        except asyncio.TimeoutError:
            await _kill_group(proc)
            raise CallTimeout(
                f"listing the modules took more than {self.timeout:g} s (a plugin's import hangs?)",
                "MODULES_TIMEOUT",
            ) from None
        except asyncio.CancelledError:
            await asyncio.shield(_kill_group(proc))
            raise
        tail = err.decode(errors="replace")[-2000:]
        if proc.returncode != 0:
            raise ServiceUnavailable(
                f"{python} -m {PROBE_MODULE} failed (exit {proc.returncode}): {tail}",
                "MODULES_UNAVAILABLE",
            )
        try:
            lines = out.decode(errors="replace").strip().splitlines()
            answer = json.loads(lines[-1]) if lines else None
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise ServiceUnavailable(
                f"{python} -m {PROBE_MODULE} gave no listing: {tail}", "MODULES_UNAVAILABLE"
            )
        return answer


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    """End the probe and whatever a plugin's import started (its own session), and
    reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    await proc.wait()
