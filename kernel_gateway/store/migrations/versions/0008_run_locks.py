"""The lock of a script's package environment (issue 16): kept with each run and with
each desired script, so a restored script installs that lock again, not a new resolution.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("vwed_script_runs", sa.Column("lock_hash", sa.String(64), nullable=True))
    op.add_column("vwed_desired_scripts", sa.Column("lock_hash", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("vwed_desired_scripts", "lock_hash")
    op.drop_column("vwed_script_runs", "lock_hash")
