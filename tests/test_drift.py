"""`dunningops drift` on SQLite and on a real PostgreSQL: what changed in the store outside apply."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, null, select, update

from dunningops.store import open_store
from dunningops.store.schema import AliasRow, ApplyRow, ContactFunctionRow, PlanRow, TemplateRow

NOW = datetime(2026, 11, 23, 8, 30, tzinfo=UTC)


@pytest.fixture
def applied(run, v1: Path, database_url: str):
    """v1 applied to a fresh store; returns a function running a command against it."""

    def cmd(*args: str):
        return run(*args, "--config", v1, "--database-url", database_url)

    assert cmd("apply", "--auto-approve").exit_code == 0
    return cmd


def _edit_by_hand(url: str) -> None:
    """The four hand edits: an alias's display name, a template's subject, a deleted function, a new plan."""
    store = open_store(url)
    try:
        with store.session() as session:
            session.execute(update(AliasRow).where(AliasRow.id == "billing").values(display_name="ACME billing"))
            locales = session.scalar(select(TemplateRow.locales).where(TemplateRow.id == "courtesy"))
            locales["en"]["subject"] = "Reminder: pay now"
            session.execute(update(TemplateRow).where(TemplateRow.id == "courtesy").values(locales=locales))
            session.execute(ContactFunctionRow.__table__.delete().where(ContactFunctionRow.id == "purchasing"))
            session.execute(
                insert(PlanRow).values(
                    id="manual",
                    name="Made by hand",
                    level="customer",
                    assign={},
                    min_contact_delay="0d",
                    reply_to=None,
                    entry="first_step",
                    group_invoices=True,
                    track_opens=False,
                    created_at=NOW,
                    updated_at=NOW,
                )
            )
    finally:
        store.dispose()


def test_drift_none_right_after_apply(applied):
    result = applied("drift", "--detailed-exitcode")
    assert result.exit_code == 0, result.output
    assert result.stdout == "No drift. The store holds what apply #1 (2026-11-23 08:30 UTC) left.\n"
    data = json.loads(applied("drift", "--format", "json").stdout)
    assert data["drift"] is False and data["changes"] == [] and data["since_apply"]["id"] == 1


def test_drift_lists_hand_edits_in_plans_words(applied, database_url: str, snapshot):
    _edit_by_hand(database_url)
    text = applied("drift", "--detailed-exitcode")
    assert text.exit_code == 2, text.output
    out = text.stdout
    assert "# alias.billing was changed outside apply" in out
    assert '~ display_name = "Acme Billing" -> "ACME billing"' in out
    assert '~ locales.en.subject = "Reminder: invoice due soon" -> "Reminder: pay now"' in out
    assert "# contact_function.purchasing was deleted by hand" in out and '  - contact_function "purchasing" {' in out
    assert "# plan.manual was created by hand" in out and '  + plan "manual" {' in out
    assert "Drift: 1 created, 2 changed, 1 deleted outside apply since apply #1 (2026-11-23 08:30 UTC)." in out
    assert out == snapshot(name="text")
    # Without --detailed-exitcode, drift is not an error.
    assert applied("drift").exit_code == 0

    markdown = applied("drift", "--format", "markdown", "--detailed-exitcode")
    assert markdown.exit_code == 2
    assert "| `~` | `alias.billing` | changed outside apply |" in markdown.stdout
    assert markdown.stdout == snapshot(name="markdown")

    as_json = applied("drift", "--format", "json", "--detailed-exitcode")
    assert as_json.exit_code == 2
    data = json.loads(as_json.stdout)
    assert data["drift"] is True
    assert data["summary"] == {"created": 1, "changed": 2, "deleted": 1}
    assert [(c["action"], c["address"]) for c in data["changes"]] == [
        ("update", "alias.billing"),
        ("update", "template.courtesy"),
        ("create", "plan.manual"),
        ("delete", "contact_function.purchasing"),
    ]
    billing = data["changes"][0]["fields"]
    assert billing == [{"path": "display_name", "before": "Acme Billing", "after": "ACME billing", "forces_replacement": False}]
    assert as_json.stdout == snapshot(name="json")


def test_apply_again_puts_it_back_and_drift_is_none(applied, database_url: str):
    _edit_by_hand(database_url)
    assert applied("apply", "--auto-approve").exit_code == 0
    result = applied("drift", "--detailed-exitcode")
    assert result.exit_code == 0, result.output
    assert result.stdout == "No drift. The store holds what apply #2 (2026-11-23 08:30 UTC) left.\n"


def test_actual_only_fields_are_not_drift(applied, database_url: str):
    """An alias verified, a template sent: the store's own values, never config (as in plan)."""
    store = open_store(database_url)
    try:
        with store.session() as session:
            session.execute(update(AliasRow).values(verified=True, verified_at=NOW, last_sent_at=NOW))
            session.execute(update(TemplateRow).values(last_sent_at=NOW, updated_at=NOW))
    finally:
        store.dispose()
    assert applied("drift", "--detailed-exitcode").exit_code == 0


