"""The pool of pre-started script kernels, refilled in the background."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection

from .errors import BadRequest
from .kernels import ScriptKernel

__all__ = ["KernelPool"]

log = logging.getLogger("kernel_gateway.kernels")


# how long after handing out a kernel the pool starts the next one, while it has others
REFILL_DELAY = 0.25


class KernelPool:
    """Pre-started kernels, refilled in the background. A kernel is handed out
    once and never comes back: a kernel that ran a script is never reused."""

    def __init__(
        self,
        start: Callable[..., Awaitable[ScriptKernel]],
        size: int = 2,
        *,
        kernel_name: str | None = None,
        kernel_names: Callable[[], Collection[str]] | None = None,
    ) -> None:
        self._start = start
        self.size = max(0, size)
        self.kernel_name = kernel_name  # the kernelspec of the pooled kernels
        self._kernel_names = kernel_names  # every kernelspec a script may ask for
        self._ready: list[ScriptKernel] = []
        self._starting = 0
        self._refill_task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def available(self) -> int:
        return len(self._ready)

    def start(self) -> None:
        self._kick()

    def _kick(self, delay: float = 0.0) -> None:
        if self._closed or (self._refill_task and not self._refill_task.done()):
            return
        self._refill_task = asyncio.ensure_future(self._refill(delay))

    async def _refill(self, delay: float = 0.0) -> None:
        if delay:
            # a kernel was just handed out and boots its script: starting the next one
            # now would take the CPU from that boot (twice as long here, on 2 cores)
            await asyncio.sleep(delay)
        failures = 0
        while not self._closed and len(self._ready) + self._starting < self.size:
            self._starting += 1
            try:
                kernel = await self._start()
            except Exception:
                failures += 1
                log.exception("pool: a kernel failed to start (attempt %d)", failures)
                await asyncio.sleep(min(30.0, 0.5 * 2**failures))
                continue
            finally:
                self._starting -= 1
            failures = 0
            if self._closed:
                await kernel.shutdown(now=True)
                return
            if kernel.alive:
                kernel.on_death = self._pooled_kernel_died
                self._ready.append(kernel)

    def _pooled_kernel_died(self, kernel: ScriptKernel) -> None:
        if kernel in self._ready:
            self._ready.remove(kernel)
        self._kick()

    def check_kernel_name(self, name: str) -> None:
        """400 ``UNKNOWN_KERNEL`` unless ``name`` is a kernelspec the gateway can start."""
        known = set(self._kernel_names()) if self._kernel_names is not None else set()
        if name != self.kernel_name and name not in known:
            raise BadRequest(
                f"no kernelspec {name!r} is known to the gateway "
                f"(known: {', '.join(sorted(known)) or 'none'})",
                "UNKNOWN_KERNEL",
                details={"kernel_name": name},
            )

    async def acquire(
        self, extra_env: dict[str, str] | None = None, *, kernel_name: str | None = None
    ) -> ScriptKernel:
        """A ready kernel: from the pool if one is there, else started now. A kernel
        that must start with its own environment (``extra_env``: a script's write
        policy, applied before the kernel starts a thread) or from another kernelspec
        than the pool's (``kernel_name``: a remote host's) is always started now."""
        if kernel_name is not None and kernel_name != self.kernel_name:
            return await self._start(extra_env, kernel_name=kernel_name)
        if extra_env:
            return await self._start(extra_env)
        while self._ready:
            kernel = self._ready.pop(0)
            kernel.on_death = None
            # kernels are left: refill once the boot of this one is likely over
            self._kick(REFILL_DELAY if self._ready else 0.0)
            if kernel.alive:
                return kernel
            await kernel.shutdown(now=True)
        self._kick()
        return await self._start()

    async def close(self) -> None:
        self._closed = True
        if self._refill_task:
            self._refill_task.cancel()
            with contextlib.suppress(BaseException):
                await self._refill_task
        ready, self._ready = self._ready, []
        await asyncio.gather(*(k.shutdown(now=True) for k in ready), return_exceptions=True)
