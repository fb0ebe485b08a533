"""Inserting many rows and getting their ids back, in order, in one statement.

SQLAlchemy 2.1 asked for ``RETURNING`` ids in parameter order on SQLite falls back to one
INSERT per row (SQLite does not promise the order of RETURNING rows): the send cycle and the
import cycle spent most of their writes there. On SQLite the writers of these tables hold
the write lock (BEGIN IMMEDIATE), so nobody else inserts meanwhile: the ids are given
explicitly, after the largest one, and the rows go in with one executemany. A writer without
the lock would collide on the primary key and fail; it cannot take another row's id.
PostgreSQL keeps SQLAlchemy's batched, ordered RETURNING.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, func, insert, select
from sqlalchemy.orm import Session


def insert_ids(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert ``rows`` into ``table`` (an integer ``id`` primary key); their ids, in the rows' order."""
    if not rows:
        return []
    if session.get_bind().dialect.name == "sqlite":
        start = session.execute(select(func.max(table.c.id))).scalar() or 0
        ids = list(range(start + 1, start + 1 + len(rows)))
        session.execute(insert(table), [{**row, "id": i} for row, i in zip(rows, ids, strict=True)])
        return ids
    return list(session.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), rows).scalars())
