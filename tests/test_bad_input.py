"""Bad input ends in one clear line (file, row, column or place; what is wrong; the limit), never a
traceback, and writes nothing: ledger files (C4), mapping files, config durations, the store itself,
and listings that say how many rows they left out.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, select, text
from sqlalchemy.engine import make_url

from dunningops.errors import ConfigError, InvalidInputError, StoreError
from dunningops.ledger.importer import import_file, ledger_counts
from dunningops.ledger.mapping import load_mapping
from dunningops.ledger.queries import Page, list_contacts, list_customers
from dunningops.ledger.reader import LedgerFileError
from dunningops.reconcile.apply import apply_config
from dunningops.spec import load_config
from dunningops.store import open_store
from dunningops.store.schema import CustomerRow, InvoiceRow

LEDGER = Path(__file__).with_name("fixtures") / "ledger"
NOW = datetime(2026, 11, 23, 8, 30, tzinfo=UTC)
TODAY = NOW.date()
READ_ONLY_PG = "is read-only (a standby, or default_transaction_read_only): use the primary server, or a role allowed to write"
INVOICES = "external_id,customer_external_id,number,issue_date,due_date,amount,outstanding,currency,document_url,status\n"


@pytest.fixture
def store(database_url: str, v1: Path):
    """A store with the v1 config applied and the fixture customers (C1, C2, C3) imported."""
    s = open_store(database_url)
    apply_config(s, load_config(v1), now=NOW, actor="t", git_commit=None)
    import_file(s, "customers", LEDGER / "customers.csv", now=NOW)
    yield s
    s.dispose()


def _counts(store) -> dict[str, int]:
    with store.session() as s:
        return ledger_counts(s)


def _refused(store, kind: str, path: Path, **kw) -> str:
    """Import ``path``, expect it refused with nothing written; the error's message."""
    before = _counts(store)
    with pytest.raises(InvalidInputError) as info:
        import_file(store, kind, path, now=NOW, **kw)
    assert _counts(store) == before
    return str(info.value)


def _cli_error(result) -> str:
    """The one line a refused command printed (exit 1, no traceback, nothing on stdout)."""
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    assert result.stdout == ""
    return result.stderr


# --- C4: the ledger file's cells ------------------------------------------------------------

def test_c4_cell_over_size_limit_reported_with_row_and_column(store, tmp_path: Path):
    # 200 KB used to stop csv itself (_csv.Error, field larger than field limit 131072);
    # 100 KB in a column we do not import is still a broken export, said with its column.
    path = tmp_path / "customers.csv"
    path.write_text("external_id,name,notes\n" f"C7,{'x' * 200 * 1024},\n" f"C8,Eight,{'é' * 50 * 1024}\n")
    assert _refused(store, "customers", path) == (
        "2 errors in 2 of 2 rows; nothing was imported:\n"
        "  customers.csv: row 2, column name: is 200 KB, over the 64 KB limit for a cell\n"
        "  customers.csv: row 3, column notes: is 100 KB, over the 64 KB limit for a cell"
    )


def test_c4_cell_over_csv_hard_limit_stops_with_its_row(sqlite_url: str, v1: Path, tmp_path: Path):
    s = open_store(sqlite_url)
    apply_config(s, load_config(v1), now=NOW, actor="t", git_commit=None)
    path = tmp_path / "customers.csv"
    path.write_text(f'external_id,name\nC1,One\nC2,"{"x" * (17 * 1024 * 1024)}"\n')
    with pytest.raises(LedgerFileError) as info:
        import_file(s, "customers", path, now=NOW)
    assert str(info.value) == (
        f"{path}: row 3: a cell is over 16.0 MB (the limit for a cell is 64 KB); the file cannot be read further"
    )
    with s.session() as session:
        assert ledger_counts(session)["customers"] == 0
    s.dispose()


