"""A large CSV import on SQLite stages its rows in a scratch file of its own (through ADBC), ATTACHed to
the write transaction: the same rows and errors as the in-transaction staging, nothing left behind,
nothing half-imported, and a config change meanwhile waits for the import."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from sqlalchemy import Index, text
from sqlalchemy.exc import OperationalError

from dunningops.errors import DunningOpsError
from dunningops.ledger import importer, staging_file, stream
from dunningops.ledger.importer import import_file
from dunningops.ledger.issues import LedgerImportError
from dunningops.ledger.loading import tables
from dunningops.store import open_store
from dunningops.store.schema import InvoiceRow
from test_ledger_arrow import _rewrite
from test_ledger_columnar import NOW, _applied, _dump, _import_all, _ledger


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every file goes the staging file's way; the scratch files land in a folder the test watches."""
    monkeypatch.setattr(stream, "ARROW_MIN_BYTES", 0)
    folder = tmp_path / "scratch"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


class Files:
    """Counts the staging files made (so a test knows that path ran)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.made: list[Path] = []
        self.files: list[staging_file.StagingFile] = []
        make = staging_file.StagingFile.__init__

        def spied(this, *a, **k):
            make(this, *a, **k)
            self.made.append(this.path)
            self.files.append(this)

        monkeypatch.setattr(staging_file.StagingFile, "__init__", spied)


def _attached(store) -> list[str]:
    with store.session() as s:
        return [row[1] for row in s.execute(text("PRAGMA database_list"))]


def _indexes(path: str) -> dict[str, str]:
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name IN ('invoices', 'contacts')").fetchall())


def test_same_rows_as_in_transaction_staging_and_nothing_left(sqlite_url, tmp_path, v1, scratch, monkeypatch):
    folder = _ledger(tmp_path, v1)
    files = Files(monkeypatch)
    store = _applied(sqlite_url, v1)
    lines = _import_all(store, folder)
    assert len(files.made) == 4  # one per file, each its own
    assert all(f.keys_unique for f in files.files)  # their keys' UNIQUE index stood in for the duplicates query
    assert list(scratch.iterdir()) == []  # removed once written
    assert "stg" not in _attached(store)  # the pooled connection keeps nothing attached
    dump = _dump(store)
    assert all(": imported" in line and " 0 added, 0 changed" in line for line in _import_all(store, folder))
    assert _dump(store) == dump  # the same files again change nothing
    store.dispose()

    # The same files staged in the transaction (no ADBC driver): the same rows and summaries.
    made = len(files.made)
    monkeypatch.setitem(sys.modules, "dunningops.ledger.staging_file", None)
    other = _applied(f"sqlite:///{tmp_path}/in_transaction.db", v1)
    assert _import_all(other, folder) == lines
    assert len(files.made) == made  # none made this time
    assert _dump(other) == dump
    other.dispose()


def test_bad_rows_write_nothing_and_leave_nothing(sqlite_url, tmp_path, v1, scratch, monkeypatch):
    folder = _ledger(tmp_path, v1)
    store = _applied(sqlite_url, v1)
    for kind in ("customers", "contacts"):
        import_file(store, kind, folder / f"{kind}.csv", now=NOW)
    before = _dump(store)

    def edit(i: int, row: dict) -> None:
        if i == 4:
            row["customer_external_id"] = "NOBODY"  # a set-based check, in the write transaction
        if i == 9:
            row["external_id"] = "I-dup"
        if i == 11:
            row["external_id"] = "I-dup"
        if i == 12:
            row["due_date"] = "2026-02-30"  # a cell check, while staging

    _rewrite(folder / "invoices.csv", edit)
    files = Files(monkeypatch)
    with pytest.raises(LedgerImportError) as caught:
        import_file(store, "invoices", folder / "invoices.csv", now=NOW)
    found = {(i.row, i.column) for i in caught.value.issues}
    assert found == {(6, "customer_external_id"), (13, "external_id"), (14, "due_date")}
    assert len(files.made) == 1 and list(scratch.iterdir()) == []
    assert files.files[0].keys_unique is False  # the duplicates found and worded by the query
    assert _dump(store) == before

    # --skip-invalid: the bad rows rejected, the others written.
    summary = import_file(store, "invoices", folder / "invoices.csv", now=NOW, skip_invalid=True)
    assert summary.rejected == 3 and summary.added == summary.rows - 3
    store.dispose()


def test_dry_run_and_first_import_keep_the_indexes(sqlite_url, tmp_path, v1, scratch, monkeypatch):
    folder = _ledger(tmp_path, v1)
    store = _applied(sqlite_url, v1)
    path = sqlite_url.removeprefix("sqlite:///")
    schema_indexes = _indexes(path)
    assert {"ix_invoices_status_due", "ix_contacts_email"} <= set(schema_indexes)
    import_file(store, "customers", folder / "customers.csv", now=NOW)
    # Small enough for the test to run fast, large enough for the unordered indexes to be rebuilt.
    monkeypatch.setattr("dunningops.ledger.indexes._REBUILD_MIN", 10)
    dropped, drop = [], Index.drop
    monkeypatch.setattr(Index, "drop", lambda self, *a, **k: (dropped.append(self.name), drop(self, *a, **k)))
    dry = import_file(store, "contacts", folder / "contacts.csv", now=NOW, dry_run=True)
    assert dry.added > 0 and _dump(store)["contacts"] == [] and _indexes(path) == schema_indexes
    real = import_file(store, "contacts", folder / "contacts.csv", now=NOW)
    assert real.added == dry.added and _indexes(path) == schema_indexes
    assert dropped == ["ix_contacts_email"] * 2
    dropped.clear()
    dry = import_file(store, "invoices", folder / "invoices.csv", now=NOW, dry_run=True)
    assert dry.added > 0 and _dump(store)["invoices"] == []
    assert _indexes(path) == schema_indexes  # dropped and built again inside the transaction, rolled back
    real = import_file(store, "invoices", folder / "invoices.csv", now=NOW)
    assert real.added == dry.added
    assert dropped == ["ix_invoices_status_due"] * 2  # rebuilt by both
    assert _indexes(path) == schema_indexes
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        # The rebuilt index answers as the table does.
        indexed = db.execute(
            "SELECT count(*) FROM invoices INDEXED BY ix_invoices_status_due WHERE status = 'open' AND due_date <= '2026-11-23'"
        ).fetchone()
        scanned = db.execute(
            "SELECT count(*) FROM invoices NOT INDEXED WHERE status = 'open' AND due_date <= '2026-11-23'"
        ).fetchone()
        assert indexed == scanned and indexed[0] > 0
    store.dispose()


def test_a_temp_table_of_the_same_name_does_not_hide_the_staging_file(sqlite_url, tmp_path, v1, scratch):
    folder = _ledger(tmp_path, v1)
    store = _applied(sqlite_url, v1)
    for kind in ("customers", "contacts"):
        import_file(store, kind, folder / f"{kind}.csv", now=NOW)
    # A TEMP table left on the pooled connection (an earlier import cut short, say).
    with store.session() as s:
        s.execute(text("CREATE TEMP TABLE stg_invoices (row_no INTEGER PRIMARY KEY, external_id TEXT)"))
        s.execute(text("INSERT INTO stg_invoices VALUES (1, 'I-stale')"))
    summary = import_file(store, "invoices", folder / "invoices.csv", now=NOW)
    with store.session() as s:
        ids = set(s.scalars(text("SELECT external_id FROM invoices")))
    assert summary.added == len(ids) > 0 and "I-stale" not in ids
    store.dispose()


def test_a_config_change_while_the_file_is_read_waits_for_the_import(sqlite_url, tmp_path, v1, scratch):
    # The rows are converted against the config the import read in its write transaction: another
    # writer (an apply changing the company's currency) waits for the import's commit meanwhile.
    folder = _ledger(tmp_path, v1)
    store = _applied(sqlite_url, v1)
    import_file(store, "customers", folder / "customers.csv", now=NOW)
    other = open_store(sqlite_url, upgrade=False, busy_timeout_s=0.2)
    refused: list[str] = []

    def apply_meanwhile(rows: int) -> None:
        if rows and not refused:
            try:
                with other.session() as s:
                    s.execute(text("UPDATE settings SET data = json_set(data, '$.company.currency', 'USD')"))
            except OperationalError as exc:
                refused.append(str(exc.orig))

    summary = import_file(store, "contacts", folder / "contacts.csv", now=NOW, progress=apply_meanwhile)
    assert refused == ["database is locked"]
    assert summary.added == len(_dump(store)["contacts"]) > 0 and list(scratch.iterdir()) == []
    with other.session() as s:  # once the import committed, the change goes through
        s.execute(text("UPDATE settings SET data = json_set(data, '$.company.currency', 'USD')"))
    other.dispose()
    store.dispose()


def test_unwritable_scratch_folder_is_one_clear_error(sqlite_url, tmp_path, v1, scratch, monkeypatch):
    folder = _ledger(tmp_path, v1)
    store = _applied(sqlite_url, v1)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-folder"))
    with pytest.raises(
        DunningOpsError, match=r"cannot make the import's staging file in .*no-such-folder: .*; nothing was imported"
    ):
        import_file(store, "customers", folder / "customers.csv", now=NOW)
    assert _dump(store)["customers"] == []
    store.dispose()


def test_staging_file_rows_and_tables_round_trip(tmp_path, scratch):
    """Tuples of the row-by-row path and Arrow tables land with SQLite's types (booleans 0/1, dates as text)."""
    from dunningops.ledger.staging import STAGING, STAGING_FUNCTIONS

    with staging_file.StagingFile([STAGING["contacts"], STAGING_FUNCTIONS]) as staged:
        staged.insert(
            STAGING["contacts"],
            [(1, "C1", "a@x.example", None, None, None, True, None), (2, "C1", "b@x.example", "B", None, None, False, False)],
        )
        staged.insert(STAGING["contacts"], [])
        staged.index()
        staged.close()
        with sqlite3.connect(staged.path) as db:
            rows = db.execute(
                "SELECT row_no, email, is_primary, typeof(is_primary), valid FROM stg_contacts ORDER BY row_no"
            ).fetchall()
            names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert rows == [(1, "a@x.example", 1, "integer", None), (2, "b@x.example", 0, "integer", 0)]
        assert names == {"ix_stg_contacts_key", "ix_stg_contact_functions_key"}
        folder = staged.path.parent
    assert not folder.exists()


