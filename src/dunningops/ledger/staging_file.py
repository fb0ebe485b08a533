"""A large CSV import's staging tables in a SQLite file of their own, loaded from Arrow tables through ADBC.

Binding a million rows' cells one by one (``executemany``) and building their Python objects first
were a third of a 1M-invoice import on SQLite. ADBC's SQLite driver inserts an Arrow table's columns
straight from their buffers. It opens its own connection, and a TEMP table lives in one connection:
so the tables go into a scratch file, which the import's write transaction ATTACHes once the rows
(and the staging indexes) are in (``Store.session(attach=...)``). The tables keep their names, so
the checks and writes (checks.py, writes.py) read them unchanged.

Only for a SQLite store: PostgreSQL already loads staging with COPY, in its transaction.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import adbc_driver_sqlite.dbapi as adbc
import pyarrow as pa
from sqlalchemy import Table
from sqlalchemy.dialects import sqlite
from sqlalchemy.schema import CreateIndex, CreateTable

from dunningops.errors import StoreError
from dunningops.ledger.arrow import staging_schema
from dunningops.ledger.staging import KEY_INDEXES
from dunningops.store.engine import SORT_THREADS

SCHEMA = "stg"  # the name the write transaction attaches the file under
PREFIX = "dunningops-staging-"  # the scratch directories' names, in the temporary directory
_LOCK = "owner.lock"  # held (flock) by the process the directory is for, for as long as it lives
# A directory without its lock file: one being made this instant by another import, or left by a
# version that made none. Removed only once it is older than this (seconds).
_UNLOCKED_AGE = 3600.0


def remove_orphans(parent: Path | None = None) -> int:
    """The scratch directories of imports killed (SIGKILL, out of memory, power loss) before their
    cleanup ran: a million invoices leave ~150 MB each time, so an import run from cron would fill
    the temporary directory in the end. A directory whose lock no process holds is an orphan (the
    kernel lets go of a dead process's locks); a running import's lock refuses us. Returns how many
    were removed. Only this user's, and none we cannot tell about (an error skips the directory)."""
    parent = Path(parent or tempfile.gettempdir())
    try:
        candidates = [p for p in parent.iterdir() if p.name.startswith(PREFIX)]
    except OSError:
        return 0
    removed = 0
    for directory in candidates:
        try:
            if _orphan(directory):
                shutil.rmtree(directory)
                removed += 1
        except OSError:
            continue  # gone meanwhile, or not ours to remove
    return removed


def _orphan(directory: Path) -> bool:
    info = directory.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        return False
    try:
        fd = os.open(directory / _LOCK, os.O_RDWR)
    except FileNotFoundError:
        return time.time() - info.st_mtime >= _UNLOCKED_AGE
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # its import is running
    finally:
        os.close(fd)
    return True


def _own(directory: Path) -> int:
    """The directory's lock, held while this process lives, even if it is killed before its cleanup
    (remove_orphans). Taken under another name, then renamed: a lock file is never seen unheld."""
    taking = directory / f"{_LOCK}.new"
    fd = os.open(taking, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        taking.rename(directory / _LOCK)
    except OSError:
        os.close(fd)
        raise
    return fd


class StagingFile:
    """The scratch file and its writer; removed on exit, whatever happened."""

    def __init__(self, tables: list[Table]):
        self.tables = tables
        self.keys_unique = False  # the staged rows' keys proved unique by their index (index())
        self.schemas = {t.name: staging_schema(t) for t in tables}
        self._lock: int | None = None
        self._connection: adbc.Connection | None = None
        try:
            self._directory = Path(tempfile.mkdtemp(prefix=PREFIX))
            self._lock = _own(self._directory)
        except OSError as exc:
            if hasattr(self, "_directory"):
                self.__exit__(None, None, None)
            raise StoreError(
                f"cannot make the import's staging file in {tempfile.gettempdir()}: {exc.strerror}; nothing was imported"
            ) from exc
        self.path = self._directory / "staging.db"
        try:
            with self._errors():
                self._connection = adbc.connect(str(self.path), autocommit=True)
            self._cursor = self._connection.cursor()
            # Scratch: nothing to recover after a crash, so no journal file and no fsync.
            for pragma in ("PRAGMA journal_mode=MEMORY", "PRAGMA synchronous=OFF", f"PRAGMA threads={SORT_THREADS}"):
                self._run(pragma)
            dialect = sqlite.dialect()
            for table in tables:
                ddl = str(CreateTable(table).compile(dialect=dialect))
                # The staging tables are declared TEMPORARY (staging.py); here they are the file's own.
                self._run(ddl.replace("CREATE TEMPORARY TABLE", "CREATE TABLE", 1))
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def __enter__(self) -> StagingFile:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
        shutil.rmtree(self._directory, ignore_errors=True)
        if self._lock is not None:
            os.close(self._lock)  # after the removal: never an orphan a sweep could take for one
            self._lock = None

    def _run(self, sql: str) -> None:
        with self._errors():
            self._cursor.execute(sql)
            if self._cursor.description:
                self._cursor.fetchall()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """A full or unwritable temporary directory: one clear line (the store is not touched yet)."""
        try:
            yield
        except adbc.Error as exc:
            raise StoreError(
                f"cannot write the import's staging file in {self._directory.parent}: {exc}; nothing was imported"
            ) from exc

    def insert(self, table: Table, rows: list[tuple]) -> None:
        """Staging tuples (the row-by-row and columnar paths' shape), as one Arrow table."""
        schema = self.schemas[table.name]
        columns = zip(*rows, strict=True) if rows else ([] for _ in schema)
        self.insert_table(
            table, pa.Table.from_arrays([pa.array(c, f.type) for c, f in zip(columns, schema, strict=True)], schema=schema)
        )

    def insert_table(self, table: Table, data: pa.Table) -> None:
        if data.num_rows:
            with self._errors():
                self._cursor.adbc_ingest(table.name, data, mode="append")

    def index(self) -> None:
        """The staging indexes, built once the rows are in (one sort each, not a B-tree insert per row).
        The key index UNIQUE when the keys are (``keys_unique``): then no query needs to look for duplicates."""
        dialect = sqlite.dialect()
        keys = {index.name for index in KEY_INDEXES.values()}
        for table in self.tables:
            for index in sorted(table.indexes, key=lambda i: str(i.name)):
                ddl = str(CreateIndex(index).compile(dialect=dialect))
                if index.name in keys:
                    try:
                        self._cursor.execute(ddl.replace("CREATE INDEX", "CREATE UNIQUE INDEX", 1))
                        self.keys_unique = True
                        continue
                    except adbc.IntegrityError:
                        pass  # duplicates: checks.set_problems finds and words them
                self._run(ddl)

    def close(self) -> None:
        """Close the writer, so that the write transaction alone holds the file."""
        if self._connection is not None:
            connection, self._connection = self._connection, None
            if hasattr(self, "_cursor"):
                self._cursor.close()
            connection.close()
