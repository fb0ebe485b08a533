"""A first import's invoices written in parts while they are staged (ledger/relay.py), on SQLite: the same
ledger as one write of the whole file, the same errors in the same words, nothing written when any part has
a problem, and the usual way whenever the table holds invoices already."""

from __future__ import annotations

import csv
import tempfile
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import text

from dunningops.ledger import apart, arrow, relay, stream
from dunningops.ledger.generate import generate_ledger
from dunningops.ledger.importer import import_file, import_files, ledger_files
from dunningops.ledger.issues import LedgerImportError
from dunningops.reconcile.apply import apply_config
from dunningops.spec import load_config
from dunningops.store import open_store
from test_ledger_import import NOW
from test_ledger_import_all import _edit, _invoice_updates

TABLES = ("customers", "contacts", "contact_function_links", "invoices", "payments", "portal_notifications")


@pytest.fixture
def generated(tmp_path: Path) -> Path:
    """A generated ledger of 150 customers (about 1,500 invoices, 180 KB), with payments."""
    directory = tmp_path / "generated"
    directory.mkdir()
    generate_ledger(
        directory,
        customers=150,
        seed=7,
        members=("alice", "bob", "chloe"),
        functions=("accountant", "payer", "purchasing"),
        today=date(2026, 11, 16),
        plans=("standard",),
    )
    return directory


@pytest.fixture
def stores(tmp_path: Path, v1: Path, monkeypatch):
    """Two stores with the v1 config applied: ``usual`` and ``relayed`` (scratch files under tmp_path)."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    made = {}
    for name in ("usual", "relayed"):
        made[name] = open_store(f"sqlite:///{tmp_path}/{name}.db")
        apply_config(made[name], load_config(v1), now=NOW, actor="t", git_commit=None)
    yield made
    for store in made.values():
        store.dispose()


def _relay(monkeypatch, on: bool) -> list:
    """Every file staged apart in small chunks; the invoices relayed in parts (``on``) or staged whole.
    Returns the relays made (filled as imports run)."""
    monkeypatch.setattr(stream, "ARROW_MIN_BYTES", 0)
    monkeypatch.setattr(arrow, "CHUNK_BYTES", 4096)  # ~30 invoices a chunk: a few chunks a part
    monkeypatch.setattr(relay, "RELAY_MIN_BYTES", 0 if on else 1 << 40)
    monkeypatch.setattr(relay, "RELAY_PART_BYTES", 1)
    made: list = []
    prepare = apart.Apart.prepare.__func__  # type: ignore[attr-defined]

    def spy(cls, *args, **kwargs):
        result = prepare(cls, *args, **kwargs)
        made.append(result.relay)
        return result

    monkeypatch.setattr(apart.Apart, "prepare", classmethod(spy))
    return made


def _invoice_inserts(store) -> list[int]:
    """The rows each INSERT into the invoices table wrote."""
    return _invoice_updates(store, "INSERT INTO invoices")


def _dump(store) -> dict[str, list[tuple]]:
    """Every row of the ledger's tables, ids included, in id order."""
    with store.session() as s:
        return {t: [tuple(r) for r in s.execute(text(f"SELECT * FROM {t} ORDER BY 1, 2"))] for t in TABLES}


def _rows(path: Path) -> int:
    with path.open(encoding="utf-8") as handle:
        return sum(1 for _ in handle) - 1


def test_relay_parts_stay_within_sqlite_s_attach_limit_and_skip_small_files():
    assert relay.relay_parts(relay.RELAY_MIN_BYTES - 1, others=0) == 1
    assert relay.relay_parts(200 * 1024 * 1024, others=0) == relay.RELAY_PARTS
    assert relay.relay_parts(200 * 1024 * 1024, others=3) == 7  # 10 attached files at most, 3 of them the others'
    assert relay.relay_parts(20 * 1024 * 1024, others=3) == 2  # 8 MiB a part at least
    assert relay.per_part(100, 4, 10) == 3  # 10 chunks in 4 parts: the last one no larger


@pytest.mark.parametrize("how", ["import-all", "invoices alone"])
def test_a_first_import_relayed_in_parts_writes_the_ledger_one_write_would(stores, generated, monkeypatch, how):
    def run(store):
        if how == "import-all":
            return import_files(store, ledger_files(generated), now=NOW)
        for kind in ("customers", "contacts"):
            import_file(store, kind, generated / f"{kind}.csv", now=NOW)
        return [import_file(store, "invoices", generated / "invoices.csv", now=NOW)]

    _relay(monkeypatch, on=False)
    usual = run(stores["usual"])
    made = _relay(monkeypatch, on=True)
    inserts = _invoice_inserts(stores["relayed"])
    relayed = run(stores["relayed"])

    invoices = _rows(generated / "invoices.csv")
    parts = made[-1].sink.files
    assert len(parts) == (7 if how == "import-all" else 8)  # beside the three other files, or alone
    assert len(inserts) == len(parts) and sum(inserts) == invoices  # one INSERT a part, every row once
    assert all(inserts)  # none of the parts empty
    assert not made[-1].spoilt
    assert [(s.kind, s.added, s.changed) for s in relayed] == [(s.kind, s.added, s.changed) for s in usual]
    # Ids, balances with the staged payments, statuses, timestamps, A9 notices: row for row the same.
    assert _dump(stores["relayed"]) == _dump(stores["usual"])