def test_invoice_rows_untouched_by_index_rebuild_on_reimport(sqlite_url, tmp_path, v1, scratch, monkeypatch):
    """A reimport adds few invoices to many: the unordered index is kept, not rebuilt."""
    folder = _ledger(tmp_path, v1)
    store = _applied(sqlite_url, v1)
    _import_all(store, folder)
    dropped = []
    monkeypatch.setattr("sqlalchemy.Index.drop", lambda self, *a, **k: dropped.append(self.name))
    import_file(store, "invoices", folder / "invoices.csv", now=NOW)
    assert dropped == []
    with store.session() as s:
        assert s.query(InvoiceRow).count() > 0
    store.dispose()


def test_unknown_customers_of_a_first_import_found_after_the_write_the_same(sqlite_url, tmp_path, v1, scratch, monkeypatch):
    """A first import of invoices looks for unknown customers only when the write left rows out: the same
    problems as the check before the write gives, and nothing written (dry run or not)."""
    from dunningops.ledger import checks

    folder = _ledger(tmp_path, v1)

    def edit(i: int, row: dict) -> None:
        if i in (3, 40):
            row["customer_external_id"] = f"NOBODY-{i}"

    _rewrite(folder / "invoices.csv", edit)
    looked = []
    unknown = checks.unknown_customers

    def spy(when: str):
        def spied(session, kind):
            if kind == "invoices":
                looked.append(when)
            return unknown(session, kind)

        return spied

    monkeypatch.setattr(importer, "unknown_customers", spy("after"))
    monkeypatch.setattr(checks, "unknown_customers", spy("before"))
    found = []
    for url in (sqlite_url, f"sqlite:///{tmp_path}/in_transaction.db"):
        if found:  # the second store: staged in the transaction, checked before the write
            monkeypatch.setitem(sys.modules, "dunningops.ledger.staging_file", None)
        store = _applied(url, v1)
        for kind in ("customers", "contacts"):
            import_file(store, kind, folder / f"{kind}.csv", now=NOW)
        for dry_run in (True, False):
            with pytest.raises(LedgerImportError) as caught:
                import_file(store, "invoices", folder / "invoices.csv", now=NOW, dry_run=dry_run)
            found.append([(i.file, i.row, i.column, i.message) for i in caught.value.issues])
            assert _dump(store)["invoices"] == []
        store.dispose()
    assert looked == ["after", "after", "before", "before"]
    assert found[0] == found[1] == found[2] == found[3]
    assert [f[1:3] for f in found[0]] == [(5, "customer_external_id"), (42, "customer_external_id")]
    assert "unknown customer 'NOBODY-3' (import customers first)" in found[0][0][3]

    # A clean first import: no query for unknown customers at all.
    looked.clear()
    monkeypatch.delitem(sys.modules, "dunningops.ledger.staging_file")
    clean = _ledger(tmp_path / "clean", v1)
    store = _applied(f"sqlite:///{tmp_path}/clean.db", v1)
    lines = _import_all(store, clean)
    assert looked == [] and " 0 rejected" not in lines[2] and "added" in lines[2]
    store.dispose()


