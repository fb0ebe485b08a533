"""Reading the audit trail (applies) and the outbox."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from dunningops.store.schema import ApplyRow, OutboxRow


def list_applies(session: Session, limit: int = 50) -> list[ApplyRow]:
    return list(session.scalars(select(ApplyRow).order_by(ApplyRow.id.desc()).limit(limit)))


def pending_outbox(session: Session) -> list[OutboxRow]:
    return list(session.scalars(select(OutboxRow).where(OutboxRow.delivered_at.is_(None)).order_by(OutboxRow.id)))
