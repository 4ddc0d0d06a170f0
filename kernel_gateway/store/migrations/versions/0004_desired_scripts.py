"""The scripts that should be running (restored when the gateway starts again).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vwed_desired_scripts",
        sa.Column("script_path", sa.String(480), primary_key=True),
        sa.Column("replicas", sa.Integer, nullable=False),
        sa.Column("restart", sa.String(16), nullable=False),
        sa.Column("started_at", sa.Double, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("vwed_desired_scripts")
