"""The database fixtures give each test a real, empty, working database."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from servers import PostgresServer


def _roundtrip(url: str) -> list[tuple[int, str]]:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            assert conn.execute(sa.text("select 1")).scalar_one() == 1
            conn.execute(sa.text("create table invoice (id integer primary key, status text)"))
            conn.execute(
                sa.text("insert into invoice (id, status) values (:id, :status)"),
                [{"id": 1, "status": "open"}, {"id": 2, "status": "paid"}],
            )
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text("select id, status from invoice order by id"))]
    finally:
        engine.dispose()


def test_database_url_roundtrip(database_url: str) -> None:
    assert _roundtrip(database_url) == [(1, "open"), (2, "paid")]


def test_database_url_is_fresh_each_test(database_url: str) -> None:
    # Runs after the test above created `invoice`: a new database has no tables.
    engine = sa.create_engine(database_url)
    try:
        assert sa.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def test_sqlite_url(sqlite_url: str) -> None:
    assert sqlite_url.startswith("sqlite:///") and sqlite_url.endswith("/state.db")
    assert _roundtrip(sqlite_url) == [(1, "open"), (2, "paid")]


def test_postgres_url_is_real_postgresql(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql+psycopg://postgres@127.0.0.1:")
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert "PostgreSQL" in conn.execute(sa.text("select version()")).scalar_one()
    finally:
        engine.dispose()
    assert _roundtrip(postgres_url) == [(1, "open"), (2, "paid")]


def test_postgres_database_dropped_even_with_open_connection(
    postgres_server: PostgresServer,
) -> None:
    # A leaked connection must not block drop_database (DROP ... WITH (FORCE)).
    postgres_server.create_database("leaky")
    engine = sa.create_engine(postgres_server.url("leaky"))
    conn = engine.connect()
    conn.execute(sa.text("select 1"))
    postgres_server.drop_database("leaky")
    conn.invalidate()  # its server session was terminated by the drop
    engine.dispose()
    admin = sa.create_engine(postgres_server.url())
    try:
        with admin.connect() as c:
            names = c.execute(sa.text("select datname from pg_database")).scalars().all()
    finally:
        admin.dispose()
    assert "leaky" not in names


@pytest.mark.postgres
def test_server_starts_and_stops_cleanly() -> None:
    # A second, private server: stop() must reap it and delete its directory.
    server = PostgresServer().start()
    proc, tmpdir = server.proc, server.tmpdir
    assert proc is not None and tmpdir is not None and tmpdir.exists()
    assert server.port is not None
    server.stop()
    assert proc.returncode is not None  # reaped, not a zombie
    assert not tmpdir.exists()
    assert not server.running
