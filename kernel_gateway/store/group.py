"""Group commit: operations that arrive while one transaction runs are stored together
in the next one, so concurrent callers share transactions (task variables merged by
steps: ``merge.py``; the rows of asynchronous executions: ``StoreService.async_write``).

Each caller waits for its own operation within a deadline; past it ``StoreTimeout`` says
whether it may still be written (False: it never left the queue, and is withdrawn)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ..errors import GatewayError, ServiceUnavailable, StoreTimeout
from .threads import DbThreads

__all__ = ["GroupCommit"]

log = logging.getLogger("kernel_gateway.store")
Op = TypeVar("Op")


class GroupCommit(Generic[Op]):
    """``batch(ops)`` runs on the writer thread, in one transaction, and returns one
    result per operation, in order (an exception as the result of one that failed
    alone). A failure the database gives is a ``GatewayError`` to the caller (503
    ``STORE_FAILED``), never the driver's exception."""

    def __init__(
        self, threads: DbThreads, batch: Callable[[list[Op]], list[Any]], what: str
    ) -> None:
        self.threads = threads
        self.batch = batch
        self.what = what  # for messages: "the task variables"
        self._queue: list[tuple[Op, asyncio.Future[Any]]] = []
        self._running = False

    async def submit(self, op: Op, timeout: float | None = None) -> Any:
        limit = self.threads.timeout if timeout is None else timeout
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        entry = (op, fut)
        self._queue.append(entry)
        if not self._running:
            self._running = True
            asyncio.ensure_future(self._loop())
        try:
            return await asyncio.wait_for(asyncio.shield(fut), limit)
        except TimeoutError:
            queued = entry in self._queue
            if queued:
                self._queue.remove(entry)
            fut.cancel()
            raise StoreTimeout(
                f"the database did not store {self.what} within {limit:g} s",
                details={"may_still_be_written": not queued},
            ) from None

    async def _loop(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    results = await self.threads.write(self.batch, [op for op, _ in batch])
                except StoreTimeout as exc:
                    maybe = exc.details["may_still_complete"]
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(
                                StoreTimeout(exc.message, details={"may_still_be_written": maybe})
                            )
                    continue
                except Exception as exc:  # a database error: each waiting caller gets it
                    waiting = [fut for _, fut in batch if not fut.done()]
                    for fut in waiting:
                        fut.set_exception(_gateway_error(exc, self.what))
                    if not waiting:  # their callers stopped waiting: say it here
                        log.warning("storing %s failed: %s", self.what, exc)
                    continue
                for (_, fut), result in zip(batch, results, strict=True):
                    if fut.done():
                        continue
                    if isinstance(result, BaseException):  # that operation alone failed
                        fut.set_exception(_gateway_error(result, self.what))
                    else:
                        fut.set_result(result)
        finally:
            self._running = False


def _gateway_error(exc: BaseException, what: str) -> GatewayError:
    if isinstance(exc, GatewayError):
        return exc
    return ServiceUnavailable(
        f"the database refused to store {what}: {type(exc).__name__}",
        "STORE_FAILED",
        log_message=f"storing {what} failed: {exc}",
    )
