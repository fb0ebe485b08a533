"""T8: the notifications of an incident's opening and closing, each at most once.

Whether one is owed: the incident's own choice (``notify_opened`` / ``notify_closed``), else the
settings' ``incident_opened`` / ``incident_closed`` (``enabled``). It goes through the shared
way out (notify/deliver.py): addressed and rendered with the incident (``@Observations@``) and
its rating link (``@widgetvaluation@``), recorded ``sending`` in a transaction that also claims
it on the incident (``opened_message_id`` / ``closed_message_id``, only while empty), so that
two processes, or a command retried after a crash, never send it twice. Only a ``deferred`` try
(nothing delivered) is sent again, with its Message-ID.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from dunningops.dunning.runconfig import RunConfig
from dunningops.errors import ConflictError, DunningOpsError
from dunningops.notify import deliver
from dunningops.outgoing import NotClaimed, Recorded
from dunningops.outgoing.history import settled
from dunningops.store.engine import Store
from dunningops.store.meta import signing_key
from dunningops.store.schema import IncidentRow, InvoiceRow, MessageRow

__all__ = ["EVENTS", "Result", "owed", "pending", "send", "send_owed"]

incidents, invoices, messages = IncidentRow.__table__, InvoiceRow.__table__, MessageRow.__table__
EVENTS = ("opened", "closed")
SETTING = {"opened": "incident_opened", "closed": "incident_closed"}
WHAT = {"opened": "opening", "closed": "closing"}


@dataclass(frozen=True)
class Result:
    """What became of one incident notification.

    ``status``: sent | failed | unknown | deferred (as the history says) | off (not wanted) |
    not_sent (wanted, but it could not be: ``reason``) | already (recorded before: never sent again) |
    owed (``pending``: it would be sent now).
    """

    event: str
    status: str
    reason: str | None = None
    to: tuple[str, ...] = ()
    message_id: int | None = None  # the history row

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "status": self.status,
            "reason": self.reason,
            "to": list(self.to),
            "message_id": self.message_id,
        }

    @property
    def line(self) -> str:
        """In a sentence, as the CLI and the console say it."""
        what = f"The {WHAT[self.event]} notification"
        to = f" to {', '.join(self.to)}" if self.to else ""
        return {
            "sent": f"{what} was sent{to}.",
            "off": f"No {WHAT[self.event]} notification: {self.reason}.",
            "not_sent": f"{what} was not sent: {self.reason}.",
            "failed": f"{what} was refused by the mail server{to}: {self.reason}.",
            "unknown": f"{what} may have reached the mail server{to} (no clear answer): it is not sent again.",
            "deferred": f"{what} was not delivered this time{to} ({self.reason}); it can be sent again.",
            "already": f"{what} was recorded before ({self.reason}): it is not sent again.",
            "owed": f"{what} is not sent yet{to}.",
        }.get(self.status, f"{what}: {self.status}.")


def owed(notify: bool | None, config: RunConfig, event: str) -> tuple[bool, str | None]:
    """Whether the notification is wanted, and why not: the incident's choice, else the settings'."""
    setting = getattr(config.settings.notifications, SETTING[event])
    if notify is False:
        return False, "turned off for this incident"
    if notify is None and (setting is None or not setting.enabled):
        return False, "off by default in the settings" if setting is not None else "none is set up in the settings"
    return True, None


@dataclass(frozen=True)
class _Prepared:
    ready: deliver.Ready
    template: str
    reuse: int | None


def _prepare(session: Session, config: RunConfig, incident_id: int, event: str, at: datetime) -> Result | _Prepared:
    """The notification addressed and rendered, or why it is not sent (off, not sent, already)."""
    column = incidents.c[f"{event}_message_id"]
    row = session.execute(
        select(
            incidents.c.id,
            incidents.c.customer_id,
            incidents.c.invoice_id,
            incidents.c.reference,
            incidents.c.observations,
            incidents.c.state,
            incidents.c.opened_at,
            incidents.c.closed_at,
            incidents.c[f"notify_{event}"].label("notify"),
            column.label("message_id"),
            invoices.c.number.label("invoice_number"),
        )
        .outerjoin(invoices, invoices.c.id == incidents.c.invoice_id)
        .where(incidents.c.id == incident_id)
    ).one()
    reuse = None
    if row.message_id is not None:
        before = _message(session, row.message_id)
        if before is None or before["status"] != "deferred":
            return Result(event, "already", _described(row.message_id, before), message_id=row.message_id)
        reuse = row.message_id  # nothing of it was delivered: sent again, with its Message-ID
    wanted, why = owed(row.notify, config, event)
    if not wanted:
        return Result(event, "off", why)
    if event == "closed" and row.state != "closed":
        return Result(event, "not_sent", "the incident is still open")
    setting = getattr(config.settings.notifications, SETTING[event])
    if setting is None:
        return Result(event, "not_sent", f"no {WHAT[event]} notification is set up in the settings")
    notice = deliver.Notice(
        row.customer_id,
        invoice_ids=[row.invoice_id] if row.invoice_id is not None else [],
        extra={"incident": _incident(row, config), "rating_url": _rating_url(session, config, row.id, at)},
        reuse_id=reuse,
    )
    (prepared,) = deliver.prepare(
        session, config, [notice], template=setting.template, sender_ref=setting.from_, to=setting.to, cc=setting.cc, at=at
    )
    if isinstance(prepared, deliver.Skipped):
        return Result(event, "not_sent", prepared.reason)
    return _Prepared(prepared, setting.template, reuse)


def pending(session: Session, config: RunConfig, incident_id: int, *, at: datetime) -> list[Result]:
    """What each notification not sent yet would be now: ``owed`` (it would be sent: ``to``), or why not."""
    state = session.scalar(select(incidents.c.state).where(incidents.c.id == incident_id))
    out = []
    for event in EVENTS if state == "closed" else EVENTS[:1]:
        found = _prepare(session, config, incident_id, event, at)
        if isinstance(found, _Prepared):
            out.append(Result(event, "owed", to=tuple(c.email for c in found.ready.recipients.to)))
        elif found.status != "already":
            out.append(found)
    return out


def send(store: Store, incident_id: int, event: str, *, at: datetime, transport_factory: Callable[[Any], Any] | None) -> Result:
    """Send the incident's ``event`` (opened | closed) notification if it is owed and not recorded yet."""
    assert event in EVENTS
    column = incidents.c[f"{event}_message_id"]
    with store.session() as session:
        try:
            config = RunConfig.from_store(session)
        except ConflictError as exc:  # no config applied yet: the incident stands, its notification waits
            return Result(event, "not_sent", str(exc))
        found = _prepare(session, config, incident_id, event, at)
    if isinstance(found, Result):
        return found
    if transport_factory is None:
        return Result(event, "not_sent", "there was no way to send it (no mail transport)")
    prepared, reuse = found.ready, found.reuse
    to = tuple(c.email for c in prepared.recipients.to)
    claimed: list[int] = []

    def claim(session: Session, recorded: list[Recorded]) -> None:
        # At most once: the claim commits with the `sending` row; a second sender finds it taken.
        (rec,) = recorded
        taken = column.is_(None) if reuse is None else column == reuse
        done = session.execute(update(incidents).where(incidents.c.id == incident_id, taken).values({column.name: rec.id}))
        if cast(CursorResult, done).rowcount != 1:
            raise NotClaimed
        claimed.append(rec.id)

    try:
        outcomes = deliver.send(
            store, config, [prepared], template=found.template, at=at, transport_factory=transport_factory, reserve=claim
        )
    except ConflictError as exc:  # the sending caps (or another process at the same moment): nothing left
        return Result(event, "not_sent", str(exc), to)
    except DunningOpsError as exc:  # the transport or the store failed: the history says what happened
        if not claimed:
            return Result(event, "not_sent", str(exc), to)
        with store.session() as session:
            after = _message(session, claimed[0])
        status = after["status"] if after and after["status"] != "sending" else "unknown"
        return Result(event, status, str(exc), to, claimed[0])
    if not outcomes:
        with store.session() as session:
            taken_id = session.scalar(select(column).where(incidents.c.id == incident_id))
            before = _message(session, taken_id) if taken_id is not None else None
        return Result(event, "already", _described(taken_id, before), message_id=taken_id)
    (outcome,) = outcomes
    reason = None if outcome.status == "sent" else outcome.problem or None
    return Result(event, outcome.status, reason, to, outcome.recorded.id)


