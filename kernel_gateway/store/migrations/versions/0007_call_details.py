"""The calls history gets what the console filters and shows: the script's path (the
calls of every run of a script), the error's message and the call's task id.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("vwed_calls", sa.Column("script_path", sa.String(480), nullable=True))
    op.add_column("vwed_calls", sa.Column("error_message", sa.String(500), nullable=True))
    op.add_column("vwed_calls", sa.Column("task_id", sa.String(128), nullable=True))
    op.create_index("ix_vwed_calls_script_path", "vwed_calls", ["script_path"])
    op.create_index("ix_vwed_calls_task_id", "vwed_calls", ["task_id"])


def downgrade() -> None:
    op.drop_index("ix_vwed_calls_task_id", "vwed_calls")
    op.drop_index("ix_vwed_calls_script_path", "vwed_calls")
    with op.batch_alter_table("vwed_calls") as batch:
        batch.drop_column("task_id")
        batch.drop_column("error_message")
        batch.drop_column("script_path")
