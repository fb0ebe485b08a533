"""`dunningops status`: what a person on call wants to see first.

Right after a crash it already tells the truth: when no process is sending, a message still
``sending`` is one whose process died mid-send, so it shows as ``unknown`` (it may or may not
have left; it is never sent again), before any other run has marked it.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dunningops.dunning.aliases import pending_confirmations
from dunningops.outgoing.history import counts_and_unknown, list_messages
from dunningops.store.lock import send_cycle_holder
from dunningops.store.schema import TodoRow


def collect_status(session: Session) -> dict:
    """Messages by status, the ones that may or may not have left, open to-dos, pending confirmations, a running cycle.

    ``running`` is None, or who runs a send cycle now and since when.
    """
    t = TodoRow.__table__
    by_status, unknown = counts_and_unknown(session)
    return {
        "messages": by_status,
        "todos": {
            k: n for k, n in session.execute(select(t.c.kind, func.count()).where(t.c.status == "open").group_by(t.c.kind))
        },
        "outbox": pending_confirmations(session, count=True),
        "unknown": unknown,
        "running": send_cycle_holder(session.connection()),
    }


def message_history(session: Session, *, customer: str | None = None, status: str | None = None, limit: int = 100) -> list[dict]:
    """E6/A8: sent emails with their status, automatic or manual, sender identity and who sent them."""
    return list_messages(session, customer=customer, status=status, limit=limit)
