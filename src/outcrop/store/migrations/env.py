"""Alembic environment: runs on the connection Outcrop hands over (never reads alembic.ini)."""

from __future__ import annotations

from alembic import context

from outcrop.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("Outcrop runs migrations through outcrop.store.database.migrate()")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