def send_owed(store: Store, reference: str, *, at: datetime, transport_factory: Callable[[Any], Any] | None) -> list[Result]:
    """The notifications an incident is owed and that were never sent (e.g. after an interruption),
    opening first; one recorded before, even as possibly sent, is never sent again.

    Raises:
        NotFoundError: no such incident.
    """
    from dunningops.errors import NotFoundError

    with store.session() as session:
        row = session.execute(select(incidents.c.id, incidents.c.state).where(incidents.c.reference == reference)).first()
    if row is None:
        raise NotFoundError(f"no incident {reference!r}")
    events = EVENTS if row.state == "closed" else EVENTS[:1]
    return [send(store, row.id, e, at=at, transport_factory=transport_factory) for e in events]


def _incident(row: Any, config: RunConfig) -> dict[str, Any]:
    tz = ZoneInfo(config.settings.company.timezone)
    return {
        "reference": row.reference,
        "observations": row.observations,
        "state": row.state,
        "opened_on": row.opened_at.astimezone(tz).date(),
        "closed_on": row.closed_at.astimezone(tz).date() if row.closed_at else None,
        "invoice_number": row.invoice_number,
    }


def _rating_url(session: Session, config: RunConfig, incident_id: int, at: datetime) -> str | None:
    from dunningops.incidents import ratings

    return ratings.rating_url(config.settings, signing_key(session), incident_id, at)


def _message(session: Session, message_id: int) -> dict[str, Any] | None:
    with settled(session) as shown:
        row = (
            session.execute(
                select(messages.c.id, messages.c.created_at, messages.c.to_addresses, shown.label("status")).where(
                    messages.c.id == message_id
                )
            )
            .mappings()
            .first()
        )
    return dict(row) if row else None


def _described(message_id: int | None, message: dict[str, Any] | None) -> str:
    if message is None:
        return f"message #{message_id}" if message_id is not None else "by another process"
    return f"message #{message['id']}, {message['status']}, {message['created_at']:%Y-%m-%d %H:%M} UTC"
