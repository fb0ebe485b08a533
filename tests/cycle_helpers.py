"""Helpers for send-cycle tests: a store with the v1 config applied and a small ledger imported."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import update

from dunningops.ledger.importer import import_file
from dunningops.reconcile.apply import apply_config
from dunningops.spec import load_config
from dunningops.store.schema import AliasRow

PARIS = ZoneInfo("Europe/Paris")
APPLIED = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)  # a Friday

CUSTOMERS = "external_id,name,country,locale,currency,account_manager,plan\n"
CONTACTS = "customer_external_id,email,name,phone,job,functions,primary\n"
INVOICES = "external_id,customer_external_id,number,issue_date,due_date,amount,outstanding,currency,document_url,status\n"


def paris(y: int, m: int, d: int, hh: int = 8, mm: int = 30) -> datetime:
    """A local instant in the company's time zone (default: inside the 08:00-09:00 window)."""
    return datetime(y, m, d, hh, mm, tzinfo=PARIS).astimezone(UTC)


def setup_store(store, config: Path, tmp: Path, *, customers: str, contacts: str, invoices: str,
                verify: tuple[str, ...] = ("billing",)) -> None:
    apply_config(store, load_config(config), now=APPLIED, actor="t", git_commit=None)
    if verify:
        with store.session() as s:
            s.execute(update(AliasRow).where(AliasRow.id.in_(verify)).values(verified=True))
    for kind, body, header in (("customers", customers, CUSTOMERS), ("contacts", contacts, CONTACTS), ("invoices", invoices, INVOICES)):
        path = tmp / f"{kind}.csv"
        path.write_text(header + body)
        import_file(store, kind, path, now=APPLIED)