def test_c4_cell_size_limit_via_cli_one_line(run, v1: Path, tmp_path: Path):
    url = f"sqlite:///{tmp_path}/s.db"
    assert run("apply", "--config", v1, "--database-url", url, "--auto-approve").exit_code == 0
    path = tmp_path / "customers.csv"
    path.write_text(f"external_id,name\nC1,{'x' * 200 * 1024}\n")
    result = run("ledger", "import", "customers", path, "--config", v1, "--database-url", url)
    assert _cli_error(result) == (
        "Error: 1 error in 1 of 1 rows; nothing was imported:\n"
        "  customers.csv: row 2, column name: is 200 KB, over the 64 KB limit for a cell\n"
    )


def test_c4_amount_over_range_refused_at_parse_time(store, tmp_path: Path):
    # Was OverflowError on SQLite and "bigint out of range" on PostgreSQL.
    path = tmp_path / "invoices.csv"
    path.write_text(
        INVOICES
        + "I1,C1,FA-1,,2026-10-01,99999999999999999999.99,,EUR,,\n"
        + "I2,C1,FA-2,,2026-10-01,1000000000000,1000000000000,EUR,,\n"
        + "I3,C1,FA-3,,2026-10-01,999999999999.99,999999999999.99,EUR,,\n"  # the largest amount: fine
    )
    assert _refused(store, "invoices", path) == (
        "3 errors in 2 of 3 rows; nothing was imported:\n"
        "  invoices.csv: row 2, column amount: '99999999999999999999.99' is too large (amounts go up to 999,999,999,999.99)\n"
        "  invoices.csv: row 3, column amount: '1000000000000' is too large (amounts go up to 999,999,999,999.99)\n"
        "  invoices.csv: row 3, column outstanding: '1000000000000' is too large (amounts go up to 999,999,999,999.99)"
    )


def test_c4_largest_amount_and_decimal_comma_bound(store, tmp_path: Path):
    path = tmp_path / "invoices.csv"
    path.write_text(INVOICES + "I3,C1,FA-3,,2026-10-01,999999999999.99,,EUR,,\n")
    import_file(store, "invoices", path, now=NOW)
    with store.session() as s:
        assert s.scalar(select(InvoiceRow.amount_cents)) == 99_999_999_999_999
    sage = tmp_path / "sage.csv"
    sage.write_text(INVOICES.replace(",", ";") + "I4;C1;FA-4;;2026-10-01;1 000 000 000 000,00;;EUR;;\n")
    mapping = tmp_path / "m.yaml"
    mapping.write_text("decimal_comma: true\ndelimiter: ';'\n")
    message = _refused(store, "invoices", sage, mapping=load_mapping(mapping))
    assert message.endswith(
        "sage.csv: row 2, column amount: '1 000 000 000 000,00' is too large (amounts go up to 999,999,999,999.99)"
    )


def test_c4_nul_byte_refused_with_row_and_column(store, tmp_path: Path):
    # Was a DataError on PostgreSQL; SQLite stored it.
    path = tmp_path / "customers.csv"
    path.write_text("external_id,name,country\nC7,Seven\x00Ltd,FR\nC8,Eight,F\x00\n")
    assert _refused(store, "customers", path) == (
        "2 errors in 2 of 2 rows; nothing was imported:\n"
        "  customers.csv: row 2, column name: contains a NUL character (byte 0)\n"
        "  customers.csv: row 3, column country: contains a NUL character (byte 0)"
    )
    jsonl = tmp_path / "customers.jsonl"
    jsonl.write_text('{"external_id": "C9", "name": "Nine\\u0000"}\n')
    assert _refused(store, "customers", jsonl).endswith("customers.jsonl: line 1, column name: contains a NUL character (byte 0)")


