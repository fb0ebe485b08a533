"""Opening the store: URL resolution, engine set-up per dialect, automatic migration on first use.

SQLAlchemy is imported by the functions that use it, not by this module: resolving the store's URL
(``App.url``) must not cost its import (a fifth of `plan`, which reads a SQLite store at the
latest revision with the standard library: store/state.py).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dunningops.errors import InvalidInputError, StoreError

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.orm import Session

ENV_URL = "DUNNINGOPS_DATABASE_URL"
# SQLite's sorter threads (PRAGMA threads) for a large import's index builds: only there, as each
# thread of a sort holds its own buffer (set on every connection, deciding's peak RSS grew 8 MiB at 1M invoices).
SORT_THREADS = min(4, os.cpu_count() or 1)
SQLITE_PAGE_SIZE = 8192  # of a store SQLite creates (see _sqlite_engine)


def repo_root_of(config_dir: Path) -> Path:
    """The git work tree holding the config, else the config directory's parent."""
    config_dir = config_dir.resolve()
    try:
        out = subprocess.run(
            ["git", "-C", str(config_dir), "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        return Path(out.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return config_dir.parent


def default_database_url(config_dir: Path) -> str:
    """``sqlite:///<repo>/.dunningops/state.db``, beside the config's repository."""
    return f"sqlite:///{repo_root_of(config_dir) / '.dunningops' / 'state.db'}"


def normalise_url(url: str) -> str:
    # psycopg 3 is our PostgreSQL driver; accept the plain scheme users paste.
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@dataclass
class Store:
    """An opened, migrated store."""

    engine: Engine
    url: str
    # This process's runner on the store (store/runners.py), registered on first send.
    runner: Any = field(default=None, init=False, repr=False, compare=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(
        self, *, write_lock: bool = False, attach: dict[str, Path] | None = None, bulk: bool = False
    ) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back on any error.

        ``write_lock`` on SQLite takes the write lock as the transaction begins (BEGIN IMMEDIATE), so
        that a second writer waits (busy timeout) instead of failing mid-way.
        ``attach`` (SQLite): scratch databases ATTACHed under their names for the transaction's
        life (a ledger import's staging file); unqualified names find their tables.
        ``bulk`` (SQLite): a write of a large part of the file (``_bulk_journal``); ``session.info["bulk"]``
        says whether it went that way. Without the foreign key checks: the writer joins every
        reference it writes with the row it names (the connection has them back afterwards).
        """
        from sqlalchemy import text
        from sqlalchemy.orm import Session

        connection = self.engine.connect()
        # BEGIN IMMEDIATE locks every attached file too, and another connection may still be writing an
        # attached scratch file (a ledger import's staging threads): then a write that changes nothing
        # takes the store's lock alone, as the transaction's first statement.
        lock_main = write_lock and self.dialect == "sqlite" and bool(attach)
        if write_lock and self.dialect == "sqlite" and not attach:
            connection = connection.execution_options(sqlite_begin="BEGIN IMMEDIATE")
        # SQLite attaches only outside a transaction: on the driver's connection, before BEGIN.
        raw = connection.connection.driver_connection if attach or bulk else None
        journal = False
        try:
            for name, path in (attach or {}).items():
                raw.execute(f'ATTACH DATABASE ? AS "{name}"', (str(path),))  # type: ignore[union-attr]
                # Scratch: nothing to recover after a crash, so no journal file and no fsync.
                raw.execute(f'PRAGMA "{name}".journal_mode=MEMORY')  # type: ignore[union-attr]
                raw.execute(f'PRAGMA "{name}".synchronous=OFF')  # type: ignore[union-attr]
            journal = bulk and self.dialect == "sqlite" and _bulk_journal(raw, True)
            if bulk and self.dialect == "sqlite":
                # A bulk writer makes each reference it writes by a join with the rows it refers to (the
                # ledger import): the check per row again was ~0.4 s of a million invoices' insert.
                raw.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
            with Session(bind=connection, expire_on_commit=False) as session, session.begin():
                session.info["bulk"] = journal
                if lock_main:
                    session.execute(text("DELETE FROM main.settings WHERE 0"))
                yield session
        finally:
            try:
                if bulk and self.dialect == "sqlite":
                    raw.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]
                if journal and not _bulk_journal(raw, False):
                    # A reader came in between the commit and the switch: this connection must not go
                    # back to the pool in the rollback journal; the next one opened sets WAL again.
                    connection.invalidate()
                for name in attach or {}:
                    raw.execute(f'DETACH DATABASE "{name}"')  # type: ignore[union-attr]
            except Exception:  # e.g. an ATTACH that failed: a pooled connection must not keep one attached
                connection.invalidate()
            finally:
                connection.close()

    def dispose(self) -> None:
        if self.runner is not None:
            runner, self.runner = self.runner, None
            runner.close()
        self.engine.dispose()


def _bulk_journal(raw: Any, on: bool) -> bool:
    """SQLite: the store in its rollback journal for one large write, then back in WAL (``on`` False).

    In WAL every page a write changes goes to the WAL and is copied into the file again when the
    commit checkpoints it: a million-invoice first import wrote a 345 MB WAL for a 266 MB table (the
    checkpoint alone ~1.5 s). The rollback journal keeps only the pages the write overwrites, and
    new pages are written once. Atomic all the same: a crash leaves a hot journal, which the next
    opener rolls back. Only when no other connection has the store open (SQLite refuses the switch
    otherwise, and the write goes through the WAL as any other); a command that opens the store
    meanwhile waits for the write to commit (busy timeout) instead of reading beside it. Whether
    the switch happened: the return value."""
    timeout = raw.execute("PRAGMA busy_timeout").fetchone()[0]
    raw.execute("PRAGMA busy_timeout=0")  # another connection: go the WAL way at once, not after 30 s
    try:
        mode = raw.execute(f"PRAGMA main.journal_mode={'DELETE' if on else 'WAL'}").fetchone()[0]
    except sqlite3.OperationalError:  # locked: someone else has the store open
        mode = "wal" if on else "delete"
    finally:
        raw.execute(f"PRAGMA busy_timeout={int(timeout)}")
    return mode == ("delete" if on else "wal")


_SQLITE_HEADER = b"SQLite format 3\x00"


def _sqlite_path(url: str) -> Path | None:
    """The file a SQLite URL names (None: in memory, or a URI filename SQLite resolves itself)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    path = parsed.database
    if not path or path == ":memory:" or path.startswith("file:") or parsed.query.get("uri"):
        return None
    return Path(path)


def _check_sqlite_file(path: Path) -> None:
    """Refuse, before connecting, a path that is not a SQLite database or that cannot be written.

    A read-only SQLite file opens fine and fails at the first write (in WAL mode even
    BEGIN IMMEDIATE succeeds), so writability is checked here, by permissions.
    """
    if path.is_dir():
        raise StoreError(f"{path} is a directory, not a SQLite database: give the path of the store's file")
    directory = path.parent
    if not path.exists():
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store's directory {directory}: {exc.strerror or exc}") from exc
    else:
        try:
            with path.open("rb") as handle:
                head = handle.read(len(_SQLITE_HEADER))
        except OSError as exc:
            raise StoreError(f"cannot read the store {path}: {exc.strerror or exc}") from exc
        if head and head != _SQLITE_HEADER:  # an empty file is a new database to SQLite
            raise StoreError(f"{path} is not a SQLite database: point the database URL at the store, or move that file away")
    # SQLite writes its WAL and shared-memory files beside the store, so both must be writable.
    for target in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if target.exists() and not os.access(target, os.W_OK):
            raise _read_only(target)
    if not os.access(directory, os.W_OK):
        raise StoreError(f"the store's directory {directory} is read-only (SQLite writes its journal there): make it writable")


def _read_only(path: Path | str) -> StoreError:
    return StoreError(f"the store {path} is read-only: make it (and its directory) writable, or use a copy")


def _postgresql_read_only(url: str) -> StoreError:
    return StoreError(
        f"the store at {_safe(url)} is read-only (a standby, or default_transaction_read_only): "
        "use the primary server, or a role allowed to write"
    )


def _check_postgresql_writable(engine: Engine, url: str) -> None:
    # A standby (or a read-only default) accepts every read and fails at the first write: say so now.
    from sqlalchemy import text

    with engine.connect() as connection:
        if connection.execute(text("SHOW transaction_read_only")).scalar() == "on":
            raise _postgresql_read_only(url)


def store_error(url: str, exc: DBAPIError) -> StoreError | None:
    """The StoreError for a driver error that means the store cannot be used (None: any other error).

    For callers that write after opening and want one clear line for a store that turned
    read-only, full or unreachable under them (``open_store`` already refuses a store that is
    so when it opens); anything else (a constraint, a bad statement) is a bug and stays as it is.
    """
    orig = exc.orig
    where = _safe(url)
    code = getattr(orig, "sqlite_errorcode", None)
    if code is not None:
        primary = code & 0xFF  # extended codes keep the primary one in the low byte
        path = _sqlite_path(url) or where
        if primary == 8:  # SQLITE_READONLY
            return _read_only(path)
        if primary == 26:  # SQLITE_NOTADB
            return StoreError(f"{path} is not a SQLite database: point the database URL at the store, or move that file away")
        if primary == 11:  # SQLITE_CORRUPT
            return StoreError(f"the store {path} is damaged ({orig}): restore it from a backup")
        if primary == 13:  # SQLITE_FULL
            return StoreError(f"the store {path} cannot grow: the disk is full")
        if primary in (10, 14):  # SQLITE_IOERR, SQLITE_CANTOPEN
            return StoreError(f"cannot use the store {path}: {orig}")
        return None
    state = getattr(orig, "sqlstate", None)
    if state == "25006":  # read_only_sql_transaction
        return _postgresql_read_only(url)
    if state in ("53100", "53200"):  # disk_full, out_of_memory
        return StoreError(f"the store at {where} cannot write: {str(orig).strip().splitlines()[0]}")
    if exc.connection_invalidated or (state or "").startswith(("08", "57P")):
        return StoreError(f"lost the connection to the store at {where}: {str(orig).strip().splitlines()[0]}")
    return None


def _sqlite_engine(url: str, busy_timeout_s: float) -> Engine:
    from sqlalchemy import create_engine, event

    path = _sqlite_path(url)
    if path is not None:
        _check_sqlite_file(path)
    engine = create_engine(url, connect_args={"timeout": busy_timeout_s})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # pragma: no cover - driver glue
        # We issue BEGIN ourselves (below), as pysqlite's implicit transactions
        # cannot take the write lock up front.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # Only a new, empty database takes it (before WAL writes its first page); an existing store
        # keeps its own. 8 KiB pages: a tenth less of a 1M-invoice first import than 4 KiB, as
        # fewer pages of each B-tree go through the WAL (interleaved runs: 7.06 → 6.28 s).
        cursor.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            # A large import holds the store in its rollback journal (_bulk_journal), and puts it back
            # in WAL when it commits: this connection waits on its locks meanwhile (busy timeout).
            if "locked" not in str(exc):
                raise
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):  # pragma: no cover - driver glue
        connection.exec_driver_sql(connection.get_execution_options().get("sqlite_begin", "BEGIN"))

    return engine


def open_store(url: str, *, upgrade: bool = True, busy_timeout_s: float = 30.0) -> Store:
    """Open the store at ``url``; bring its schema to the latest migration unless ``upgrade`` is off."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

    from dunningops.store import migrate

    url = normalise_url(url)
    try:
        if make_url(url).get_backend_name() == "sqlite":
            engine = _sqlite_engine(url, busy_timeout_s)
        else:
            engine = create_engine(url, pool_pre_ping=True)
    except (ArgumentError, SQLAlchemyError, ImportError) as exc:
        raise InvalidInputError(f"cannot use database URL {_safe(url)}: {exc}") from exc
    store = Store(engine=engine, url=url)
    try:
        revision = migrate.current(engine)
        if revision != migrate.HEAD:
            if revision is not None and not migrate.is_known(revision):
                raise StoreError(
                    f"the store at {_safe(url)} was written by a newer dunningops (revision {revision}); "
                    "upgrade dunningops to use it"
                )
            if not upgrade:
                raise StoreError(f"the store at {_safe(url)} needs `dunningops db upgrade`")
            migrate.upgrade(engine)
        if store.dialect == "postgresql":
            _check_postgresql_writable(engine, url)
    except StoreError:
        engine.dispose()
        raise
    except DBAPIError as exc:
        engine.dispose()
        raise (store_error(url, exc) or StoreError(f"cannot open the store at {_safe(url)}: {exc.orig}")) from exc
    return store


def _safe(url: str) -> str:
    """The URL with any password masked, for messages and logs."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid URL>"


def url_from_env_or_default(explicit: str | None, config_dir: Path) -> str:
    return explicit or os.environ.get(ENV_URL) or default_database_url(config_dir)
