"""Issue 17: the Git revision a run runs (kept with each run and each desired script, so a
restored script runs the revision that was running), and the secrets table (values
encrypted by the gateway: the database never holds a plaintext value).

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("vwed_script_runs", sa.Column("revision", sa.String(64), nullable=True))
    op.add_column("vwed_desired_scripts", sa.Column("revision", sa.String(64), nullable=True))
    op.create_table(
        "vwed_secrets",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("ciphertext", sa.Text(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=True),
        sa.Column("set_by", sa.String(128), nullable=False),
        sa.Column("set_at", sa.Double(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("vwed_secrets")
    op.drop_column("vwed_desired_scripts", "revision")
    op.drop_column("vwed_script_runs", "revision")
