"""Bulk inserts give back each row's id, in the rows' order, in one statement (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import event, select

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
