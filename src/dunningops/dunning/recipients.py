"""Who receives a step's email (C6, C9, C11): the contacts with the step's functions, else the
primary contact; never an invalid contact. Loaded for a batch of customers in one query.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Recipients:
    to: tuple[Contact, ...]
    cc: tuple[Contact, ...]
    bcc: tuple[Contact, ...]
    problem: str | None = None  # why there is nobody to write to


def load_contacts(session: Session, customer_ids: list[int]) -> dict[int, list[Contact]]:
    found: dict[int, list[Contact]] = defaultdict(list)
    if not customer_ids:
        return found
    functions: dict[int, set[str]] = defaultdict(set)
    for start in range(0, len(customer_ids), 1000):
        chunk = customer_ids[start:start + 1000]
        rows = session.execute(
            select(contacts.c.id, contacts.c.customer_id, contacts.c.email, contacts.c.name, contacts.c.phone,
                   contacts.c.is_primary, contacts.c.valid)
            .where(contacts.c.customer_id.in_(chunk)).order_by(contacts.c.id)
        ).all()
        ids = [r.id for r in rows]
        for cid, fid in session.execute(select(links.c.contact_id, links.c.function_id).where(links.c.contact_id.in_(ids))):
            functions[cid].add(fid)
        for r in rows:
            found[r.customer_id].append(Contact(r.id, r.email, r.name, r.phone, r.is_primary, r.valid, frozenset(functions[r.id])))
    return found


def choose(step: StepConfig, people: list[Contact]) -> Recipients:
    """C6: by function, else the primary contact; C9/C11: invalid contacts never receive reminders."""
    valid = [c for c in people if c.valid]

    def having(functions: tuple[str, ...]) -> list[Contact]:
        return [c for c in valid if c.functions & set(functions)]

    to = having(step.to) if step.to else []
    if not to:
        primary = next((c for c in people if c.is_primary), None)
        if primary is not None and primary.valid:
            to = [primary]
    if not to:
        if not people:
            problem = "the customer has no contact"
        elif step.to and any(c.functions & set(step.to) for c in people):
            problem = f"every contact with function {', '.join(step.to)} and the primary contact are invalid (C9)"
        else:
            problem = "no valid contact" + (f" with function {', '.join(step.to)}" if step.to else "") + " and no valid primary contact"
        return Recipients((), (), (), problem)
    seen = {c.id for c in to}
    cc = [c for c in having(step.cc) if c.id not in seen]
    seen |= {c.id for c in cc}
    bcc = [c for c in having(step.bcc) if c.id not in seen]
    return Recipients(tuple(to), tuple(cc), tuple(bcc))
