"""Alembic environment: runs with the connection the gateway hands over."""

from __future__ import annotations

from alembic import context

from kernel_gateway.store.models import Base

connection = context.config.attributes.get("connection")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table="vwed_alembic_version",
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
