"""One import's staging: rows converted one by one or a batch at a time, loaded into its staging tables.

The tables are the transaction's TEMP tables (``TempTables``: ``executemany`` on SQLite, COPY on
PostgreSQL) or, for a large CSV file on SQLite, a scratch file of their own (``staging_file.py``).
Either way the checks that involve other rows or the store run once every row is in (``Staging.check``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from sqlalchemy import Date, Table
from sqlalchemy.orm import Session
from sqlalchemy.schema import CreateTable

from dunningops.ledger.checks import row_place, set_problems
from dunningops.ledger.columns import KINDS, make_parsers
from dunningops.ledger.context import LedgerContext
from dunningops.ledger.issues import RowIssue
from dunningops.ledger.mapping import Mapping
from dunningops.ledger.staging import STAGING, STAGING_FUNCTIONS, converter

if TYPE_CHECKING:
    from dunningops.ledger.importer import ImportSummary


def tables(kind: str) -> list[Table]:
    """``kind``'s staging tables."""
    return [STAGING[kind], STAGING_FUNCTIONS] if kind == "contacts" else [STAGING[kind]]


class TempTables:
    """Staging in the import's own transaction: TEMP tables loaded by ``executemany`` (SQLite) or COPY (PostgreSQL)."""

    def __init__(self, session: Session, kind: str):
        self.session = session
        drop_staging(session, kind)
        # The tables without their indexes: built once the rows are in (one sort, not a B-tree
        # insert per row); the checks and writes need them (staging.py, _INDEXES).
        self.tables = tables(kind)
        connection = session.connection()
        for table in self.tables:
            connection.execute(CreateTable(table))

    def insert(self, table: Table, rows: list[tuple]) -> None:
        insert_many(self.session, table, rows)

    def index(self) -> None:
        connection = self.session.connection()
        for table in self.tables:
            for index in sorted(table.indexes, key=lambda i: str(i.name)):
                index.create(connection)
            if connection.dialect.name == "postgresql":
                # Autovacuum never analyzes temporary tables: without statistics the planner takes
                # staging for a few rows and picks nested loops over the whole ledger.
                connection.exec_driver_sql(f"ANALYZE {table.name}")


class Staging:
    """One import's staging: rows converted one by one or a batch at a time, inserted in batches into ``sink``
    (the transaction's TEMP tables, or a StagingFile)."""

    def __init__(
        self,
        sink,
        ctx: LedgerContext,
        iso_dates: bool,
        kind: str,
        summary: ImportSummary,
        source: str,
        unit: str,
        mapping: Mapping,
    ):
        self.sink, self.ctx, self.iso_dates = sink, ctx, iso_dates
        self.kind, self.summary, self.source, self.unit = kind, summary, source, unit
        self.table = STAGING[kind]
        parsers = make_parsers(mapping.date_format, mapping.decimal_comma)
        self.steps = [(c.name, parsers[c.parse], c.required, c.max_length) for c in KINDS[kind]]
        self.convert = converter(kind, self.ctx)
        self.names = [c.name for c in self.table.columns]
        self.dates = {i for i, c in enumerate(self.table.columns) if isinstance(c.type, Date)} if self.iso_dates else set()
        self.link_names = [c.name for c in STAGING_FUNCTIONS.columns]
        self.rows: list[tuple] = []
        self.links: list[tuple] = []

    @classmethod
    def in_session(cls, session: Session, kind: str, summary: ImportSummary, source: str, unit: str, mapping: Mapping) -> Staging:
        ctx = LedgerContext.load(session)
        iso_dates = session.connection().dialect.name == "sqlite"
        return cls(TempTables(session, kind), ctx, iso_dates, kind, summary, source, unit, mapping)

    def row(self, row_no: int, raw: dict[str, str] | None, read_problems: list[tuple[str, str]]) -> None:
        """One row the row-by-row way: every problem with its column, in ``summary.issues``."""
        source, unit = self.source, self.unit
        self.summary.rows += 1
        reported: Collection[str] = ()
        if read_problems:
            problems = [RowIssue(source, row_no, column, message, unit) for column, message in read_problems]
            reported = {column for column, _ in read_problems}
        else:
            problems = []
        if raw is not None:
            values = {}
            for name, parse, required, max_length in self.steps:
                text = raw.get(name, "")
                if not text:
                    if required and name not in reported:  # the reader drops a cell it reported (e.g. too big)
                        problems.append(RowIssue(source, row_no, name, "is empty (required)", unit))
                    continue
                if len(text) > max_length:
                    problems.append(RowIssue(source, row_no, name, f"is longer than {max_length} characters", unit))
                    continue
                try:
                    values[name] = parse(text)
                except ValueError as exc:
                    problems.append(RowIssue(source, row_no, name, str(exc), unit))
            staged, links, cell_problems = self.convert(row_no, values)
            if cell_problems:
                problems += [RowIssue(source, row_no, e.column, str(e), unit) for e in cell_problems]
            # Staged even when invalid (bad cells as NULL), so the set-based checks (duplicates,
            # unknown customers) report this row's other problems too; nothing is written then.
            dates = self.dates
            self.rows.append(
                tuple(v.isoformat() if i in dates and v is not None else v for i, v in enumerate(map(staged.get, self.names)))
            )
            self.links.extend(tuple(map(link.get, self.link_names)) for link in links)
        if problems:
            self.summary.issues.extend(problems)

    def flush(self) -> None:
        for table, batch in ((self.table, self.rows), (STAGING_FUNCTIONS, self.links)):
            if batch:
                self.sink.insert(table, batch)
                batch.clear()

    def columns(self, data, links, progress) -> None:
        """A chunk converted at once, as an Arrow table (a StagingFile's sink only), and its function links
        (an Arrow table too, or tuples)."""
        self.summary.rows += data.num_rows
        self.sink.insert_table(self.table, data)
        if isinstance(links, list):
            self.links.extend(links)
        else:
            self.sink.insert_table(STAGING_FUNCTIONS, links)
        self.flush()
        if progress:
            progress(self.summary.rows)

    def finish(self) -> None:
        """The last rows, then the staging indexes."""
        self.flush()
        self.sink.index()

    def check(self, session: Session, place: Callable[[int], str] | None = None, *, customers_later: bool = False) -> None:
        """The checks that involve other rows or the store, once every row is staged."""
        unique = bool(getattr(self.sink, "keys_unique", False))
        found = set_problems(session, self.kind, place or row_place, keys_unique=unique, customers_later=customers_later)
        self.summary.issues.extend(RowIssue(self.source, r, c, m, self.unit) for r, c, m in found)


def insert_many(session: Session, table, batch: list[tuple]) -> None:
    """Bulk-load tuples at the driver level: SQLAlchemy's per-row parameter processing was half the import's time."""
    connection = session.connection()
    names = [c.name for c in table.columns]
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        if connection.dialect.name == "postgresql":
            # COPY: one stream per batch instead of a statement per row (psycopg adapts each value).
            with cursor.copy(f"COPY {table.name} ({', '.join(names)}) FROM STDIN") as copy:
                for row in batch:
                    copy.write_row(row)
        else:
            marks = ", ".join(["?"] * len(names))
            # The driver's own executemany: one C loop over the tuples.
            cursor.executemany(f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({marks})", batch)
    finally:
        cursor.close()


def drop_staging(session: Session, kind: str) -> None:
    """Drop ``kind``'s staging tables, if there."""
    # SQLite keeps TEMP tables for the connection's life, and the pool reuses connections.
    STAGING[kind].drop(session.connection(), checkfirst=True)
    STAGING_FUNCTIONS.drop(session.connection(), checkfirst=True)
