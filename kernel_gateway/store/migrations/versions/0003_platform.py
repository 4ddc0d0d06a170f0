"""The embedded platform backend: storage locations, tasks, robots.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vwed_storage_locations",
        sa.Column("code", sa.String(128), primary_key=True),
        sa.Column("zone", sa.String(64), nullable=False),
        sa.Column("goods", sa.String(255), nullable=True),
        sa.Column("locked_by", sa.String(128), nullable=True),
        sa.Column("locked_at", sa.Double, nullable=True),
        sa.Column("data", sa.Text, nullable=False),
    )
    op.create_table(
        "vwed_platform_tasks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("label", sa.String(255), nullable=False),
        sa.Column("input_params", sa.Text, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("robot_id", sa.String(128), nullable=True),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
    )
    op.create_table(
        "vwed_robots",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("task_id", sa.String(128), nullable=True),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("vwed_robots")
    op.drop_table("vwed_platform_tasks")
    op.drop_table("vwed_storage_locations")