def test_c4_dates_out_of_range_refused_at_import(store, tmp_path: Path):
    # One invoice due 0001-01-01 or 9999-12-31 used to stop `run send --dry-run` for the whole ledger.
    path = tmp_path / "invoices.csv"
    path.write_text(
        INVOICES
        + "I1,C1,FA-1,,0001-01-01,10,,EUR,,\n"
        + "I2,C1,FA-2,,9999-12-31,10,,EUR,,\n"
        + "I3,C1,FA-3,1899-12-31,2200-01-01,10,,EUR,,\n"
        + "I4,C1,FA-4,1900-01-01,2199-12-31,10,,EUR,,\n"  # the bounds themselves are fine
    )
    assert _refused(store, "invoices", path) == (
        "4 errors in 3 of 4 rows; nothing was imported:\n"
        "  invoices.csv: row 2, column due_date: '0001-01-01' is out of range (dates go from 1900-01-01 to 2199-12-31)\n"
        "  invoices.csv: row 3, column due_date: '9999-12-31' is out of range (dates go from 1900-01-01 to 2199-12-31)\n"
        "  invoices.csv: row 4, column due_date: '2200-01-01' is out of range (dates go from 1900-01-01 to 2199-12-31)\n"
        "  invoices.csv: row 4, column issue_date: '1899-12-31' is out of range (dates go from 1900-01-01 to 2199-12-31)"
    )


def test_c4_row_with_three_problems_reports_all(store, tmp_path: Path):
    # Used to stop at the first problem of the row (the converter raised on the first).
    path = tmp_path / "invoices.csv"
    path.write_text(
        INVOICES
        + "I1,C1,FA-1,2026-02-01,2026-01-01,10,20,EUR,,late\n"  # due before issue, outstanding > amount, bad status
        + "I2,C9,FA-2,2026-09-01,31/02/2026,x,,EURO,,\n"  # unknown customer, bad date, bad amount, bad currency
    )
    assert _refused(store, "invoices", path) == (
        "7 errors in 2 of 2 rows; nothing was imported:\n"
        "  invoices.csv: row 2, column due_date: due date 2026-01-01 is before the issue date 2026-02-01\n"
        "  invoices.csv: row 2, column outstanding: outstanding (20.00) exceeds the amount (10.00)\n"
        "  invoices.csv: row 2, column status: 'late' is not a status (open, paid or void)\n"
        "  invoices.csv: row 3, column amount: 'x' is not an amount (expected e.g. 1234.50)\n"
        "  invoices.csv: row 3, column currency: 'EURO' is not a currency code (e.g. EUR)\n"
        "  invoices.csv: row 3, column customer_external_id: unknown customer 'C9' (import customers first)\n"
        "  invoices.csv: row 3, column due_date: '31/02/2026' is not a date (expected YYYY-MM-DD)"
    )


def test_c4_row_with_several_problems_skip_invalid_rejects_it_once(store, tmp_path: Path):
    path = tmp_path / "invoices.csv"
    path.write_text(INVOICES + "I1,C1,FA-1,2026-02-01,2026-01-01,10,20,EUR,,late\nI2,C1,FA-2,,2026-10-01,10,,EUR,,\n")
    rejects = tmp_path / "rejects.csv"
    summary = import_file(store, "invoices", path, now=NOW, skip_invalid=True, reject_file=rejects)
    assert (summary.added, summary.rejected) == (1, 1)
    assert len(rejects.read_text().splitlines()) == 1 + 3  # header + the row's three problems
    with store.session() as s:
        assert s.scalars(select(InvoiceRow.external_id)).all() == ["I2"]


def test_c4_bad_key_cell_is_not_also_an_unknown_reference(store, tmp_path: Path):
    # A row is staged with its bad cells as NULL so that set-based checks see it: a NULL key
    # must not come back as "unknown customer None".
    path = tmp_path / "invoices.csv"
    path.write_text(INVOICES + f"I1,{'C' * 200},FA-1,,2026-10-01,10,,EUR,,\n")
    assert _refused(store, "invoices", path) == (
        "1 error in 1 of 1 rows; nothing was imported:\n"
        "  invoices.csv: row 2, column customer_external_id: is longer than 128 characters"
    )


# --- mapping files --------------------------------------------------------------------------

