"""A ledger imported from several files in one transaction (`ledger import-all`), on SQLite and PostgreSQL:
the files in the ledger's order, every file's errors in one run, nothing written unless all of it is."""

from __future__ import annotations

import csv
import shutil
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import select, text

from dunningops.errors import InvalidInputError
from dunningops.ledger import importer, stream
from dunningops.ledger.importer import LedgerFile, import_files, ledger_counts, ledger_files
from dunningops.ledger.issues import LedgerImportError
from dunningops.reconcile.apply import apply_config
from dunningops.spec import load_config
from dunningops.store import open_store
from dunningops.store.schema import ContactRow, CustomerRow, InvoiceRow
from test_ledger_import import LEDGER, NOW, store  # noqa: F401  (store: the applied v1 config, SQLite and PostgreSQL)

ORDER = ("customers", "contacts", "invoices", "payments")
EMPTY = {"customers": 0, "contacts": 0, "invoices": 0, "payments": 0}


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    """A copy of the fixture ledger's four CSV files (tests may edit them)."""
    directory = tmp_path / "ledger"
    directory.mkdir()
    for kind in ORDER:
        shutil.copy(LEDGER / f"{kind}.csv", directory)
    return directory


def _state(store) -> tuple:
    """What an import leaves: the counts, each invoice's balance and status, each contact's primary flag."""
    with store.session() as s:
        counts = ledger_counts(s)
        invoices = sorted(s.execute(select(InvoiceRow.external_id, InvoiceRow.outstanding_cents, InvoiceRow.status)).all())
        contacts = sorted(s.execute(select(ContactRow.email, ContactRow.is_primary)).all())
    return counts, [tuple(r) for r in invoices], [tuple(r) for r in contacts]


