"""Runners: the processes that send or claim work on a store, and how to tell a live one from a dead one.

Every process that records a message ``sending`` or claims a due step does so as a *runner*: a
row in ``runners`` whose id the process picked itself, and a lock keyed by that id which the
process holds for its whole life, taken *before* the row is written (PostgreSQL: a session-level
advisory lock on a connection of its own, with TCP keepalives so that a vanished machine's lock
goes within half a minute; SQLite: ``flock`` on a file beside the database). The kernel or the
server drops the lock when the process dies, however it dies, so:

* a ``sending`` message or a ``claimed`` action whose runner's lock nobody holds belongs to a dead
  process: the message may have left (``unknown``, never re-sent), the claim is released (due
  again: nothing was recorded for it);
* rows of runners still alive are never touched by anyone else: each runner finishes its own.

Ids are never reused: a dead runner's row stays (its id names its rows in the history).
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, insert, text, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from dunningops.errors import StoreError
from dunningops.store.lock import _AdvisoryLock, _FileLock, _NoLock, _sqlite_file
from dunningops.store.schema import RunnerRow

__all__ = ["Runner", "live_runners", "register", "runner_of"]

runners = RunnerRow.__table__

# The high 32 bits of the runners' advisory-lock keys ("du" and a marker); the low 32 bits are the id.
RUNNER_LOCK_CLASS = 0x6475FFFF
_ATTEMPTS = 20
# PostgreSQL's side of the liveness connection: a peer silent for 10 s is probed every 5 s, and
# dropped (with its lock) after 3 unanswered probes.
_KEEPALIVES = ("SET tcp_keepalives_idle = 10", "SET tcp_keepalives_interval = 5", "SET tcp_keepalives_count = 3")
_registering = threading.Lock()


@dataclass
class Runner:
    """This process on one store: its id, and the lock that says it is alive."""

    id: int
    kind: str
    store: object
    _lock: _AdvisoryLock | _FileLock | _NoLock = field(repr=False)
    closed: bool = False

    def close(self) -> None:
        """A clean stop: the row says when, then the lock goes (its rows were all finished or released)."""
        if self.closed:
            return
        self.closed = True
        try:
            with self.store.session() as session:  # type: ignore[attr-defined]
                session.execute(update(runners).where(runners.c.id == self.id).values(stopped_at=datetime.now(UTC)))
        except SQLAlchemyError:
            pass  # the row only informs; liveness is the lock
        self._lock.release()
        path = getattr(self._lock, "path", None)
        if path is not None:
            _unlink(path)


def _runner_lock(engine: Engine, runner_id: int) -> _AdvisoryLock | _FileLock | _NoLock:
    if engine.dialect.name == "postgresql":
        return _KeptAliveLock(engine, (RUNNER_LOCK_CLASS << 32) | runner_id)
    folder = _folder(engine)
    if folder is None:
        return _NoLock()  # an in-memory store lives and dies with this one process
    return _FileLock(folder / f"{runner_id}.lock")


def _folder(engine: Engine) -> Path | None:
    """SQLite: the folder of the runners' lock files, beside the database (None: in memory)."""
    beside = _sqlite_file(engine, "runners")  # <database>.runners.lock
    return beside.with_name(beside.name.removesuffix(".lock")) if beside else None


class _KeptAliveLock(_AdvisoryLock):
    """The advisory lock on a connection whose peer PostgreSQL probes (so a dead machine's lock expires)."""

    def acquire(self, *, shared: bool = False, wait: bool = True) -> bool:
        got = super().acquire(shared=shared, wait=wait)
        if got and self.connection is not None and self.engine.url.host not in (None, "", "localhost"):
            for statement in _KEEPALIVES:  # no effect (and no error) over a Unix socket
                self.connection.execute(text(statement))
        return got


def register(store, kind: str) -> Runner:
    """Register this process as a runner of ``store`` (kind: daemon | run | command) and make it the store's.

    Raises:
        StoreError: no free id could be locked (should never happen), or the store refused the row.
    """
    with _registering:
        if store.runner is not None and not store.runner.closed:
            store.runner.close()
        engine = store.engine
        folder = _folder(engine) if engine.dialect.name == "sqlite" else None
        if folder is not None:
            folder.mkdir(exist_ok=True)
        for _ in range(_ATTEMPTS):
            runner_id = secrets.randbelow(2**31 - 2) + 1
            lock = _runner_lock(engine, runner_id)
            if not lock.acquire(wait=False):
                continue  # a live process has this id
            try:
                with store.session() as session:
                    session.execute(
                        insert(runners).values(
                            id=runner_id,
                            kind=kind,
                            host=socket.gethostname()[:255],
                            pid=os.getpid(),
                            started_at=datetime.now(UTC),
                        )
                    )
            except IntegrityError:
                lock.release()  # a dead runner had this id: ids are never reused
                continue
            except BaseException:
                lock.release()
                raise
            store.runner = Runner(runner_id, kind, store, lock)
            return store.runner
        raise StoreError("could not register this process as a runner of the store (no free id)")


def runner_of(store, kind: str = "command") -> Runner:
    """The store's runner in this process, registered on first use."""
    runner = store.runner
    if runner is None or runner.closed:
        runner = register(store, kind)
    return runner


def live_runners(session: Session, candidates: Iterable[int | None]) -> set[int]:
    """Which of ``candidates`` (runner ids; None: rows from before runners existed) are alive now."""
    wanted = {c for c in candidates if c is not None}
    if not wanted:
        return set()
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        rows = session.execute(
            text(
                "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
                "AND classid = CAST(:cls AS oid) AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ),
            {"cls": RUNNER_LOCK_CLASS},
        )
        return wanted & {int(r[0]) for r in rows}
    engine = bind.engine
    alive = set()
    for runner_id in wanted:
        lock = _runner_lock(engine, runner_id)
        if isinstance(lock, _NoLock):
            alive.add(runner_id)
            continue
        assert isinstance(lock, _FileLock)
        if not lock.path.exists():
            continue
        # flock conflicts between open files even within one process: our own runner reads as alive.
        if not lock.acquire(wait=False):
            alive.add(runner_id)  # held: by its live process
        else:
            lock.release()
            _unlink(lock.path)
    return alive


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
