"""The pyarrow path of a large CSV import gives exactly what the row-by-row path gives: the same rows
written, the same errors (file, row, column, message), whatever the file holds; a chunk whose row
numbers or cells it is not sure of goes the CSV reader's way."""

from __future__ import annotations

import csv
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

import test_ledger_columnar
from dunningops.errors import DunningOpsError
from dunningops.ledger import arrow, arrow_convert, stream
from dunningops.ledger.importer import import_file
from dunningops.ledger.issues import LedgerImportError
from dunningops.ledger.mapping import Mapping
from dunningops.store.schema import ContactFunctionLinkRow, ContactRow, CustomerRow, InvoiceRow, PaymentRow
from test_ledger_columnar import _applied, _dump, _import_all, _ledger

# The same two stores (one imported each way), ledger and dumps as the columnar path's tests.
urls = test_ledger_columnar.urls

NOW = datetime(2026, 11, 23, 8, 30, tzinfo=UTC)
KINDS = ("customers", "contacts", "invoices", "payments")
TABLES = (CustomerRow, ContactRow, ContactFunctionLinkRow, InvoiceRow, PaymentRow)
WAYS = ("arrow", "row")


class Spy:
    """Counts the chunks the pyarrow path read and converted (so a test knows that path ran)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.read = self.converted = 0
        parse, make = arrow._parse, arrow.converter

        def spied_parse(*a, **k):
            table = parse(*a, **k)
            self.read += table is not None
            return table

        def spied_converter(*a, **k):
            convert = make(*a, **k)
            if convert is None:
                return None

            def spied(*b):
                out = convert(*b)
                self.converted += 1
                return out

            return spied

        monkeypatch.setattr(arrow, "_parse", spied_parse)
        monkeypatch.setattr(arrow, "converter", spied_converter)


def _way(monkeypatch: pytest.MonkeyPatch, way: str, chunk: int = 1500) -> Spy | None:
    if way == "arrow":
        monkeypatch.setattr(stream, "ARROW_MIN_BYTES", 0)
        monkeypatch.setattr(arrow, "CHUNK_BYTES", chunk)  # many chunks: fallbacks happen mid-file
        return Spy(monkeypatch)
    monkeypatch.setattr(stream, "ARROW_MIN_BYTES", 10**15)
    monkeypatch.setattr(stream, "batch_converter", lambda *a, **k: None)
    return None


def _rewrite(path: Path, edit) -> None:
    """Rewrite a CSV file row by row: edit(row index, {column: cell}) changes the cells in place."""
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for i, row in enumerate(rows):
        edit(i, row)
    fields = list(dict.fromkeys(key for row in rows for key in row))  # a column an edit adds: empty elsewhere
    with path.open("w", encoding="utf-8", newline="") as handle:
        out = csv.DictWriter(handle, fields, restval="")
        out.writeheader()
        out.writerows(rows)


def _unusual_but_valid(i: int, row: dict) -> None:
    if i % 7 == 0:
        row["amount"] = "12.5" if i % 2 else "7"  # one decimal, none
        row["outstanding"] = ""
        row["status"] = ""
    if i == 30:
        row["issue_date"] = "20260901"  # read by date.fromisoformat (not ISO text): that chunk goes the columnar way
    if i == 31:
        row["external_id"] = f"\u3000 {row['external_id']}\x1c"  # stripped as str.strip strips, both ways
    if i == 32:
        row["currency"] = "eur"
        row["document_url"] = ""
    if i == 40:
        row["status"] = "PAID" if row["outstanding"] in ("0", "0.00") else "Open"
    if i == 41:
        row["number"] = 'FA "quoted", with a comma'  # quoted by csv.writer: checked against csv.reader
    if i == 300:
        row["currency"] = "eür"  # not ASCII: the columnar path judges it (isalpha), as before


def test_generated_ledger_same_rows_both_ways(urls, v1, tmp_path, monkeypatch):
    folder = _ledger(tmp_path, v1)
    _rewrite(folder / "invoices.csv", _unusual_but_valid)
    results = []
    for url, way in zip(urls, WAYS, strict=True):
        spy = _way(monkeypatch, way)
        store = _applied(url, v1)
        lines = _import_all(store, folder)
        dump = _dump(store)
        lines += _import_all(store, folder)
        assert _dump(store) == dump  # the same files again change nothing
        results.append((lines, dump))
        store.dispose()
        if spy is not None:
            assert spy.read > 20 and spy.converted > 10  # the pyarrow path did the work
    assert results[0] == results[1]
    lines, _ = results[0]
    assert "120 added" in lines[0] and "0 added, 0 changed" in lines[6]


def _bad(i: int, row: dict) -> None:
    # A chunk apart for each (25 rows apart, chunks of ~12): each check of the pyarrow path on its own.
    edits = {
        5: ("due_date", "2026-02-30"),
        30: ("amount", "1,5"),
        55: ("outstanding", "99999999.00"),  # more than the amount
        80: ("currency", "EURO"),
        105: ("status", "late"),
        130: ("customer_external_id", "NOPE"),
        155: ("number", ""),
        205: ("document_url", "x" * 2001),
        230: ("status", "PA\u0130D"),  # lowers to "pai̇d" in Python: not a status
        255: ("due_date", "1899-12-31"),  # no issue date (below): only the range check stops it
        280: ("amount", "1000000000000.00"),  # 13 digits: too large
        305: ("due_date", "2200-01-01"),
    }
    if i in edits:
        column, value = edits[i]
        row[column] = value
    if i in (5, 255):
        row["issue_date"] = "" if i == 255 else "2026-01-01"  # only the date's own check stops it
    if i == 180:
        row["issue_date"] = "2026-12-31"  # after its due date
        row["due_date"] = "2026-01-01"


def test_bad_rows_same_errors_both_ways(urls, v1, tmp_path, monkeypatch):
    folder = _ledger(tmp_path, v1)
    _rewrite(folder / "invoices.csv", _bad)
    errors = []
    for url, way in zip(urls, WAYS, strict=True):
        store = _applied(url, v1)
        for kind in ("customers", "contacts"):
            import_file(store, kind, folder / f"{kind}.csv", now=NOW)
        spy = _way(monkeypatch, way)
        with pytest.raises(LedgerImportError) as caught:
            import_file(store, "invoices", folder / "invoices.csv", now=NOW, batch_size=64)
        if spy is not None:  # every chunk read the pyarrow way, most converted by it
            assert spy.read > 50 and spy.converted > 40, (spy.read, spy.converted)
        with store.session() as s:
            assert s.execute(select(InvoiceRow.id)).first() is None  # nothing written
        rejects = tmp_path / f"rejects-{way}.csv"
        summary = import_file(
            store, "invoices", folder / "invoices.csv", now=NOW, batch_size=64, skip_invalid=True, reject_file=rejects
        )
        errors.append((str(caught.value), caught.value.issues, summary.line(), rejects.read_text(encoding="utf-8")))
        store.dispose()
    assert errors[0] == errors[1]
    message = errors[0][0]
    assert "13 errors in 13 of" in message
    for expected in (
        "row 7, column due_date: '2026-02-30' is not a date (expected YYYY-MM-DD)",
        "row 57, column outstanding: outstanding (99999999.00) exceeds the amount",
        "row 132, column customer_external_id: unknown customer 'NOPE'",
        "row 232, column status:",
        "row 257, column due_date: '1899-12-31' is out of range",
    ):
        assert expected in message


# Files the CSV reader reads in its own way: each edit is made to the invoices file's bytes, far
# enough in for the chunks before it to go the pyarrow way. (name, edit of the file's lines)
def _at(n: int, text: str):
    return lambda lines: [*lines[:n], text, *lines[n:]]


def _cell(n: int, column: int, text: str):
    def edit(lines: list[str]) -> list[str]:
        cells = lines[n].split(",")
        cells[column] = text
        return [*lines[:n], ",".join(cells), *lines[n + 1 :]]

    return edit


ODD_FILES = {
    "quoted line break": _cell(150, 2, '"FA\nline two"'),
    "quoted CR LF": _cell(150, 2, '"FA\r\nline two"'),
    "empty line": _at(150, ""),
    "blank line": _at(150, "   "),
    "empty line at the end": lambda lines: [*lines, "", ""],
    "lone CR": _cell(150, 8, "a\rb"),
    "NUL in a used cell": _cell(150, 2, "FA\x00"),
    "NUL in a column not imported": lambda lines: [
        lines[0] + ",extra",
        *(f"{x},x" for x in lines[1:150]),
        *(f"{x},\x00" for x in lines[150:]),
    ],
    "cell over the limit": _cell(150, 8, "x" * (70 * 1024)),
    "row of another width": _cell(150, 2, "FA,extra"),
    "quote in an unquoted cell": _cell(150, 2, 'FA"12'),
    "text after a closing quote": _cell(150, 2, '"FA"12'),
    "space before a quote": _cell(150, 2, ' "FA"'),
    "unclosed quote": _cell(150, 2, '"FA'),
    "every cell quoted": lambda lines: [",".join(f'"{c}"' for c in x.split(",")) for x in lines],
    "header quoted": lambda lines: [",".join(f'"{c}"' for c in lines[0].split(",")), *lines[1:]],
    "CR LF line ends": lambda lines: [x + "\r" for x in lines],
    "whitespace around cells": _cell(150, 0, "\u2003\x1f  I-space \t"),
    "unicode status": _cell(150, 9, "\u0130"),
    "duplicate ids": lambda lines: lines + lines[100:103],
}


def _write(path: Path, lines: list[str], *, bom: bool = False, tail: bytes = b"") -> None:
    data = "\n".join(lines).encode("utf-8")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data + tail)


def _outcome(store, path: Path, mapping: Mapping | None = None) -> tuple:
    try:
        summary = import_file(store, "invoices", path, now=NOW, batch_size=64, mapping=mapping)
    except LedgerImportError as exc:
        return "invalid", str(exc), exc.issues
    except DunningOpsError as exc:
        return "error", str(exc).replace(str(path.parent), "DIR")  # the two ways' files are in two folders
    return "ok", summary.line(), _dump(store)


@pytest.fixture
def prepared(v1, tmp_path):
    """Two SQLite stores holding the same customers and contacts, and the generated invoices' lines."""
    folder = _ledger(tmp_path, v1)
    stores = []
    for way in WAYS:
        store = _applied(f"sqlite:///{tmp_path}/{way}.db", v1)
        for kind in ("customers", "contacts"):
            import_file(store, kind, folder / f"{kind}.csv", now=NOW)
        stores.append(store)
    lines = (folder / "invoices.csv").read_text(encoding="utf-8").splitlines()
    yield stores, lines, tmp_path
    for store in stores:
        store.dispose()


