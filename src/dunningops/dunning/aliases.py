"""A3: the confirmation email of a new alias (queued by apply in the outbox), its verification, re-sending it."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from dunningops.dunning.runconfig import RunConfig
from dunningops.errors import DunningOpsError
from dunningops.store.engine import Store
from dunningops.store.schema import AliasRow, MessageRow, OutboxRow
from dunningops.transport.base import Transport
from dunningops.transport.message import Address, OutgoingMessage, new_message_id

aliases, outbox, messages = AliasRow.__table__, OutboxRow.__table__, MessageRow.__table__

TEXT = """Hello,

{company} wants to send payment reminders from this address as
"{display_name}" <{email}>, through dunningops.

To confirm that this address may be used, run:

    dunningops alias verify {token}

(or give this code to whoever runs dunningops for {company}). Until then,
reminders that should come from this alias go out from {fallback}.

If you did not expect this email, ignore it: nothing is sent from this
address without the confirmation.
"""


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def deliver_outbox(store: Store, config: RunConfig, transport: Transport, now: datetime) -> int:
    """Send the queued confirmation emails (after their apply committed); returns how many went out."""
    with store.session() as session:
        pending = session.execute(
            select(outbox.c.id, outbox.c.payload).where(outbox.c.delivered_at.is_(None), outbox.c.kind == "alias_confirmation")
            .order_by(outbox.c.id)
        ).all()
    if not pending:
        return 0
    s = config.settings
    domain = s.deliverability.domain or s.deliverability.fallback_sender.split("@")[1]
    built = []
    for row in pending:
        p = row.payload
        text = TEXT.format(company=s.company.name, display_name=p["display_name"], email=p["email"], token=p["token"],
                           fallback=s.deliverability.fallback_sender)
        built.append((row.id, OutgoingMessage(
            message_id=new_message_id(domain), from_=Address(s.deliverability.fallback_sender, s.company.name),
            to=[Address(p["email"], p["display_name"])], subject=f"Confirm the sender address {p['email']} for {s.company.name}",
            text=text, headers={"Auto-Submitted": "auto-generated"},
        )))
    results = transport.send([m for _, m in built])
    delivered = 0
    with store.session() as session:
        for (outbox_id, msg), result in zip(built, results, strict=True):
            session.execute(insert(messages).values(
                message_id=msg.message_id, kind="alias_confirmation", automatic=True, from_address=msg.from_.email,
                from_name=msg.from_.name, to_addresses=[msg.to[0].email], cc_addresses=[], bcc_addresses=[], subject=msg.subject,
                invoice_ids=[], status=result.status if result.status != "deferred" else "deferred",
                error=None if result.status == "sent" else f"{result.code} {result.detail}", created_at=now,
                sent_at=now if result.status == "sent" else None,
            ))
            if result.status == "sent":
                session.execute(update(outbox).where(outbox.c.id == outbox_id).values(delivered_at=now))
                delivered += 1
    return delivered


def verify(session: Session, token: str, now: datetime) -> str:
    """A3: the token from the confirmation email verifies its alias; returns the alias id."""
    row = session.execute(select(aliases.c.id, aliases.c.verified).where(aliases.c.verification_token == _hash(token.strip()))).first()
    if row is None:
        raise DunningOpsError("this confirmation code matches no alias (it may have been replaced by a newer one: `dunningops alias resend ID`)")
    session.execute(update(aliases).where(aliases.c.id == row.id).values(verified=True, verified_at=now, verification_token=None))
    return row.id


def resend(session: Session, alias_id: str, now: datetime) -> str:
    """A3: a new confirmation email (with a new code) for an unverified alias; returns its address."""
    row = session.execute(select(aliases).where(aliases.c.id == alias_id)).mappings().first()
    if row is None:
        raise DunningOpsError(f"no alias {alias_id!r} in the store")
    if row["verified"]:
        raise DunningOpsError(f"alias {alias_id!r} is already verified")
    token = secrets.token_urlsafe(24)
    session.execute(update(aliases).where(aliases.c.id == alias_id).values(verification_token=_hash(token)))
    # Older unsent confirmations carry a code that no longer works: drop them.
    session.execute(update(outbox).where(outbox.c.ref == f"alias.{alias_id}", outbox.c.delivered_at.is_(None)).values(delivered_at=now))
    session.execute(insert(outbox).values(
        kind="alias_confirmation", ref=f"alias.{alias_id}", created_at=now,
        payload={"alias": alias_id, "email": row["email"], "display_name": row["display_name"], "token": token},
    ))
    return row["email"]
