"""The store: SQLAlchemy tables, engine and sessions, Alembic migrations, the apply lock.

Imports ``errors`` and, for config rows, ``spec`` types only; never ``reconcile`` or the cycles.
"""

from dunningops.store.engine import Store, default_database_url, open_store

__all__ = ["Store", "default_database_url", "open_store"]
