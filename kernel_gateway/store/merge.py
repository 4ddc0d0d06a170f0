"""Task variables merged with group commit (``group.py``): merges that arrive while one
transaction runs are stored together in the next one, so concurrent steps share
transactions."""

from __future__ import annotations

import time
from typing import Any

from .db import Database
from .group import GroupCommit
from .threads import DbThreads

__all__ = ["VariableMerges"]


class VariableMerges:
    def __init__(self, db: Database, threads: DbThreads) -> None:
        self._group: GroupCommit[tuple[str, dict[str, Any]]] = GroupCommit(
            threads, lambda merges: db.merge_many(merges, time.time()), "the task variables"
        )

    async def merge(
        self, task_id: str, variables: dict[str, Any], timeout: float | None = None
    ) -> dict[str, Any]:
        """Merge a step's variables into its task's row; answers once committed, or
        raises ``StoreTimeout`` after ``timeout`` seconds (default: the threads')
        with ``details["may_still_be_written"]``: False if the merge never left the
        queue (it is withdrawn), True if its transaction was under way."""
        result: dict[str, Any] = await self._group.submit((task_id, variables), timeout)
        return result
