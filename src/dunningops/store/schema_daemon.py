"""Tables of the running service: the processes that send (runners), the team console's
credentials and sessions, the API's tokens, and what members did (activity).

Kept beside ``schema.py`` (same ``Base``, same naming convention); ``schema.py`` re-exports them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dunningops.store.schema import Base, _ts


class RunnerRow(Base):
    """A process that sends or claims work (a daemon, `run send`, a one-off command).

    The id is chosen by the process itself and the process holds a lock keyed by it for its whole
    life (PostgreSQL: an advisory lock; SQLite: a file lock), taken *before* the row is written:
    a row whose lock nobody holds belongs to a dead process (store/runners.py).
    """

    __tablename__ = "runners"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(16))  # daemon | run | command
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = _ts()
    stopped_at: Mapped[datetime | None] = _ts()  # a clean stop; a dead process leaves it empty


class CredentialRow(Base):
    """A member's console password, hashed (argon2id); never in the config."""

    __tablename__ = "member_credentials"
    member_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    password_hash: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = _ts()


class ConsoleSessionRow(Base):
    """A signed-in member's console session; the cookie holds a random token, this row its digest."""

    __tablename__ = "console_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the cookie's token
    member_id: Mapped[str] = mapped_column(String(63), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = _ts()
    expires_at: Mapped[datetime] = _ts()
    last_seen_at: Mapped[datetime] = _ts()


class ApiTokenRow(Base):
    """A token for /api/v1 (`dunningops token create`): only its digest is kept."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    member_id: Mapped[str] = mapped_column(String(63), index=True)
    scope: Mapped[str] = mapped_column(String(8))  # read | write
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # the token's first characters, to tell tokens apart
    label: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _ts()
    last_used_at: Mapped[datetime | None] = _ts()
    revoked_at: Mapped[datetime | None] = _ts()


class ActivityRow(Base):
    """What a member did, from the console, the API or the CLI: who, when, what, on what."""

    __tablename__ = "activity"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = _ts()
    member_id: Mapped[str | None] = mapped_column(String(63), index=True)
    via: Mapped[str] = mapped_column(String(12))  # console | api | cli | link (a public link, nobody signed in)
    action: Mapped[str] = mapped_column(String(48))  # e.g. todo.done, inbox.relink, customers.upsert
    target: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict] = mapped_column(JSON)
