"""Ledger import on SQLite and PostgreSQL: idempotent upserts, every bad row reported, nothing half-written."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import delete, select

from dunningops.errors import DunningOpsError
from dunningops.ledger.importer import import_file, ledger_counts
from dunningops.ledger.issues import LedgerImportError
from dunningops.ledger.mapping import load_mapping
from dunningops.ledger.queries import list_contacts, list_customers, reach_by_plan, show_customer
from dunningops.reconcile.apply import apply_config
from dunningops.spec import load_config
from dunningops.store import open_store
from dunningops.store.schema import ContactRow, InvoiceRow

LEDGER = Path(__file__).with_name("fixtures") / "ledger"
NOW = datetime(2026, 11, 23, 8, 30, tzinfo=UTC)
TODAY = date(2026, 11, 23)


@pytest.fixture
def store(database_url: str, v1: Path):
    s = open_store(database_url)
    apply_config(s, load_config(v1), now=NOW, actor="t", git_commit=None)
    yield s
    s.dispose()


def _import(store, kind: str, name: str | None = None, **kw):
    return import_file(store, kind, LEDGER / (name or f"{kind}.csv"), now=NOW, **kw)


def _import_all(store) -> None:
    for kind in ("customers", "contacts", "invoices", "payments"):
        _import(store, kind)


def _invoices(store) -> dict[str, tuple]:
    with store.session() as s:
        rows = s.execute(select(InvoiceRow.external_id, InvoiceRow.outstanding_cents, InvoiceRow.status)).all()
    return {r[0]: (r[1], r[2]) for r in rows}


def test_import_then_reimport_changes_nothing(store):
    first = [_import(store, k) for k in ("customers", "contacts", "invoices", "payments")]
    assert [(s.added, s.changed) for s in first] == [(3, 0), (4, 0), (4, 0), (2, 0)]
    assert first[1].links_changed == 4  # Payeur (label, fr), accountant (id), Accountant (label), payer
    second = [_import(store, k) for k in ("customers", "contacts", "invoices", "payments")]
    assert [(s.added, s.changed, s.unchanged) for s in second] == [(0, 0, 3), (0, 0, 4), (0, 0, 4), (0, 0, 2)]
    assert second[1].links_changed == 0
    with store.session() as s:
        assert ledger_counts(s) == {"customers": 3, "contacts": 4, "invoices": 4, "payments": 2}


def test_payments_reduce_outstanding_and_paid_invoices_leave_dunning(store):
    _import_all(store)
    assert _invoices(store) == {
        "I1": (100000, "open"),  # 1200 - 200 paid
        "I2": (0, "paid"),  # a credit note covers it
        "I3": (0, "paid"),  # reported paid
        "I4": (500000, "open"),
    }


def test_contacts_functions_primary_and_case(store):
    _import_all(store)
    with store.session() as s:
        contacts = {c["email"]: c for c in list_contacts(s)}
    assert contacts["paul@martin.fr"]["functions"] == ["accountant", "payer"]  # C7: by label or id
    assert contacts["paul@martin.fr"]["is_primary"] and not contacts["anne@martin.fr"]["is_primary"]
    # C3: a customer with contacts and none marked primary gets one.
    assert contacts["hans@mueller.de"]["is_primary"]
    assert "rechnungen@schmid.ch" in contacts  # emails compared lower-cased


def _primaries(store) -> set[str]:
    with store.session() as s:
        return {c["email"] for c in list_contacts(s) if c["is_primary"]}


def test_c3_first_import_marks_the_primaries_a_later_import_would(store, tmp_path: Path):
    # C1 marks its second contact; C2 marks none, its first row comes after C3's; C3 marks its only one.
    rows = [
        "C1,a1@martin.fr,,,,,false",
        "C2,b1@mueller.de,,,,,",
        "C1,a2@martin.fr,,,,,true",
        "C3,c1@schmid.ch,,,,,true",
        "C2,b2@mueller.de,,,,,false",
        "C1,a3@martin.fr,,,,,",
    ]
    header = "customer_external_id,email,name,phone,job,functions,primary"
    file = tmp_path / "contacts.csv"
    file.write_text("\n".join([header, *rows]) + "\n")
    _import(store, "customers")
    first = import_file(store, "contacts", file, now=NOW)  # into an empty contacts table
    assert first.added == 6
    assert _primaries(store) == {"a2@martin.fr", "b1@mueller.de", "c1@schmid.ch"}
    again = import_file(store, "contacts", file, now=NOW)  # the pass over existing contacts: nothing to move
    assert (again.added, again.changed) == (0, 0) and _primaries(store) == {"a2@martin.fr", "b1@mueller.de", "c1@schmid.ch"}

    # The same file into a store that already has a contact (of another customer): the same marks.
    seeded = tmp_path / "seeded.csv"
    seeded.write_text(header + "\nC3,first@schmid.ch,,,,,\n")
    with store.session() as s:
        s.execute(delete(ContactRow))
    import_file(store, "contacts", seeded, now=NOW)
    import_file(store, "contacts", file, now=NOW)
    # first@schmid.ch stays C3's oldest contact, but the file marks c1@schmid.ch (C3: the file's primary wins).
    assert _primaries(store) == {"a2@martin.fr", "b1@mueller.de", "c1@schmid.ch"}


def test_changed_row_updates(store, tmp_path: Path):
    _import_all(store)
    changed = tmp_path / "invoices.csv"
    changed.write_text((LEDGER / "invoices.csv").read_text().replace("2026-12-01,99.99,0", "2026-12-15,99.99,0"))
    summary = import_file(store, "invoices", changed, now=NOW)
    assert (summary.added, summary.changed, summary.unchanged) == (0, 1, 3)


def test_bad_rows_all_reported_nothing_written(store, snapshot):
    _import(store, "customers")
    with pytest.raises(LedgerImportError) as info:
        _import(store, "invoices", "bad_invoices.csv")
    message = str(info.value)
    assert message.startswith("9 errors in 6 of 7 rows; nothing was imported:")
    assert "bad_invoices.csv: row 4, column due_date: '31/02/2026' is not a date (expected YYYY-MM-DD)" in message
    assert "bad_invoices.csv: row 3, column customer_external_id: unknown customer 'C9'" in message
    assert "bad_invoices.csv: row 6, column external_id: duplicate external_id 'I1' (first on row 2)" in message
    assert message == snapshot
    with store.session() as s:
        assert ledger_counts(s)["invoices"] == 0


def test_skip_invalid_writes_rejects(store, tmp_path: Path):
    _import(store, "customers")
    rejects = tmp_path / "rejects.csv"
    summary = _import(store, "invoices", "bad_invoices.csv", skip_invalid=True, reject_file=rejects)
    assert (summary.added, summary.rejected) == (1, 6)
    lines = rejects.read_text().splitlines()
    assert lines[0] == "file,row,column,error" and len(lines) == 10
    assert set(_invoices(store)) == {"I1"}


def test_prune_voids_absent_invoices_with_dry_run_first(store, tmp_path: Path):
    _import_all(store)
    partial = tmp_path / "invoices.csv"
    partial.write_text("\n".join((LEDGER / "invoices.csv").read_text().splitlines()[:3]) + "\n")  # I1, I2 only
    dry = import_file(store, "invoices", partial, now=NOW, prune=True, dry_run=True)
    # A full export lacks I3 (paid) and I4 (open): both leave the ledger as void.
    assert dry.pruned == 2 and "would import" in dry.line() and "2 voided" in dry.line()
    assert _invoices(store)["I4"][1] == "open"
    real = import_file(store, "invoices", partial, now=NOW, prune=True)
    assert real.pruned == 2
    assert {k: v[1] for k, v in _invoices(store).items()} == {"I1": "open", "I2": "paid", "I3": "void", "I4": "void"}


def test_mapping_file_imports_another_systems_export(store):
    _import(store, "customers")
    summary = _import(store, "invoices", "sage_invoices.csv", mapping=load_mapping(LEDGER / "sage.yaml"))
    assert summary.added == 2
    assert _invoices(store) == {"I1": (120000, "open"), "I2": (30050, "open")}


def test_jsonl_with_a_broken_line(store):
    with pytest.raises(LedgerImportError, match=r"customers.jsonl: line 3: line is not valid JSON"):
        _import(store, "customers", "customers.jsonl")
    summary = _import(store, "customers", "customers.jsonl", skip_invalid=True)
    assert (summary.added, summary.rejected) == (2, 1)


def test_missing_column_and_unknown_function(store, tmp_path: Path):
    bad = tmp_path / "contacts.csv"
    bad.write_text("customer_external_id,name\nC1,x\n")
    with pytest.raises(DunningOpsError, match=r"contacts.csv: row 1: missing required column\(s\): email"):
        import_file(store, "contacts", bad, now=NOW)
    _import(store, "customers")
    bad.write_text("customer_external_id,email,functions,primary\nC1,a@b.fr,payer,true\nC1,c@b.fr,payor,no\nC1,d@b.fr,,yes\n")
    with pytest.raises(LedgerImportError) as info:
        import_file(store, "contacts", bad, now=NOW)
    assert "row 3, column functions: unknown contact function 'payor'; did you mean 'payer'?" in str(info.value)
    assert "row 4, column primary: a second primary contact for customer 'C1' (the first is on row 2)" in str(info.value)


def test_import_needs_applied_config(database_url: str):
    s = open_store(database_url)
    try:
        with pytest.raises(DunningOpsError, match="no applied config yet"):
            _import(s, "customers")
    finally:
        s.dispose()


def test_customers_list_plans_and_filters(store):
    _import_all(store)
    with store.session() as s:
        rows = {r["external_id"]: r for r in list_customers(s, today=TODAY)}
        assert rows["C1"]["plan"] == "standard"  # the default plan
        assert rows["C1"]["open_invoices"] == 1 and rows["C1"]["days_overdue"] == 53
        assert [r["external_id"] for r in list_customers(s, today=TODAY, overdue_days=30)] == ["C1"]
        assert list_customers(s, today=TODAY, plan="nope") == []
        shown = show_customer(s, "C1", TODAY)
        assert shown["account_manager"] == "bob" and len(shown["contacts"]) == 2
        reach = reach_by_plan(s, TODAY)
        assert reach == [{"plan": "standard", "customers": 3, "with_open_invoices": 2, "open_invoices": 2,
                          "overdue_invoices": 2, "outstanding_cents": 600000, "without_valid_contact": 0}]


def test_cli_import_and_lists(run, v1: Path, tmp_path: Path, snapshot):
    url = f"sqlite:///{tmp_path}/s.db"
    run("apply", "--config", v1, "--database-url", url, "--auto-approve")
    for kind in ("customers", "contacts", "invoices", "payments"):
        result = run("ledger", "import", kind, LEDGER / f"{kind}.csv", "--config", v1, "--database-url", url)
        assert result.exit_code == 0, result.output
    bad = run("ledger", "import", "invoices", LEDGER / "bad_invoices.csv", "--config", v1, "--database-url", url)
    assert bad.exit_code == 1 and bad.stderr.startswith("Error: 9 errors in 6 of 7 rows") and "Traceback" not in bad.stderr
    listing = run("customers", "list", "--config", v1, "--database-url", url)
    assert listing.stdout == snapshot(name="customers-list")
    contacts = run("contacts", "list", "--customer", "C1", "--config", v1, "--database-url", url)
    assert contacts.stdout == snapshot(name="contacts-list")
    anne = next(line for line in contacts.stdout.splitlines() if "anne@" in line).split()[0]
    assert run("contacts", "set-primary", anne, "--config", v1, "--database-url", url).exit_code == 0
    out = run("contacts", "set-functions", anne, "Payeur", "--config", v1, "--database-url", url)
    assert out.stdout == f"Contact #{anne} functions: ['payer']\n"
    shown = run("contacts", "show", anne, "--config", v1, "--database-url", url)
    assert '"is_primary": true' in shown.stdout and '"payer"' in shown.stdout
    assert run("contacts", "mark-valid", "999", "--config", v1, "--database-url", url).stderr == "Error: no contact #999\n"


def test_new_invoices_get_the_balance_rules_the_recompute_applies(store, tmp_path: Path):
    """A new invoice's outstanding and status are set as it is written (the recompute skips new rows):
    the same rules as for an invoice the file changes, whose payments still count."""
    _import_all(store)
    more = tmp_path / "invoices.csv"
    more.write_text(
        (LEDGER / "invoices.csv").read_text().replace("1200.00,1200.00", "1200.00,1100.00")  # I1 changed; P1 paid 200
        + "I5,C1,FA-5,2026-10-01,2026-11-01,10.00,0.00,EUR,,open\n"  # reported open, nothing owed: paid
        + "I6,C1,FA-6,2026-10-01,2026-11-01,10.00,10.00,EUR,,void\n"  # void as reported
        + "I7,C1,FA-7,2026-10-01,2026-11-01,10.00,10.00,EUR,,paid\n"  # paid as reported, whatever it says is owed
        + "I8,C1,FA-8,2026-10-01,2026-11-01,10.00,7.50,EUR,,\n"
    )
    summary = import_file(store, "invoices", more, now=NOW)
    assert (summary.added, summary.changed) == (4, 1)
    invoices = _invoices(store)
    assert invoices["I1"] == (90000, "open")  # 1100 - 200 paid
    assert {k: invoices[k] for k in ("I5", "I6", "I7", "I8")} == {
        "I5": (0, "paid"),
        "I6": (1000, "void"),
        "I7": (1000, "paid"),
        "I8": (750, "open"),
    }


def test_a_payment_moved_to_another_invoice_gives_the_first_its_balance_back(store, tmp_path: Path):
    """A corrected payments file links P1 to I4 instead of I1: I1 owes its 1200 again, I4 is reduced."""
    _import_all(store)
    moved = tmp_path / "payments.csv"
    moved.write_text((LEDGER / "payments.csv").read_text().replace("P1,I1,", "P1,I4,"))
    summary = import_file(store, "payments", moved, now=NOW)
    assert (summary.added, summary.changed) == (0, 1)
    invoices = _invoices(store)
    assert invoices["I1"] == (120000, "open")
    assert invoices["I4"] == (480000, "open")  # 5000 - 200


def test_unchanged_invoices_reimport_recomputes_no_balance(store, tmp_path: Path, monkeypatch):
    """Only invoices a write changes can owe a new balance (payments are not touched by an invoice import)."""
    from dunningops.ledger import writes

    _import_all(store)
    before = _invoices(store)
    calls = []
    recompute = writes._recompute_outstanding
    monkeypatch.setattr(writes, "_recompute_outstanding", lambda *a, **k: (calls.append(k), recompute(*a, **k))[1])
    assert _import(store, "invoices").changed == 0
    assert calls == [] and _invoices(store) == before
    # One invoice changed a day later: recomputed with its payment, the others left as they are.
    changed = tmp_path / "invoices.csv"
    changed.write_text((LEDGER / "invoices.csv").read_text().replace("1200.00,1200.00", "1200.00,1000.00"))
    later = datetime(2026, 11, 24, 8, 30, tzinfo=UTC)
    assert import_file(store, "invoices", changed, now=later).changed == 1
    assert [c.get("changed_at") for c in calls] == [later]
    assert _invoices(store) == before | {"I1": (80000, "open")}  # 1000 - 200 paid