def _both_ways(prepared, monkeypatch, lines, **write) -> list[tuple]:
    stores, _, tmp_path = prepared
    outcomes = []
    for store, way in zip(stores, WAYS, strict=True):
        with monkeypatch.context() as patch:
            spy = _way(patch, way)
            (tmp_path / way).mkdir()
            path = tmp_path / way / "invoices.csv"
            _write(path, lines, **write)
            outcomes.append(_outcome(store, path))
            if spy is not None:
                assert spy.read >= 5  # the chunks before the odd line went the pyarrow way
    return outcomes


@pytest.mark.parametrize("bad_row", [False, True], ids=["valid", "bad row after"])
@pytest.mark.parametrize("name", list(ODD_FILES))
def test_odd_files_same_outcome_both_ways(prepared, monkeypatch, name, bad_row):
    _, lines, _ = prepared
    lines = ODD_FILES[name](lines)
    if bad_row:  # a bad cell after the odd line: its row number must be the CSV reader's
        lines = _cell(len(lines) - 3, 5, "bad")(lines)
    outcomes = _both_ways(prepared, monkeypatch, lines)
    assert outcomes[0] == outcomes[1]
    if bad_row:
        assert outcomes[0][0] in ("invalid", "error")


@pytest.mark.parametrize("tail", [b"", b"\n", b"\r\n", b"\xff\xfe", b"\n\xc3", b"\xed\xa0\x80"])
@pytest.mark.parametrize("bom", [False, True])
def test_bom_invalid_utf8_and_file_ends_same_outcome_both_ways(prepared, monkeypatch, bom, tail):
    _, lines, _ = prepared
    outcomes = _both_ways(prepared, monkeypatch, lines, bom=bom, tail=tail)
    assert outcomes[0] == outcomes[1]


