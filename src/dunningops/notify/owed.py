"""A9: the portal notifications a ledger import owes, in its own transaction (``owe``), and the
bookkeeping of the rows owed (pending ones, interrupted sends). Pure SQL: the ledger's writes call
it; sending them is portal.py's."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, and_, case, exists, func, insert, literal, or_, select, update
from sqlalchemy.orm import Session

from dunningops.dunning.calendar import SendingCalendar
from dunningops.dunning.runconfig import RunConfig
from dunningops.spec.notices import PortalNotice
from dunningops.store.schema import InvoiceRow, MessageRow, PaymentRow
from dunningops.store.schema_notices import PortalNotificationRow

notices, payments, invoices = PortalNotificationRow.__table__, PaymentRow.__table__, InvoiceRow.__table__
messages = MessageRow.__table__
# A payments file's kind → the notification it owes (a credit note owes none).
KINDS = {"payment": "payment_receipt", "failed": "payment_failed"}


def owe(session: Session, *, created_after: int, at: datetime) -> int:
    """In the import's transaction: a ``pending`` row for each payment created in it (id above
    ``created_after``) whose notification the applied config enables, dated within its
    ``max_age_days``; one INSERT … SELECT. Returns how many are owed."""
    config = RunConfig.from_store(session)
    today = SendingCalendar(config.settings).local(at).date()
    wanted = []
    for payment_kind, name in KINDS.items():
        notice: PortalNotice | None = getattr(config.settings.notifications, name)
        if notice is not None and notice.enabled:
            cutoff = today - timedelta(days=notice.max_age_days)
            wanted.append((payment_kind, name, and_(payments.c.kind == payment_kind, payments.c.paid_on >= cutoff)))
    if not wanted:
        return 0
    source = (
        select(
            payments.c.id.label("payment_id"),
            invoices.c.customer_id,
            case(*((payments.c.kind == k, literal(n)) for k, n, _ in wanted)).label("kind"),
            literal("pending").label("status"),
            literal(at, notices.c.created_at.type).label("created_at"),
        )
        .join(invoices, invoices.c.id == payments.c.invoice_id)
        .where(
            payments.c.id > created_after,
            or_(*(cond for _, _, cond in wanted)),
            ~exists().where(notices.c.payment_id == payments.c.id),
        )
    )
    # psycopg reports no rowcount for INSERT … SELECT: count first (as ledger/writes.py does).
    owed = session.execute(select(func.count()).select_from(source.subquery())).scalar_one()
    if owed:
        session.execute(insert(notices).from_select(["payment_id", "customer_id", "kind", "status", "created_at"], source))
    return owed


def has_pending(session: Session) -> bool:
    """Whether any notification waits to be sent: one indexed query."""
    return session.scalar(select(notices.c.id).where(notices.c.status == "pending").limit(1)) is not None


def settle_interrupted(session: Session) -> int:
    """Rows left ``sending`` by an interrupted send take their message's outcome once the history
    knows it (``unknown`` for a dead runner's): never ``pending`` again (at most once), but for a
    message that came back ``deferred`` (nothing of it left). One statement; returns the rows settled."""
    outcome = (
        select(case((messages.c.status == "deferred", literal("pending")), else_=messages.c.status))
        .where(messages.c.id == notices.c.message_id)
        .scalar_subquery()
    )
    settled = exists().where(
        messages.c.id == notices.c.message_id, messages.c.status.in_(("sent", "failed", "unknown", "deferred"))
    )
    return rowcount(session.execute(update(notices).where(notices.c.status == "sending", settled).values(status=outcome)))


def rowcount(result: Any) -> int:
    """Rows an UPDATE matched: its result is a CursorResult, typed only as Result."""
    assert isinstance(result, CursorResult)
    return result.rowcount