@pytest.mark.parametrize(
    "problem",
    ["a key repeated in a later part", "an unknown customer in a later part", "a bad cell in a middle part"],
)
def test_a_problem_in_any_part_gives_the_usual_errors_and_writes_nothing(stores, generated, monkeypatch, problem):
    last = _rows(generated / "invoices.csv") + 1
    if problem == "a key repeated in a later part":
        with (generated / "invoices.csv").open(encoding="utf-8") as handle:
            first_key = list(csv.DictReader(handle))[0]["external_id"]
        _edit(generated / "invoices.csv", last - 3, "external_id", first_key)
    elif problem == "an unknown customer in a later part":
        _edit(generated / "invoices.csv", last - 3, "customer_external_id", "C-NOBODY")
    else:
        _edit(generated / "invoices.csv", last // 2, "amount", "lots")

    _relay(monkeypatch, on=False)
    with pytest.raises(LedgerImportError) as usual:
        import_files(stores["usual"], ledger_files(generated), now=NOW)
    made = _relay(monkeypatch, on=True)
    with pytest.raises(LedgerImportError) as relayed:
        import_files(stores["relayed"], ledger_files(generated), now=NOW)

    assert made[-1] is not None and made[-1].spoilt  # the relay gave way to the usual checks
    assert str(relayed.value) == str(usual.value)
    assert relayed.value.issues == usual.value.issues and relayed.value.issues
    if problem == "a key repeated in a later part":  # the check's words (not "rows were not written")
        assert [i.message.split(" (")[0] for i in usual.value.issues] == [f"duplicate external_id {first_key!r}"]
    assert all(rows == [] for rows in _dump(stores["relayed"]).values())


def test_a_repeated_key_is_refused_after_parts_were_written_and_those_are_undone(stores, generated, monkeypatch):
    """The ledger's unique key refuses a repeat across parts: the parts written before are deleted, the file
    goes the usual way, and with --skip-invalid off nothing of the import is written."""
    last = _rows(generated / "invoices.csv") + 1
    with (generated / "invoices.csv").open(encoding="utf-8") as handle:
        first_key = list(csv.DictReader(handle))[0]["external_id"]
    _edit(generated / "invoices.csv", last - 1, "external_id", first_key)  # in the last part
    made = _relay(monkeypatch, on=True)
    inserts = _invoice_inserts(stores["relayed"])
    with pytest.raises(LedgerImportError) as caught:
        import_files(stores["relayed"], ledger_files(generated), now=NOW)
    relayed = made[-1]
    assert relayed.spoilt and relayed.written == len(relayed.sink.files) - 1  # every part but the last was written
    assert sum(inserts[: relayed.written]) == relayed.added > 0
    assert [(i.row, i.column) for i in caught.value.issues] == [(last - 1, "external_id")]
    assert "duplicate external_id" in caught.value.issues[0].message
    assert all(rows == [] for rows in _dump(stores["relayed"]).values())


def test_invoices_already_in_the_store_or_skip_invalid_take_the_usual_way(stores, generated, monkeypatch):
    store = stores["relayed"]
    made = _relay(monkeypatch, on=True)
    import_files(store, ledger_files(generated), now=NOW, skip_invalid=True)
    assert made[-1] is None  # --skip-invalid: a rejected row must not be in a part written already
    again = import_files(store, ledger_files(generated), now=NOW)
    assert made[-1] is None  # the invoices table holds rows: updates, not only inserts
    assert [s.added for s in again] == [0, 0, 0, 0]


_KILLED = """
import sys, time
from datetime import datetime, timezone
from pathlib import Path
from dunningops.ledger import arrow, relay, stream
from dunningops.ledger.importer import import_files, ledger_files
from dunningops.store import open_store

stream.ARROW_MIN_BYTES, arrow.CHUNK_BYTES, relay.RELAY_MIN_BYTES, relay.RELAY_PART_BYTES = 0, 4096, 0, 1
write = relay.Relay._write


def held(self, session, part):
    write(self, session, part)
    if self.written == 2:  # two parts in the ledger, uncommitted: the parent kills us here
        print("two parts written", flush=True)
        time.sleep(120)


relay.Relay._write = held
import_files(open_store(sys.argv[1]), ledger_files(Path(sys.argv[2])), now=datetime(2026, 11, 16, 9, tzinfo=timezone.utc))
"""


def test_an_import_killed_after_parts_were_written_leaves_nothing_and_the_next_one_imports_it_all(
    tmp_path, v1, generated
):
    """Parts written are in the import's one transaction: a SIGKILL then leaves no invoice and no customer
    (the next opener rolls the store back), and the next import removes the scratch parts and writes all."""
    import os
    import signal
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path}/killed.db"
    store = open_store(url)
    apply_config(store, load_config(v1), now=NOW, actor="t", git_commit=None)
    store.dispose()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED, url, str(generated)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(scratch)},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "two parts written"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert len(list(scratch.iterdir())) == 10  # the customers', contacts', payments' and seven parts' files
    store = open_store(url)
    try:
        assert all(rows == [] for rows in _dump(store).values())
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(tempfile, "tempdir", str(scratch))
            made = _relay(patch, on=True)
            summaries = import_files(store, ledger_files(generated), now=NOW)
        assert made[-1] is not None and not made[-1].spoilt
        assert summaries[2].added == _rows(generated / "invoices.csv")
        assert list(scratch.iterdir()) == []
    finally:
        store.dispose()
