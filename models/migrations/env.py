"""Alembic environment: storeflow runs migrations itself (models.db.migrate)."""

from alembic import context

from storeflow.models.tables import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata)
with context.begin_transaction():
    context.run_migrations()
