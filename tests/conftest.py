"""Shared pytest fixtures.

Databases:
  * ``database_url`` -- parametrized: every test using it runs twice, once on
    SQLite (``[sqlite]``) and once on a real PostgreSQL (``[postgresql]``).
  * ``sqlite_url`` / ``postgres_url`` -- one backend only.
  Each test gets a fresh, empty database; the URLs are SQLAlchemy URLs.

The PostgreSQL server is started once per run, and only if some selected test
needs it.  If it cannot start, those tests FAIL (never skip): a missing server
must not turn into a green run.  ``-m "not postgres"`` deselects them.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# tests/ is not a package: pytest puts this directory on sys.path.
from servers import PostgresServer, PostgresServerError

REPO_ROOT = Path(__file__).resolve().parent.parent


# --- paths -------------------------------------------------------------------

@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def config_dir(repo_root: Path) -> Path:
    return repo_root / "config"


# --- databases ---------------------------------------------------------------

@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.start()
    except (PostgresServerError, OSError) as exc:
        pytest.fail(
            f"could not start PostgreSQL for the tests: {exc}\n"
            "Install it with `apt-get install postgresql` "
            "(or run `bash scripts/install-deps.sh` as root, as `make test` does).",
            pytrace=False,
        )
    yield server
    server.stop()


# Database names must be unique within the server for the whole run; the pid
# keeps them apart if several pytest processes ever share a server.
_db_counter = itertools.count(1)


def _fresh_postgres_database(server: PostgresServer) -> Iterator[str]:
    name = f"test_{os.getpid()}_{next(_db_counter)}"
    server.create_database(name)
    try:
        yield server.url(name)
    finally:
        server.drop_database(name)  # WITH (FORCE): kills leftover connections


def _sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/state.db"


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield _sqlite_url(tmp_path)
    else:
        # Looked up lazily so that SQLite-only runs never start PostgreSQL.
        yield from _fresh_postgres_database(request.getfixturevalue("postgres_server"))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return _sqlite_url(tmp_path)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    yield from _fresh_postgres_database(postgres_server)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests that take postgres_url/postgres_server directly get the `postgres`
    # marker too (database_url[postgresql] has it from its param), so that
    # `-m "not postgres"` really leaves PostgreSQL out.
    for item in items:
        if {"postgres_url", "postgres_server"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)


# =============================================================================
# Project fixtures: add new fixtures below this line.
# =============================================================================

import shutil  # noqa: E402

from click.testing import CliRunner  # noqa: E402

from dunningops.cli import cli  # noqa: E402

FIXTURES = Path(__file__).with_name("fixtures")
# A pinned clock, so that show/history output and timestamps are reproducible.
PINNED_NOW = "2026-11-23T08:30:00+00:00"


@pytest.fixture
def v1(tmp_path: Path) -> Path:
    """A copy of the small v1 config (tests may edit it)."""
    return Path(shutil.copytree(FIXTURES / "v1", tmp_path / "v1"))


@pytest.fixture
def v2(tmp_path: Path) -> Path:
    """v1 after a review: an update, an A4 replace, a create, a move, a C8 removal, a delete."""
    return Path(shutil.copytree(FIXTURES / "v2", tmp_path / "v2"))


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch):
    """Run the CLI in-process: run("plan", "--config", d) → click Result (stdout and stderr apart)."""
    monkeypatch.setenv("DUNNINGOPS_NOW", PINNED_NOW)
    # T1: applies and on-demand sends are made as the owner of tests/fixtures' v1 and v2 (by email, as the
    # git author would be); a test with another config or member passes --actor.
    monkeypatch.setenv("DUNNINGOPS_ACTOR", "alice@acme.fr")
    monkeypatch.delenv("DUNNINGOPS_DATABASE_URL", raising=False)

    def _run(*args: str, input: str | None = None):
        return CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False, prog_name="dunningops")

    return _run


@pytest.fixture
def repo(run, v1: Path, tmp_path: Path, monkeypatch):
    """A repo with the v1 config applied (on Friday 20 November) and the fixture ledger imported, on SQLite."""
    monkeypatch.setenv("DUNNINGOPS_NOW", "2026-11-20T09:00:00+00:00")
    url = f"sqlite:///{tmp_path}/state.db"
    assert run("apply", "--config", v1, "--database-url", url, "--auto-approve").exit_code == 0
    for kind in ("customers", "contacts", "invoices", "payments"):
        path = FIXTURES / "ledger" / f"{kind}.csv"
        assert run("ledger", "import", kind, path, "--config", v1, "--database-url", url).exit_code == 0
    return v1, url

# Real SMTP servers (aiosmtpd) on loopback, for the transport and the send cycle.
from smtp_fixtures import make_smtp_server, smtp_server  # noqa: E402,F401

# A local stand-in for Slack's incoming webhooks (an http.server on loopback).
from http_fixtures import slack_webhook  # noqa: E402,F401

# A real Dovecot IMAP server on loopback (tests/servers.py), and a mailbox of its own per test.
from imap_fixtures import dovecot, dovecot_tls, imap_mailbox  # noqa: E402,F401

# The web application served for real on loopback (uvicorn).
from web_fixtures import live_server  # noqa: E402,F401
