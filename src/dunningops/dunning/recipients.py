"""Who receives a step's email (C6, C9, C11): the contacts with the step's functions, else the
primary contact; never an invalid contact. Loaded for a batch of customers in one query.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from dunningops.dunning.runconfig import StepConfig
from dunningops.store.schema import ContactFunctionLinkRow, ContactRow

contacts, links = ContactRow.__table__, ContactFunctionLinkRow.__table__


@dataclass(frozen=True)
class Contact:
    id: int
    email: str
    name: str | None
    phone: str | None
    is_primary: bool
    valid: bool
    functions: frozenset[str]
    invalid_reason: str | None = None  # C9: the server's answer when a reminder bounced
    invalid_at: datetime | None = None


@dataclass(frozen=True)
class Recipients:
    to: tuple[Contact, ...]
    cc: tuple[Contact, ...]
    bcc: tuple[Contact, ...]
    problem: str | None = None  # why there is nobody to write to, in words a person can act on


def load_contacts(session: Session, customer_ids: list[int]) -> dict[int, list[Contact]]:
    found: dict[int, list[Contact]] = defaultdict(list)
    if not customer_ids:
        return found
    functions: dict[int, set[str]] = defaultdict(set)
    for start in range(0, len(customer_ids), 1000):
        chunk = customer_ids[start : start + 1000]
        rows = session.execute(
            select(
                contacts.c.id,
                contacts.c.customer_id,
                contacts.c.email,
                contacts.c.name,
                contacts.c.phone,
                contacts.c.is_primary,
                contacts.c.valid,
                contacts.c.invalid_reason,
                contacts.c.invalid_at,
            )
            .where(contacts.c.customer_id.in_(chunk))
            .order_by(contacts.c.id)
        ).all()
        ids = [r.id for r in rows]
        for cid, fid in session.execute(select(links.c.contact_id, links.c.function_id).where(links.c.contact_id.in_(ids))):
            functions[cid].add(fid)
        for r in rows:
            found[r.customer_id].append(
                Contact(
                    r.id,
                    r.email,
                    r.name,
                    r.phone,
                    r.is_primary,
                    r.valid,
                    frozenset(functions[r.id]),
                    r.invalid_reason,
                    r.invalid_at,
                )
            )
    return found


def choose(step: StepConfig, people: list[Contact], tz: tzinfo = UTC) -> Recipients:
    """C6: by function, else the primary contact; C9/C11: invalid contacts never receive reminders.

    ``tz`` is the company's time zone, for the dates in the problem's wording."""
    valid = [c for c in people if c.valid]

    def having(functions: tuple[str, ...]) -> list[Contact]:
        return [c for c in valid if c.functions & set(functions)]

    to = having(step.to) if step.to else []
    if not to:
        primary = next((c for c in people if c.is_primary), None)
        if primary is not None and primary.valid:
            to = [primary]
    if not to:
        return Recipients((), (), (), nobody_to_write_to(step.to, people, tz))
    seen = {c.id for c in to}
    cc = [c for c in having(step.cc) if c.id not in seen]
    seen |= {c.id for c in cc}
    bcc = [c for c in having(step.bcc) if c.id not in seen]
    return Recipients(tuple(to), tuple(cc), tuple(bcc))


def nobody_to_write_to(functions: tuple[str, ...], people: list[Contact], tz: tzinfo = UTC) -> str:
    """Why no contact can receive a step written to ``functions`` (else the primary contact, C6),
    for the person who gets the to-do: who was marked invalid, when and why, and who is missing.

    A clause ("jean@x.fr was marked invalid on 2026-11-20 (550 5.1.1 user unknown); no other
    contact has the function payer or is primary"): the to-do and the run's report frame it."""
    if not people:
        return "the customer has no contact"
    primary = next((c for c in people if c.is_primary), None)
    wanted = [c for c in people if c.functions & set(functions)] if functions else []
    invalid = list({c.id: c for c in [*wanted, primary] if c is not None and not c.valid}.values())
    said = [_marked_invalid(c, tz, as_primary=c is primary and c not in wanted) for c in invalid]
    if functions:
        named = (
            f"the function {functions[0]}"
            if len(functions) == 1
            else f"the functions {', '.join(functions[:-1])} or {functions[-1]}"
        )
        said.append(f"no {'other ' if invalid else ''}contact has {named} or is primary")
    elif primary is None:
        said.append(f"none of its {len(people)} contacts is primary" if len(people) > 1 else "its only contact is not primary")
    return "; ".join(said)


def _marked_invalid(c: Contact, tz: tzinfo, as_primary: bool) -> str:
    who = f"the primary contact {c.email}" if as_primary else c.email
    when = f" on {c.invalid_at.astimezone(tz):%Y-%m-%d}" if c.invalid_at else ""
    why = f" ({c.invalid_reason})" if c.invalid_reason else ""
    return f"{who} was marked invalid{when}{why}"
