"""An asynchronous execution in memory (``AsyncExecution``), its database row, and the
public record ``GET /script-engine/executions/{id}`` answers (the same shape for a
synchronous step, read from the steps history)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from .retry import RetryPolicy, parse_retry

__all__ = [
    "AsyncExecution",
    "FINISHED",
    "STATUSES",
    "TAIL_CHARS",
    "history_record",
    "request_hash",
]

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "timed_out")
FINISHED = frozenset({"succeeded", "failed", "cancelled", "timed_out"})
TAIL_CHARS = 16_000  # of stdout and of stderr, kept with the record


def request_hash(req: dict[str, Any]) -> str:
    """What makes two submissions the same step (for ``idempotency_key``)."""
    what = {k: req.get(k) for k in ("mode", "path", "function", "args", "task_id")}
    text = json.dumps(what, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _tail(text: str) -> str:
    return text[-TAIL_CHARS:]


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, default=str)


@dataclass
class AsyncExecution:
    id: str
    req: dict[str, Any]  # the parsed step (StepService.parse)
    admin: bool  # submitted with the admin token: may install the file's packages
    policy: RetryPolicy | None = None
    at_most_once: bool = False
    idempotency_key: str | None = None
    status: str = "queued"
    submitted_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    progress: dict[str, Any] | None = None
    outcome: dict[str, Any] | None = None  # {"result": ..., "variables": ...}
    error: dict[str, Any] | None = None  # {"code", "message", "details"}
    reason: str | None = None
    stdout: str = ""
    stderr: str = ""
    attempts: list[dict[str, Any]] = field(default_factory=list)
    worker: str | None = None
    cpu_ms: float | None = None
    peak_rss: int | None = None
    duration_ms: float | None = None
    # in memory only
    call_id: str | None = None  # the attempt running now
    task: asyncio.Task[None] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    stored_progress: float = 0.0  # when progress was last written to the database

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def add_output(self, stream: str, text: str) -> None:
        if stream == "stderr":
            self.stderr = _tail(self.stderr + text + "\n")
        else:
            self.stdout = _tail(self.stdout + text + "\n")

    # -- the database row ----------------------------------------------------------------
    def row(self) -> dict[str, Any]:
        req = self.req
        request = {
            "args": req.get("args"),
            "timeout": req.get("timeout"),
            "retry": None if self.policy is None else self.policy.public(),
            "admin": self.admin,
        }
        return {
            "id": self.id,
            "status": self.status,
            "script_path": req["path"],
            "function_name": req.get("function"),
            "mode": req["mode"],
            "task_id": req.get("task_id"),
            "request": json.dumps(request, ensure_ascii=False),
            "request_hash": request_hash(req),
            "idempotency_key": self.idempotency_key,
            "at_most_once": self.at_most_once,
            "submitted_at": self.submitted_at,
            "updated_at": time.time(),
            **self.changes(),
        }

    def changes(self) -> dict[str, Any]:
        """The columns that change as the execution runs."""
        return {
            "status": self.status,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "updated_at": time.time(),
            "progress": _dumps(self.progress),
            "outcome": _dumps(self.outcome),
            "error": _dumps(self.error),
            "reason": None if self.reason is None else self.reason[:255],
            "stdout_tail": self.stdout or None,
            "stderr_tail": self.stderr or None,
            "attempts": json.dumps(self.attempts, ensure_ascii=False, default=str),
            "worker": self.worker,
            "cpu_ms": self.cpu_ms,
            "peak_rss": self.peak_rss,
            "duration_ms": self.duration_ms,
        }

    def progress_changes(self) -> dict[str, Any]:
        """The columns a progress update writes (never the status: a late write must not
        undo the end)."""
        return {
            "updated_at": time.time(),
            "progress": _dumps(self.progress),
            "stdout_tail": self.stdout or None,
            "stderr_tail": self.stderr or None,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> AsyncExecution:
        request = json.loads(row["request"])
        req = {
            "mode": row["mode"],
            "path": row["script_path"],
            "function": row["function_name"],
            "args": request.get("args"),
            "task_id": row["task_id"],
            "timeout": request.get("timeout"),
        }
        return cls(
            id=row["id"],
            req=req,
            admin=bool(request.get("admin")),
            policy=parse_retry(request.get("retry")),
            at_most_once=bool(row["at_most_once"]),
            idempotency_key=row["idempotency_key"],
            status=row["status"],
            submitted_at=row["submitted_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            progress=_loads(row["progress"]),
            outcome=_loads(row["outcome"]),
            error=_loads(row["error"]),
            reason=row["reason"],
            stdout=row["stdout_tail"] or "",
            stderr=row["stderr_tail"] or "",
            attempts=_loads(row["attempts"]) or [],
            worker=row["worker"],
            cpu_ms=row["cpu_ms"],
            peak_rss=row["peak_rss"],
            duration_ms=row["duration_ms"],
        )

    # -- what the API answers --------------------------------------------------------------
    def public(self, status_url: str) -> dict[str, Any]:
        req, outcome = self.req, self.outcome or {}
        return {
            "execution_id": self.id,
            "async": True,
            "status": self.status,
            "status_url": status_url,
            "script_path": req["path"],
            "function_name": req.get("function"),
            "mode": req["mode"],
            "task_id": req.get("task_id"),
            "submitted_at": self.submitted_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration_ms": self.duration_ms,
            "progress": self.progress,
            "result": outcome.get("result"),
            "variables": outcome.get("variables"),
            "error": self.error,
            "reason": self.reason,
            "stdout_tail": self.stdout,
            "stderr_tail": self.stderr,
            "attempts": self.attempts,
            "worker": self.worker,
            "usage": {"cpu_ms": self.cpu_ms, "peak_rss_bytes": self.peak_rss},
            "retry": None if self.policy is None else self.policy.public(),
            "at_most_once": self.at_most_once,
            "idempotency_key": self.idempotency_key,
        }


def history_record(row: dict[str, Any], status_url: str) -> dict[str, Any]:
    """A synchronous step (or one attempt) from ``vwed_executions``, in the record's shape."""
    failed = not row["ok"]
    status = row.get("status") or ("failed" if failed else "succeeded")  # null before 0010
    ended = row["ts"]
    return {
        "execution_id": row["id"],
        "async": False,
        "status": status,
        "status_url": status_url,
        "script_path": row["script_path"],
        "function_name": row["function_name"],
        "mode": row["mode"],
        "task_id": row["task_id"],
        "submitted_at": None,
        "started_at": ended - row["duration_ms"] / 1000,
        "finished_at": ended,
        "duration_ms": row["duration_ms"],
        "progress": None,
        "error": None
        if not failed
        else {"code": row.get("error_type"), "message": row.get("error_message")},
        "worker": row.get("worker"),
        "usage": {"cpu_ms": row.get("cpu_ms"), "peak_rss_bytes": row.get("peak_rss")},
        "async_id": row.get("async_id"),
        "attempt": row.get("attempt"),
    }
