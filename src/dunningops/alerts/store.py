"""The in-app list of alerts (C9): recording the cycles' events, listing, showing, acknowledging,
and where each alert was announced (``channels``).

``channels`` maps a channel to what became of the alert there: ``in_app`` is ``shown`` from the
start; ``email`` and ``slack`` are ``pending`` when recorded (the channels the settings named for
the kind then), ``sending`` while being announced (claimed, so that two processes never announce
it twice), then ``sent``, ``failed: …``, ``unknown`` or ``deferred``. A ``sending`` left by a
process that died stays so: it may or may not have gone, and it is never announced again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, and_, func, or_, select, update
from sqlalchemy.orm import Session

from dunningops.alerts.events import AlertEvent
from dunningops.errors import InvalidInputError, NotFoundError
from dunningops.ledger.queries import Page
from dunningops.spec.models import Alerts
from dunningops.store.bulk import insert_ids
from dunningops.store.schema import AlertRow, CustomerRow, SettingsRow

__all__ = [
    "ANNOUNCED",
    "PENDING",
    "SENDING",
    "ack",
    "ack_all",
    "claim",
    "for_announcing",
    "get",
    "list_alerts",
    "pending",
    "record",
    "set_channel",
    "settings_of",
]

alerts, customers = AlertRow.__table__, CustomerRow.__table__

PENDING = "pending"  # configured when the alert was recorded, not attempted yet
SENDING = "sending"  # claimed by an announce in progress (or one that died: never tried again)
ANNOUNCED = ("email", "slack")  # the channels announce() reaches; in_app needs nothing more

# Long texts from incoming mail (a bounce's diagnostic) stay readable in a table and a Slack line.
MAX_TITLE = 500


def settings_of(session: Session) -> Alerts:
    """The applied ``settings.alerts`` (the defaults when nothing is applied yet)."""
    data = session.scalar(select(SettingsRow.data).where(SettingsRow.id == "settings"))
    return Alerts.model_validate((data or {}).get("alerts") or {})


def _initial_channels(kind: str, settings: Alerts) -> dict[str, str]:
    wanted = settings.channels_for(kind)
    channels = {"in_app": "shown"} if "in_app" in wanted else {}
    channels.update({c: PENDING for c in ANNOUNCED if c in wanted})
    return channels


def record(session: Session, events: Sequence[AlertEvent], *, at: datetime, settings: Alerts | None = None) -> list[int]:
    """Record ``events`` in one statement; returns their ids, in order.

    Args:
        session: the caller's transaction (the alerts commit with what raised them).
        events: the cycles' alert events.
        at: when they were raised.
        settings: where each kind goes; None reads the applied ``settings.alerts``.

    Announcing comes after the caller's commit (``channels.announce``): a rolled-back import
    must not have told Slack anything.
    """
    if not events:
        return []
    settings = settings if settings is not None else settings_of(session)
    rows = [
        {
            "kind": e.kind,
            "customer_id": e.customer_id,
            "contact_email": e.contact_email,
            "inbox_message_id": e.inbox_message_id,
            "message_id": e.message_id,
            "title": _one_line(e.title, MAX_TITLE),
            "details": dict(e.details),
            "channels": _initial_channels(e.kind, settings),
            "created_at": at,
            "acked_at": None,
            "acked_by": None,
        }
        for e in events
    ]
    # One statement for all, their ids in the order given (as the message history records).
    return insert_ids(session, alerts, rows)


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# --- reading ------------------------------------------------------------------------------


def _columns() -> list[Any]:
    return [
        alerts.c.id,
        alerts.c.created_at,
        alerts.c.kind,
        customers.c.external_id.label("customer"),
        customers.c.name.label("customer_name"),
        alerts.c.contact_email,
        alerts.c.title,
        alerts.c.channels,
        alerts.c.acked_at,
        alerts.c.acked_by,
    ]


def list_alerts(
    session: Session,
    *,
    acked: bool | None = False,
    kind: str | None = None,
    customer_external_id: str | None = None,
    limit: int | None = 50,
    offset: int = 0,
) -> Page:
    """Alerts, newest first, as a ``Page`` (its ``total`` counts every alert the filters match).

    ``acked``: False the ones still to acknowledge, True the acknowledged ones, None all.
    """
    if limit is not None and limit < 0:
        raise InvalidInputError(f"limit {limit} is negative (a number of rows, or none for all)")
    if offset < 0:
        raise InvalidInputError(f"offset {offset} is negative (the number of rows to skip)")
    where: list[ColumnElement[bool]] = []
    if acked is not None:
        where.append(alerts.c.acked_at.is_not(None) if acked else alerts.c.acked_at.is_(None))
    if kind:
        where.append(alerts.c.kind == kind)
    if customer_external_id:
        where.append(customers.c.external_id == customer_external_id)
    joined = alerts.outerjoin(customers, customers.c.id == alerts.c.customer_id)
    total = session.scalar(select(func.count()).select_from(joined).where(and_(True, *where))) or 0
    query = select(*_columns()).select_from(joined).where(and_(True, *where)).order_by(alerts.c.id.desc()).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    rows = [dict(r) for r in session.execute(query).mappings()]
    return Page(rows, total=total, offset=offset, limit=limit)


def get(session: Session, alert_id: int) -> dict[str, Any]:
    """One alert with its details, what it is about (message ids) and where it was announced."""
    row = (
        session.execute(
            select(*_columns(), alerts.c.details, alerts.c.inbox_message_id, alerts.c.message_id)
            .select_from(alerts.outerjoin(customers, customers.c.id == alerts.c.customer_id))
            .where(alerts.c.id == alert_id)
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFoundError(f"no alert #{alert_id}")
    return dict(row)


def for_announcing(session: Session, alert_ids: Iterable[int]) -> list[dict[str, Any]]:
    """The alerts ``alert_ids`` with what an announcement shows, in id order (unknown ids left out)."""
    ids = sorted(set(alert_ids))
    if not ids:
        return []
    query = (
        select(*_columns(), alerts.c.details)
        .select_from(alerts.outerjoin(customers, customers.c.id == alerts.c.customer_id))
        .where(alerts.c.id.in_(ids))
        .order_by(alerts.c.id)
    )
    return [dict(r) for r in session.execute(query).mappings()]


def pending(session: Session) -> list[int]:
    """Alerts not yet acknowledged with a channel still to try (``pending``), oldest first.

    What a later ``announce`` picks up when the one after the import did not run (the process
    stopped between the commit and the announcement).
    """
    waiting = or_(*(alerts.c.channels[c].as_string() == PENDING for c in ANNOUNCED))
    return list(session.scalars(select(alerts.c.id).where(alerts.c.acked_at.is_(None), waiting).order_by(alerts.c.id)))


# --- acknowledging ------------------------------------------------------------------------


def ack(session: Session, ids: Sequence[int], *, by: str | None, at: datetime) -> int:
    """Acknowledge the alerts ``ids``; returns how many were newly acknowledged.

    Already acknowledged ones keep who and when. Raises NotFoundError naming the unknown ids
    (and acknowledges none of them then).
    """
    wanted = sorted(set(ids))
    if not wanted:
        return 0
    found = set(session.scalars(select(alerts.c.id).where(alerts.c.id.in_(wanted))))
    missing = [i for i in wanted if i not in found]
    if missing:
        named = ", ".join(f"#{i}" for i in missing)
        raise NotFoundError(f"no alert {named}" if len(missing) == 1 else f"no alerts {named}")
    result = session.execute(
        update(alerts).where(alerts.c.id.in_(wanted), alerts.c.acked_at.is_(None)).values(acked_at=at, acked_by=by)
    )
    return cast(CursorResult, result).rowcount  # an UPDATE's result is a CursorResult


def ack_all(session: Session, *, by: str | None, at: datetime, kind: str | None = None) -> int:
    """Acknowledge every alert still to acknowledge (of ``kind``); returns how many."""
    query = update(alerts).where(alerts.c.acked_at.is_(None)).values(acked_at=at, acked_by=by)
    if kind:
        query = query.where(alerts.c.kind == kind)
    return cast(CursorResult, session.execute(query)).rowcount


# --- where it was announced ---------------------------------------------------------------


def _channels_locked(session: Session, alert_id: int) -> dict[str, str]:
    # FOR UPDATE on PostgreSQL; on SQLite the writer's BEGIN IMMEDIATE already serialises this.
    current = session.scalar(select(alerts.c.channels).where(alerts.c.id == alert_id).with_for_update())
    if current is None:
        raise NotFoundError(f"no alert #{alert_id}")
    return dict(current)


def set_channel(session: Session, alert_id: int, channel: str, outcome: str) -> None:
    """Record what became of alert ``alert_id`` on ``channel`` (``sent``, ``failed: …``, …)."""
    channels = _channels_locked(session, alert_id)
    channels[channel] = outcome
    session.execute(update(alerts).where(alerts.c.id == alert_id).values(channels=channels))


def claim(session: Session, alert_id: int, channel: str) -> bool:
    """Take ``channel`` of an alert for announcing (``sending``) unless it was already tried.

    True: this process announces it. False: another did (or is doing) it, or it was tried and
    its outcome recorded: it is never announced twice on one channel.
    """
    channels = _channels_locked(session, alert_id)
    if channels.get(channel, PENDING) != PENDING:
        return False
    channels[channel] = SENDING
    session.execute(update(alerts).where(alerts.c.id == alert_id).values(channels=channels))
    return True
