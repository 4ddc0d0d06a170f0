"""The gateway's tables, as SQLAlchemy models (their schema changes go through the
migrations in ``migrations/``):

- scripts: their runs (``vwed_script_runs``) and the scripts to restore
  (``vwed_desired_scripts``);
- the history: log records (``vwed_log_records``), calls served by scripts
  (``vwed_calls``), executions of task-flow steps (``vwed_executions``; the asynchronous
  ones also in ``vwed_async_executions``, stored before they are accepted), and the
  counter that hands out log record ids (``vwed_counters``);
- task variables (``vwed_task_variables``);
- the embedded platform: storage locations, tasks and robots
  (``vwed_storage_locations``, ``vwed_platform_tasks``, ``vwed_robots``).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Double, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Timestamps are epoch seconds: DOUBLE everywhere (MySQL's FLOAT is single precision,
# about two minutes of resolution at today's epoch).
__all__ = [
    "Base",
    "RunRow",
    "LogRow",
    "SecretRow",
    "CallRow",
    "TaskVariablesRow",
    "ExecutionRow",
    "AsyncExecutionRow",
    "CounterRow",
    "DesiredScriptRow",
    "LocationRow",
    "PlatformTaskRow",
    "RobotRow",
    "LEVELS",
    "LEVEL_NAMES",
]

LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40}
LEVEL_NAMES = {v: k for k, v in LEVELS.items()}


class Base(DeclarativeBase):
    pass


class RunRow(Base):
    """One start of a script: from start to stop (or death), with its exit reason."""

    __tablename__ = "vwed_script_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    script_id: Mapped[str] = mapped_column(String(512), unique=True)
    script_path: Mapped[str] = mapped_column(String(480), index=True)
    replicas: Mapped[int] = mapped_column(Integer, default=1)
    started_at: Mapped[float] = mapped_column(Double)
    stopped_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    status: Mapped[str] = mapped_column(String(32))
    exit_reason: Mapped[str | None] = mapped_column(String(255), nullable=True)
    lock_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)  # its environment
    revision: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the Git commit it ran


class LogRow(Base):
    """A log record: a line (or lines) of output, a VWED.log call, or an engine event."""

    __tablename__ = "vwed_log_records"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    ts: Mapped[float] = mapped_column(Double)
    script_id: Mapped[str | None] = mapped_column(String(512), nullable=True)
    run_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    level: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(16))
    tag: Mapped[str] = mapped_column(String(128), default="")
    message: Mapped[str] = mapped_column(Text)
    call_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    task_id: Mapped[str | None] = mapped_column(String(128), nullable=True)

    __table_args__ = (
        Index("ix_vwed_log_script_id", "script_id", "id"),
        Index("ix_vwed_log_run_id", "run_id", "id"),
        Index("ix_vwed_log_ts", "ts"),
    )


class CallRow(Base):
    """A call served by a script: a route, a function."""

    __tablename__ = "vwed_calls"

    # BIGINT elsewhere; INTEGER on SQLite, where only that is an auto-incrementing rowid
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    ts: Mapped[float] = mapped_column(Double, index=True)
    script_id: Mapped[str | None] = mapped_column(String(512), nullable=True, index=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(512))
    duration_ms: Mapped[float] = mapped_column(Double)
    ok: Mapped[bool] = mapped_column(Boolean)
    error_type: Mapped[str | None] = mapped_column(String(128), nullable=True)
    call_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # since migration 0007 (older rows have them null)
    script_path: Mapped[str | None] = mapped_column(String(480), nullable=True, index=True)
    error_message: Mapped[str | None] = mapped_column(String(500), nullable=True)
    task_id: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)


class TaskVariablesRow(Base):
    """The variables of one task of the task engine (a JSON object), merged by steps."""

    __tablename__ = "vwed_task_variables"

    task_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    variables: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[float] = mapped_column(Double)


class ExecutionRow(Base):
    """A task-flow step: which function of which file, in which mode, and how it went."""

    __tablename__ = "vwed_executions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    ts: Mapped[float] = mapped_column(Double, index=True)
    script_path: Mapped[str] = mapped_column(String(480))
    function_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    mode: Mapped[str] = mapped_column(String(32))
    task_id: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    duration_ms: Mapped[float] = mapped_column(Double)
    ok: Mapped[bool] = mapped_column(Boolean)
    error_type: Mapped[str | None] = mapped_column(String(128), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    # since migration 0010 (older rows have them null): the worker kernel, what it used
    # during the step, and for an attempt of an asynchronous execution, which one
    status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    worker: Mapped[str | None] = mapped_column(String(64), nullable=True)
    cpu_ms: Mapped[float | None] = mapped_column(Double, nullable=True)
    peak_rss: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    async_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    attempt: Mapped[int | None] = mapped_column(Integer, nullable=True)


class AsyncExecutionRow(Base):
    """An asynchronous execution of a step (``"async": true``): stored before it is
    accepted, updated as it runs; JSON text in ``request`` (args, timeout, retry),
    ``progress``, ``outcome`` (result and variables), ``error`` and ``attempts``."""

    __tablename__ = "vwed_async_executions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    script_path: Mapped[str] = mapped_column(String(480))
    function_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    mode: Mapped[str] = mapped_column(String(32))
    task_id: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    request: Mapped[str] = mapped_column(Text)
    request_hash: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(String(255), nullable=True, unique=True)
    at_most_once: Mapped[bool] = mapped_column(Boolean)
    submitted_at: Mapped[float] = mapped_column(Double, index=True)
    started_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Double, nullable=True, index=True)
    updated_at: Mapped[float] = mapped_column(Double)
    progress: Mapped[str | None] = mapped_column(Text, nullable=True)
    outcome: Mapped[str | None] = mapped_column(Text, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    reason: Mapped[str | None] = mapped_column(String(255), nullable=True)
    stdout_tail: Mapped[str | None] = mapped_column(Text, nullable=True)
    stderr_tail: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[str] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(64), nullable=True)
    cpu_ms: Mapped[float | None] = mapped_column(Double, nullable=True)
    peak_rss: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    duration_ms: Mapped[float | None] = mapped_column(Double, nullable=True)


class LocationRow(Base):
    """A storage location of the embedded platform backend."""

    __tablename__ = "vwed_storage_locations"

    code: Mapped[str] = mapped_column(String(128), primary_key=True)
    zone: Mapped[str] = mapped_column(String(64), default="")
    goods: Mapped[str | None] = mapped_column(String(255), nullable=True)
    locked_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    locked_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    data: Mapped[str] = mapped_column(Text, default="{}")


class PlatformTaskRow(Base):
    """A task of the embedded platform backend (``VWED.task``)."""

    __tablename__ = "vwed_platform_tasks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    label: Mapped[str] = mapped_column(String(255))
    input_params: Mapped[str] = mapped_column(Text, default="{}")
    status: Mapped[str] = mapped_column(String(32))
    robot_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[float] = mapped_column(Double)
    updated_at: Mapped[float] = mapped_column(Double)


class RobotRow(Base):
    """A robot of the embedded platform backend (``VWED.robot``)."""

    __tablename__ = "vwed_robots"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    status: Mapped[str] = mapped_column(String(32))
    task_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    data: Mapped[str] = mapped_column(Text, default="{}")
    updated_at: Mapped[float] = mapped_column(Double)


class DesiredScriptRow(Base):
    """A script that should be running: started through the API and not stopped since.
    A gateway that starts again (after a clean stop or a crash) starts these."""

    __tablename__ = "vwed_desired_scripts"

    script_path: Mapped[str] = mapped_column(String(480), primary_key=True)
    replicas: Mapped[int] = mapped_column(Integer)
    restart: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[float] = mapped_column(Double)
    options: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON: memory limit, policy
    lock_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)  # its environment
    revision: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the Git commit it ran


class SecretRow(Base):
    """A secret a script may read by name (``VWED.secrets.get``): its value encrypted by the
    gateway (``ciphertext``, never a plaintext value), its scope (JSON: a list of script
    paths or folders; null: every script), who set it and when."""

    __tablename__ = "vwed_secrets"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    ciphertext: Mapped[str] = mapped_column(Text)
    scope: Mapped[str | None] = mapped_column(Text, nullable=True)
    set_by: Mapped[str] = mapped_column(String(128))
    set_at: Mapped[float] = mapped_column(Double)


class CounterRow(Base):
    """A named counter kept by the database: ``log_id`` is the highest log record id
    reserved by any gateway (ids are handed out in reserved blocks, never reused)."""

    __tablename__ = "vwed_counters"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)