_HOLD = """
import time
from dunningops.ledger.loading import tables
from dunningops.ledger.staging_file import StagingFile
staged = StagingFile(tables("invoices"))
print(staged.path, flush=True)
time.sleep(120)
"""


def _killed_import_leftover(scratch: Path) -> Path:
    """A process that made its staging file, SIGKILLed before its cleanup: its directory stays behind."""
    env = {**os.environ, "TMPDIR": str(scratch)}
    child = subprocess.Popen([sys.executable, "-c", _HOLD], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout is not None
        path = Path(child.stdout.readline().strip())
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert path.parent.parent == scratch and path.exists()
    return path.parent


def test_a_killed_imports_scratch_files_are_removed_by_the_next_import(sqlite_url, tmp_path, v1, scratch):
    left = _killed_import_leftover(scratch)
    folder = _ledger(tmp_path, v1)
    store = _applied(sqlite_url, v1)
    _import_all(store, folder)
    assert not left.exists()
    assert list(scratch.iterdir()) == []


def test_a_running_imports_scratch_files_are_not_taken_for_orphans(scratch):
    with staging_file.StagingFile(tables("contacts")) as live:  # held by this process, as an import's are
        left = _killed_import_leftover(scratch)
        # One being made this instant (no lock file yet) stays; one that old without a lock file goes.
        young, old = (Path(tempfile.mkdtemp(prefix=staging_file.PREFIX)) for _ in range(2))
        past = time.time() - 2 * 3600
        os.utime(old, (past, past))
        assert staging_file.remove_orphans() == 2
        assert live.path.exists() and young.exists()
        assert not left.exists() and not old.exists()
    assert list(scratch.iterdir()) == [young]