def test_mapping_unknown_encoding_names_file_and_key(tmp_path: Path):
    mapping = tmp_path / "sage.yaml"
    mapping.write_text("encoding: klingon\n")
    with pytest.raises(InvalidInputError) as info:
        load_mapping(mapping)
    assert str(info.value) == f"{mapping}: encoding: unknown encoding 'klingon' (e.g. utf-8, utf-8-sig, latin-1, cp1252)"
    mapping.write_text("encoding: rot13\n")  # a codec, but not one for text files (open() raised LookupError)
    with pytest.raises(InvalidInputError, match=r"encoding: 'rot13' is not a text encoding"):
        load_mapping(mapping)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("encodign: latin-1\n", "encodign: unknown key; did you mean 'encoding'?"),
        ("delimiter: '\"'\n", "delimiter: '\"' cannot separate columns (a quote or a line break)"),
        ("- columns\n", "a mapping file holds keys (columns, date_format, decimal_comma, delimiter, encoding)"),
        ("columns: [\n", "line 2: not valid YAML (expected the node content, but found '<stream end>')"),
    ],
)
def test_mapping_other_problems_one_line_each(tmp_path: Path, body: str, message: str):
    mapping = tmp_path / "m.yaml"
    mapping.write_text(body)
    with pytest.raises(InvalidInputError) as info:
        load_mapping(mapping)
    assert str(info.value) == f"{mapping}: {message}"


def test_mapping_unknown_encoding_via_cli(run, v1: Path, tmp_path: Path):
    mapping = tmp_path / "sage.yaml"
    mapping.write_text("encoding: klingon\n")
    result = run("ledger", "import", "customers", LEDGER / "customers.csv", "--mapping", mapping,
                 "--config", v1, "--database-url", f"sqlite:///{tmp_path}/s.db")
    assert _cli_error(result) == (
        f"Error: {mapping}: encoding: unknown encoding 'klingon' (e.g. utf-8, utf-8-sig, latin-1, cp1252)\n"
    )


# --- config durations -----------------------------------------------------------------------

def test_step_offset_over_ten_years_refused_by_validate(v1: Path):
    plans = v1 / "plans.yaml"
    text_ = plans.read_text().replace("at: 2w", "at: 9999999d").replace("min_contact_delay: 3d", "min_contact_delay: 3651d")
    plans.write_text(text_)
    with pytest.raises(ConfigError) as info:
        load_config(v1)
    message = str(info.value)
    assert "steps[call].at: '9999999d' is too far: durations go from -3650d to 3650d (ten years)" in message
    assert "min_contact_delay: '3651d' is too far: durations go from -3650d to 3650d (ten years)" in message


def test_step_offset_bounds_are_accepted(v1: Path):
    plans = v1 / "plans.yaml"
    plans.write_text(plans.read_text().replace("at: -3d", "at: -3650d").replace("at: 2w", "at: 3650d"))
    steps = load_config(v1).plans["standard"].steps
    assert [s.at for s in steps] == ["-3650d", "7d", "3650d"]


def test_send_dry_run_at_the_bounds_does_not_overflow(run, v1: Path, tmp_path: Path, monkeypatch):
    # The extremes the import and the config now allow: due 1900-01-01 and 2199-12-31, offsets ±3650 days.
    plans = v1 / "plans.yaml"
    plans.write_text(plans.read_text().replace("at: -3d", "at: -3650d").replace("at: 2w", "at: 3650d"))
    monkeypatch.setenv("DUNNINGOPS_NOW", "2026-11-20T09:00:00+00:00")
    url = f"sqlite:///{tmp_path}/s.db"
    assert run("apply", "--config", v1, "--database-url", url, "--auto-approve").exit_code == 0
    invoices = tmp_path / "invoices.csv"
    invoices.write_text(INVOICES + "I1,C1,FA-1,1900-01-01,1900-01-01,10,,EUR,,\nI2,C2,FA-2,,2199-12-31,10,,EUR,,\n")
    for kind, path in (("customers", LEDGER / "customers.csv"), ("contacts", LEDGER / "contacts.csv"), ("invoices", invoices)):
        assert run("ledger", "import", kind, path, "--config", v1, "--database-url", url).exit_code == 0
    due_since = {}
    for at in ("2026-11-24T08:30:00+01:00", "2199-12-24T08:30:00+01:00"):  # --at stops at 2199
        dry = run("run", "send", "--dry-run", "--at", at, "--format", "json", "--config", v1, "--database-url", url)
        assert dry.exit_code == 0 and "Traceback" not in dry.output, dry.output
        due_since[at[:4]] = {d["customer"]: d["due_since"] for d in json.loads(dry.stdout)["decisions"]}
    # due - 3650 days at both ends; the furthest sum the bounds allow (2199-12-31 + 3650d = 2209) is a real date too.
    assert due_since == {"2026": {"C1": "1890-01-03"}, "2199": {"C1": "1890-01-03", "C2": "2190-01-02"}}


