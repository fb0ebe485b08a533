"""Staging: each imported row, parsed and typed, lands in a temporary table first.

Checks that involve other rows or the store (duplicates, unknown customers)
and the writes themselves are then a few set-based statements, whatever the
file's size, and memory stays flat.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import BigInteger, Boolean, Column, Date, Index, Integer, MetaData, String, Table, Text

from dunningops.ledger.columns import KINDS, PAYMENT_KINDS
from dunningops.ledger.context import LedgerContext
from dunningops.ledger.issues import CellError

_meta = MetaData()
# A customer's postal address (letters as PDF), in the file, the staging table and the customers table alike.
ADDRESS_COLUMNS = ("address_line1", "address_line2", "postal_code", "city")


def _table(name: str, *columns: Column) -> Table:
    return Table(name, _meta, Column("row_no", Integer, primary_key=True), *columns, prefixes=["TEMPORARY"])


STAGING: dict[str, Table] = {
    "customers": _table(
        "stg_customers",
        Column("external_id", String(128)),
        Column("name", Text),
        Column("country", String(2)),
        Column("locale", String(8)),
        Column("currency", String(3)),
        Column("account_manager", String(63)),
        Column("plan_id", String(63)),
        Column("address_line1", Text),
        Column("address_line2", Text),
        Column("postal_code", String(32)),
        Column("city", Text),
    ),
    "contacts": _table(
        "stg_contacts",
        Column("customer_external_id", String(128)),
        Column("email", String(320)),
        Column("name", Text),
        Column("phone", String(64)),
        Column("job", Text),
        Column("is_primary", Boolean),
        Column("valid", Boolean),  # None: the row leaves the contact's validity as it is
    ),
    "invoices": _table(
        "stg_invoices",
        Column("external_id", String(128)),
        Column("customer_external_id", String(128)),
        Column("number", String(128)),
        Column("issue_date", Date),
        Column("due_date", Date),
        Column("amount_cents", BigInteger),
        Column("reported_outstanding_cents", BigInteger),
        Column("currency", String(3)),
        Column("document_url", Text),
        Column("reported_status", String(8)),
    ),
    "payments": _table(
        "stg_payments",
        Column("external_id", String(128)),
        Column("invoice_external_id", String(128)),
        Column("paid_on", Date),
        Column("amount_cents", BigInteger),
        Column("kind", String(16)),
    ),
}
# C7: a contact's functions, one row per (contact, function), beside stg_contacts.
STAGING_FUNCTIONS = Table(
    "stg_contact_functions",
    _meta,
    Column("row_no", Integer),
    Column("customer_external_id", String(128)),
    Column("email", String(320)),
    Column("function_id", String(63)),
    prefixes=["TEMPORARY"],
)

# (row number, parsed cells) → (staging row, function rows, problems). Every check runs on
# the cells that parsed, so a row with three bad cells reports all three.
RowConverter = Callable[[int, dict[str, Any]], tuple[dict[str, Any], list[dict[str, Any]], list[CellError]]]


def converter(kind: str, ctx: LedgerContext) -> RowConverter:
    """A function turning one parsed row into its staging row (and function rows), with its problems."""

    def customers(row_no: int, v: dict) -> tuple[dict, list, list]:
        problems = []
        manager = v.get("account_manager")
        if manager:
            if manager.lower() not in ctx.members and manager not in ctx.members:
                problems.append(
                    CellError("account_manager", f"unknown member {manager!r} (a member id or email from the config)")
                )
                manager = None
            else:
                manager = ctx.members.get(manager) or ctx.members[manager.lower()]
        plan = v.get("plan") or None
        if plan and plan not in ctx.plans:
            problems.append(CellError("plan", f"unknown plan {plan!r} (known: {', '.join(sorted(ctx.plans))})"))
            plan = None
        return (
            {
                "row_no": row_no,
                "external_id": v.get("external_id"),
                "name": v.get("name"),
                "country": v.get("country"),
                "locale": v.get("locale") or ctx.locale,
                "currency": v.get("currency") or ctx.currency,
                "account_manager": manager or None,
                "plan_id": plan,
                **{c: v.get(c) or None for c in ADDRESS_COLUMNS},
            },
            [],
            problems,
        )

    def contacts(row_no: int, v: dict) -> tuple[dict, list, list]:
        functions, problems = [], []
        for name in v.get("functions") or ():
            try:
                fid = ctx.function_id(name)
            except ValueError as exc:
                problems.append(CellError("functions", str(exc)))
                continue
            if fid not in functions:
                functions.append(fid)
        customer, email = v.get("customer_external_id"), v.get("email")
        staged = {
            "row_no": row_no,
            "customer_external_id": customer,
            "email": email,
            "name": v.get("name") or None,
            "phone": v.get("phone") or None,
            "job": v.get("job") or None,
            "is_primary": bool(v.get("primary")),
            "valid": v.get("valid"),
        }
        links = [{"row_no": row_no, "customer_external_id": customer, "email": email, "function_id": f} for f in functions]
        return staged, links, problems

    def invoices(row_no: int, v: dict) -> tuple[dict, list, list]:
        problems = []
        amount = v.get("amount")
        outstanding = v.get("outstanding", amount)
        if amount is not None and outstanding is not None and outstanding > amount:
            problems.append(
                CellError("outstanding", f"outstanding ({outstanding / 100:.2f}) exceeds the amount ({amount / 100:.2f})")
            )
        if v.get("issue_date") and v.get("due_date") and v["due_date"] < v["issue_date"]:
            problems.append(CellError("due_date", f"due date {v['due_date']} is before the issue date {v['issue_date']}"))
        status = (v.get("status") or "").lower() or ("paid" if outstanding == 0 else "open")
        if status not in ("open", "paid", "void"):
            problems.append(CellError("status", f"{v['status']!r} is not a status (open, paid or void)"))
            status = None
        return (
            {
                "row_no": row_no,
                "external_id": v.get("external_id"),
                "customer_external_id": v.get("customer_external_id"),
                "number": v.get("number"),
                "issue_date": v.get("issue_date"),
                "due_date": v.get("due_date"),
                "amount_cents": amount,
                "reported_outstanding_cents": outstanding,
                "currency": v.get("currency") or ctx.currency,
                "document_url": v.get("document_url") or None,
                "reported_status": status,
            },
            [],
            problems,
        )

    def payments(row_no: int, v: dict) -> tuple[dict, list, list]:
        problems = []
        kind = (v.get("kind") or "payment").lower()
        # A9: a failed payment reduces nothing; it is recorded for the failed-payment email.
        if kind not in PAYMENT_KINDS:
            problems.append(CellError("kind", f"{v['kind']!r} is not a kind (payment, credit_note or failed)"))
            kind = None
        return (
            {
                "row_no": row_no,
                "external_id": v.get("external_id"),
                "invoice_external_id": v.get("invoice_external_id"),
                "paid_on": v.get("date"),
                "amount_cents": v.get("amount"),
                "kind": kind,
            },
            [],
            problems,
        )

    assert set(KINDS) == {"customers", "contacts", "invoices", "payments"}
    return {"customers": customers, "contacts": contacts, "invoices": invoices, "payments": payments}[kind]


# The set-based checks and writes look staged rows up by these keys; without
# them a join on staging is a nested scan (seen: 35 s for 20k contacts).
# Declaring them attaches them to the tables; the importer builds them once the rows are in.
_INDEXES: dict[str, list[Index]] = {
    "customers": [Index("ix_stg_customers_key", STAGING["customers"].c.external_id)],
    "contacts": [
        Index("ix_stg_contacts_key", STAGING["contacts"].c.customer_external_id, STAGING["contacts"].c.email),
        Index("ix_stg_contact_functions_key", STAGING_FUNCTIONS.c.customer_external_id, STAGING_FUNCTIONS.c.email),
    ],
    # No index on customer_external_id: every statement scans staging and looks the customer up by
    # its own unique key (EXPLAIN QUERY PLAN), and building it was a twentieth of a 1M-row import.
    "invoices": [Index("ix_stg_invoices_key", STAGING["invoices"].c.external_id)],
    "payments": [
        Index("ix_stg_payments_key", STAGING["payments"].c.external_id),
        Index("ix_stg_payments_invoice", STAGING["payments"].c.invoice_external_id),
    ],
}

# The index on each staging table's own key (the columns duplicates are found by, checks.set_problems):
# the first of its kind's indexes above. A staging file builds it UNIQUE when it can, which proves
# there are no duplicates without the query that finds them.
KEY_INDEXES = {kind: indexes[0] for kind, indexes in _INDEXES.items()}
