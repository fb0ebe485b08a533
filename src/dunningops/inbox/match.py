"""R5-R7: which customer (and invoice) an incoming message belongs to, for a batch at once.

In order (R5): a Message-ID it refers to (In-Reply-To, then References newest first, then the
Message-ID a bounce or a complaint returns) is one we sent → that message's customer, and its
invoice when the message was an invoice-level plan's action (R9); else its sender (for a
bounce: the failed recipient) is a contact of exactly one customer → that customer; else it is
ignored, or with ``replies.import: all`` a temporary customer is made for the sender (R6).

R7, several organisations reading one mailbox: what refers to one of our messages is ours
whatever else it says. For the rest, a message addressed to none of ``inbox.accept_to`` (when
set), or answering a Message-ID another organisation created (its tag is not ours), is not
ours: the sender may be a contact of both organisations, so matching by sender would take
the other's reply.

Two queries per batch (our messages by Message-ID, contacts by address), never one per message.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from dunningops.inbox.parse import ParsedMail
from dunningops.store.schema import ContactRow, MessageRow, PlanRow
from dunningops.transport.message import organisation_of

messages, contacts, plans = MessageRow.__table__, ContactRow.__table__, PlanRow.__table__

CHUNK = 500  # bound on IN lists (SQLite's parameter limit, and plan size on PostgreSQL)


@dataclass(frozen=True)
class Replied:
    """One of our messages that an incoming one refers to."""

    id: int
    message_id: str
    customer_id: int | None
    kind: str
    automatic: bool
    performed_by: str | None
    sender_ref: str | None
    plan_id: str | None
    anchor_invoice_id: int | None
    invoice_level: bool


@dataclass(frozen=True)
class Match:
    """Where a message goes: ``customer_id`` None means ignored (``reason`` says why) or, with
    ``by == "temporary"``, a temporary customer to create for ``address`` (R6)."""

    by: str  # in_reply_to | references | bounce_original | sender | recipient | temporary | none
    customer_id: int | None = None
    invoice_id: int | None = None
    replied: Replied | None = None
    address: str | None = None  # the sender (or a bounce's failed recipient) the match used
    reason: str | None = None
    foreign: bool = False  # another organisation's (R7): only its envelope is kept

    @property
    def linked(self) -> bool:
        return self.customer_id is not None or self.by == "temporary"

    def to_json(self) -> dict:
        return {
            "by": self.by,
            "customer_id": self.customer_id,
            "invoice_id": self.invoice_id,
            "message": self.replied.message_id if self.replied else None,
            "address": self.address,
            "reason": self.reason,
        }


def _chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


def _ours(session: Session, ids: Sequence[str]) -> dict[str, Replied]:
    found: dict[str, Replied] = {}
    for chunk in _chunks(ids):
        rows = session.execute(
            select(
                messages.c.id,
                messages.c.message_id,
                messages.c.customer_id,
                messages.c.kind,
                messages.c.automatic,
                messages.c.performed_by,
                messages.c.sender_ref,
                messages.c.plan_id,
                messages.c.anchor_invoice_id,
                plans.c.level,
            )
            .outerjoin(plans, plans.c.id == messages.c.plan_id)
            .where(messages.c.message_id.in_(chunk))
        )
        for r in rows:
            found[r.message_id] = Replied(
                r.id,
                r.message_id,
                r.customer_id,
                r.kind,
                bool(r.automatic),
                r.performed_by,
                r.sender_ref,
                r.plan_id,
                r.anchor_invoice_id,
                r.level == "invoice",
            )
    return found


def _customers_by_address(session: Session, addresses: Sequence[str]) -> dict[str, set[int]]:
    # The ledger import stores addresses lower-cased, and the parser lower-cases them: a plain IN uses the index.
    found: dict[str, set[int]] = defaultdict(set)
    for chunk in _chunks(addresses):
        for email, customer_id in session.execute(
            select(contacts.c.email, contacts.c.customer_id).where(contacts.c.email.in_(chunk))
        ):
            found[email].add(customer_id)
    return found


def _by_reference(mail: ParsedMail, ours: dict[str, Replied]) -> Match | None:
    returned = set()
    if mail.classification.complaint and mail.classification.complaint.original_message_id:
        returned.add(mail.classification.complaint.original_message_id)
    returned.update(b.original_message_id for b in mail.classification.bounces if b.original_message_id)
    for ids, by in (
        (mail.in_reply_to, "in_reply_to"),
        (tuple(reversed(mail.references)), "references"),
        (returned, "bounce_original"),
    ):
        for mid in ids:
            replied = ours.get(mid)
            if replied is not None and replied.customer_id is not None:
                invoice = replied.anchor_invoice_id if replied.invoice_level else None
                return Match(by, replied.customer_id, invoice, replied)
    return None


def _addresses(mail: ParsedMail) -> list[str]:
    """The address that says who a message is from: a bounce's failed recipients, else its sender."""
    failed = [b.recipient for b in mail.classification.bounces if b.recipient]
    if mail.classification.complaint and mail.classification.complaint.recipient:
        failed.append(mail.classification.complaint.recipient)
    if mail.classification.kind in ("bounce", "complaint"):
        return failed  # the bounce's sender is a mail server, never a contact
    return [mail.from_address] if mail.from_address else []


def match_batch(
    session: Session,
    mails: Sequence[ParsedMail],
    *,
    organisation: str,
    accept_to: Iterable[str] = (),
    import_all: bool = False,
) -> list[Match]:
    """The match of each of ``mails``, in order (R5, R6, R7); reads only."""
    accepted = {a.lower() for a in accept_to}
    ours = _ours(session, sorted({mid for m in mails for mid in m.referenced_ids}))
    by_address = _customers_by_address(session, sorted({a for m in mails for a in _addresses(m)}))
    out: list[Match] = []
    for mail in mails:
        found = _by_reference(mail, ours)
        if found is not None:
            out.append(found)
            continue
        if accepted and not accepted.intersection((*mail.to, *mail.cc, *mail.delivered_to)):
            out.append(Match("none", reason="not addressed to this organisation (inbox.accept_to)", foreign=True))
            continue
        foreign = next((mid for mid in mail.referenced_ids if organisation_of(mid) not in (None, organisation)), None)
        if foreign is not None:
            out.append(Match("none", reason=f"answers {foreign}, a message another organisation sent", foreign=True))
            continue
        out.append(_by_address(mail, by_address, import_all))
    return out


def _by_address(mail: ParsedMail, by_address: dict[str, set[int]], import_all: bool) -> Match:
    addresses = _addresses(mail)
    by = "sender" if mail.classification.kind in ("reply", "auto_reply") else "recipient"
    for address in addresses:
        customers = by_address.get(address, set())
        if len(customers) == 1:
            return Match(by, next(iter(customers)), address=address)
        if len(customers) > 1:
            return Match("none", address=address, reason=f"{address} is a contact of {len(customers)} customers")
    if not addresses:
        return Match("none", reason="no sender address" if by == "sender" else "no failed recipient found")
    if import_all and by == "sender":
        return Match("temporary", address=addresses[0])  # R6
    return Match("none", address=addresses[0], reason=f"{addresses[0]} is no customer's contact")
