"""A3: the confirmation email of a new alias (queued by apply in the outbox), its verification, re-sending it.

At most once, also with two runs at once: a run claims an outbox row (a conditional update,
checked) in the transaction that records its message ``sending``, before the SMTP transaction.
A claimed row is never sent again, unless its message was ``deferred`` (nothing delivered):
then the next run takes it back, with the same Message-ID.

The email carries a link (``/l/alias/<token>``, signed: the alias, its address and the hash of
its current code, for ``LINK_DAYS``) and the code as a fallback. A re-sent confirmation has a new
code, so older links stop working; the link and the code verify through the same function.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import CursorResult, and_, func, insert, or_, select, update
from sqlalchemy.orm import Session

from dunningops import outgoing, signing
from dunningops.dunning.context import message_domain
from dunningops.dunning.runconfig import RunConfig
from dunningops.errors import ConflictError, NotFoundError
from dunningops.outgoing import Letter, NotClaimed, Outcome, Recorded
from dunningops.store.codes import candidate_hashes, code_hash, new_code
from dunningops.store.engine import Store
from dunningops.store.meta import signing_key
from dunningops.store.schema import AliasRow, MessageRow, OutboxRow
from dunningops.transport.base import Transport
from dunningops.transport.message import Address, OutgoingMessage

aliases, outbox, messages = AliasRow.__table__, OutboxRow.__table__, MessageRow.__table__

LINK_PURPOSE = "alias"
LINK_DAYS = 7  # codes do not expire; a link in a mailbox should not work for ever

TEXT = """Hello,

{company} wants to send payment reminders from this address as
"{display_name}" <{email}>, through dunningops.

To confirm that this address may be used, open this link (it works for
{days} days) and press the button on its page:

Confirm: {link}

Or run:

    dunningops alias verify {token}

(or give this code to whoever runs dunningops for {company}). Until then,
reminders that should come from this alias go out from {fallback}.

If you did not expect this email, ignore it: nothing is sent from this
address without the confirmation.
"""


def _waiting():
    """Outbox confirmations still to send: never claimed, or claimed by a message that was deferred."""
    deferred = select(messages.c.id).where(messages.c.id == outbox.c.message_id, messages.c.status == "deferred").exists()
    return and_(
        outbox.c.kind == "alias_confirmation", outbox.c.delivered_at.is_(None), or_(outbox.c.message_id.is_(None), deferred)
    )


def pending_confirmations(session: Session, *, count: bool = False):
    """The confirmations waiting to be sent (rows id, payload, message_id), or how many."""
    if count:
        return session.scalar(select(func.count()).select_from(outbox).where(_waiting())) or 0
    rows = select(outbox.c.id, outbox.c.payload, outbox.c.message_id).where(_waiting()).order_by(outbox.c.id)
    return session.execute(rows).all()


def deliver_outbox(store: Store, config: RunConfig, transport: Transport, now: datetime) -> int:
    """Send the queued confirmation emails (after their apply committed); returns how many went out.

    One message per transaction: each claim stands alone, so a row another run claimed first is
    skipped without holding back the others.
    """
    with store.session() as session:
        pending = pending_confirmations(session)
        key = signing_key(session) if pending else b""
    s = config.settings
    base_url = signing.public_base_url(s)
    delivered = 0
    for row in pending:
        p = row.payload
        text = TEXT.format(
            company=s.company.name,
            display_name=p["display_name"],
            email=p["email"],
            days=LINK_DAYS,
            link=confirmation_link(base_url, key, p["alias"], p["email"], p["token"], now),
            token=p["token"],
            fallback=s.deliverability.fallback_sender,
        )
        letter = Letter(
            message=OutgoingMessage(
                message_id="",
                from_=Address(s.deliverability.fallback_sender, s.company.name),
                to=[Address(p["email"], p["display_name"])],
                subject=f"Confirm the sender address {p['email']} for {s.company.name}",
                text=text,
                headers={"Auto-Submitted": "auto-generated"},
                date=now,
            ),
            # Not counted against the caps (T6): it goes to our own sender address, not to a customer.
            kind="alias_confirmation",
            automatic=True,
            reuse_id=row.message_id,
            tag=row.id,
        )

        # A def, not a lambda with a ``row=row`` default (mypy cannot infer such a lambda's type).
        def claim(session: Session, recorded: list[Recorded], row=row) -> None:
            _claim(session, row, recorded)

        outcomes = outgoing.send(
            store,
            transport,
            [letter],
            at=now,
            domain=message_domain(s),
            reserve=claim,
            settle=lambda session, outcomes: _delivered(session, outcomes, now),
        )
        delivered += sum(1 for o in outcomes if o.status == "sent")
    return delivered


def _claim(session: Session, row, recorded: list[Recorded]) -> None:
    """The outbox row is this message's, or someone else's already (then nothing is sent)."""
    taken = outbox.c.message_id.is_(None) if row.message_id is None else outbox.c.message_id == row.message_id
    result = session.execute(
        update(outbox).where(outbox.c.id == row.id, outbox.c.delivered_at.is_(None), taken).values(message_id=recorded[0].id)
    )
    claimed = cast(CursorResult, result).rowcount  # an UPDATE's result is a CursorResult
    if claimed != 1:
        raise NotClaimed(f"outbox row {row.id}")


def _delivered(session: Session, outcomes: list[Outcome], now: datetime) -> None:
    for o in outcomes:
        if o.status == "sent":
            session.execute(update(outbox).where(outbox.c.id == o.letter.tag).values(delivered_at=now))


def verify(session: Session, token: str, now: datetime) -> str:
    """A3: the code from the confirmation email verifies its alias; returns the alias id.

    Any code ever issued matches: today's (letters and digits; case, spaces and hyphens ignored)
    and older ones (URL-safe, possibly starting with '-'), exactly.
    """
    row = session.execute(
        select(aliases.c.id, aliases.c.verification_token).where(aliases.c.verification_token.in_(candidate_hashes(token)))
    ).first()
    if row is None or not _mark_verified(session, row.id, row.verification_token, now):
        raise NotFoundError(
            "this confirmation code matches no alias (it may have been replaced by a newer one: `dunningops alias resend ID`)"
        )
    return row.id


def _mark_verified(session: Session, alias_id: str, hashed: str, now: datetime) -> bool:
    """The one write of A3's verification, by code or by link; False if the code changed or was used meanwhile."""
    result = session.execute(
        update(aliases)
        .where(aliases.c.id == alias_id, aliases.c.verification_token == hashed)
        .values(verified=True, verified_at=now, verification_token=None)
    )
    return cast(CursorResult, result).rowcount == 1  # an UPDATE's result is a CursorResult


