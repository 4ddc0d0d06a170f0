"""Kernels started through the Jupyter kernels API (``POST /api/kernels``): scratch
kernels for authors, not tied to a script.

A kernel of the gateway's own VWED kernelspec is a *draft* (``drafts.py``): its
``VWED`` is connected to the gateway and what it registers is served under
``/script-api/drafts/<id8>/`` until it stops. Other kernelspecs run unconnected."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager

from .errors import BadRequest, NotFound, ServiceUnavailable
from .kernels import ScriptKernel
from .launch import LaunchOptions, start_kernel

if TYPE_CHECKING:
    from .drafts import Draft, DraftHub

__all__ = ["ScratchKernels", "ScratchKernel", "DraftKernel"]

log = logging.getLogger("kernel_gateway.jupyter")


class DraftKernel(ScriptKernel):
    """The gateway's connection to a scratch kernel: a ``ScriptKernel`` (comm bridge,
    readers, death watch) over a kernel manager the scratch table owns."""

    @classmethod
    async def connect(
        cls, km: AsyncKernelManager, *, fast_path: bool, timeout: float
    ) -> DraftKernel:
        kernel = cls(km)
        try:
            await asyncio.wait_for(kernel._connect(fast_path), timeout)
        except BaseException:
            await kernel.release()
            raise
        return kernel

    async def release(self) -> None:
        """Let go of the kernel without stopping it (its kernel is restarted in place)."""
        if self._closing:
            return
        self._closing = True
        self.alive = False
        self.bridge.fail_all(
            ServiceUnavailable(
                "the draft's kernel is restarting",
                "KERNEL_RESTARTING",
                headers={"Retry-After": "1"},
            )
        )
        self.bridge.close()
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        with contextlib.suppress(Exception):
            self.client.stop_channels()
        if self.on_closed is not None:
            self.on_closed(self)


@dataclass
class ScratchKernel:
    kernel_id: str
    name: str
    km: AsyncKernelManager
    started_at: float = field(default_factory=time.time)
    draft: Draft | None = None  # a kernel of the gateway's VWED kernelspec: connected


class ScratchKernels:
    def __init__(
        self,
        ksm: KernelSpecManager,
        default_name: str,
        launch: LaunchOptions | None = None,
        drafts: DraftHub | None = None,
    ) -> None:
        self.ksm = ksm
        self.launch = launch or LaunchOptions()
        self.default_name = default_name
        self.kernels: dict[str, ScratchKernel] = {}
        self.drafts = drafts  # None: no kernel is connected (the kernels API alone)

    async def start(self, name: str | None = None) -> ScratchKernel:
        name = name or self.default_name
        if name not in self.ksm.find_kernel_specs():
            raise BadRequest(f"no kernelspec {name!r}", "KERNELSPEC_NOT_FOUND")
        km = await start_kernel(self.ksm, name, self.launch)
        if self.drafts is not None and name == self.default_name:
            return await self._start_draft(name, km)
        client = km.client()
        client.start_channels()
        try:
            await client.wait_for_ready(timeout=60)
        except Exception as exc:
            await km.shutdown_kernel(now=True)
            raise ServiceUnavailable(
                f"kernel {name!r} did not become ready: {exc}", "KERNEL_START_FAILED"
            ) from exc
        finally:
            client.stop_channels()
        kernel = ScratchKernel(str(uuid.uuid4()), name, km)
        self.kernels[kernel.kernel_id] = kernel
        return kernel

    async def _start_draft(self, name: str, km: AsyncKernelManager) -> ScratchKernel:
        assert self.drafts is not None
        kernel_id = str(uuid.uuid4())
        while self.drafts.taken(kernel_id):  # the draft prefix is the first 8 characters
            kernel_id = str(uuid.uuid4())
        try:
            draft = await self.drafts.open(kernel_id, km)
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await km.shutdown_kernel(now=True)
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise ServiceUnavailable(
                f"kernel {name!r} did not connect to the gateway: {exc!r}", "KERNEL_START_FAILED"
            ) from exc
        kernel = ScratchKernel(kernel_id, name, km, draft=draft)
        self.kernels[kernel_id] = kernel
        return kernel

    async def restart(self, kernel_id: str) -> ScratchKernel:
        """Restart in place (same id, same ports: a connected notebook stays connected);
        a draft loses its registrations and is connected again."""
        kernel = self.get(kernel_id)
        draft = kernel.draft
        if draft is not None:
            await draft.release()
        await kernel.km.restart_kernel(now=True)
        if draft is not None:
            try:
                await draft.connect(kernel.km)
            except Exception as exc:
                raise ServiceUnavailable(
                    f"kernel {kernel_id} restarted but did not connect to the gateway: {exc!r}",
                    "KERNEL_START_FAILED",
                ) from exc
        return kernel

    def get(self, kernel_id: str) -> ScratchKernel:
        kernel = self.kernels.get(kernel_id)
        if kernel is None:
            raise NotFound(f"no kernel {kernel_id!r}", "KERNEL_NOT_FOUND")
        return kernel

    async def shutdown(self, kernel_id: str) -> None:
        kernel = self.kernels.pop(kernel_id, None)
        if kernel is None:
            raise NotFound(f"no kernel {kernel_id!r}", "KERNEL_NOT_FOUND")
        if kernel.draft is not None and self.drafts is not None:
            await self.drafts.close(kernel.draft)  # its routes go first, then its kernel
            return
        try:
            await kernel.km.shutdown_kernel(now=True)
        except Exception as exc:  # gone already, or its process would not end: forgotten
            log.warning("scratch kernel %s did not shut down cleanly: %s", kernel_id, exc)

    async def close(self) -> None:
        await asyncio.gather(
            *(self.shutdown(k) for k in list(self.kernels)), return_exceptions=True
        )

    @staticmethod
    def model(kernel: Any) -> dict[str, Any]:
        return {
            "id": kernel.kernel_id,
            "name": kernel.name,
            "execution_state": "idle",
            "connections": 0,
            "last_activity": iso_utc(kernel.started_at),
            "vwed": {"scratch": True, **_draft_model(getattr(kernel, "draft", None))},
        }


def _draft_model(draft: Any) -> dict[str, Any]:
    if draft is None:
        return {}
    return {"draft": draft.script_id, "routes_prefix": f"/script-api/{draft.script_id}"}


def iso_utc(ts: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")