def test_invalid_utf8_mid_file_same_error(prepared, monkeypatch):
    stores, lines, tmp_path = prepared
    outcomes = []
    for store, way in zip(stores, WAYS, strict=True):
        with monkeypatch.context() as patch:
            _way(patch, way)
            (tmp_path / way).mkdir()
            path = tmp_path / way / "invoices.csv"
            data = "\n".join(lines).encode("utf-8")
            path.write_bytes(data[:20000] + b"\xe9" + data[20000:])
            outcomes.append(_outcome(store, path))
    assert outcomes[0] == outcomes[1] and outcomes[0][0] == "error" and "not utf-8-sig text" in outcomes[0][1]


def test_mapping_delimiter_and_latin1(prepared, monkeypatch):
    """A semicolon file goes the pyarrow way; a latin-1 one the CSV reader's (only UTF-8 is read by pyarrow)."""
    stores, lines, tmp_path = prepared
    for mapping, encoding in ((Mapping(delimiter=";"), "utf-8"), (Mapping(encoding="latin-1"), "latin-1")):
        outcomes = []
        for store, way in zip(stores, WAYS, strict=True):
            with monkeypatch.context() as patch:
                spy = _way(patch, way)
                path = tmp_path / f"{way}-{encoding}" / "invoices.csv"
                path.parent.mkdir()
                path.write_text("\n".join(x.replace(",", mapping.delimiter) for x in lines), encoding=encoding)
                outcomes.append(_outcome(store, path, mapping))
                if spy is not None:
                    assert (spy.read > 0) == (encoding == "utf-8")
        assert outcomes[0] == outcomes[1] and outcomes[0][0] == "ok"


