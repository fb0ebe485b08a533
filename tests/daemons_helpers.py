"""A store with N due reminders for several senders at once (two daemons, a kill, a benchmark).

``write_config(folder, port)``: a config whose one plan sends one automatic email per customer to
the SMTP server on ``port``, every day, all day, with caps that never stop it. ``fill(store,
folder, n)`` applies it and imports N customers, each with one contact and one invoice whose
courtesy reminder is due at ``AT``. Used by tests/test_daemons.py and benchmarks/daemons.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import update

APPLIED = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)  # a Friday
AT = "2026-11-23T10:00:00+01:00"  # the Monday after: the courtesy step (3 days before the due date) is due
DUE = "2026-11-26"

CONFIG = """version: 1
settings:
  company: {name: Acme SAS, country: FR, timezone: Europe/Paris, locale: fr_FR, currency: EUR}
  deliverability: {domain: acme.fr, fallback_sender: reminders@acme.fr}
  sending:
    window: {days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "23:59"}
    caps: {per_day: 1000000, per_month: 10000000}
    skip_public_holidays: false
    transport: {kind: smtp, host: 127.0.0.1, port: PORT, security: none, timeout_seconds: 60}
members:
  - {id: alice, email: alice@acme.fr, name: Alice Martin, role: owner}
aliases:
  - {id: billing, email: billing@acme.fr, display_name: Acme Billing, signature: "Acme"}
plans:
  - id: standard
    name: Standard
    assign: {default: true}
    steps:
      - {id: courtesy, at: -3d, action: email, send: auto, from: alias.billing, template: courtesy}
templates:
  - id: courtesy
    name: Courtesy reminder
    locales:
      fr: {subject: "Rappel : échéance proche", body: courtesy.fr.txt}
"""
BODY = "Bonjour {{ contact.name }},\n\nVotre facture arrive à échéance le {{ invoices[0].due_date }}.\n\n{{ signature }}\n"


def write_config(folder: Path, port: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dunningops.yaml").write_text(CONFIG.replace("PORT", str(port)), encoding="utf-8")
    (folder / "courtesy.fr.txt").write_text(BODY, encoding="utf-8")
    return folder


def fill(store, folder: Path, n: int, work: Path) -> None:
    """The config applied (alias verified) and N customers with one due courtesy reminder each."""
    from dunningops.ledger.importer import import_file
    from dunningops.reconcile.apply import apply_config
    from dunningops.spec import load_config
    from dunningops.store.schema import AliasRow, OutboxRow

    apply_config(store, load_config(folder), now=APPLIED, actor="t", git_commit=None)
    with store.session() as s:
        s.execute(update(AliasRow).values(verified=True))
        s.execute(update(OutboxRow).values(delivered_at=APPLIED))  # its confirmation went out long ago
    from cycle_helpers import CONTACTS, CUSTOMERS, INVOICES

    rows = {"customers": [CUSTOMERS.strip()], "contacts": [CONTACTS.strip()], "invoices": [INVOICES.strip()]}
    for i in range(1, n + 1):
        c = f"C{i:06d}"
        rows["customers"].append(f"{c},Client {i},FR,fr_FR,EUR,,")
        rows["contacts"].append(f"{c},payer{i}@client{i}.test,Payer {i},,,,true")
        rows["invoices"].append(f"I{i:06d},{c},FA-{i},2026-10-26,{DUE},100.00,100.00,EUR,,")
    for kind, lines in rows.items():
        path = work / f"{kind}.csv"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        import_file(store, kind, path, now=APPLIED)
