"""The store: bulk inserts give back each row's id in one statement (SQLite and PostgreSQL); a new SQLite file's page size."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from sqlalchemy import event, select, text

from dunningops.store import open_store
from dunningops.store.bulk import insert_ids
from dunningops.store.schema import AlertRow

AT = datetime(2026, 12, 1, tzinfo=UTC)


def test_insert_ids_returns_each_rows_id_in_order_in_one_statement(database_url: str):
    store = open_store(database_url)
    alerts = AlertRow.__table__
    statements = []
    event.listen(store.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    try:
        with store.session(write_lock=True) as s:
            first = insert_ids(s, alerts, [{"kind": "bounce", "title": "one", "details": {}, "channels": {}, "created_at": AT}])
            statements.clear()
            rows = [{"kind": "bounce", "title": f"t{i}", "details": {}, "channels": {}, "created_at": AT} for i in range(300)]
            ids = insert_ids(s, alerts, rows)
            inserts = [q for q in statements if q.lstrip().upper().startswith("INSERT")]
        assert len(inserts) == 1
        with store.session() as s:
            titles = dict(s.execute(select(alerts.c.id, alerts.c.title)).all())
        assert [titles[i] for i in ids] == [f"t{i}" for i in range(300)]
        assert len(set(ids)) == 300 and first[0] not in ids
        with store.session(write_lock=True) as s:
            assert insert_ids(s, alerts, []) == []
    finally:
        store.dispose()


def test_a_new_sqlite_store_has_8k_pages_and_an_older_one_keeps_its_own(tmp_path):
    new = open_store(f"sqlite:///{tmp_path / 'new.db'}")
    new.dispose()
    older = tmp_path / "older.db"
    with sqlite3.connect(older) as db:  # a store created with SQLite's default page size
        db.execute("PRAGMA page_size=4096")
        db.execute("PRAGMA journal_mode=WAL")
    old = open_store(f"sqlite:///{older}")  # upgraded to the latest schema in its own pages
    with old.session() as s:
        assert s.execute(text("SELECT count(*) FROM invoices")).scalar_one() == 0
    old.dispose()
    sizes = {}
    for name in ("new.db", "older.db"):
        with sqlite3.connect(tmp_path / name) as db:
            sizes[name] = (db.execute("PRAGMA page_size").fetchone()[0], db.execute("PRAGMA journal_mode").fetchone()[0])
    assert sizes == {"new.db": (8192, "wal"), "older.db": (4096, "wal")}


def _rows(path) -> tuple[int, str]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT count(*) FROM alerts").fetchone()[0], db.execute("PRAGMA journal_mode").fetchone()[0]


def _fill(session, n: int) -> None:
    alerts = AlertRow.__table__
    rows = [{"kind": "bounce", "title": f"t{i}" * 20, "details": {}, "channels": {}, "created_at": AT} for i in range(n)]
    session.execute(alerts.insert(), rows)


def test_a_bulk_write_alone_goes_through_the_rollback_journal_and_the_store_is_back_in_wal(tmp_path):
    path = tmp_path / "s.db"
    store = open_store(f"sqlite:///{path}")
    try:
        with store.session(bulk=True) as s:
            assert s.info["bulk"] is True
            assert s.execute(text("PRAGMA main.journal_mode")).scalar_one() == "delete"
            _fill(s, 500)
        with store.session(bulk=True) as s:  # a failed bulk write leaves nothing, and WAL too
            _fill(s, 10)
            s.rollback()
    finally:
        store.dispose()
    assert _rows(path) == (500, "wal")


def test_a_bulk_write_while_another_connection_has_the_store_open_stays_in_wal(tmp_path):
    path = tmp_path / "s.db"
    store = open_store(f"sqlite:///{path}")
    other = sqlite3.connect(path)
    try:
        other.execute("SELECT count(*) FROM alerts").fetchone()
        with store.session(bulk=True) as s:
            assert s.info["bulk"] is False
            assert s.execute(text("PRAGMA main.journal_mode")).scalar_one() == "wal"
            _fill(s, 50)
        assert other.execute("SELECT count(*) FROM alerts").fetchone()[0] == 50
    finally:
        other.close()
        store.dispose()


def test_opening_the_store_while_a_bulk_write_holds_it_waits_instead_of_failing(tmp_path):
    path = tmp_path / "s.db"
    url = f"sqlite:///{path}"
    store = open_store(url)
    try:
        with store.session(bulk=True) as s:
            assert s.info["bulk"] is True
            _fill(s, 20)
            s.flush()
            # Another process's connect sets WAL, which SQLite refuses while the write is open: it goes on.
            second = open_store(url, upgrade=False, busy_timeout_s=0.2)
            second.dispose()
        later = open_store(url)
        with later.session() as s2:
            assert s2.execute(text("SELECT count(*) FROM alerts")).scalar_one() == 20
        later.dispose()
    finally:
        store.dispose()
    assert _rows(path) == (20, "wal")


_KILLED_CHILD = """
import sys, time
from datetime import UTC, datetime
from sqlalchemy import text
from dunningops.store import open_store
from dunningops.store.schema import AlertRow
store = open_store("sqlite:///" + sys.argv[1])
with store.session(bulk=True) as s:
    assert s.info["bulk"]
    s.execute(text("PRAGMA cache_size=10"))  # a small page cache: the write spills pages into the file itself
    at = datetime(2026, 12, 1, tzinfo=UTC)
    rows = [{"kind": "bounce", "title": "x" * 200, "details": {}, "channels": {}, "created_at": at} for _ in range(20000)]
    s.execute(AlertRow.__table__.insert(), rows)
    s.flush()
    print("written", flush=True)
    time.sleep(60)
