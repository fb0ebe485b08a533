"""Locks between processes sharing one store: the apply lock, the send-cycle run lock, the
import-cycle lock and the daemon lock.

* The apply lock: two applies never interleave. PostgreSQL: a transaction-scoped advisory lock
  (released at commit or rollback, even if the process dies). SQLite: the transaction starts
  with BEGIN IMMEDIATE (Store.session(write_lock=True)), which already excludes other writers;
  writing the lock row records who holds it.
* The run lock (``send_cycle_lock``): one send cycle at a time on a store, held for the whole
  run. PostgreSQL: a session-level advisory lock on a dedicated connection; SQLite: an OS file
  lock (``flock``) on a file beside the database. Both go when the process dies, so a killed
  run never leaves a stale lock behind. The ``send`` row of ``locks`` says who holds it, since when.
  On PostgreSQL the run lock is taken *shared*: send cycles (several daemons, a `run send` from
  cron) run side by side and share the due steps by claiming them (dunning/claims.py); only the
  ending of pauses is done by one of them at a time (``pause_ends_lock``).
* The daemon lock (``daemon_lock``): on SQLite, one daemon per store.

Which process wrote a ``sending`` message or a ``claimed`` step, and whether it is still alive,
is store/runners.py's business.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, Engine, insert, select, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from dunningops.errors import LockError, StoreError
from dunningops.store.schema import LockRow

# Any constant works; this one spells "dunn" so it is recognisable in pg_locks.
APPLY_LOCK_KEY = 0x64756E6E
SEND_CYCLE_LOCK_KEY = 0x64756E6E0002
PAUSE_ENDS_LOCK_KEY = 0x64756E6E0003
IMPORT_CYCLE_LOCK_KEY = 0x64756E6E0004
POLL_S = 0.1


def acquire_apply_lock(session: Session, holder: str, now: datetime, timeout_s: float = 30.0) -> None:
    """Take the lock for the rest of ``session``'s transaction, waiting up to ``timeout_s``."""
    if session.get_bind().dialect.name == "postgresql":
        deadline = time.monotonic() + timeout_s
        while not session.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": APPLY_LOCK_KEY}):
            if time.monotonic() >= deadline:
                raise LockError(f"another apply holds the lock (waited {timeout_s:g}s); try again when it has finished")
            time.sleep(0.1)
    session.execute(update(LockRow).where(LockRow.name == "apply").values(holder=holder, acquired_at=now))


# --- where the locks live ---------------------------------------------------------------


def _engine(bind: Engine | Connection) -> Engine:
    return bind.engine if isinstance(bind, Connection) else bind


def _sqlite_file(engine: Engine, suffix: str) -> Path | None:
    """The lock file beside a SQLite database; None for an in-memory one (one process only)."""
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(f"{database}.{suffix}.lock")


class _FileLock:
    """``flock`` on a file: released by the kernel when the process dies, whatever the death."""

    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None

    def acquire(self, *, shared: bool = False, wait: bool = True) -> bool:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except PermissionError:
            try:  # flock needs no write access: a reader (`status`) may open it read-only
                fd = os.open(self.path, os.O_RDONLY)
            except OSError as exc:
                raise StoreError(f"cannot open the lock file {self.path}: {exc.strerror}") from None
        except OSError as exc:
            raise StoreError(f"cannot open the lock file {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)  # closing the last descriptor releases the lock


class _AdvisoryLock:
    """A PostgreSQL session-level advisory lock on a connection of its own (released if the process dies)."""

    def __init__(self, engine: Engine, key: int):
        self.engine, self.key = engine, key
        self.connection: Connection | None = None
        self.shared = False

    def acquire(self, *, shared: bool = False, wait: bool = True) -> bool:
        connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        function = (
            ("pg_advisory_lock_shared" if shared else "pg_advisory_lock")
            if wait
            else ("pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock")
        )
        try:
            got = connection.scalar(text(f"SELECT {function}(:key)"), {"key": self.key})
        except BaseException:
            connection.close()
            raise
        if wait or got:
            self.connection, self.shared = connection, shared
            return True
        connection.close()
        return False

    def release(self) -> None:
        if self.connection is None:
            return
        connection, self.connection = self.connection, None
        try:
            connection.scalar(
                text(f"SELECT {'pg_advisory_unlock_shared' if self.shared else 'pg_advisory_unlock'}(:key)"), {"key": self.key}
            )
        except SQLAlchemyError:
            connection.invalidate()  # a pooled connection must never keep the lock
        finally:
            connection.close()


class _NoLock:
    """An in-memory SQLite store lives in one process: nothing to exclude."""

    def acquire(self, *, shared: bool = False, wait: bool = True) -> bool:
        return True

    def release(self) -> None:
        pass


def _lock(bind: Engine | Connection, key: int, suffix: str) -> _FileLock | _AdvisoryLock | _NoLock:
    engine = _engine(bind)
    if engine.dialect.name == "postgresql":
        return _AdvisoryLock(engine, key)
    path = _sqlite_file(engine, suffix)
    return _FileLock(path) if path else _NoLock()


# --- the send-cycle run lock --------------------------------------------------------------


def _holder() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}"


