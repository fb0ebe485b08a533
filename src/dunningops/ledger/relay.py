"""A first import's invoices written while they are still being staged: the file staged in parts, a scratch
file each (staging_file.py), and each part written into the ledger as soon as it is sealed (apart.py).

Staged whole then written, a million invoices took their staging (2.5 s) and then their write (1.8 s),
one after the other, and the transaction sat idle meanwhile. In parts, the transaction writes part N
while part N+1 is staged (and while it waits for the other files).

Only where the outcome cannot differ from one write of the whole file: SQLite, an invoices table empty
before the import (every row an insert, in the file's order, so the same ids), without --skip-invalid or
--prune. Any doubt sends the file the usual way: a problem in any file, a row the write leaves out (an
unknown customer), or a key written twice (the ledger's unique key refuses the second). Then the parts
already written are deleted (the table was empty, and this transaction alone writes it), the parts are
put together in one staging table, and the usual checks and write run on it: the same messages, and
the same rows written.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from sqlalchemy import MetaData, Table, delete, literal, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.schema import CreateIndex, CreateTable

from dunningops.ledger.indexes import build_indexes, drop_unordered
from dunningops.ledger.staging import STAGING
from dunningops.store.schema import InvoiceRow

if TYPE_CHECKING:
    import pyarrow as pa

    from dunningops.ledger.importer import _Job
    from dunningops.ledger.staging_file import StagingFile

invoices = InvoiceRow.__table__

RELAY_MIN_BYTES = 16 * 1024 * 1024  # a smaller invoices file is staged in one piece: its write is short anyway
RELAY_PART_BYTES = 8 * 1024 * 1024  # at least this much CSV per part
RELAY_PARTS = 8  # at most; SQLite attaches ten files at most to a connection, the other files included
_RECHECK_S = 0.5  # a wait for the staging threads looks again this often, notified or not


def relay_parts(size: int, others: int, max_attached: int = 10) -> int:
    """How many parts an invoices file of ``size`` bytes is staged in, beside ``others`` files (1: not relayed)."""
    if size < RELAY_MIN_BYTES:
        return 1
    return max(1, min(RELAY_PARTS, max_attached - others, size // RELAY_PART_BYTES))


def invoices_empty(session: Session) -> bool:
    return session.scalar(select(literal(1)).select_from(invoices).limit(1)) is None


class RelaySink:
    """The staging thread's side: the staged batches go into the current part; every ``per`` batches the part is
    sealed (its indexes built, its writer closed) and handed over, and the next part begins. The last takes the
    rest. ``keys_unique`` stays False: a key repeated across parts is found by the combined table's check."""

    keys_unique = False

    def __init__(self, files: Sequence[StagingFile], per: int, changed: threading.Condition):
        self.files, self.per, self.changed = list(files), max(1, per), changed
        self.sealed = 0  # parts handed over, in order
        self.finished = False  # every row staged, the last part sealed
        self._batches = 0

    def insert(self, table: Table, rows: list[tuple]) -> None:
        self.files[self.sealed].insert(table, rows)
        self._next()

    def insert_table(self, table: Table, data: pa.Table) -> None:
        self.files[self.sealed].insert_table(table, data)
        self._next()

    def _next(self) -> None:
        self._batches += 1
        if self._batches >= self.per and self.sealed < len(self.files) - 1:
            self._seal()
            self._batches = 0

    def _seal(self) -> None:
        part = self.files[self.sealed]
        part.index()
        part.close()  # the transaction alone holds the part from here
        with self.changed:
            self.sealed += 1
            self.changed.notify_all()

    def index(self) -> None:
        """The end of the file (``Staging.finish``): the last part sealed; the ones after it stay empty."""
        self._seal()
        with self.changed:
            self.finished = True
            self.changed.notify_all()

    def close(self) -> None:
        for part in self.files:
            part.close()