def test_strip_is_str_strip():
    assert arrow_convert.STRIP == "".join(c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace())


def test_help_and_small_files_do_not_import_pyarrow(tmp_path):
    small = tmp_path / "customers.csv"
    small.write_text("external_id,name\nC1,Acme\n", encoding="utf-8")
    code = f"""
import sys
from click.testing import CliRunner
from dunningops.cli import cli
assert CliRunner().invoke(cli, ["--help"]).exit_code == 0
from dunningops.ledger import stream
assert stream.arrow_module(__import__("pathlib").Path({str(small)!r}), stream.Mapping()) is None
assert "pyarrow" not in sys.modules, "pyarrow imported"
"""
    subprocess.run([sys.executable, "-c", code], check=True)


def _customers_edit(i: int, row: dict) -> None:
    if i == 10:
        row["locale"] = "fr-FR"
        row["country"] = "fr"
    if i == 20:
        row["account_manager"] = "ALICE@acme.fr"  # by email, any case
    if i == 30:
        row["address_line1"] = "1 rue\tdu Port"  # a tab: not one line
    if i == 40:
        row["account_manager"] = "nobody"
    if i == 50:
        row["plan"] = "no-such-plan"
    if i == 60:
        row["country"] = "FRA"
    if i == 70:
        row["locale"] = "fr_fr_FR"
    if i == 90:
        row["name"] = "\u00c9mile \u3000"  # stripped as str.strip strips