def _acquire_within(lock: _FileLock | _AdvisoryLock | _NoLock, timeout_s: float, refusal: Callable[[], str]) -> None:
    deadline = time.monotonic() + max(0.0, timeout_s)
    while not lock.acquire(wait=False):
        if time.monotonic() >= deadline:
            raise LockError(refusal())
        time.sleep(POLL_S)


@contextmanager
def send_cycle_lock(store, *, timeout_s: float = 30.0) -> Iterator[None]:
    """Hold the send-cycle run lock for the block. SQLite: exclusive, waiting up to ``timeout_s`` for
    another run to end. PostgreSQL: shared, at once (cycles side by side share the due steps).

    Raises:
        LockError: SQLite: another send cycle still held it after ``timeout_s``; nothing was done.
    """
    lock = _lock(store.engine, SEND_CYCLE_LOCK_KEY, "send-cycle")
    if isinstance(lock, _AdvisoryLock):
        lock.acquire(shared=True)  # side by side: the claims keep them apart
    else:
        _acquire_within(
            lock, timeout_s, lambda: f"another send cycle is running on this store ({_who_runs(store.engine)}); nothing was sent"
        )
    try:
        _write_holder(store, _holder(), datetime.now(UTC))
        yield
    finally:
        try:
            _write_holder(store, None, None)
        except SQLAlchemyError:
            pass  # the row only informs; the lock itself goes below
        lock.release()


@contextmanager
def import_cycle_lock(store, *, timeout_s: float = 30.0) -> Iterator[None]:
    """Hold the import-cycle lock for the block: two imports of one store at once would read the
    same new mail and both try to act on it (the de-duplication key would then fail one of them).

    Raises:
        LockError: another import cycle still held it after ``timeout_s``; nothing was imported.
    """
    lock = _lock(store.engine, IMPORT_CYCLE_LOCK_KEY, "import-cycle")
    _acquire_within(lock, timeout_s, lambda: "another import cycle is running on this store; nothing was imported")
    try:
        yield
    finally:
        lock.release()


def pause_ends_lock(session: Session) -> bool:
    """PostgreSQL: whether this transaction may end the pauses past their date (one send cycle at a
    time does it; the others skip it). SQLite: always (the run lock already excludes other cycles)."""
    if session.get_bind().dialect.name != "postgresql":
        return True
    return bool(session.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": PAUSE_ENDS_LOCK_KEY}))


def _write_holder(store, holder: str | None, since: datetime | None) -> None:
    # Wall-clock time, not the run's injected instant: it tells an operator how long the run has lasted.
    with store.session(write_lock=True) as session:
        done = session.execute(update(LockRow).where(LockRow.name == "send").values(holder=holder, acquired_at=since)).rowcount
        if not done:
            session.execute(insert(LockRow).values(name="send", holder=holder, acquired_at=since))


def _who_runs(engine: Engine) -> str:
    try:
        with engine.connect() as connection:
            row = connection.execute(select(LockRow.holder, LockRow.acquired_at).where(LockRow.name == "send")).first()
    except SQLAlchemyError:
        row = None
    if row is None or row.acquired_at is None:
        return "started just now"
    since = row.acquired_at if row.acquired_at.tzinfo else row.acquired_at.replace(tzinfo=UTC)
    return f"since {since.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC, {row.holder}"


def send_cycle_holder(bind: Engine | Connection) -> str | None:
    """Who runs a send cycle now ("since …, pid … on …"), or None when no run holds the lock."""
    lock = _lock(bind, SEND_CYCLE_LOCK_KEY, "send-cycle")
    if lock.acquire(wait=False):
        lock.release()
        return None
    return _who_runs(_engine(bind))


# --- the daemon lock ---------------------------------------------------------------------


@contextmanager
def daemon_lock(store) -> Iterator[None]:
    """SQLite: one daemon per store (a second one is refused at once). PostgreSQL: daemons share the work.

    Raises:
        LockError: on SQLite, another daemon runs on this store.
    """
    engine = store.engine
    if engine.dialect.name == "postgresql":
        yield
        return
    path = _sqlite_file(engine, "daemon")
    lock: _FileLock | _NoLock = _FileLock(path) if path else _NoLock()
    if not lock.acquire(wait=False):
        raise LockError(
            "another daemon is already running on this store; on SQLite one daemon runs at a time "
            "(several daemons share the work on PostgreSQL)"
        )
    try:
        yield
    finally:
        lock.release()
