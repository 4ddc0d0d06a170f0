"""The options a restored script starts with again (memory limit, policy), as JSON.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("vwed_desired_scripts", sa.Column("options", sa.Text, nullable=True))


def downgrade() -> None:
    op.drop_column("vwed_desired_scripts", "options")