# --- the link -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkedAlias:
    """The alias a confirmation link names, as its page shows it."""

    id: str
    email: str
    display_name: str
    verified: bool  # before this request (GET) or before this confirmation (POST)


def confirmation_link(base_url: str, key: bytes, alias_id: str, email: str, code: str, now: datetime) -> str:
    """The link of a confirmation email: the alias, its address and its code's hash, signed for ``LINK_DAYS``."""
    value = "\n".join((alias_id, email, code_hash(code)))  # ids, addresses and hex hold no newline
    return f"{base_url.rstrip('/')}/l/alias/{signing.sign(key, LINK_PURPOSE, value, now + timedelta(days=LINK_DAYS))}"


def _linked(session: Session, key: bytes, token: str, now: datetime) -> tuple[LinkedAlias, str] | None:
    value = signing.verify(key, LINK_PURPOSE, token, now)
    parts = value.split("\n") if value is not None else []
    if len(parts) != 3:
        return None
    alias_id, email, hashed = parts
    row = session.execute(select(aliases).where(aliases.c.id == alias_id)).mappings().first()
    # Removed, or replaced by an alias of another address since (A4): the link names nothing.
    if row is None or row["email"] != email:
        return None
    alias = LinkedAlias(row["id"], row["email"], row["display_name"], bool(row["verified"]))
    if alias.verified:
        return alias, hashed
    current = row["verification_token"] or ""
    # A re-sent confirmation changed the code: older links stop working.
    return (alias, hashed) if hmac.compare_digest(current.encode(), hashed.encode()) else None


def alias_of_link(session: Session, key: bytes, token: str, now: datetime) -> LinkedAlias | None:
    """A3: the alias a confirmation link names, or None (altered, guessed, expired, superseded, removed).

    Reads only: mail scanners open links, so showing the page verifies nothing.
    """
    found = _linked(session, key, token, now)
    return found[0] if found else None


def verify_link(session: Session, key: bytes, token: str, now: datetime) -> LinkedAlias | None:
    """A3: the confirmation link verifies its alias, as `alias verify CODE` does; None if it names none.

    The answer's ``verified`` says whether the alias was verified already (the page then says so).
    """
    found = _linked(session, key, token, now)
    if found is None:
        return None
    alias, hashed = found
    if alias.verified or _mark_verified(session, alias.id, hashed, now):
        return alias
    # Verified (or re-sent) by someone else between the read and the write: read again.
    return alias_of_link(session, key, token, now)


def resend(session: Session, alias_id: str, now: datetime) -> str:
    """A3: a new confirmation email (with a new code) for an unverified alias; returns its address."""
    row = session.execute(select(aliases).where(aliases.c.id == alias_id)).mappings().first()
    if row is None:
        raise NotFoundError(f"no alias {alias_id!r} in the store")
    if row["verified"]:
        raise ConflictError(f"alias {alias_id!r} is already verified")
    token = new_code()
    session.execute(update(aliases).where(aliases.c.id == alias_id).values(verification_token=code_hash(token)))
    # Older unsent confirmations carry a code that no longer works: drop them.
    session.execute(
        update(outbox).where(outbox.c.ref == f"alias.{alias_id}", outbox.c.delivered_at.is_(None)).values(delivered_at=now)
    )
    session.execute(
        insert(outbox).values(
            kind="alias_confirmation",
            ref=f"alias.{alias_id}",
            created_at=now,
            payload={"alias": alias_id, "email": row["email"], "display_name": row["display_name"], "token": token},
        )
    )
    return row["email"]
