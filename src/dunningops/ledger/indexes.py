"""The indexes a large write into an empty or small table drops for its INSERT and builds afterwards (SQLite).

An index whose keys the new rows bring in no particular order costs a page read and write per row
as they are inserted; built once they are in, it is one sort, in SQLite's helper threads.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Index, Table, func, select
from sqlalchemy.orm import Session

from dunningops.store.engine import SORT_THREADS

# Indexes whose keys a file's new rows bring in no particular order: each row's insert reads and
# writes a page of its own (seen: half of the INSERT of a 1M-invoice first import on SQLite, and a
# third of the INSERT of 200k contacts, whose emails follow no order).
_UNORDERED = {"invoices": ("ix_invoices_status_due",), "contacts": ("ix_contacts_email",)}
_REBUILD_MIN = 10_000  # staged rows below which an index rebuild is not worth its fixed cost


@contextmanager
def built_after(session: Session, target: Table, stg: Table, existing: int) -> Iterator[None]:
    """SQLite, when the write adds at least four times the rows ``target`` has: its unordered indexes
    dropped for the INSERT and built afterwards (one sort), in the transaction, so a reader never
    sees them missing. PostgreSQL would lock the table for the transaction: left as it is."""
    if session.get_bind().dialect.name != "sqlite":
        yield
        return
    staged = session.scalar(select(func.count()).select_from(stg)) or 0
    if staged < max(4 * existing, _REBUILD_MIN):
        yield
        return
    indexes = drop_unordered(session, target)
    yield
    build_indexes(session, indexes)


def drop_unordered(session: Session, target: Table) -> list[Index]:
    """SQLite: ``target``'s unordered indexes dropped (for ``build_indexes`` once the rows are in)."""
    connection = session.connection()
    indexes = [i for i in target.indexes if i.name in _UNORDERED[target.name]]
    for index in indexes:
        index.drop(connection)
    return indexes


def build_indexes(session: Session, indexes: list[Index]) -> None:
    if not indexes:
        return
    connection = session.connection()
    connection.exec_driver_sql(f"PRAGMA threads={SORT_THREADS}")  # the sort of a million keys, in helper threads
    try:
        for index in indexes:
            index.create(connection)
    finally:
        connection.exec_driver_sql("PRAGMA threads=0")