def _edit(path: Path, row: int, column: str, value: str) -> None:
    """Set one cell of a CSV file (``row`` as the import numbers it: the header is row 1)."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    rows[row - 2][column] = value
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.DictWriter(handle, fieldnames=list(rows[0]))
        out.writeheader()
        out.writerows(rows)


def test_one_transaction_imports_every_file_in_the_ledger_s_order(store, ledger):
    # Given in any order, written in the ledger's: contacts and invoices need their customers first,
    # payments their invoices.
    summaries = import_files(store, list(reversed(ledger_files(ledger))), now=NOW)
    assert [s.kind for s in summaries] == list(ORDER)
    assert [(s.added, s.changed) for s in summaries] == [(3, 0), (4, 0), (4, 0), (2, 0)]
    counts, invoices, contacts = _state(store)
    assert counts == {"customers": 3, "contacts": 4, "invoices": 4, "payments": 2}
    # The same balances and primary contacts (C3) as four imports give (test_ledger_import.py).
    assert invoices == [("I1", 100000, "open"), ("I2", 0, "paid"), ("I3", 0, "paid"), ("I4", 500000, "open")]
    assert contacts == [
        ("anne@martin.fr", False),
        ("hans@mueller.de", True),
        ("paul@martin.fr", True),
        ("rechnungen@schmid.ch", True),
    ]
    again = import_files(store, ledger_files(ledger), now=NOW)
    assert [(s.added, s.changed, s.unchanged) for s in again] == [(0, 0, 3), (0, 0, 4), (0, 0, 4), (0, 0, 2)]


def test_every_file_s_errors_in_one_run_and_nothing_written(store, ledger):
    _edit(ledger / "contacts.csv", 3, "email", "anne.martin.fr")
    _edit(ledger / "invoices.csv", 5, "currency", "EURO")
    with pytest.raises(LedgerImportError) as caught:
        import_files(store, ledger_files(ledger), now=NOW)
    message = str(caught.value)
    assert message.splitlines()[0] == "2 errors in 2 of 13 rows; nothing was imported:"
    assert "contacts.csv: row 3, column email: 'anne.martin.fr' is not a valid email address" in message
    assert "invoices.csv: row 5, column currency: 'EURO' is not a currency code (e.g. EUR)" in message
    # The customers and payments files were valid: not written either.
    assert _state(store)[0] == EMPTY


def test_a_later_file_is_checked_against_the_valid_rows_before_it(store, ledger):
    # C3's row is invalid: its contact and invoice name a customer the import would not have.
    _edit(ledger / "customers.csv", 4, "currency", "FRANCS")
    with pytest.raises(LedgerImportError) as caught:
        import_files(store, ledger_files(ledger), now=NOW)
    issues = {(i.file, i.row, i.column) for i in caught.value.issues}
    assert ("customers.csv", 4, "currency") in issues
    assert ("contacts.csv", 5, "customer_external_id") in issues
    assert ("invoices.csv", 5, "customer_external_id") in issues
    assert not any(i.file == "payments.csv" for i in caught.value.issues)
    assert _state(store)[0] == EMPTY


def test_skip_invalid_writes_every_file_s_valid_rows_and_one_reject_file(store, ledger, tmp_path):
    _edit(ledger / "contacts.csv", 3, "email", "anne.martin.fr")
    _edit(ledger / "invoices.csv", 5, "currency", "EURO")
    rejects = tmp_path / "rejects.csv"
    summaries = import_files(store, ledger_files(ledger), now=NOW, skip_invalid=True, reject_file=rejects)
    assert [s.rejected for s in summaries] == [0, 1, 1, 0]
    assert _state(store)[0] == {"customers": 3, "contacts": 3, "invoices": 3, "payments": 2}
    with rejects.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["file", "row", "column", "error"]
    assert sorted((r[0], r[1], r[2]) for r in rows[1:]) == [("contacts.csv", "3", "email"), ("invoices.csv", "5", "currency")]


def test_dry_run_summarises_every_file_and_writes_nothing(store, ledger):
    summaries = import_files(store, ledger_files(ledger), now=NOW, dry_run=True)
    assert [(s.dry_run, s.added) for s in summaries] == [(True, 3), (True, 4), (True, 4), (True, 2)]
    assert _state(store)[0] == EMPTY


def test_a_declined_prune_rolls_back_every_file(store, ledger):
    import_files(store, ledger_files(ledger), now=NOW)
    lines = (ledger / "invoices.csv").read_text(encoding="utf-8").splitlines()
    (ledger / "invoices.csv").write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")  # I4 gone from the export
    _edit(ledger / "customers.csv", 2, "name", "Martin et Fils")
    asked = []
    summaries = import_files(
        store, ledger_files(ledger), now=NOW, prune=True, confirm=lambda s: asked.append(s.kind) or s.kind != "invoices"
    )
    assert summaries[2].pruned == 1 and "invoices" in asked
    with store.session() as s:
        assert s.scalar(select(InvoiceRow.status).where(InvoiceRow.external_id == "I4")) == "open"
        assert s.scalar(select(CustomerRow.name).where(CustomerRow.external_id == "C1")) != "Martin et Fils"


@pytest.fixture
def sqlite_store(tmp_path: Path, v1: Path):
    s = open_store(f"sqlite:///{tmp_path}/state.db")
    apply_config(s, load_config(v1), now=NOW, actor="t", git_commit=None)
    yield s
    s.dispose()


def test_large_files_are_staged_apart_and_written_in_the_one_transaction(sqlite_store, ledger, monkeypatch, tmp_path):
    # SQLite's path (PostgreSQL stages with COPY in the transaction). Every CSV file takes the scratch-file path: four files ATTACHed to one write transaction.
    monkeypatch.setattr(stream, "ARROW_MIN_BYTES", 0)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    staged = _spy_apart(monkeypatch)
    _edit(ledger / "payments.csv", 3, "amount", "lots")
    with pytest.raises(LedgerImportError) as caught:
        import_files(sqlite_store, ledger_files(ledger), now=NOW)
    assert [(i.file, i.row, i.column) for i in caught.value.issues] == [("payments.csv", 3, "amount")]
    assert staged == list(ORDER)
    assert _state(sqlite_store)[0] == EMPTY
    assert not list(scratch.iterdir())  # every scratch file removed
    shutil.copy(LEDGER / "payments.csv", ledger)
    summaries = import_files(sqlite_store, ledger_files(ledger), now=NOW)
    assert [s.added for s in summaries] == [3, 4, 4, 2]
    assert _state(sqlite_store)[1] == BALANCES
    assert not list(scratch.iterdir())


def test_the_files_of_a_directory(tmp_path):
    directory = tmp_path / "export"
    directory.mkdir()
    with pytest.raises(InvalidInputError, match="no ledger file"):
        ledger_files(directory)
    shutil.copy(LEDGER / "invoices.csv", directory)
    shutil.copy(LEDGER / "customers.jsonl", directory)
    (directory / "notes.txt").write_text("not a ledger file")
    assert ledger_files(directory) == [
        LedgerFile("customers", directory / "customers.jsonl"),
        LedgerFile("invoices", directory / "invoices.csv"),
    ]
    shutil.copy(LEDGER / "customers.csv", directory)
    with pytest.raises(InvalidInputError, match=r"both customers\.csv and customers\.jsonl"):
        ledger_files(directory)


def test_one_file_of_each_kind_and_prune_needs_invoices(store, ledger):
    customers = LedgerFile("customers", ledger / "customers.csv")
    with pytest.raises(InvalidInputError, match="one file of each kind"):
        import_files(store, [customers, customers], now=NOW)
    with pytest.raises(InvalidInputError, match="--prune applies to invoices only"):
        import_files(store, [customers], now=NOW, prune=True)


def test_cli_import_all(run, v1, ledger, tmp_path, snapshot):
    url = f"sqlite:///{tmp_path}/state.db"
    assert run("apply", "--config", v1, "--database-url", url, "--auto-approve").exit_code == 0
    _edit(ledger / "invoices.csv", 5, "currency", "EURO")
    failed = run("ledger", "import-all", ledger, "--config", v1, "--database-url", url)
    assert failed.exit_code == 1
    assert failed.stderr == snapshot(name="error")
    shutil.copy(LEDGER / "invoices.csv", ledger)
    done = run("ledger", "import-all", ledger, "--config", v1, "--database-url", url)
    assert done.exit_code == 0, done.output
    assert done.stdout == snapshot(name="imported")


def _spy_apart(monkeypatch) -> list[str]:
    from dunningops.ledger.apart import Apart

    staged: list[str] = []
    real = Apart.prepare.__func__  # type: ignore[attr-defined]

    def spy(cls, *args, **kwargs):
        apart = real(cls, *args, **kwargs)
        staged.extend(job.file.kind for job in apart)
        return apart

    monkeypatch.setattr(Apart, "prepare", classmethod(spy))
    return staged


BALANCES = [("I1", 100000, "open"), ("I2", 0, "paid"), ("I3", 0, "paid"), ("I4", 500000, "open")]


def test_one_large_file_takes_the_smaller_csv_files_apart_with_it(sqlite_store, ledger, monkeypatch, tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    staged = _spy_apart(monkeypatch)
    largest = (ledger / "invoices.csv").stat().st_size
    assert all((ledger / f"{kind}.csv").stat().st_size < largest for kind in ORDER if kind != "invoices")
    monkeypatch.setattr(stream, "ARROW_MIN_BYTES", largest + 1)  # no file large enough: all in the transaction
    import_files(sqlite_store, ledger_files(ledger), now=NOW, dry_run=True)
    assert staged == []
    monkeypatch.setattr(stream, "ARROW_MIN_BYTES", largest)  # the invoices only: the other three go with them
    summaries = import_files(sqlite_store, ledger_files(ledger), now=NOW)
    assert staged == list(ORDER)
    assert [s.added for s in summaries] == [3, 4, 4, 2]
    assert _state(sqlite_store)[1] == BALANCES
    assert not list(scratch.iterdir())
    with sqlite_store.session() as s:  # written without the per-row checks, every reference holds
        assert s.execute(text("PRAGMA foreign_key_check")).all() == []


def _invoice_updates(store, statement: str = "UPDATE invoices") -> list[int]:
    """The rows each UPDATE of the invoices table (or each ``statement``) changed."""
    from sqlalchemy import event

    changed: list[int] = []

    def seen(conn, cursor, executed, *args):
        if executed.startswith(statement):
            changed.append(cursor.rowcount)

    event.listen(store.engine, "after_cursor_execute", seen)
    return changed


def test_new_invoices_count_the_payments_staged_with_them_so_the_recompute_rewrites_none(sqlite_store, ledger, monkeypatch, tmp_path):
    monkeypatch.setattr(stream, "ARROW_MIN_BYTES", 0)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    changed = _invoice_updates(sqlite_store)
    import_files(sqlite_store, ledger_files(ledger), now=NOW)
    # The payments' recompute (its status pass, then its amount pass): I1 and I2 had their balance from the insert.
    assert changed == [0, 0]
    assert _state(sqlite_store)[1] == BALANCES


def test_skip_invalid_a_rejected_payment_counts_in_no_invoice_s_balance(sqlite_store, ledger, monkeypatch, tmp_path):
    # A9: P1 (200.00 on I1) has a bad date but a valid amount, staged with the file's other payments.
    monkeypatch.setattr(stream, "ARROW_MIN_BYTES", 0)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    _edit(ledger / "payments.csv", 2, "date", "tomorrow")
    summaries = import_files(sqlite_store, ledger_files(ledger), now=NOW, skip_invalid=True)
    assert [s.rejected for s in summaries] == [0, 0, 0, 1]
    assert _state(sqlite_store)[1] == [("I1", 120000, "open"), *BALANCES[1:]]


def _staging_threads() -> list[str]:
    import threading

    return [t.name for t in threading.enumerate() if t.name.startswith("ledger-")]


def test_a_failure_in_the_staging_thread_raises_in_the_import_and_writes_nothing(sqlite_store, ledger, monkeypatch, tmp_path):
    monkeypatch.setattr(stream, "ARROW_MIN_BYTES", 0)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))

    def progress(kind: str, rows: int) -> None:
        if kind == "invoices":  # staged in the thread while the customers and contacts are written
            raise RuntimeError("the disk went away")

    with pytest.raises(RuntimeError, match="the disk went away"):
        import_files(sqlite_store, ledger_files(ledger), now=NOW, progress=progress)
    assert _state(sqlite_store)[0] == EMPTY
    assert not list(scratch.iterdir()) and _staging_threads() == []


def test_a_failure_in_the_transaction_stops_the_staging_thread(sqlite_store, ledger, monkeypatch, tmp_path):
    from dunningops.errors import StoreError

    monkeypatch.setattr(stream, "ARROW_MIN_BYTES", 0)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    real = importer.write

    def failing(session, kind, *args, **kwargs):
        if kind == "contacts":
            raise StoreError("the store is full; nothing was imported")
        return real(session, kind, *args, **kwargs)

    monkeypatch.setattr(importer, "write", failing)
    with pytest.raises(StoreError, match="the store is full"):
        import_files(sqlite_store, ledger_files(ledger), now=NOW)
    assert _state(sqlite_store)[0] == EMPTY
    assert not list(scratch.iterdir()) and _staging_threads() == []


def test_a_writer_during_an_import_in_the_transaction_waits_for_it(sqlite_store, ledger):
    # Small files, staged in the transaction: it holds the store's write lock from its start, so a
    # writer meanwhile waits (here: a busy timeout of 0.2 s runs out) and the import does not fail.
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    other = open_store(str(sqlite_store.engine.url), upgrade=False, busy_timeout_s=0.2)
    refused: list[str] = []

    def write_meanwhile(kind: str, rows: int) -> None:
        if kind == "customers" and not refused:  # before the import wrote anything
            try:
                with other.session() as s:
                    s.execute(text("UPDATE settings SET data = json_set(data, '$.company.currency', 'USD')"))
            except OperationalError as exc:
                refused.append(str(exc.orig))

    summaries = import_files(sqlite_store, ledger_files(ledger), now=NOW, progress=write_meanwhile)
    assert refused == ["database is locked"]
    assert [s.added for s in summaries] == [3, 4, 4, 2]
    other.dispose()
