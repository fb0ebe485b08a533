"""The command line as users and CI meet it: exit codes, stdout vs stderr, errors without tracebacks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest


COMMANDS = [[], ["validate"], ["ledger"], ["ledger", "import"], ["ledger", "import-all"], ["ledger", "generate"], ["customers", "list"], ["contacts"], ["run"], ["run", "send"], ["run", "import"], ["inbox"], ["inbox", "explain"], ["customers"], ["invoices"], ["alerts"], ["status"], ["todo"], ["todo", "send"], ["alias"], ["template"], ["template", "preview"], ["schema"], ["fmt"], ["plan"], ["apply"], ["show"], ["history"], ["db"], ["db", "upgrade"], ["demo"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: "-".join(c) or "main")
def test_help_snapshot(run, command, snapshot):
    result = run(*command, "--help")
    assert result.exit_code == 0
    assert result.output == snapshot


def test_validate_ok_and_error_without_traceback(run, v1: Path):
    ok = run("validate", "--config", v1)
    assert ok.exit_code == 0 and "is valid: 3 members, 3 aliases" in ok.output
    (v1 / "dunningops.yaml").write_text((v1 / "dunningops.yaml").read_text().replace("display_name: Acme Credit", "display_nme: Acme Credit"))
    bad = run("validate", "--config", v1)
    assert bad.exit_code == 1
    assert bad.stdout == ""
    assert bad.stderr.startswith("Error: 1 error in the config:\n  dunningops.yaml:20: aliases[credit].display_nme")
    assert "Traceback" not in bad.output


def test_debug_shows_the_traceback(run, v1: Path):
    (v1 / "plans.yaml").write_text("plans: [\n")
    from dunningops.errors import ConfigError

    with pytest.raises(ConfigError):
        run("--debug", "validate", "--config", v1)


def test_plan_detailed_exitcode_and_apply_round(run, v1: Path, tmp_path: Path):
    url = f"sqlite:///{tmp_path}/state.db"
    first = run("plan", "--config", v1, "--database-url", url, "--detailed-exitcode")
    assert first.exit_code == 2 and "Plan: 13 to add, 0 to change, 0 to replace, 0 to destroy." in first.stdout
    applied = run("apply", "--config", v1, "--database-url", url, "--auto-approve")
    assert applied.exit_code == 0, applied.output
    assert "Apply complete! Resources: 13 added, 0 changed, 0 replaced, 0 destroyed. (apply #1)" in applied.stdout
    again = run("plan", "--config", v1, "--database-url", url, "--detailed-exitcode")
    assert again.exit_code == 0 and again.stdout == "No changes. The store matches the configuration.\n"


def test_plan_error_exit_code_1(run, v1: Path, tmp_path: Path):
    (v1 / "plans.yaml").write_text("plans: [\n")
    result = run("plan", "--config", v1, "--database-url", f"sqlite:///{tmp_path}/s.db", "--detailed-exitcode")
    assert result.exit_code == 1 and "invalid YAML" in result.stderr


def test_json_plan_goes_to_stdout_alone(run, v1: Path, tmp_path: Path):
    out = tmp_path / "plan.json"
    result = run("plan", "--config", v1, "--database-url", f"sqlite:///{tmp_path}/s.db", "--format", "json", "--out", out)
    data = json.loads(result.stdout)  # nothing else on stdout
    assert data["summary"]["add"] == 13 and len(data["digest"]) == 64
    assert "Saved the plan" in result.stderr


def test_saved_plan_round_and_stale_refusal(run, v1: Path, tmp_path: Path):
    url = f"sqlite:///{tmp_path}/s.db"
    planfile = tmp_path / "tfplan"
    assert run("plan", "--config", v1, "--database-url", url, "--out", planfile).exit_code == 0
    (v1 / "dunningops.yaml").write_text((v1 / "dunningops.yaml").read_text().replace("Acme Billing", "Acme Factu"))
    stale = run("apply", "--config", v1, "--database-url", url, planfile)
    assert stale.exit_code == 1
    assert stale.stderr == "Error: the config changed since this plan was made; run `dunningops plan` again\n"
    assert run("plan", "--config", v1, "--database-url", url, "--out", planfile).exit_code == 0
    ok = run("apply", "--config", v1, "--database-url", url, planfile)
    assert ok.exit_code == 0 and "13 added" in ok.stdout


def test_tampered_saved_plan_is_refused(run, v1: Path, tmp_path: Path):
    url = f"sqlite:///{tmp_path}/s.db"
    planfile = tmp_path / "tfplan"
    run("plan", "--config", v1, "--database-url", url, "--out", planfile)
    planfile.write_text(planfile.read_text().replace("Acme Billing", "Evil Corp"))
    result = run("apply", "--config", v1, "--database-url", url, planfile)
    assert result.exit_code == 1 and "was edited after it was made" in result.stderr


def test_apply_without_terminal_needs_auto_approve(run, v1: Path, tmp_path: Path):
    result = run("apply", "--config", v1, "--database-url", f"sqlite:///{tmp_path}/s.db")
    assert result.exit_code == 1 and "pass --auto-approve" in result.stderr


def test_show_and_history_snapshots(run, v1: Path, tmp_path: Path, snapshot):
    url = f"sqlite:///{tmp_path}/s.db"
    empty = run("show", "--config", v1, "--database-url", url)
    assert "holds no config yet" in empty.stdout
    run("apply", "--config", v1, "--database-url", url, "--auto-approve")
    shown = run("show", "--config", v1, "--database-url", url)
    assert "alias.billing" in shown.stdout and "unverified" in shown.stdout
    assert shown.stdout == snapshot(name="show")
    hist = run("history", "--config", v1, "--database-url", url)
    assert hist.stdout.startswith("#1  2026-11-23 08:30  alice@acme.fr  ")  # T1: the first apply, before any member
    assert hist.stdout == snapshot(name="history")
    as_json = json.loads(run("history", "--config", v1, "--database-url", url, "--format", "json").stdout)
    assert as_json[0]["summary"]["add"] == 13


def test_bad_database_url_is_one_clear_line(run, v1: Path):
    result = run("plan", "--config", v1, "--database-url", "nosuchdb://x")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: cannot use database URL nosuchdb://x")
    assert "Traceback" not in result.stderr


def test_schema_is_json_schema_of_a_config_file(run, tmp_path: Path):
    result = run("schema")
    schema = json.loads(result.stdout)
    assert schema["$schema"].endswith("2020-12/schema")
    assert set(schema["properties"]) >= {"settings", "aliases", "plans", "templates", "moved", "removed"}
    assert schema["additionalProperties"] is False
    out = tmp_path / "s" / "schema.json"
    assert run("schema", "--out", out).exit_code == 0 and json.loads(out.read_text()) == schema


def test_db_upgrade_and_automatic_upgrade(run, v1: Path, tmp_path: Path, postgres_url: str):
    from dunningops.store import migrate

    for url in (f"sqlite:///{tmp_path}/s.db", postgres_url):
        result = run("db", "upgrade", "--config", v1, "--database-url", url)
        assert result.exit_code == 0 and f"schema revision {migrate.head()}" in result.stdout


def test_default_database_is_beside_the_repo(run, v1: Path, monkeypatch):
    monkeypatch.chdir(v1.parent)
    assert run("apply", "--config", "v1", "--auto-approve").exit_code == 0
    assert (v1.parent / ".dunningops" / "state.db").exists()


def test_demo_runs_a_round(run, tmp_path: Path):
    result = run("demo", tmp_path / "demo")
    assert result.exit_code == 0, result.output
    assert "Apply complete!" in result.stdout
    after_apply = result.stdout.split("Apply complete!")[1]
    assert "No changes. The store matches the configuration." in after_apply
    # The round ends with what the applied config will do next (the forecast).
    ahead = result.stdout.split("$ dunningops forecast --days 14\n")[1]
    assert ahead.startswith("Over the next 14 days (") and " reminders to customers, " in ahead.splitlines()[0]
    # A9, T7, T8 and letters: each shows what it did, with real emails in the maildir and a real PDF.
    out = result.stdout
    assert re.search(r"Payment notifications: [1-9]\d* receipts and 1 failed-payment emails sent", out)
    assert re.search(r"Unpaid-invoice notification: [1-9]\d* customers, .* [1-9]\d* emails sent", out)
    assert "INC-0001 opened; invoice " in out and "The opening notification was sent to " in out
    assert "The closing notification was sent to " in out
    assert re.search(r"INC-0001  C\d+  closed  5/5  “Merci pour la réactivité.”", out)
    [pdf] = (tmp_path / "demo").glob("letter-*.pdf")
    assert pdf.read_bytes().startswith(b"%PDF-") and f"{pdf.name} written" in out
    mail = [p.read_bytes() for p in (tmp_path / "demo" / ".dunningops" / "maildir" / "new").iterdir()]
    assert any(b"/l/r/" in m for m in mail)  # the closing email carries the rating link


def test_example_config_is_in_canonical_form(run, config_dir: Path):
    result = run("fmt", "--config", config_dir, "--check")
    assert result.exit_code == 0, result.output


def test_migration_head_constant_matches_alembic():
    from dunningops.store import migrate

    assert migrate.HEAD == migrate.head()


def test_migration_0003_backfills_step_times(tmp_path: Path):
    """A store created before the send cycle keeps sending: its steps count as applied with their plan (E3)."""
    from alembic import command
    from sqlalchemy import create_engine, text

    from dunningops.store import migrate

    engine = create_engine(f"sqlite:///{tmp_path}/old.db")
    config = migrate.alembic_config(engine)
    command.upgrade(config, "0002")
    with engine.begin() as c:
        c.execute(text("INSERT INTO plans VALUES ('p', 'P', 'customer', '{}', '0d', NULL, '2026-01-01 00:00:00', '2026-01-01 00:00:00')"))
        c.execute(text("INSERT INTO plan_steps VALUES ('p', 's', 0, '1d', 1, 'email', 'auto', 'alias.a', '[]', '[]', '[]', 't', NULL)"))
    command.upgrade(config, "head")
    with engine.connect() as c:
        assert c.execute(text("SELECT created_at FROM plan_steps")).scalar().startswith("2026-01-01")
    engine.dispose()


def test_migrations_create_exactly_the_models_tables(database_url: str):
    """What the migrations build is what store/schema.py declares, on SQLite and PostgreSQL (no drift)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from dunningops.store import open_store
    from dunningops.store.schema import Base

    store = open_store(database_url)
    try:
        with store.engine.connect() as connection:
            drift = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        store.dispose()
    assert drift == []


def test_a_reader_that_goes_away_ends_the_command_quietly(v1: Path):
    """`dunningops validate | head -0`: stdout's pipe closed before the command writes: exit 1, no bug report."""
    import os
    import subprocess
    import sys

    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [sys.executable, "-c", "from dunningops.cli import main; main()", "validate", "--config", str(v1)],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write)
    assert done.returncode == 1
    assert done.stderr == ""
