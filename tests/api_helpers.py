"""Helpers for the /api/v1 tests: an App on a store with the v1 config applied, tokens, the
fixture ledger as API items, and the ledger's state in a comparable form."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select, update

from dunningops.app import App
from dunningops.reconcile.apply import apply_config
from dunningops.spec import load_config
from dunningops.store.schema import (
    AliasRow,
    ContactFunctionLinkRow,
    ContactRow,
    CustomerRow,
    InvoiceRow,
    PaymentRow,
)
from dunningops.web.api.tokens import create_token

APPLIED = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)  # a Friday
LEDGER_FIXTURES = Path(__file__).with_name("fixtures") / "ledger"
KINDS = ("customers", "contacts", "invoices", "payments")  # the order a system pushes them


@dataclass
class Clock:
    """A clock the test moves: ``clock.now = ...``."""

    now: datetime = field(default=APPLIED)

    def __call__(self) -> datetime:
        return self.now


def make_app(url: str, config: Path, clock: Clock | None = None) -> App:
    """An App on ``url`` with ``config`` applied (the billing alias verified), on a test clock."""
    app = App(config_dir=config, database_url=url, env={}, clock=clock or Clock())
    apply_config(app.store, load_config(config), now=APPLIED, actor="alice", git_commit=None)  # v1's owner (T1)
    with app.session() as s:
        s.execute(update(AliasRow).where(AliasRow.id == "billing").values(verified=True))
    return app


def token(app: App, member: str = "alice", scope: str = "write", label: str | None = None) -> str:
    with app.session() as s:
        return create_token(s, member=member, scope=scope, label=label, now=app.now())[1]


def client(base: str, secret: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    return httpx.Client(base_url=base, headers=headers, timeout=60)


def csv_items(path: Path) -> list[dict[str, str]]:
    """A CSV file's rows as API items: the same cells, empty ones left out."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return [{k: v for k, v in row.items() if v != ""} for row in csv.DictReader(handle)]


def fixture_items(kind: str) -> list[dict[str, str]]:
    return csv_items(LEDGER_FIXTURES / f"{kind}.csv")


def ledger_state(app: App) -> dict[str, Any]:
    """Every ledger row by its natural key, without ids (each store numbers its own)."""
    cu, co, inv, pay, links = (t.__table__ for t in (CustomerRow, ContactRow, InvoiceRow, PaymentRow, ContactFunctionLinkRow))
    with app.session() as s:
        customers = {r.external_id: _fields(r, ("id",)) for r in s.execute(select(cu))}
        by_id = {r.id: r.external_id for r in s.execute(select(cu.c.id, cu.c.external_id))}
        contacts = {(by_id[r.customer_id], r.email): _fields(r, ("id", "customer_id")) for r in s.execute(select(co))}
        contact_key = {r.id: (by_id[r.customer_id], r.email) for r in s.execute(select(co.c.id, co.c.customer_id, co.c.email))}
        functions = sorted((*contact_key[r.contact_id], r.function_id) for r in s.execute(select(links)))
        invoices = {
            r.external_id: {**_fields(r, ("id", "customer_id")), "customer": by_id[r.customer_id]} for r in s.execute(select(inv))
        }
        invoice_key = {r.id: r.external_id for r in s.execute(select(inv.c.id, inv.c.external_id))}
        payments = {
            r.external_id: {**_fields(r, ("id", "invoice_id")), "invoice": invoice_key[r.invoice_id]}
            for r in s.execute(select(pay))
        }
    return {"customers": customers, "contacts": contacts, "functions": functions, "invoices": invoices, "payments": payments}


def _fields(row: Any, leave_out: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in row._mapping.items() if k not in leave_out}
