"""Alembic environment: runs on the engine handed over by dunningops.store.migrate."""

from alembic import context

from dunningops.store.schema import Base

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    context.run_migrations()