class Relay:
    """The write transaction's side: ``pump`` writes the parts sealed so far, ``finish`` the rest; a doubt
    (``spoilt``) and the file goes the usual way, from the parts put together (``combine``)."""

    def __init__(self, job: _Job, sink: RelaySink, names: list[str]):
        self.job, self.sink, self.names = job, sink, names
        self.written = 0  # parts written into the ledger
        self.added = 0
        self.spoilt = False
        self.begun = False
        self._dropped: list = []

    def table(self, n: int) -> Table:
        """Part ``n``'s staging table, named by the schema its file is attached under."""
        return STAGING["invoices"].to_metadata(MetaData(), schema=self.names[n])

    def pump(
        self,
        session: Session,
        write: Callable[[Session, Table], int],
        *,
        until: Callable[[], bool],
        ready: Callable[[], bool],
        doubt: Callable[[], bool],
    ) -> None:
        """Write the parts sealed so far, and those sealed meanwhile, until ``until()`` (another file staged,
        or this one's staging over). ``ready()``: whether a part may be written yet (the staged payments its
        balances count, when they are staged); ``doubt()``: whether any file has a problem so far."""
        changed = self.sink.changed
        while not self.spoilt:
            with changed:
                while not until() and not (self.sink.sealed > self.written and ready()):
                    changed.wait(_RECHECK_S)
                if until():
                    return
            if doubt():
                self.spoilt = True
                return
            self._write(session, write)

    def _write(self, session: Session, write: Callable[[Session, Table], int]) -> None:
        if not self.begun:
            if not invoices_empty(session):  # invoices written since the import chose the relay
                self.spoilt = True
                return
            self.begun = True
            self._dropped = drop_unordered(session, invoices)
        n = self.written
        try:
            added = write(session, self.table(n))
        except IntegrityError:
            # A key of this part written before (a repeat across parts), or a bad row staged with NULLs:
            # the usual way words it. SQLite undid this statement alone; the transaction goes on.
            self.spoilt = True
            return
        self.written += 1
        self.added += added

    def finish(
        self,
        session: Session,
        write: Callable[[Session, Table], int],
        *,
        rows: int,
        doubt: Callable[[], bool],
    ) -> bool:
        """Once the file is staged (``rows`` rows) and the payments it counts too: the parts left written.
        True: the file is written, every row once; False: nothing of it is (the parts written are deleted),
        and ``combine`` makes its staging table for the usual way."""
        if not self.spoilt:
            self.pump(session, write, until=lambda: self.written >= self.sink.sealed, ready=lambda: True, doubt=doubt)
        if not self.spoilt and (doubt() or self.added != rows):
            self.spoilt = True  # a row left out (an unknown customer), or a problem found meanwhile
        if self.spoilt and self.begun:
            session.execute(delete(invoices))  # the table was empty: back to it (the same ids again)
        build_indexes(session, self._dropped)
        return not self.spoilt

    def combine(self, session: Session) -> None:
        """The parts in one TEMP staging table, which hides the parts' tables of the same name (SQLite looks
        in TEMP first): the usual checks and write then read the whole file."""
        stg = STAGING["invoices"]
        connection = session.connection()
        connection.execute(CreateTable(stg))
        names = [c.name for c in stg.columns]
        parts = " UNION ALL ".join(f'SELECT {", ".join(names)} FROM "{name}".{stg.name}' for name in self.names)
        connection.exec_driver_sql(f"INSERT INTO temp.{stg.name} ({', '.join(names)}) {parts}")
        dialect = sqlite.dialect()
        for index in sorted(stg.indexes, key=lambda i: str(i.name)):
            ddl = str(CreateIndex(index).compile(dialect=dialect))
            connection.exec_driver_sql(ddl.replace("CREATE INDEX ", "CREATE INDEX temp.", 1))


def per_part(size: int, parts: int, chunk_bytes: int) -> int:
    """Batches per part: the file's chunks shared out evenly (the last part no larger than the others)."""
    return max(1, math.ceil(math.ceil(size / chunk_bytes) / parts))
