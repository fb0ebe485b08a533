"""`dunningops status`: what a person on call wants to see first."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dunningops.store.schema import MessageRow, OutboxRow, TodoRow


def collect_status(session: Session) -> dict:
    m, t, o = MessageRow.__table__, TodoRow.__table__, OutboxRow.__table__
    return {
        "messages": {s: n for s, n in session.execute(select(m.c.status, func.count()).group_by(m.c.status))},
        "todos": {k: n for k, n in session.execute(select(t.c.kind, func.count()).where(t.c.status == "open").group_by(t.c.kind))},
        "outbox": session.scalar(select(func.count()).where(o.c.delivered_at.is_(None))) or 0,
        "unknown": [dict(r) for r in session.execute(
            select(m.c.message_id, m.c.to_addresses, m.c.subject, m.c.created_at).where(m.c.status == "unknown").order_by(m.c.id)
        ).mappings()],
    }


def message_history(session: Session, *, customer: str | None = None, status: str | None = None, limit: int = 100) -> list[dict]:
    """E6/A8: sent emails with their status, automatic or manual, sender identity and who sent them."""
    from dunningops.store.schema import CustomerRow

    m, c = MessageRow.__table__, CustomerRow.__table__
    query = (
        select(m.c.id, m.c.created_at, c.c.external_id.label("customer"), m.c.kind, m.c.automatic, m.c.status,
               m.c.sender_ref, m.c.from_address, m.c.performed_by, m.c.plan_id, m.c.step_id, m.c.to_addresses, m.c.subject,
               m.c.message_id)
        .outerjoin(c, c.c.id == m.c.customer_id)
        .order_by(m.c.id.desc())
        .limit(limit)
    )
    if customer:
        query = query.where(c.c.external_id == customer)
    if status:
        query = query.where(m.c.status == status)
    return [dict(r) for r in session.execute(query).mappings()]
