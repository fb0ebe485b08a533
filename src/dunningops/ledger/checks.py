"""The set-based checks of an import: problems that involve other rows or the store (duplicate keys, unknown
customers or invoices, a second primary contact), a few statements over staging whatever the file's size."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Table, and_, exists, func, select
from sqlalchemy.orm import Session

from dunningops.ledger.staging import STAGING
from dunningops.store.schema import CustomerRow, InvoiceRow

customers, invoices = CustomerRow.__table__, InvoiceRow.__table__


def row_place(row: int) -> str:
    return f"row {row}"


def set_problems(
    session: Session,
    kind: str,
    place: Callable[[int], str] = row_place,
    *,
    keys_unique: bool = False,
    customers_later: bool = False,
) -> list[tuple[int, str, str]]:
    """(row, column, message) for problems that involve other rows or the store.

    ``place`` words the other row a message points at ("row 3"; the HTTP API says "item 2").
    ``keys_unique``: the staged keys are known to be unique (a UNIQUE index on them was built).
    ``customers_later``: unknown customers are looked for after the write (``unknown_customers``).
    """
    stg = STAGING[kind]
    problems: list[tuple[int, str, str]] = []
    key = ("customer_external_id", "email") if kind == "contacts" else ("external_id",)
    if not keys_unique:
        problems += _duplicates(session, stg, key, place)
    if kind in ("contacts", "invoices") and not customers_later:
        problems += unknown_customers(session, kind)
    if kind == "payments":
        problems += _unknown(session, stg, "invoice_external_id", invoices, "invoice")
    if kind == "contacts":
        # C3: one primary contact per customer. The customers marked twice or more found first (one pass
        # in the staging key's order, and usually none): joining every customer's first primary back to
        # its rows was 1.2 s of 2M contacts.
        marked = stg.alias("c3_stg")
        twice = (
            select(marked.c.customer_external_id)
            .where(marked.c.is_primary.is_(True))
            .group_by(marked.c.customer_external_id)
            .having(func.count() > 1)
        )
        first = (
            select(stg.c.customer_external_id, func.min(stg.c.row_no).label("first"))
            .where(stg.c.is_primary.is_(True), stg.c.customer_external_id.in_(twice))
            .group_by(stg.c.customer_external_id)
            .subquery()
        )
        rows = session.execute(
            select(stg.c.row_no, stg.c.customer_external_id, first.c.first)
            .join(first, first.c.customer_external_id == stg.c.customer_external_id)
            .where(stg.c.is_primary.is_(True), stg.c.row_no != first.c.first)
        )
        problems += [
            (r, "primary", f"a second primary contact for customer {c!r} (the first is on {place(f)})") for r, c, f in rows
        ]
    return problems


def _duplicates(session: Session, stg: Table, key: tuple[str, ...], place: Callable[[int], str]) -> list[tuple[int, str, str]]:
    cols = [stg.c[k] for k in key]
    first = select(*cols, func.min(stg.c.row_no).label("first")).group_by(*cols).having(func.count() > 1).subquery()
    rows = session.execute(
        select(stg.c.row_no, first.c.first, *cols)
        .join(first, and_(*(first.c[k] == stg.c[k] for k in key)))
        .where(stg.c.row_no != first.c.first)
    )
    what = " and ".join(key)
    return [(r[0], key[-1], f"duplicate {what} {'/'.join(map(str, r[2:]))!r} (first on {place(r[1])})") for r in rows]


def unknown_customers(session: Session, kind: str) -> list[tuple[int, str, str]]:
    """Staged rows (contacts, invoices) whose customer is not in the store."""
    return _unknown(session, STAGING[kind], "customer_external_id", customers, "customer")


def _unknown(session: Session, stg: Table, column: str, target: Table, what: str) -> list[tuple[int, str, str]]:
    rows = session.execute(
        # A row whose key cell was itself bad is staged with NULL there (already reported).
        select(stg.c.row_no, stg.c[column]).where(
            stg.c[column].is_not(None), ~exists().where(target.c.external_id == stg.c[column])
        )
    )
    return [(r, column, f"unknown {what} {value!r} (import {what}s first)") for r, value in rows]