# --- the store ------------------------------------------------------------------------------

def _database_name(url: str) -> str:
    return make_url(url).database


def test_store_written_by_newer_version_refused(database_url: str):
    open_store(database_url).dispose()
    engine = create_engine(open_store(database_url, upgrade=False).url)
    with engine.begin() as c:
        c.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    for upgrade in (True, False):
        with pytest.raises(StoreError) as info:
            open_store(database_url, upgrade=upgrade)
        assert str(info.value).endswith("was written by a newer dunningops (revision 9999_future); upgrade dunningops to use it")
        assert str(info.value).startswith("the store at ")
    with engine.connect() as c:  # nothing written: not "upgraded", not stamped
        assert c.execute(text("SELECT version_num FROM alembic_version")).scalar() == "9999_future"
    engine.dispose()


def test_store_written_by_newer_version_via_cli(run, v1: Path, tmp_path: Path):
    db = tmp_path / "s.db"
    open_store(f"sqlite:///{db}").dispose()
    with sqlite3.connect(db) as c:
        c.execute("UPDATE alembic_version SET version_num = '0099'")
    result = run("plan", "--config", v1, "--database-url", f"sqlite:///{db}")
    assert _cli_error(result) == (
        f"Error: the store at sqlite:///{db} was written by a newer dunningops (revision 0099); upgrade dunningops to use it\n"
    )
    assert result.exit_code == StoreError.exit_code


def test_store_not_a_sqlite_database(tmp_path: Path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a database\n")
    with pytest.raises(StoreError) as info:
        open_store(f"sqlite:///{notes}")
    assert str(info.value) == f"{notes} is not a SQLite database: point the database URL at the store, or move that file away"
    assert notes.read_text() == "not a database\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # no -wal or -shm beside it
    with pytest.raises(StoreError) as info:
        open_store(f"sqlite:///{tmp_path}")
    assert str(info.value) == f"{tmp_path} is a directory, not a SQLite database: give the path of the store's file"


def test_store_damaged_sqlite_header_ok_body_garbage(tmp_path: Path):
    # The right magic bytes and garbage after: SQLite's own error (SQLITE_NOTADB), mapped to one line.
    db = tmp_path / "s.db"
    db.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4096)
    with pytest.raises(StoreError) as info:
        open_store(f"sqlite:///{db}")
    assert str(info.value) == f"{db} is not a SQLite database: point the database URL at the store, or move that file away"


