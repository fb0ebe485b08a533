"""Opening the store: URL resolution, engine set-up per dialect, automatic migration on first use."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from dunningops.errors import InvalidInputError, StoreError
from dunningops.store import migrate

ENV_URL = "DUNNINGOPS_DATABASE_URL"


def repo_root_of(config_dir: Path) -> Path:
    """The git work tree holding the config, else the config directory's parent."""
    config_dir = config_dir.resolve()
    try:
        out = subprocess.run(
            ["git", "-C", str(config_dir), "rev-parse", "--show-toplevel"],
            capture_output=True, text=True, check=True, timeout=10,
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
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


@dataclass
class Store:
    """An opened, migrated store."""

    engine: Engine
    url: str

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self, *, write_lock: bool = False) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back on any error.

        ``write_lock`` on SQLite starts the transaction with BEGIN IMMEDIATE, so
        that a second writer waits (busy timeout) instead of failing mid-way.
        """
        connection = self.engine.connect()
        if write_lock and self.dialect == "sqlite":
            connection = connection.execution_options(sqlite_begin="BEGIN IMMEDIATE")
        try:
            with Session(bind=connection, expire_on_commit=False) as session, session.begin():
                yield session
        finally:
            connection.close()

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_engine(url: str, busy_timeout_s: float) -> Engine:
    path = make_url(url).database
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": busy_timeout_s})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # pragma: no cover - driver glue
        # We issue BEGIN ourselves (below), as pysqlite's implicit transactions
        # cannot take the write lock up front.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):  # pragma: no cover - driver glue
        connection.exec_driver_sql(connection.get_execution_options().get("sqlite_begin", "BEGIN"))

    return engine


def open_store(url: str, *, upgrade: bool = True, busy_timeout_s: float = 30.0) -> Store:
    """Open the store at ``url``; bring its schema to the latest migration unless ``upgrade`` is off."""
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
        if upgrade:
            migrate.upgrade_if_needed(engine)
        elif not migrate.is_current(engine):
            raise StoreError(f"the store at {_safe(url)} needs `dunningops db upgrade`")
    except OperationalError as exc:
        engine.dispose()
        raise StoreError(f"cannot open the store at {_safe(url)}: {exc.orig}") from exc
    return store


def _safe(url: str) -> str:
    """The URL with any password masked, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid URL>"


def url_from_env_or_default(explicit: str | None, config_dir: Path) -> str:
    return explicit or os.environ.get(ENV_URL) or default_database_url(config_dir)
