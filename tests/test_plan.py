"""Plans: the diff, its order, and its three renderings (snapshots of what reviewers read)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dunningops.errors import PlanError
from dunningops.reconcile import Change, FieldChange, Plan, build_plan
from dunningops.reconcile.apply import apply_config
from dunningops.reconcile.render import MASK, render_json, render_markdown, render_text
from dunningops.spec import load_config
from dunningops.store import open_store
from dunningops.store.config_objects import read_actual
from datetime import UTC, datetime

NOW = datetime(2026, 11, 23, 8, 30, tzinfo=UTC)


def _plan(config: Path, url: str, **kw) -> Plan:
    store = open_store(url)
    try:
        with store.session() as session:
            return build_plan(load_config(config), read_actual(session), **kw)
    finally:
        store.dispose()


def _apply(config: Path, url: str, **kw):
    store = open_store(url)
    try:
        return apply_config(store, load_config(config), now=NOW, actor="alice", git_commit=None, **kw)
    finally:
        store.dispose()


@pytest.fixture
def applied_v1(v1: Path, sqlite_url: str) -> str:
    _apply(v1, sqlite_url)
    return sqlite_url


def test_plan_from_empty_store_creates_in_reference_order(v1: Path, sqlite_url: str):
    plan = _plan(v1, sqlite_url)
    assert plan.summary() == {"add": 13, "change": 0, "replace": 0, "destroy": 0}
    kinds = [c.kind for c in plan.changes]
    # What is referenced is created first: aliases and templates before settings and plans.
    assert kinds.index("plan") > max(kinds.index("alias"), kinds.index("template"), kinds.index("contact_function"))
    assert kinds.index("settings") > kinds.index("alias")


def test_plan_v2_changes(v2: Path, applied_v1: str):
    plan = _plan(v2, applied_v1)
    by_address = {c.address: c for c in plan.changes}
    assert plan.summary() == {"add": 1, "change": 4, "replace": 1, "destroy": 2}
    # A4: a new address is a replacement, never an edit in place.
    assert by_address["alias.credit"].action == "replace"
    assert by_address["alias.credit"].fields[0].forces_replacement
    # Updates show only the fields that change.
    assert [f.path for f in by_address["alias.billing"].fields] == ["display_name"]
    # moved: a rename, whose referrers follow, never a delete + create.
    assert by_address["template.late"].action == "move"
    assert by_address["template.late"].moved_from == "template.overdue"
    assert by_address["template.late"].followers == ("plan.standard",)
    assert "template.overdue" not in by_address
    # C8: the removed function says where its contacts go.
    assert by_address["contact_function.purchasing"].note == "its contacts move to contact_function.payer"
    # Deletes come last, what is referenced deleted last.
    actions = [c.action for c in plan.changes]
    assert actions[-2:] == ["delete", "delete"]
    assert [c.kind for c in plan.changes[-2:]] == ["contact_function", "member"]


def test_plan_text_snapshot(v2: Path, applied_v1: str, snapshot):
    assert render_text(_plan(v2, applied_v1)) == snapshot


def test_plan_markdown_snapshot(v2: Path, applied_v1: str, snapshot):
    assert render_markdown(_plan(v2, applied_v1)) == snapshot


def test_plan_json_snapshot(v2: Path, applied_v1: str, snapshot):
    data = json.loads(render_json(_plan(v2, applied_v1)))
    assert data["summary"] == {"add": 1, "change": 4, "replace": 1, "destroy": 2}
    assert data == snapshot


def test_no_changes_after_apply(v1: Path, applied_v1: str, snapshot):
    plan = _plan(v1, applied_v1)
    assert plan.empty
    assert render_text(plan) == "No changes. The store matches the configuration.\n"
    assert render_markdown(plan) == snapshot


def test_target_brings_its_references(v1: Path, sqlite_url: str):
    plan = _plan(v1, sqlite_url, targets=("plan.standard",))
    addresses = {c.address for c in plan.changes}
    assert addresses == {
        "plan.standard", "alias.billing", "member.bob", "contact_function.payer",
        "contact_function.purchasing", "template.courtesy", "template.overdue",
    }
    assert plan.warnings and "partial" in plan.warnings[0]


def test_exclude_and_unknown_target(v1: Path, sqlite_url: str):
    plan = _plan(v1, sqlite_url, excludes=("alias.agency", "settings"))
    assert {"alias.agency", "settings"}.isdisjoint(c.address for c in plan.changes)
    with pytest.raises(PlanError, match="no such object"):
        _plan(v1, sqlite_url, targets=("alias.nope",))
    with pytest.raises(PlanError, match="unknown kind 'aliases'"):
        _plan(v1, sqlite_url, targets=("aliases.billing",))


def test_c8_deleting_a_function_needs_removed_entry(v1: Path, applied_v1: str):
    text = (v1 / "dunningops.yaml").read_text()
    (v1 / "dunningops.yaml").write_text(text.replace("  - {id: purchasing, label: Purchasing, labels: {fr: Achats}}\n", ""))
    (v1 / "plans.yaml").write_text((v1 / "plans.yaml").read_text().replace("[payer, purchasing]", "[payer]"))
    with pytest.raises(PlanError, match=r"contact_function.purchasing is no longer in the config: say where its contacts go"):
        _plan(v1, applied_v1)
    (v1 / "removed.yaml").write_text("removed:\n  - {from: contact_function.purchasing, reassign_to: null}\n")
    plan = _plan(v1, applied_v1)
    assert [c.note for c in plan.changes if c.action == "delete"] == ["its contacts are left without it"]


def _long_plan(n: int) -> Plan:
    changes = tuple(
        Change("create", "alias", f"a{i:05d}", None, {"email": f"a{i}@acme.fr", "display_name": "x" * 40, "signature": "line\n" * 20})
        for i in range(n)
    )
    return Plan(changes=changes, desired_digest="d", actual_digest="a")


@pytest.mark.parametrize("n", [50, 400, 5000])
def test_markdown_stays_under_comment_limit(n: int):
    text = render_markdown(_long_plan(n))
    assert len(text) < 65_535
    assert f"Plan: {n} to add" in text
    if n > 50:
        assert "Run `dunningops plan` for the whole plan" in text


def test_secrets_are_masked_in_every_format():
    change = Change(
        "update", "settings", "settings", {"alerts": {"webhook_url": "https://hooks/old"}},
        {"alerts": {"webhook_url": "https://hooks/new"}},
        (FieldChange("alerts.webhook_url", "https://hooks/old", "https://hooks/new"),),
    )
    plan = Plan(changes=(change,), desired_digest="d", actual_digest="a")
    for text in (render_text(plan), render_markdown(plan), render_json(plan)):
        assert "hooks/new" not in text and "hooks/old" not in text
        assert MASK in text
