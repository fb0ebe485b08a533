"""The apply lock: two applies never interleave.

PostgreSQL: a transaction-scoped advisory lock (released at commit or
rollback, even if the process dies). SQLite: the transaction starts with
BEGIN IMMEDIATE (Store.session(write_lock=True)), which already excludes other
writers; writing the lock row records who holds it.
"""

from __future__ import annotations

import time
from datetime import datetime

from sqlalchemy import text, update
from sqlalchemy.orm import Session

from dunningops.errors import LockError
from dunningops.store.schema import LockRow

# Any constant works; this one spells "dunn" so it is recognisable in pg_locks.
APPLY_LOCK_KEY = 0x64756E6E


def acquire_apply_lock(session: Session, holder: str, now: datetime, timeout_s: float = 30.0) -> None:
    """Take the lock for the rest of ``session``'s transaction, waiting up to ``timeout_s``."""
    if session.get_bind().dialect.name == "postgresql":
        deadline = time.monotonic() + timeout_s
        while not session.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": APPLY_LOCK_KEY}):
            if time.monotonic() >= deadline:
                raise LockError(
                    f"another apply holds the lock (waited {timeout_s:g}s); try again when it has finished"
                )
            time.sleep(0.1)
    session.execute(update(LockRow).where(LockRow.name == "apply").values(holder=holder, acquired_at=now))