"""


def test_a_bulk_write_killed_mid_way_leaves_nothing_and_the_store_opens_in_wal(tmp_path):
    """Nothing half-imported: the hot rollback journal is rolled back by the next opener."""
    import os
    import signal
    import subprocess
    import sys

    path = tmp_path / "s.db"
    open_store(f"sqlite:///{path}").dispose()
    size = path.stat().st_size
    child = subprocess.Popen([sys.executable, "-c", _KILLED_CHILD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "written"
        assert (tmp_path / "s.db-journal").exists()
        assert path.stat().st_size > size  # the spilled pages are in the file, uncommitted
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    store = open_store(f"sqlite:///{path}")
    try:
        with store.session() as s:
            assert s.execute(text("SELECT count(*) FROM alerts")).scalar_one() == 0
            assert s.execute(text("PRAGMA integrity_check")).scalar_one() == "ok"
    finally:
        store.dispose()
    assert _rows(path) == (0, "wal")


def test_a_reader_in_the_way_of_the_switch_back_leaves_no_pooled_connection_in_the_rollback_journal(tmp_path, monkeypatch):
    from dunningops.store import engine

    path = tmp_path / "s.db"
    store = open_store(f"sqlite:///{path}")
    switch = engine._bulk_journal
    refused = []

    def with_a_reader(raw, on):
        if on:
            return switch(raw, on)
        reader = sqlite3.connect(path)  # holds a shared lock: SQLite refuses to leave the rollback journal
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM alerts").fetchone()
        try:
            back = switch(raw, on)
            refused.append(not back)
            return back
        finally:
            reader.rollback()
            reader.close()

    monkeypatch.setattr(engine, "_bulk_journal", with_a_reader)
    try:
        with store.session(bulk=True) as s:
            assert s.info["bulk"] is True
            _fill(s, 30)
        assert refused == [True]
        with store.session() as s:  # the pool's next connection: a new one, which set WAL again
            assert s.execute(text("PRAGMA main.journal_mode")).scalar_one() == "wal"
            assert s.execute(text("SELECT count(*) FROM alerts")).scalar_one() == 30
    finally:
        store.dispose()
    assert _rows(path) == (30, "wal")


def test_a_bulk_write_goes_without_the_foreign_key_checks_and_the_pool_has_them_back(tmp_path):
    import pytest
    from sqlalchemy.exc import IntegrityError

    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    dangling = text(
        "INSERT INTO payments (external_id, invoice_id, paid_on, amount_cents, kind, created_at) "
        "VALUES ('P1', 999, '2026-11-10', 100, 'payment', '2026-12-01 00:00:00')"
    )
    try:
        with store.session(bulk=True) as s:
            assert s.execute(text("PRAGMA foreign_keys")).scalar_one() == 0
        with store.session() as s:  # the same pooled connection: the checks are back
            assert s.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
        with pytest.raises(IntegrityError, match="FOREIGN KEY"), store.session() as s:
            s.execute(dangling)
    finally:
        store.dispose()
