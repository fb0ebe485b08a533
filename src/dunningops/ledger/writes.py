"""Set-based writes from the staging tables into the ledger: a few statements per import (checks.py checks first).

Every UPDATE touches only rows whose values differ, so importing the same file
twice changes nothing.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import (
    CursorResult,
    Result,
    Table,
    and_,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from dunningops.ledger.columns import REDUCING_KINDS
from dunningops.ledger.indexes import built_after
from dunningops.ledger.staging import ADDRESS_COLUMNS, STAGING, STAGING_FUNCTIONS
from dunningops.store.schema import ContactFunctionLinkRow, ContactRow, CustomerRow, InvoiceRow, PaymentRow

customers, contacts, invoices, payments = (t.__table__ for t in (CustomerRow, ContactRow, InvoiceRow, PaymentRow))
links = ContactFunctionLinkRow.__table__


@dataclass
class WriteCounts:
    added: int = 0
    changed: int = 0
    pruned: int = 0
    links_changed: int = 0
    notices: int = 0  # payments: the portal notifications (A9) the new payments owe


def _rowcount(result: Result) -> int:
    """Rows an UPDATE or DELETE matched: its result is a CursorResult, typed only as Result."""
    return cast(CursorResult, result).rowcount


def _upsert(
    session: Session,
    target: Table,
    stg: Table,
    match: list,
    values: dict,
    joins: list,
    now: datetime,
    extra_insert: dict | None = None,
    insert_from=None,
    empty: bool | None = None,
) -> tuple[int, int]:
    """UPDATE the rows whose values differ, INSERT the missing ones; returns (added, changed).
    ``insert_from``: the insert's FROM clause, when ``extra_insert`` needs a join (else: inferred).
    ``empty``: whether ``target`` had no row before this import (None: it has none now)."""
    # An empty table (a first import): nothing to update, and no row to look up before each insert.
    if empty is None:
        empty = session.scalar(select(literal(1)).select_from(target).limit(1)) is None
    changed = 0
    if not empty:
        differs = or_(*(target.c[col].is_distinct_from(expr) for col, expr in values.items()))
        changed = _rowcount(
            session.execute(
                update(target)
                .where(*match, *joins, differs)
                .values({**{target.c[c]: e for c, e in values.items()}, target.c.updated_at: now})
            )
        )
    inserted = {**values, **(extra_insert or {}), "created_at": literal(now), "updated_at": literal(now)}
    # In the file's order, so new ids follow it whatever join order the database picks (PostgreSQL
    # hashes once the staging table is analysed): the first contact of a file is the oldest (C3).
    missing = [] if empty else [~exists().where(*match)]
    source = select(*(expr.label(col) for col, expr in inserted.items()))
    if insert_from is not None:
        source = source.select_from(insert_from)
    source = source.where(*joins, *missing).order_by(stg.c.row_no)
    return _insert_from(session, target, list(inserted), source), changed


def _insert_from(session: Session, target: Table, columns: list[str], source) -> int:
    if session.get_bind().dialect.name == "sqlite":
        # SQLite counts the rows an INSERT … SELECT wrote (sqlite3_changes): one pass, not two.
        return _rowcount(session.execute(insert(target).from_select(columns, source)))
    # psycopg reports no rowcount for INSERT … SELECT through SQLAlchemy: count first (one more set-based scan).
    added = session.execute(select(func.count()).select_from(source.subquery())).scalar_one()
    if added:
        session.execute(insert(target).from_select(columns, source))
    return added


# PostgreSQL: ledger writers (file imports, API upserts) take turns, so that counting the rows to
# insert and inserting them see the same table (two writers would both count a new id as added,
# or one would fail on its unique key). SQLite writers take turns by its own write lock.
LEDGER_WRITE_LOCK_KEY = 0x64756E6E0101


def write(
    session: Session,
    kind: str,
    now: datetime,
    prune: bool,
    *,
    paid_staged: bool = False,
    stg: Table | None = None,
    fresh: bool = False,
) -> WriteCounts:
    """``kind``'s staged rows into the ledger. ``paid_staged`` (invoices): the import's payments are
    staged too, and a new invoice's balance counts them already (``_staged_paid``). ``stg`` and
    ``fresh`` (invoices, relay.py): one part of the file, from this staging table, into a table that
    was empty before the import (only inserts; its indexes are the relay's to drop and build)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LEDGER_WRITE_LOCK_KEY})
    counts = WriteCounts()
    stg = STAGING[kind] if stg is None else stg
    if kind == "customers":
        columns = ("name", "country", "locale", "currency", "account_manager", "plan_id", *ADDRESS_COLUMNS)
        values = {c: stg.c[c] for c in columns}
        counts.added, counts.changed = _upsert(
            session,
            customers,
            stg,
            [customers.c.external_id == stg.c.external_id],
            values,
            [],
            now,
            {"external_id": stg.c.external_id, "origin": literal("import")},
        )
    elif kind == "contacts":
        cu = customers.alias("cu")
        joins = [cu.c.external_id == stg.c.customer_external_id]
        match = [contacts.c.customer_id == cu.c.id, contacts.c.email == stg.c.email]
        values = {c: stg.c[c] for c in ("name", "phone", "job")} | _validity(stg, now)
        before = session.scalar(select(func.coalesce(func.max(contacts.c.id), 0))) or 0
        # A first import (no contact yet): each customer's primary is known as its contacts are
        # inserted, so no pass over them afterwards (C3, _write_primaries: a fifth of 200k contacts).
        primary = _first_primaries(stg) if before == 0 else literal(False)
        with built_after(session, contacts, stg, before):
            counts.added, counts.changed = _upsert(
                session,
                contacts,
                stg,
                match,
                values,
                joins,
                now,
                {"customer_id": cu.c.id, "email": stg.c.email, "is_primary": primary} | _new_validity(stg, now),
            )
        counts.links_changed = _write_links(session, first=before == 0)
        if before:
            _write_primaries(session, now)
    elif kind == "invoices":
        cu = customers.alias("cu")
        joins = [cu.c.external_id == stg.c.customer_external_id]
        cols = (
            "number",
            "issue_date",
            "due_date",
            "amount_cents",
            "reported_outstanding_cents",
            "currency",
            "document_url",
            "reported_status",
        )
        values = {c: stg.c[c] for c in cols} | {"customer_id": cu.c.id}
        # The invoices this write creates are the ones above today's last id (ledger writers take turns).
        before = session.scalar(select(func.coalesce(func.max(invoices.c.id), 0)))
        reported = stg.c.reported_outstanding_cents
        paid = _staged_paid() if paid_staged else None
        balance = reported if paid is None else reported - func.coalesce(paid.c.paid, 0)
        with nullcontext() if fresh else built_after(session, invoices, stg, before or 0):
            counts.added, counts.changed = _upsert(
                session,
                invoices,
                stg,
                [invoices.c.external_id == stg.c.external_id],
                values,
                joins,
                now,
                {
                    "external_id": stg.c.external_id,
                    # A new invoice has no payments in the store yet: its balance is what the file reports
                    # (less the payments staged beside it), worked out here as _recompute_outstanding would,
                    # so that pass skips the new rows (a 1M-row pass), and the payments' one changes none.
                    "outstanding_cents": case((balance < 0, 0), else_=balance),
                    "status": _status(stg.c.reported_status, balance),
                    "paused": literal(False),
                },
                insert_from=None if paid is None else stg.outerjoin(paid, paid.c.invoice_external_id == stg.c.external_id),
                empty=True if fresh else None,
            )
        if prune:
            counts.pruned = _rowcount(
                session.execute(
                    update(invoices)
                    .where(invoices.c.status != "void", ~exists().where(stg.c.external_id == invoices.c.external_id))
                    .values(status="void", reported_status="void", updated_at=now)
                )
            )
        # Only the invoices this write changed can owe a new balance: every write (here and the
        # payments') leaves each invoice's outstanding amount what its reported balance and its
        # payments make, an invoice import changes no payment, and the new ones have theirs.
        if counts.changed:
            _recompute_outstanding(session, select(stg.c.external_id), existing_up_to=before or 0, changed_at=now)
    else:
        inv = invoices.alias("inv")
        joins = [inv.c.external_id == stg.c.invoice_external_id]
        values = {"invoice_id": inv.c.id, "paid_on": stg.c.paid_on, "amount_cents": stg.c.amount_cents, "kind": stg.c.kind}
        # The payments this write creates are the ones above today's last id (ledger writers take turns).
        before = session.scalar(select(func.coalesce(func.max(payments.c.id), 0)))
        # A corrected payment moved to another invoice: the invoice it leaves owes its balance back.
        left = session.scalars(
            select(payments.c.invoice_id)
            .join(stg, stg.c.external_id == payments.c.external_id)
            .join(inv, inv.c.external_id == stg.c.invoice_external_id)
            .where(payments.c.invoice_id != inv.c.id)
            .distinct()
        ).all()
        counts.added, counts.changed = _upsert_payments(session, stg, values, joins, now)
        _recompute_outstanding(session, select(stg.c.invoice_external_id))
        for start in range(0, len(left), 1000):
            _recompute_outstanding(session, select(invoices.c.external_id).where(invoices.c.id.in_(left[start : start + 1000])))
        if counts.added:
            # Imported here, not at the top: notify sits above the ledger (it renders, it sends).
            from dunningops.notify.owed import owe

            # A9: the receipts and failed-payment emails the new payments owe, in this transaction.
            counts.notices = owe(session, created_after=before or 0, at=now)
    return counts


def _staged_paid():
    """What the staged payments and credit notes reduce, per invoice they name (A9: a failed payment
    nothing), joined to the staged invoices once (as a correlated subquery, each of the three places
    the balance appears ran it again: +1.5 s on a million invoices; the join: +0.6 s). Only a head
    start: the payments' write recomputes every invoice they name from the payments written (a
    rejected row, a payment moved), and an invoice it finds right it leaves as it is. Without it,
    that pass rewrote ~32k of a million new invoices spread over the whole table (1.0–1.15 s)."""
    staged = STAGING["payments"]
    return (
        select(staged.c.invoice_external_id, func.sum(staged.c.amount_cents).label("paid"))
        .where(staged.c.kind.in_(REDUCING_KINDS))
        .group_by(staged.c.invoice_external_id)
        .subquery("staged_paid")
    )


INVALID_REASON = "marked invalid in the ledger"


def _validity(stg: Table, now: datetime) -> dict:
    """C10: a row's ``valid`` true marks the contact valid again, false invalid (reason and time kept
    if it already was); empty leaves it as it is (a bounce's mark stays)."""
    at = literal(now, contacts.c.invalid_at.type)
    turns_invalid = and_(stg.c.valid.is_(False), contacts.c.valid.is_not(False))
    return {
        "valid": func.coalesce(stg.c.valid, contacts.c.valid),
        "invalid_reason": case(
            (stg.c.valid.is_(True), literal(None, contacts.c.invalid_reason.type)),
            (turns_invalid, literal(INVALID_REASON)),
            else_=contacts.c.invalid_reason,
        ),
        "invalid_at": case(
            (stg.c.valid.is_(True), literal(None, contacts.c.invalid_at.type)), (turns_invalid, at), else_=contacts.c.invalid_at
        ),
    }


def _new_validity(stg: Table, now: datetime) -> dict:
    """The same for a contact the row creates: valid unless the row says otherwise."""
    invalid = stg.c.valid.is_(False)
    return {
        "valid": func.coalesce(stg.c.valid, literal(True)),
        "invalid_reason": case((invalid, literal(INVALID_REASON)), else_=literal(None, contacts.c.invalid_reason.type)),
        "invalid_at": case((invalid, literal(now, contacts.c.invalid_at.type)), else_=literal(None, contacts.c.invalid_at.type)),
    }


def _upsert_payments(session, stg, values, joins, now) -> tuple[int, int]:
    # Payments have no updated_at: a corrected payment is rewritten in place.
    match = [payments.c.external_id == stg.c.external_id]
    differs = or_(*(payments.c[col].is_distinct_from(expr) for col, expr in values.items()))
    changed = session.execute(
        update(payments).where(*match, *joins, differs).values({payments.c[c]: e for c, e in values.items()})
    ).rowcount
    inserted = {**values, "external_id": stg.c.external_id, "created_at": literal(now)}
    source = select(*(e.label(c) for c, e in inserted.items())).where(*joins, ~exists().where(*match)).order_by(stg.c.row_no)
    return _insert_from(session, payments, list(inserted), source), changed


def _status(reported_status, balance):
    """An invoice's status from the file's status and its balance: void and paid as reported, else by the balance."""
    return case(
        (reported_status == "void", "void"),
        (reported_status == "paid", "paid"),
        (balance <= 0, "paid"),
        else_="open",
    )


def _recompute_outstanding(
    session: Session, external_ids, *, existing_up_to: int | None = None, changed_at: datetime | None = None
) -> None:
    """Outstanding = reported balance - payments and credit notes; a fully paid invoice leaves dunning.
    A failed payment (A9) reduces nothing. ``existing_up_to``: only invoices with an id up to it
    (the ones there before this write; the write gave the new ones their balance already).
    ``changed_at``: only invoices updated then (by this write)."""
    if existing_up_to == 0:
        return  # a first import: every invoice is new, and has its balance already
    # The payments summed once per invoice in a derived table (UPDATE … FROM), not in a correlated
    # subquery the SET and WHERE clauses each ran again: a quarter of a million-invoice import.
    paid = (
        select(payments.c.invoice_id, func.sum(payments.c.amount_cents).label("paid"))
        .where(payments.c.kind.in_(REDUCING_KINDS))
        .group_by(payments.c.invoice_id)
        .subquery("paid")
    )
    inv = invoices.alias("ro_inv")
    balance = select(
        inv.c.id,
        inv.c.reported_status,
        (inv.c.reported_outstanding_cents - func.coalesce(paid.c.paid, 0)).label("balance"),
    )
    b = (
        balance.join_from(inv, paid, paid.c.invoice_id == inv.c.id, isouter=True)
        .where(
            inv.c.external_id.in_(external_ids),
            *([] if existing_up_to is None else [inv.c.id <= existing_up_to]),
            *([] if changed_at is None else [inv.c.updated_at == changed_at]),
        )
        .subquery("balance")
    )
    outstanding = case((b.c.balance < 0, 0), else_=b.c.balance)
    status = _status(b.c.reported_status, b.c.balance)
    new = select(b.c.id, outstanding.label("outstanding"), status.label("status")).subquery("recomputed")
    # Two statements: the invoices whose status changes, then those whose amount alone does. An UPDATE
    # that sets a column rewrites every index holding it in each row it touches, changed or not: a
    # partial payment (most of them) then moved two status indexes' entries for nothing (32k payments
    # over a million invoices: 0.5–1.3 s → 0.4 s).
    session.execute(
        update(invoices)
        .where(invoices.c.id == new.c.id, invoices.c.status.is_distinct_from(new.c.status))
        .values(outstanding_cents=new.c.outstanding, status=new.c.status)
    )
    session.execute(
        update(invoices)
        .where(invoices.c.id == new.c.id, invoices.c.outstanding_cents.is_distinct_from(new.c.outstanding))
        .values(outstanding_cents=new.c.outstanding)
    )


def _file_contact_ids():
    stg, cu = STAGING["contacts"], customers.alias("fc_cu")
    return (
        select(contacts.c.id)
        .join(cu, cu.c.id == contacts.c.customer_id)
        .join(stg, and_(stg.c.customer_external_id == cu.c.external_id, stg.c.email == contacts.c.email))
    )


def _write_links(session: Session, *, first: bool = False) -> int:
    """C7: the file's functions replace the contact's functions (only where they differ).
    ``first``: the contacts table was empty before this write, so no contact has a link to remove."""
    fn, cu, c = STAGING_FUNCTIONS, customers.alias("l_cu"), contacts.alias("l_c")
    wanted = (
        select(c.c.id.label("contact_id"), fn.c.function_id)
        .join(cu, cu.c.id == c.c.customer_id)
        .join(fn, and_(fn.c.customer_external_id == cu.c.external_id, fn.c.email == c.c.email))
    )
    w = wanted.subquery()
    removed = 0
    if not first:
        stale = delete(links).where(
            links.c.contact_id.in_(_file_contact_ids()),
            ~exists().where(w.c.contact_id == links.c.contact_id, w.c.function_id == links.c.function_id),
        )
        removed = _rowcount(session.execute(stale))
    new = (
        select(w.c.contact_id, w.c.function_id)
        .distinct()
        .where(~exists().where(links.c.contact_id == w.c.contact_id, links.c.function_id == w.c.function_id))
    )
    return removed + _insert_from(session, links, ["contact_id", "function_id"], new)


def _first_primaries(stg: Table):
    """C3 for a first import, per staged row: the file marks it primary, or the file marks none of
    its customer's contacts and it is the customer's first row (the oldest contact: rows are inserted
    in the file's order). _write_primaries gives the same marks once the contacts are there."""
    # The first rows of the customers the file marks no primary for, found once for the whole file (one
    # pass in the staging key's order), not by two subqueries per row: 3.3 s of 2M contacts' insert.
    other = stg.alias("fp_stg")
    unmarked_firsts = (
        select(func.min(other.c.row_no))
        .where(other.c.customer_external_id.is_not(None))
        .group_by(other.c.customer_external_id)
        .having(func.max(case((other.c.is_primary.is_(True), 1), else_=0)) == 0)
    )
    return or_(stg.c.is_primary.is_(True), stg.c.row_no.in_(unmarked_firsts))


def _write_primaries(session: Session, now: datetime) -> None:
    """C3: the file's primary contact wins; a customer with contacts and no primary gets its oldest contact."""
    stg, cu = STAGING["contacts"], customers.alias("p_cu")
    # Each contact of a customer the file marks a primary for, with whether the file marks it: one join
    # (UPDATE … FROM), not a correlated EXISTS that the SET and WHERE clauses each ran per contact.
    marked = select(stg.c.customer_external_id).where(stg.c.is_primary.is_(True)).distinct().subquery("marked")
    c, row = contacts.alias("p_c"), stg.alias("p_stg")
    is_row = and_(row.c.customer_external_id == cu.c.external_id, row.c.email == c.c.email, row.c.is_primary.is_(True))
    want = (
        select(c.c.id, row.c.row_no.is_not(None).label("marks"))
        .join(cu, cu.c.id == c.c.customer_id)
        .join(marked, marked.c.customer_external_id == cu.c.external_id)
        .join(row, is_row, isouter=True)
        .subquery("wanted")
    )
    session.execute(
        update(contacts)
        .where(contacts.c.id == want.c.id, contacts.c.is_primary.is_distinct_from(want.c.marks))
        .values(is_primary=want.c.marks, updated_at=now)
    )
    c2 = contacts.alias("c2")
    without = (
        select(func.min(c2.c.id))
        .where(c2.c.customer_id.in_(select(cu.c.id).join(stg, stg.c.customer_external_id == cu.c.external_id)))
        .group_by(c2.c.customer_id)
        .having(func.sum(case((c2.c.is_primary.is_(True), 1), else_=0)) == 0)
    )
    session.execute(update(contacts).where(contacts.c.id.in_(without)).values(is_primary=True, updated_at=now))
