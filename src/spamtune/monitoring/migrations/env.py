"""Alembic's environment for the prediction store: always driven from code (store.upgrade), on the connection it
is given; `render_as_batch` lets migrations alter SQLite tables."""

from alembic import context

from spamtune.monitoring.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