def _contacts_edit(i: int, row: dict) -> None:
    if i == 20:
        row["email"] = "\u00e9lodie@example.fr"  # not ASCII: Python's expression judges it (valid)
    if i == 40:
        row["email"] = "a\x1cb@example.fr"  # \x1c is whitespace to Python's \s
    if i == 60:
        row["functions"] = " Comptable ;payer|PAYER,, "  # labels, ids, any case, repeated
    if i == 80:
        row["functions"] = "nobody"
    if i == 100:
        row["primary"] = "Oui"
    if i == 120:
        row["primary"] = "maybe"
    if i == 140:
        row["valid"] = "NO"
    if i == 160:
        row["email"] = "not-an-address"
    if i == 180:
        row["functions"] = "Achats"


@pytest.mark.parametrize("kind", ["customers", "contacts"])
def test_customers_and_contacts_same_outcome_both_ways(urls, v1, tmp_path, monkeypatch, kind):
    folder = _ledger(tmp_path, v1)
    edit = _customers_edit if kind == "customers" else _contacts_edit
    _rewrite(folder / f"{kind}.csv", edit)
    outcomes = []
    for url, way in zip(urls, WAYS, strict=True):
        spy = _way(monkeypatch, way, chunk=300)  # a few rows a chunk: each edit in a chunk of its own
        store = _applied(url, v1)
        if kind == "contacts":
            import_file(store, "customers", folder / "customers.csv", now=NOW)
        with pytest.raises(LedgerImportError) as caught:
            import_file(store, kind, folder / f"{kind}.csv", now=NOW, batch_size=64)
        summary = import_file(store, kind, folder / f"{kind}.csv", now=NOW, batch_size=64, skip_invalid=True)
        outcomes.append((str(caught.value), caught.value.issues, summary.line(), _dump(store)))
        store.dispose()
        if spy is not None:
            assert spy.converted > 3
    assert outcomes[0] == outcomes[1]
    assert "5 errors in 5 of" in outcomes[0][0]


def test_c7_a_chunk_s_function_links_each_once_per_contact_where_first_named_as_tuples_and_as_a_table():
    """C7: functions by id or label, any case; one named twice for a contact (its id, then its label) is
    linked once, at its first mention; the staging file's Arrow table holds exactly the tuples' links."""
    import pyarrow as pa

    from dunningops.ledger.context import LedgerContext

    ctx = LedgerContext(
        currency="EUR",
        locale="fr",
        members={},
        plans=frozenset(),
        functions={"payer": "payer", "payeur": "payer", "accountant": "accountant", "comptable": "accountant"},
    )
    header = ["customer_external_id", "email", "functions"]
    cells = [
        ["C1", "C1", "C2", "C3"],
        ["a@x.fr", "b@x.fr", "c@x.fr", "d@x.fr"],
        ["Comptable; payer|PAYEUR", "", "payeur,accountant,ACCOUNTANT,Payer", " ; "],
    ]
    chunk = pa.table(cells, names=[f"c{i}" for i in range(3)])
    positions = [(name, i) for i, name in enumerate(header)]
    expected = [
        (10, "C1", "a@x.fr", "accountant"),
        (10, "C1", "a@x.fr", "payer"),
        (12, "C2", "c@x.fr", "payer"),
        (12, "C2", "c@x.fr", "accountant"),
    ]
    _, tuples = arrow_convert.converter("contacts", ctx, positions, iso_dates=True)(10, chunk)
    _, table = arrow_convert.converter("contacts", ctx, positions, iso_dates=True, as_table=True)(10, chunk)
    assert tuples == expected
    assert table.schema == arrow_convert.staging_schema(arrow_convert.STAGING_FUNCTIONS)
    assert list(zip(*(c.to_pylist() for c in table.columns), strict=True)) == expected
