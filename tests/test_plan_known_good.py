"""`plan` reads the store as plain rows (store/state.py: SQLAlchemy Core, or the standard library's
sqlite3 for a SQLite store at the latest revision) and checks only the template sources the store
does not already hold; `validate` checks every one. What plan reads must equal what apply reads
under its lock (the plan's actual_digest), and a new or changed body is still reported with its
file:line."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from dunningops.reconcile.apply import apply_config
from dunningops.reconcile.objects import digest
from dunningops.spec import load_config
from dunningops.store import open_store
from dunningops.store.config_objects import read_actual
from dunningops.store.state import (
    checked_sources,
    read_applied,
    read_applied_sqlite,
)

NOW = datetime(2026, 11, 23, 8, 30, tzinfo=UTC)
BAD = "Bonjour {{ customer.name }\n"  # an unclosed expression: a syntax error on line 1


def _apply(config: Path, url: str) -> None:
    store = open_store(url)
    try:
        apply_config(store, load_config(config), now=NOW, actor="alice", git_commit=None)
    finally:
        store.dispose()


def _readers(url: str) -> list[dict]:
    store = open_store(url)
    try:
        with store.session() as session:
            orm = {a: o.fields for a, o in read_actual(session).items()}
        core = {a: o.fields for a, o in read_applied(store.engine).items()}
    finally:
        store.dispose()
    fast = read_applied_sqlite(url)
    if url.startswith("sqlite"):
        assert fast is not None
        return [orm, core, {a: o.fields for a, o in fast.items()}]
    assert fast is None  # PostgreSQL: always through SQLAlchemy
    return [orm, core]


def test_plain_readers_read_what_the_orm_reader_reads(v1: Path, v2: Path, database_url: str):
    _apply(v1, database_url)
    orm, *plain = _readers(database_url)
    assert len(orm) == 13
    for fields in plain:
        # Same values of the same types (JSON decoded, booleans as booleans): the digests agree, so
        # a plan saved with `plan --out` is the one apply finds under its lock.
        assert fields == orm and digest(fields) == digest(orm)
        assert isinstance(fields["plan.standard"]["group_invoices"], bool)
    _apply(v2, database_url)  # moves, a replace, deletes
    orm, *plain = _readers(database_url)
    assert all(fields == orm and digest(fields) == digest(orm) for fields in plain)


def test_the_sqlite_reader_leaves_every_other_store_to_open_store(v1: Path, tmp_path: Path, run):
    missing = tmp_path / "new" / "state.db"
    assert read_applied_sqlite(f"sqlite:///{missing}") is None and not missing.parent.exists()
    for url in ("sqlite://", "sqlite:///:memory:", f"sqlite:///{tmp_path}/x.db?mode=ro", "postgresql://h/db"):
        assert read_applied_sqlite(url) is None
    # A new store: plan opens it the usual way (created, migrated) and plans every create.
    result = run("plan", "--config", v1, "--database-url", f"sqlite:///{missing}")
    assert result.exit_code == 0 and "Plan: 13 to add" in result.stdout
    assert read_applied_sqlite(f"sqlite:///{missing}") == {}  # at the latest revision now, and empty
    # At another revision: left to open_store (which migrates, or refuses a newer store).
    with sqlite3.connect(missing) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999'")
    assert read_applied_sqlite(f"sqlite:///{missing}") is None
    result = run("plan", "--config", v1, "--database-url", f"sqlite:///{missing}")
    assert result.exit_code == 3 and "written by a newer dunningops" in result.stderr
    # Not a database: the same one-line error as before.
    bogus = tmp_path / "bogus.db"
    bogus.write_text("not sqlite", encoding="utf-8")
    assert read_applied_sqlite(f"sqlite:///{bogus}") is None
    result = run("plan", "--config", v1, "--database-url", f"sqlite:///{bogus}")
    assert result.exit_code == 3 and "is not a SQLite database" in result.stderr


def test_checked_sources_are_the_stored_bodies_and_subjects(v1: Path, sqlite_url: str):
    _apply(v1, sqlite_url)
    store = open_store(sqlite_url)
    try:
        sources = checked_sources(read_applied(store.engine))
    finally:
        store.dispose()
    body = (v1 / "courtesy.fr.txt").read_text(encoding="utf-8")
    assert ("text", body) in sources
    assert ("subject", "Rappel : échéance proche") in sources
    assert ("html", body) not in sources  # a check depends on the design too


def test_known_good_sources_are_not_checked_again_and_validate_checks_all(v1: Path, run):
    (v1 / "courtesy.fr.txt").write_text(BAD, encoding="utf-8")
    # Given as checked (as if the store held it): not parsed again.
    state = load_config(v1, known_good=lambda: {("text", BAD)})
    assert state.template_bodies[("courtesy", "fr")] == BAD
    # Without a store, every body is checked: the error has its file:line.
    result = run("validate", "--config", v1)
    assert result.exit_code == 1
    assert "courtesy.fr.txt:1" in result.stderr and "template syntax" in result.stderr


def test_plan_reports_a_changed_body_and_subject_with_their_places(v1: Path, sqlite_url: str, run):
    assert run("apply", "--config", v1, "--database-url", sqlite_url, "--auto-approve").exit_code == 0
    (v1 / "courtesy.fr.txt").write_text(BAD, encoding="utf-8")
    plans = v1 / "plans.yaml"
    plans.write_text(plans.read_text(encoding="utf-8").replace("Rappel : échéance proche", "Rappel {{ "), encoding="utf-8")
    for command in ("plan", "apply"):
        args = [command, "--config", v1, "--database-url", sqlite_url]
        result = run(*args, *(["--auto-approve"] if command == "apply" else []))
        assert result.exit_code == 1, result.output
        assert "courtesy.fr.txt:1" in result.stderr and "template syntax" in result.stderr
        assert "plans.yaml:15" in result.stderr and "locales.fr.subject" in result.stderr


def test_plan_with_an_invalid_file_fails_before_the_store_is_opened(v1: Path, tmp_path: Path, run):
    (v1 / "plans.yaml").write_text("templates: [\n", encoding="utf-8")
    store = tmp_path / "never" / "state.db"
    result = run("plan", "--config", v1, "--database-url", f"sqlite:///{store}")
    assert result.exit_code == 1 and "plans.yaml:" in result.stderr and "invalid YAML" in result.stderr
    assert not store.parent.exists()  # the store was not even created


def test_plan_with_no_changes_loads_neither_jinja_nor_sqlalchemy(v1: Path, sqlite_url: str, run):
    assert run("apply", "--config", v1, "--database-url", sqlite_url, "--auto-approve").exit_code == 0
    # A fresh interpreter: what `dunningops plan` imports when the store holds the config.
    code = (
        "import json, sys\n"
        "from dunningops.cli import cli\n"
        "code = cli.main(sys.argv[1:], prog_name='dunningops', standalone_mode=False)\n"
        "heavy = ['jinja2', 'sqlalchemy', 'dunningops.store.schema', 'dunningops.render', 'alembic']\n"
        "print(json.dumps({'code': code or 0, 'loaded': [m for m in heavy if m in sys.modules]}))\n"
    )
    argv = [sys.executable, "-c", code, "plan", "--config", str(v1), "--database-url", sqlite_url]
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    assert "No changes." in out.stdout
    assert json.loads(out.stdout.splitlines()[-1]) == {"code": 0, "loaded": []}


def test_plan_after_a_direct_store_edit_still_diffs_the_body(v1: Path, sqlite_url: str, run):
    # The skip is keyed by content: a body the store does not hold (here: changed behind apply's
    # back) is checked and shown as a change.
    assert run("apply", "--config", v1, "--database-url", sqlite_url, "--auto-approve").exit_code == 0
    store = open_store(sqlite_url)
    try:
        with store.engine.begin() as connection:
            locales = json.loads(connection.execute(text("SELECT locales FROM templates WHERE id = 'courtesy'")).scalar_one())
            locales["fr"]["body"] = "autre chose\n"
            connection.execute(text("UPDATE templates SET locales = :l WHERE id = 'courtesy'"), {"l": json.dumps(locales)})
    finally:
        store.dispose()
    result = run("plan", "--config", v1, "--database-url", sqlite_url)
    assert result.exit_code == 0
    assert "template.courtesy" in result.stdout and "Plan: 0 to add, 1 to change" in result.stdout
