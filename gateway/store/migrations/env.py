"""Alembic environment: runs on the connection the gateway hands it (sync facade of async)."""

from alembic import context

from gateway.store.schema import metadata, partial_on_postgresql

connection = context.config.attributes["connection"]
if connection.dialect.name == "postgresql":
    partial_on_postgresql()
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
