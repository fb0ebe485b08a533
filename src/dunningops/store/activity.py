"""What members did (the ``activity`` table): every change made from the console, the API or the CLI."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from dunningops.store.schema import ActivityRow

activity = ActivityRow.__table__


def record_activity(
    session: Session,
    *,
    member: str | None,
    via: str,
    action: str,
    at: datetime,
    target: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """One line of the record, in the caller's transaction (so it exists exactly when the change does).

    Args:
        member: the member's id (None: nobody signed in, e.g. a token-less system action).
        via: console | api | cli | link (a public link: nobody signed in).
        action: a dotted verb, e.g. ``todo.done``, ``inbox.relink``, ``customers.upsert``.
    """
    session.execute(
        insert(activity).values(at=at, member_id=member, via=via, action=action, target=target, details=details or {})
    )


def recent_activity(session: Session, *, limit: int = 100, member: str | None = None) -> list[dict[str, Any]]:
    """The newest lines first."""
    query = select(activity).order_by(activity.c.id.desc()).limit(limit)
    if member:
        query = query.where(activity.c.member_id == member)
    return [dict(r) for r in session.execute(query).mappings()]
