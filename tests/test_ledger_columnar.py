"""The columnar fast path of a CSV import gives exactly what the row-by-row path gives: the same rows
written, the same errors (file, row, column, message), on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import itertools
import os
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from dunningops.ledger import stream
from dunningops.ledger.generate import generate_ledger
from dunningops.ledger.importer import import_file
from dunningops.ledger.issues import LedgerImportError
from dunningops.reconcile.apply import apply_config
from dunningops.spec import load_config
from dunningops.store import open_store
from dunningops.store.schema import ContactFunctionLinkRow, ContactRow, CustomerRow, InvoiceRow, PaymentRow

NOW = datetime(2026, 11, 23, 8, 30, tzinfo=UTC)
KINDS = ("customers", "contacts", "invoices", "payments")
TABLES = (CustomerRow, ContactRow, ContactFunctionLinkRow, InvoiceRow, PaymentRow)


_second = itertools.count(1)


@pytest.fixture
def urls(request: pytest.FixtureRequest, database_url: str, tmp_path: Path):
    """Two empty stores of the same backend: one imported the columnar way, one row by row."""
    if database_url.startswith("sqlite"):
        yield [database_url, f"sqlite:///{tmp_path}/row_by_row.db"]
        return
    server = request.getfixturevalue("postgres_server")
    name = f"columnar_{os.getpid()}_{next(_second)}"
    server.create_database(name)
    try:
        yield [database_url, server.url(name)]
    finally:
        server.drop_database(name)


def _row_by_row(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream, "batch_converter", lambda *a, **k: None)


def _dump(store) -> dict[str, list[tuple]]:
    with store.session() as s:
        return {t.__tablename__: sorted(tuple(r) for r in s.execute(select(*t.__table__.columns)).all()) for t in TABLES}


def _import_all(store, folder: Path, **kw) -> list[str]:
    return [import_file(store, k, folder / f"{k}.csv", now=NOW, batch_size=64, **kw).line() for k in KINDS]


def _ledger(tmp_path: Path, v1: Path) -> Path:
    desired = load_config(v1)
    folder = tmp_path / "ledger"
    generate_ledger(
        folder,
        customers=120,
        seed=3,
        members=sorted(desired.members),
        functions=sorted(desired.contact_functions),
        today=date(2026, 11, 23),
        plans=sorted(desired.plans),
    )
    return folder


def _rewrite(path: Path, edit) -> None:
    """Rewrite a CSV file row by row: edit(row index, {column: cell}) changes the cells in place."""
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    fields = list(rows[0])
    for i, row in enumerate(rows):
        edit(i, row)
    with path.open("w", encoding="utf-8", newline="") as handle:
        out = csv.DictWriter(handle, fields)
        out.writeheader()
        out.writerows(rows)


def _applied(url: str, v1: Path):
    store = open_store(url)
    apply_config(store, load_config(v1), now=NOW, actor="t", git_commit=None)
    return store


def test_generated_ledger_same_rows_both_ways(urls, v1, tmp_path, monkeypatch):
    folder = _ledger(tmp_path, v1)
    # Shapes the columnar path hands back to the row-by-row one, mixed into otherwise valid batches.
    _rewrite(folder / "invoices.csv", _unusual_but_valid)
    results = []
    for url, columnar in zip(urls, (True, False), strict=True):
        if not columnar:
            _row_by_row(monkeypatch)
        store = _applied(url, v1)
        lines = _import_all(store, folder)
        dump = _dump(store)
        lines += _import_all(store, folder)
        assert _dump(store) == dump  # the same files again change nothing
        results.append((lines, dump))
        store.dispose()
    assert results[0] == results[1]
    lines, dump = results[0]
    assert "120 added" in lines[0] and "0 added, 0 changed" in lines[6]
    invoices = {r[1]: r for r in dump["invoices"]}  # by external id
    assert len(invoices) == int(lines[2].split(" rows")[0].rsplit(" ", 1)[1])


def _unusual_but_valid(i: int, row: dict) -> None:
    if i % 7 == 0:
        row["amount"] = "12.5" if i % 2 else "7"  # one decimal, none
        row["outstanding"] = ""
        row["status"] = ""
    if i == 30:
        row["issue_date"] = "20260901"  # read by date.fromisoformat (not ISO text): row by row
    if i == 31:
        row["external_id"] = f"  {row['external_id']}  "  # stripped both ways
    if i == 32:
        row["currency"] = "eur"
        row["document_url"] = ""


def _bad(i: int, row: dict) -> None:
    if i == 5:
        row["due_date"] = "2026-02-30"
    if i == 6:
        row["amount"] = "1,5"
    if i == 7:
        row["outstanding"] = "99999999.00"  # more than the amount
    if i == 8:
        row["currency"] = "EURO"
    if i == 9:
        row["status"] = "late"
    if i == 10:
        row["customer_external_id"] = "NOPE"
    if i == 11:
        row["number"] = ""
    if i == 12:
        row["issue_date"] = "2026-12-31"  # after its due date
        row["due_date"] = "2026-01-01"
    if i == 13:
        row["document_url"] = "x" * 2001
    if i == 14:
        row["number"] = "FA\x00"
    if i == 200:
        row["due_date"] = "1899-12-31"


def test_bad_rows_same_errors_both_ways(urls, v1, tmp_path, monkeypatch):
    folder = _ledger(tmp_path, v1)
    _rewrite(folder / "invoices.csv", _bad)
    errors = []
    for url, columnar in zip(urls, (True, False), strict=True):
        if not columnar:
            _row_by_row(monkeypatch)
        store = _applied(url, v1)
        for kind in ("customers", "contacts"):
            import_file(store, kind, folder / f"{kind}.csv", now=NOW)
        with pytest.raises(LedgerImportError) as caught:
            import_file(store, "invoices", folder / "invoices.csv", now=NOW, batch_size=64)
        with store.session() as s:
            assert s.execute(select(InvoiceRow.id)).first() is None  # nothing written
        rejects = tmp_path / f"rejects-{columnar}.csv"
        summary = import_file(
            store, "invoices", folder / "invoices.csv", now=NOW, batch_size=64, skip_invalid=True, reject_file=rejects
        )
        errors.append((str(caught.value), caught.value.issues, summary.line(), rejects.read_text(encoding="utf-8")))
        store.dispose()
    assert errors[0] == errors[1]
    message = errors[0][0]
    assert "11 errors in 11 of" in message
    for expected in (
        "row 7, column due_date: '2026-02-30' is not a date (expected YYYY-MM-DD)",
        "row 8, column amount: '1,5' is not an amount",
        "row 12, column customer_external_id: unknown customer 'NOPE'",
        "row 16, column number: contains a NUL character (byte 0)",
        "row 202, column due_date: '1899-12-31' is out of range",
    ):
        assert expected in message
