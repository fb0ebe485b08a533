"""API tokens (`dunningops token create|list|revoke`): random, shown once, kept as their sha256.

A token belongs to a member of the applied config and has a scope: ``read`` (the GETs) or
``write`` (the upserts too). It stops working when it is revoked or when its member leaves the
config.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, or_, select, update
from sqlalchemy.orm import Session

from dunningops.errors import ConflictError, InvalidInputError, NotFoundError, PermissionDeniedError
from dunningops.store.activity import record_activity
from dunningops.store.schema import MemberRow
from dunningops.store.schema_daemon import ApiTokenRow

__all__ = ["SCOPES", "Principal", "UnauthenticatedError", "check_token", "create_token", "list_tokens", "revoke_token"]

tokens, members = ApiTokenRow.__table__, MemberRow.__table__
SCOPES = ("read", "write")
TOKEN_PREFIX = "dno_"
SHOWN_PREFIX = 12  # "dno_" and 8 characters: enough to tell a member's tokens apart
# last_used_at is written at most this often per token, so that reads do not each take the write lock.
LAST_USED_EVERY = timedelta(minutes=1)


class UnauthenticatedError(PermissionDeniedError):
    """No token, or one that does not (or no longer) work."""

    http_status = 401
    kind = "unauthenticated"


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: the token's member and scope."""

    token_id: int
    member: str
    scope: str

    def can(self, scope: str) -> bool:
        return scope == "read" or self.scope == "write"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(
    session: Session, *, member: str, scope: str, label: str | None, now: datetime, by: str | None = None
) -> tuple[int, str]:
    """A new token for ``member`` (a member of the applied config): its id and the token, shown only now.

    ``by``: the member creating it, for the activity record.
    """
    if scope not in SCOPES:
        raise InvalidInputError(f"unknown scope {scope!r} (read or write)")
    if session.scalar(select(members.c.id).where(members.c.id == member)) is None:
        known = ", ".join(session.scalars(select(members.c.id).order_by(members.c.id))) or "none; run `dunningops apply`"
        raise NotFoundError(f"no member {member!r} in the applied config (members: {known})")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token_id = session.execute(
        insert(tokens)
        .values(
            member_id=member,
            scope=scope,
            token_hash=digest(token),
            prefix=token[:SHOWN_PREFIX],
            label=label,
            created_at=now,
        )
        .returning(tokens.c.id)
    ).scalar_one()
    record_activity(
        session,
        member=by,
        via="cli",
        action="token.create",
        at=now,
        target=f"token #{token_id}",
        details={"member": member, "scope": scope, "label": label},
    )
    return token_id, token


def list_tokens(session: Session) -> list[dict[str, Any]]:
    """Every token (never the token itself): member, scope, label, prefix, dates, and whether its member is still there."""
    query = (
        select(
            tokens.c.id,
            tokens.c.member_id.label("member"),
            tokens.c.scope,
            tokens.c.label,
            tokens.c.prefix,
            tokens.c.created_at,
            tokens.c.last_used_at,
            tokens.c.revoked_at,
            members.c.id.is_not(None).label("member_in_config"),
        )
        .outerjoin(members, members.c.id == tokens.c.member_id)
        .order_by(tokens.c.id)
    )
    return [dict(r) for r in session.execute(query).mappings()]


def revoke_token(session: Session, token_id: int, *, now: datetime, by: str | None = None) -> dict[str, Any]:
    """Revoke token ``token_id`` now: requests with it get 401 from then on."""
    row = session.execute(select(tokens).where(tokens.c.id == token_id).with_for_update()).mappings().first()
    if row is None:
        raise NotFoundError(f"no token #{token_id}")
    if row["revoked_at"] is not None:
        raise ConflictError(f"token #{token_id} was already revoked on {row['revoked_at']:%Y-%m-%d %H:%M} UTC")
    session.execute(update(tokens).where(tokens.c.id == token_id).values(revoked_at=now))
    record_activity(
        session,
        member=by,
        via="cli",
        action="token.revoke",
        at=now,
        target=f"token #{token_id}",
        details={"member": row["member_id"]},
    )
    return {"id": token_id, "member": row["member_id"], "scope": row["scope"], "label": row["label"]}


def check_token(session: Session, token: str) -> tuple[Principal, datetime | None]:
    """The principal ``token`` acts as, and when it was last used; raises UnauthenticatedError."""
    row = (
        session.execute(
            select(
                tokens.c.id,
                tokens.c.member_id,
                tokens.c.scope,
                tokens.c.revoked_at,
                tokens.c.last_used_at,
                members.c.id.label("m"),
            )
            .outerjoin(members, members.c.id == tokens.c.member_id)
            .where(tokens.c.token_hash == digest(token))
        )
        .mappings()
        .first()
    )
    if row is None:
        raise UnauthenticatedError("unknown token")
    if row["revoked_at"] is not None:
        raise UnauthenticatedError("this token was revoked")
    if row["m"] is None:
        raise UnauthenticatedError(f"this token's member {row['member_id']!r} is no longer in the config")
    return Principal(row["id"], row["member_id"], row["scope"]), row["last_used_at"]


def mark_used(session: Session, token_id: int, now: datetime) -> None:
    """Record that the token was used now (at most once per LAST_USED_EVERY)."""
    session.execute(
        update(tokens)
        .where(tokens.c.id == token_id, or_(tokens.c.last_used_at.is_(None), tokens.c.last_used_at < now - LAST_USED_EVERY))
        .values(last_used_at=now)
    )