def _without_root_powers() -> list[str]:
    """A command prefix under which file permissions apply (root ignores them)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("running as root without setpriv (util-linux): cannot test read-only files", pytrace=False)
    caps = "-dac_override,-dac_read_search,-fowner"
    return [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}"]


def _cli_subprocess(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DUNNINGOPS_NOW": "2026-11-23T08:30:00+00:00"}
    env.pop("DUNNINGOPS_DATABASE_URL", None)
    return subprocess.run(
        [*_without_root_powers(), sys.executable, "-c", "from dunningops.cli import main; main()", *args],
        capture_output=True, text=True, env=env, timeout=120,
    )


@pytest.mark.parametrize("where", ["file", "directory"])
def test_store_read_only_sqlite_refused_at_open(v1: Path, tmp_path: Path, where: str):
    # A read-only SQLite file opens fine and used to fail at the first write, with a traceback.
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    db = store_dir / "state.db"
    s = open_store(f"sqlite:///{db}")
    apply_config(s, load_config(v1), now=NOW, actor="t", git_commit=None)
    s.dispose()
    before = db.read_bytes()
    target = db if where == "file" else store_dir
    target.chmod(0o444 if where == "file" else 0o555)
    try:
        result = _cli_subprocess("ledger", "import", "customers", str(LEDGER / "customers.csv"),
                                 "--config", str(v1), "--database-url", f"sqlite:///{db}")
    finally:
        target.chmod(0o644 if where == "file" else 0o755)
    expected = (
        f"Error: the store {db} is read-only: make it (and its directory) writable, or use a copy\n" if where == "file"
        else f"Error: the store's directory {store_dir} is read-only (SQLite writes its journal there): make it writable\n"
    )
    assert (result.returncode, result.stderr, result.stdout) == (3, expected, "")
    assert db.read_bytes() == before


def test_store_turning_read_only_after_open(database_url: str, v1: Path):
    s = open_store(database_url)
    apply_config(s, load_config(v1), now=NOW, actor="t", git_commit=None)
    s.engine.dispose()  # new connections from here on
    if s.dialect == "sqlite":
        # What a chmod under a running process looks like to SQLite: SQLITE_READONLY at the write.
        event.listen(s.engine, "connect", lambda dbapi, _record: dbapi.execute("PRAGMA query_only = ON"))
        expected = f"the store {_database_name(database_url)} is read-only: make it (and its directory) writable, or use a copy"
    else:
        with create_engine(s.url, isolation_level="AUTOCOMMIT").connect() as c:
            c.execute(text(f'ALTER DATABASE "{_database_name(database_url)}" SET default_transaction_read_only = on'))
        expected = READ_ONLY_PG
    with pytest.raises(StoreError) as info:
        import_file(s, "customers", LEDGER / "customers.csv", now=NOW)
    assert str(info.value).endswith(f"{expected}; nothing was imported")
    s.dispose()


def test_store_read_only_postgresql_refused_at_open(postgres_url: str):
    open_store(postgres_url).dispose()
    with create_engine(open_store(postgres_url).url, isolation_level="AUTOCOMMIT").connect() as c:
        c.execute(text(f'ALTER DATABASE "{_database_name(postgres_url)}" SET default_transaction_read_only = on'))
    with pytest.raises(StoreError) as info:
        open_store(postgres_url)
    assert str(info.value).startswith("the store at postgresql+psycopg://")
    assert str(info.value).endswith(READ_ONLY_PG)


# --- listings that say what they left out ----------------------------------------------------

def test_customers_list_page_carries_the_total(store, tmp_path: Path):
    path = tmp_path / "customers.csv"
    path.write_text("external_id,name\n" + "".join(f"D{i:04d},Customer {i}\n" for i in range(250)))
    import_file(store, "customers", path, now=NOW)
    with store.session() as s:
        first = list_customers(s, today=TODAY)
        assert isinstance(first, Page) and len(first) == 100
        assert (first.total, first.offset, first.limit, first.remaining) == (253, 0, 100, 153)
        last = list_customers(s, today=TODAY, limit=100, offset=200)
        assert (len(last.rows), last.total, last.remaining) == (53, 253, 0)
        assert last.rows[-1]["external_id"] == "D0249"
        everyone = list_customers(s, today=TODAY, limit=None)
        assert (len(everyone), everyone.remaining) == (253, 0)
        filtered = list_customers(s, today=TODAY, limit=1, origin="manual")
        assert (filtered.rows, filtered.total) == ([], 0)
        contacts = list_contacts(s, limit=1)
        assert (len(contacts), contacts.total) == (0, 0)
        with pytest.raises(InvalidInputError, match="limit -1 is negative"):
            list_customers(s, today=TODAY, limit=-1)
        with pytest.raises(InvalidInputError, match="offset -5 is negative"):
            list_customers(s, today=TODAY, offset=-5)
        assert s.scalar(select(CustomerRow.id).where(CustomerRow.external_id == "D0000")) is not None
