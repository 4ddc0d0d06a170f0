"""Script runs (one row from a start to its stop or death) and the scripts that should
be running (restored when a gateway starts)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection, Engine

from .models import DesiredScriptRow, RunRow

__all__ = ["RunTables"]


class RunTables:
    """``vwed_script_runs`` and ``vwed_desired_scripts`` (part of ``Database``)."""

    engine: Engine

    def end_orphan_runs(self, now: float) -> int:
        """Runs a previous gateway process left open (it was killed): ended now with
        ``exit_reason = 'gateway died'``. Called at start, before restore."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(RunRow)
                .where(RunRow.stopped_at.is_(None))
                .values(status="died", exit_reason="gateway died", stopped_at=now)
            )
        return int(result.rowcount or 0)

    def run_started(
        self,
        script_id: str,
        script_path: str,
        replicas: int,
        started_at: float,
        lock_hash: str | None = None,
        revision: str | None = None,
    ) -> int:
        with self.engine.begin() as conn:
            result = conn.execute(
                insert(RunRow).values(
                    script_id=script_id,
                    script_path=script_path,
                    replicas=replicas,
                    started_at=started_at,
                    status="starting",
                    lock_hash=lock_hash,
                    revision=revision,
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    def run_ended(
        self, run_id: int, status: str, reason: str | None, stopped_at: float | None
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(RunRow)
                .where(RunRow.id == run_id)
                .values(status=status, exit_reason=reason, stopped_at=stopped_at)
            )

    def run_lock(self, run_id: int, lock_hash: str | None) -> None:
        """The run now uses another environment (a reload with a changed declaration)."""
        with self.engine.begin() as conn:
            conn.execute(update(RunRow).where(RunRow.id == run_id).values(lock_hash=lock_hash))

    def run_revision(self, run_id: int, revision: str | None) -> None:
        """The run now runs another revision (a reload, a rollback)."""
        with self.engine.begin() as conn:
            conn.execute(update(RunRow).where(RunRow.id == run_id).values(revision=revision))

    def runs(self, script_path: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        stmt = select(RunRow.__table__).order_by(RunRow.id.desc()).limit(limit)
        if script_path:
            stmt = stmt.where(RunRow.script_path == script_path)
        with self.engine.connect() as conn:
            return [dict(m) for m in conn.execute(stmt).mappings()]

    def desire(
        self,
        script_path: str,
        replicas: int,
        restart: str,
        now: float,
        options: dict[str, Any] | None = None,
        lock_hash: str | None = None,
        revision: str | None = None,
    ) -> None:
        """Remember that a script should run (replacing its options, lock and revision)."""
        with self.engine.begin() as conn:
            self._desire(conn, script_path, replicas, restart, now, options, lock_hash, revision)

    @staticmethod
    def _desire(
        conn: Connection,
        script_path: str,
        replicas: int,
        restart: str,
        now: float,
        options: dict[str, Any] | None,
        lock_hash: str | None,
        revision: str | None,
    ) -> None:
        conn.execute(delete(DesiredScriptRow).where(DesiredScriptRow.script_path == script_path))
        conn.execute(
            insert(DesiredScriptRow).values(
                script_path=script_path,
                replicas=replicas,
                restart=restart,
                started_at=now,
                options=json.dumps(options) if options else None,
                lock_hash=lock_hash,
                revision=revision,
            )
        )

    def run_serving(
        self,
        run_id: int | None,
        script_path: str,
        replicas: int,
        restart: str,
        now: float,
        options: dict[str, Any] | None = None,
        lock_hash: str | None = None,
        revision: str | None = None,
    ) -> None:
        """A start booted: its run is ``running`` and the script is desired, in one
        transaction (one commit on the start's path instead of two)."""
        with self.engine.begin() as conn:
            if run_id is not None:
                # only a run still starting: one that ended meanwhile (its kernel died
                # while this waited) keeps its end
                conn.execute(
                    update(RunRow)
                    .where(RunRow.id == run_id, RunRow.status == "starting")
                    .values(status="running", exit_reason=None, stopped_at=None)
                )
            self._desire(conn, script_path, replicas, restart, now, options, lock_hash, revision)

    def undesire(self, script_path: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                delete(DesiredScriptRow).where(DesiredScriptRow.script_path == script_path)
            )

    def desired(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = [
                dict(m)
                for m in conn.execute(
                    select(DesiredScriptRow.__table__).order_by(DesiredScriptRow.started_at)
                ).mappings()
            ]
        for row in rows:
            row["options"] = json.loads(row["options"]) if row.get("options") else {}
        return rows
