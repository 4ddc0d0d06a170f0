"""Task-flow steps: task variables and executions.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vwed_task_variables",
        sa.Column("task_id", sa.String(128), primary_key=True),
        sa.Column("variables", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
    )
    op.create_table(
        "vwed_executions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("ts", sa.Double, nullable=False),
        sa.Column("script_path", sa.String(480), nullable=False),
        sa.Column("function_name", sa.String(255), nullable=True),
        sa.Column("mode", sa.String(32), nullable=False),
        sa.Column("task_id", sa.String(128), nullable=True),
        sa.Column("duration_ms", sa.Double, nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("error_type", sa.String(128), nullable=True),
        sa.Column("error_message", sa.Text, nullable=True),
    )
    op.create_index("ix_vwed_executions_ts", "vwed_executions", ["ts"])
    op.create_index("ix_vwed_executions_task_id", "vwed_executions", ["task_id"])


def downgrade() -> None:
    op.drop_table("vwed_executions")
    op.drop_table("vwed_task_variables")