def test_apply_records_the_state_it_left(applied, database_url: str):
    from dunningops.reconcile.drift import current_objects
    from dunningops.reconcile.objects import digest

    store = open_store(database_url)
    try:
        with store.session() as session:
            state = session.scalar(select(ApplyRow.state))
            assert state["format"] == 1
            assert state["objects"] == current_objects(session)
            assert state["digest"] == digest(state["objects"])
            assert "alias.billing" in state["objects"] and "verified" not in state["objects"]["alias.billing"]
    finally:
        store.dispose()


@pytest.mark.parametrize("partial", [False, True], ids=["full", "partial"])
def test_recorded_state_is_the_store_after_moves_and_replaces(run, v1: Path, v2: Path, database_url: str, partial: bool):
    """v2 renames, replaces (A4), deletes (C8): what an apply records is what the store then reads."""
    from dunningops.reconcile.drift import current_objects

    assert run("apply", "--config", v1, "--database-url", database_url, "--auto-approve").exit_code == 0
    target = ("--target", "plan.standard") if partial else ()
    result = run("apply", "--config", v2, "--database-url", database_url, "--auto-approve", *target)
    assert result.exit_code == 0, result.output
    store = open_store(database_url)
    try:
        with store.session() as session:
            states = session.execute(select(ApplyRow.id, ApplyRow.state).order_by(ApplyRow.id)).all()
            # Only the last apply keeps its state.
            assert [(i, s is None) for i, s in states] == [(1, True), (2, False)]
            assert states[-1].state["objects"] == current_objects(session)
    finally:
        store.dispose()
    assert run("drift", "--config", v2, "--database-url", database_url, "--detailed-exitcode").exit_code == 0


def test_markdown_stays_under_the_limit():
    from dunningops.reconcile.drift import Drift, diff_states, render_markdown
    from dunningops.reconcile.plan import Plan

    recorded = {f"alias.a{i}": {"email": f"a{i}@acme.fr", "display_name": "x" * 60} for i in range(300)}
    actual = {a: {**f, "display_name": "y" * 60} for a, f in recorded.items()}
    drift = Drift(Plan(changes=diff_states(recorded, actual), desired_digest="r", actual_digest="a"), 3, NOW)
    assert len(drift.plan.changes) == 300
    text = render_markdown(drift, limit=5_000)
    assert len(text) <= 5_000 and "more changes" in text
    assert "Drift: 0 created, 300 changed, 0 deleted outside apply" in text
    assert diff_states(recorded, recorded) == ()


def test_store_whose_apply_predates_the_state_says_so(applied, database_url: str):
    store = open_store(database_url)
    try:
        with store.session() as session:
            session.execute(update(ApplyRow).values(state=null()))  # SQL NULL, as migration 0008 leaves it
    finally:
        store.dispose()
    result = applied("drift", "--detailed-exitcode")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == "Error: no apply has recorded the state yet: run `dunningops apply` once\n"
    # An apply with nothing to change records the baseline: the store matches the config.
    assert applied("apply", "--auto-approve").exit_code == 0
    assert applied("drift", "--detailed-exitcode").exit_code == 0


def test_store_never_applied_says_so(run, v1: Path, database_url: str):
    result = run("drift", "--config", v1, "--database-url", database_url)
    assert result.exit_code == 1
    assert result.stderr == "Error: no apply has recorded the state yet: run `dunningops apply` once\n"


def test_migration_0008_leaves_older_applies_without_state(tmp_path: Path):
    from alembic import command
    from sqlalchemy import create_engine, text

    from dunningops.store import migrate

    engine = create_engine(f"sqlite:///{tmp_path}/old.db")
    config = migrate.alembic_config(engine)
    command.upgrade(config, "0007")
    with engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO applies (applied_at, actor, git_commit, plan_digest, desired_digest, summary, changes) "
                "VALUES ('2026-01-01 00:00:00', 'a', NULL, 'p', 'd', '{}', '[]')"
            )
        )
    command.upgrade(config, "head")
    with engine.connect() as c:
        assert c.execute(text("SELECT state FROM applies")).scalar() is None
    command.downgrade(config, "0007")
    engine.dispose()


def test_drift_help_snapshot(run, snapshot):
    result = run("drift", "--help")
    assert result.exit_code == 0
    assert result.output == snapshot
