"""Initial schema: script runs, log records, calls.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vwed_script_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("script_id", sa.String(512), nullable=False, unique=True),
        sa.Column("script_path", sa.String(480), nullable=False),
        sa.Column("replicas", sa.Integer, nullable=False),
        sa.Column("started_at", sa.Double, nullable=False),
        sa.Column("stopped_at", sa.Double, nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("exit_reason", sa.String(255), nullable=True),
    )
    op.create_index("ix_vwed_script_runs_script_path", "vwed_script_runs", ["script_path"])
    op.create_table(
        "vwed_log_records",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("ts", sa.Double, nullable=False),
        sa.Column("script_id", sa.String(512), nullable=True),
        sa.Column("run_id", sa.Integer, nullable=True),
        sa.Column("level", sa.Integer, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("tag", sa.String(128), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("call_id", sa.String(64), nullable=True),
        sa.Column("task_id", sa.String(128), nullable=True),
    )
    op.create_index("ix_vwed_log_script_id", "vwed_log_records", ["script_id", "id"])
    op.create_index("ix_vwed_log_run_id", "vwed_log_records", ["run_id", "id"])
    op.create_index("ix_vwed_log_ts", "vwed_log_records", ["ts"])
    op.create_table(
        "vwed_calls",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("ts", sa.Double, nullable=False),
        sa.Column("script_id", sa.String(512), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("duration_ms", sa.Double, nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("error_type", sa.String(128), nullable=True),
        sa.Column("call_id", sa.String(64), nullable=True),
    )
    op.create_index("ix_vwed_calls_ts", "vwed_calls", ["ts"])
    op.create_index("ix_vwed_calls_script_id", "vwed_calls", ["script_id"])


def downgrade() -> None:
    op.drop_table("vwed_calls")
    op.drop_table("vwed_log_records")
    op.drop_table("vwed_script_runs")
