"""Issue 18: asynchronous executions of task-flow steps (stored before they are accepted,
so a gateway that dies loses none), and what every execution used (worker, CPU time,
peak memory, attempt).

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("vwed_executions", sa.Column("status", sa.String(16), nullable=True))
    op.add_column("vwed_executions", sa.Column("worker", sa.String(64), nullable=True))
    op.add_column("vwed_executions", sa.Column("cpu_ms", sa.Double(), nullable=True))
    op.add_column("vwed_executions", sa.Column("peak_rss", sa.BigInteger(), nullable=True))
    op.add_column("vwed_executions", sa.Column("async_id", sa.String(64), nullable=True))
    op.add_column("vwed_executions", sa.Column("attempt", sa.Integer(), nullable=True))
    op.create_index("ix_vwed_executions_async_id", "vwed_executions", ["async_id"])
    op.create_table(
        "vwed_async_executions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("script_path", sa.String(480), nullable=False),
        sa.Column("function_name", sa.String(255), nullable=True),
        sa.Column("mode", sa.String(32), nullable=False),
        sa.Column("task_id", sa.String(128), nullable=True, index=True),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=True, unique=True),
        sa.Column("at_most_once", sa.Boolean(), nullable=False),
        sa.Column("submitted_at", sa.Double(), nullable=False, index=True),
        sa.Column("started_at", sa.Double(), nullable=True),
        sa.Column("finished_at", sa.Double(), nullable=True, index=True),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("progress", sa.Text(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("reason", sa.String(255), nullable=True),
        sa.Column("stdout_tail", sa.Text(), nullable=True),
        sa.Column("stderr_tail", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Text(), nullable=False),
        sa.Column("worker", sa.String(64), nullable=True),
        sa.Column("cpu_ms", sa.Double(), nullable=True),
        sa.Column("peak_rss", sa.BigInteger(), nullable=True),
        sa.Column("duration_ms", sa.Double(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("vwed_async_executions")
    op.drop_index("ix_vwed_executions_async_id", "vwed_executions")
    with op.batch_alter_table("vwed_executions") as batch:
        for name in ("attempt", "async_id", "peak_rss", "cpu_ms", "worker", "status"):
            batch.drop_column(name)
