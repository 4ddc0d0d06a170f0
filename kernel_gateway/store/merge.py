"""Task variables merged with group commit: merges that arrive while one transaction
runs are stored together in the next one, so concurrent steps share transactions."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ..errors import StoreTimeout
from .db import Database
from .threads import DbThreads

__all__ = ["VariableMerges"]

log = logging.getLogger("kernel_gateway.store")

Merge = tuple[str, dict[str, Any], asyncio.Future[dict[str, Any]]]


class VariableMerges:
    def __init__(self, db: Database, threads: DbThreads) -> None:
        self.db = db
        self.threads = threads
        self._merges: list[Merge] = []
        self._merging = False

    async def merge(
        self, task_id: str, variables: dict[str, Any], timeout: float | None = None
    ) -> dict[str, Any]:
        """Merge a step's variables into its task's row; answers once committed, or
        raises ``StoreTimeout`` after ``timeout`` seconds (default: the threads')
        with ``details["may_still_be_written"]``: False if the merge never left the
        queue (it is withdrawn), True if its transaction was under way."""
        limit = self.threads.timeout if timeout is None else timeout
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        entry = (task_id, variables, fut)
        self._merges.append(entry)
        if not self._merging:
            self._merging = True
            asyncio.ensure_future(self._merge_loop())
        try:
            return await asyncio.wait_for(asyncio.shield(fut), limit)
        except TimeoutError:
            queued = entry in self._merges
            if queued:
                self._merges.remove(entry)
            fut.cancel()
            raise StoreTimeout(
                f"the database did not store the task variables within {limit:g} s",
                details={"may_still_be_written": not queued},
            ) from None

    async def _merge_loop(self) -> None:
        try:
            while self._merges:
                batch, self._merges = self._merges, []
                try:
                    results = await self.threads.write(
                        self.db.merge_many, [(t, v) for t, v, _ in batch], time.time()
                    )
                except StoreTimeout as exc:
                    maybe = exc.details["may_still_complete"]
                    for _, _, fut in batch:
                        if not fut.done():
                            fut.set_exception(
                                StoreTimeout(exc.message, details={"may_still_be_written": maybe})
                            )
                    continue
                except Exception as exc:  # a database error: each waiting step gets it
                    waiting = [fut for _, _, fut in batch if not fut.done()]
                    for fut in waiting:
                        fut.set_exception(exc)
                    if not waiting:  # their steps stopped waiting: say it here
                        log.warning("merging task variables failed: %s", exc)
                    continue
                for (_, _, fut), merged in zip(batch, results, strict=True):
                    if not fut.done():
                        fut.set_result(merged)
        finally:
            self._merging = False
