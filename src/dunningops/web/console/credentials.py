"""Members' console passwords: hashed with argon2id (argon2-cffi), kept in ``member_credentials``.

The config names the members; a password is never in it. `dunningops member set-password` writes
the hash here, the sign-in form checks it. Setting a password ends the member's open sessions.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from dunningops.dunning.runconfig import RunConfig
from dunningops.errors import InvalidInputError, NotFoundError
from dunningops.store.schema import ConsoleSessionRow, CredentialRow

credentials, sessions = CredentialRow.__table__, ConsoleSessionRow.__table__

MIN_LENGTH = 12
MAX_LENGTH = 1024  # hashing a megabyte would be a cheap way to keep the server busy

# argon2-cffi's defaults (argon2id, RFC 9106's low-memory profile), upgraded as the library's are.
_hasher = PasswordHasher()
# Checked against when the member has no password, so that a wrong name costs as long as a wrong password.
_DUMMY = _hasher.hash("not a password: nobody signs in with it")


def find_member(config: RunConfig, who: str) -> str | None:
    """The id of the member ``who`` names (their id, or their email in any case), if in the applied config."""
    who = who.strip()
    if who in config.members:
        return who
    lowered = who.lower()
    return next((mid for mid, m in sorted(config.members.items()) if str(m["email"]).lower() == lowered), None)


def check_password(password: str) -> None:
    """Refuse a password too short (or absurdly long) to be one."""
    if len(password) < MIN_LENGTH:
        raise InvalidInputError(f"the password is {len(password)} characters long: at least {MIN_LENGTH}, please")
    if len(password) > MAX_LENGTH:
        raise InvalidInputError(f"the password is {len(password):,} characters long: at most {MAX_LENGTH:,}")


def set_password(session: Session, config: RunConfig, who: str, password: str, *, now: datetime) -> dict[str, Any]:
    """Hash and store ``who``'s password (replacing any); their open sessions end. Returns the member and how many ended.

    Raises:
        NotFoundError: ``who`` is not a member of the applied config.
        InvalidInputError: the password is under 12 characters (or over 1,024).
    """
    member = find_member(config, who)
    if member is None:
        raise NotFoundError(f"no member {who!r} in the applied config (members are set in the config, then applied)")
    check_password(password)
    digest = _hasher.hash(password)
    changed = session.execute(
        update(credentials).where(credentials.c.member_id == member).values(password_hash=digest, updated_at=now)
    )
    if not changed.rowcount:  # type: ignore[attr-defined]  # an UPDATE's result is a CursorResult
        session.execute(insert(credentials).values(member_id=member, password_hash=digest, updated_at=now))
    ended = session.execute(delete(sessions).where(sessions.c.member_id == member)).rowcount  # type: ignore[attr-defined]
    return {"member": member, "sessions_ended": ended}


def verify_password(session: Session, member: str | None, password: str) -> bool:
    """Whether ``password`` is ``member``'s; a hash made with older parameters is upgraded on the way."""
    stored = None
    if member is not None:
        stored = session.scalar(select(credentials.c.password_hash).where(credentials.c.member_id == member))
    if stored is None or len(password) > MAX_LENGTH:
        try:
            _hasher.verify(_DUMMY, password[:MAX_LENGTH] or "x")
        except VerificationError:
            pass
        return False
    try:
        _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False
    if _hasher.check_needs_rehash(stored):
        session.execute(update(credentials).where(credentials.c.member_id == member).values(password_hash=_hasher.hash(password)))
    return True


def members_and_passwords(session: Session, config: RunConfig, *, now: datetime) -> list[dict[str, Any]]:
    """Every member of the applied config: whether they have a password (and since when), their open sessions."""
    changed = dict(session.execute(select(credentials.c.member_id, credentials.c.updated_at)).all())
    open_sessions: dict[str, int] = dict(
        session.execute(
            select(sessions.c.member_id, func.count()).where(sessions.c.expires_at > now).group_by(sessions.c.member_id)
        ).all()
    )
    return [
        {
            "id": mid,
            "name": m["name"],
            "email": m["email"],
            "role": m["role"],
            "password_set_at": changed.get(mid),
            "sessions": open_sessions.get(mid, 0),
        }
        for mid, m in sorted(config.members.items())
    ]
