"""Kernels started through the Jupyter kernels API (``POST /api/kernels``): scratch
VWED kernels for authors, not tied to a script. They have ``VWED`` (local mode)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager

from .errors import BadRequest, NotFound, ServiceUnavailable
from .launch import LaunchOptions, start_kernel

__all__ = ["ScratchKernels", "ScratchKernel"]

log = logging.getLogger("kernel_gateway.jupyter")


@dataclass
class ScratchKernel:
    kernel_id: str
    name: str
    km: AsyncKernelManager
    started_at: float = field(default_factory=time.time)


class ScratchKernels:
    def __init__(
        self, ksm: KernelSpecManager, default_name: str, launch: LaunchOptions | None = None
    ) -> None:
        self.ksm = ksm
        self.launch = launch or LaunchOptions()
        self.default_name = default_name
        self.kernels: dict[str, ScratchKernel] = {}

    async def start(self, name: str | None = None) -> ScratchKernel:
        name = name or self.default_name
        if name not in self.ksm.find_kernel_specs():
            raise BadRequest(f"no kernelspec {name!r}", "KERNELSPEC_NOT_FOUND")
        km = await start_kernel(self.ksm, name, self.launch)
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

    def get(self, kernel_id: str) -> ScratchKernel:
        kernel = self.kernels.get(kernel_id)
        if kernel is None:
            raise NotFound(f"no kernel {kernel_id!r}", "KERNEL_NOT_FOUND")
        return kernel

    async def shutdown(self, kernel_id: str) -> None:
        kernel = self.kernels.pop(kernel_id, None)
        if kernel is None:
            raise NotFound(f"no kernel {kernel_id!r}", "KERNEL_NOT_FOUND")
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
            "vwed": {"scratch": True},
        }


def iso_utc(ts: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")
