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
