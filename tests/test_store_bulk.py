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
