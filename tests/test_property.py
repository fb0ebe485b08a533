"""Property: for any desired state, applying its plan makes the next plan empty (SQLite and PostgreSQL).

Two generated states are applied in turn, so creates, updates, A4 replaces,
deletes (with C8 `removed` entries) and their orderings all get exercised.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dunningops.reconcile import build_plan
from dunningops.reconcile.apply import apply_config
from dunningops.spec import load_config
from dunningops.store import open_store
from dunningops.store.config_objects import read_actual

NOW = datetime(2026, 11, 23, 8, 30, tzinfo=UTC)
ids = st.sampled_from(["a", "b", "c", "d", "e"])
words = st.sampled_from(["Acme", "Billing", "Crédit", "Relances", "Équipe", "Compta"])


@st.composite
def desired_states(draw) -> dict:
    members = [{"id": "owner", "email": "owner@acme.fr", "name": draw(words), "role": "owner"}]
    members += [
        {"id": f"m{i}", "email": f"m{i}@acme.fr", "name": draw(words), "role": draw(st.sampled_from(["admin", "member"]))}
        for i in sorted(draw(st.sets(ids, max_size=3)))
    ]
    aliases = [
        {"id": f"al-{i}", "email": f"{draw(st.sampled_from(['billing', 'credit']))}@acme.fr",
         "display_name": draw(words), "signature": draw(st.sampled_from(["", "Cordialement,\nL'équipe"]))}
        for i in sorted(draw(st.sets(ids, min_size=1, max_size=4)))
    ]
    functions = [
        {"id": f"fn-{i}", "label": draw(words), "labels": draw(st.sampled_from([{}, {"fr": "Payeur"}]))}
        for i in sorted(draw(st.sets(ids, min_size=1, max_size=4)))
    ]
    templates = [
        {"id": f"t-{i}", "name": draw(words), "design": draw(st.sampled_from(["text", "html"])),
         "body": draw(st.sampled_from(["Bonjour {{ customer.name }}", "Madame, Monsieur,\n\nMerci."]))}
        for i in sorted(draw(st.sets(ids, min_size=1, max_size=3)))
    ]
    plans = []
    for i in sorted(draw(st.sets(ids, max_size=2))):
        offsets = sorted(draw(st.sets(st.integers(-10, 60), min_size=1, max_size=4)))
        steps = []
        for n, at in enumerate(offsets):
            action = draw(st.sampled_from(["email", "call", "letter"]))
            step = {"id": f"s{n}", "at": f"{at}d", "action": action}
            if action == "email":
                step |= {"send": draw(st.sampled_from(["auto", "manual"])),
                         "from": draw(st.sampled_from([f"alias.{a['id']}" for a in aliases] + ["account_manager"])),
                         "to": draw(st.lists(st.sampled_from([f["id"] for f in functions]), unique=True, max_size=2)),
                         "template": draw(st.sampled_from([t["id"] for t in templates]))}
            elif action == "letter":
                step |= {"template": draw(st.sampled_from([t["id"] for t in templates]))}
            else:
                step |= {"assignee": draw(st.sampled_from(["account_manager"] + [f"member.{m['id']}" for m in members]))}
            steps.append(step)
        plans.append({"id": f"p-{i}", "name": draw(words), "level": draw(st.sampled_from(["customer", "invoice"])),
                      "min_contact_delay": f"{draw(st.integers(0, 7))}d", "steps": steps})
    return {"members": members, "aliases": aliases, "functions": functions, "templates": templates, "plans": plans,
            "caps": draw(st.integers(1, 500)), "portal": draw(st.sampled_from([None] + [a["id"] for a in aliases]))}


def write_config(root: Path, state: dict, previous: dict | None) -> None:
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    templates = []
    for t in state["templates"]:
        (root / f"{t['id']}.fr.txt").write_text(t["body"])
        templates.append({"id": t["id"], "name": t["name"], "design": t["design"],
                          "locales": {"fr": {"subject": "Rappel", "body": f"{t['id']}.fr.txt"}}})
    gone = {f["id"] for f in (previous or {}).get("functions", [])} - {f["id"] for f in state["functions"]}
    doc = {
        "settings": {
            "company": {"name": "Acme SAS"},
            "deliverability": {"domain": "acme.fr", "fallback_sender": "r@mail.example"},
            "sending": {"caps": {"per_day": state["caps"], "per_month": 1000}},
            "portal": {"notifications_alias": state["portal"]},
            "safety": {"max_destroy_share": 1.0},
        },
        "members": state["members"], "aliases": state["aliases"], "contact_functions": state["functions"],
        "templates": templates, "plans": state["plans"],
        "removed": [{"from": f"contact_function.{f}", "reassign_to": None} for f in sorted(gone)],
    }
    (root / "config.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))


_n = itertools.count()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=desired_states(), second=desired_states())
def test_apply_makes_the_next_plan_empty(backend: str, request: pytest.FixtureRequest, first: dict, second: dict):
    work = Path(tempfile.mkdtemp(prefix="dunningops-prop-"))
    if backend == "sqlite":
        url, cleanup = f"sqlite:///{work}/state.db", lambda: None
    else:
        server = request.getfixturevalue("postgres_server")
        name = f"prop_{next(_n)}"
        server.create_database(name)
        url, cleanup = server.url(name), lambda: server.drop_database(name)
    store = open_store(url)
    try:
        previous = None
        for state in (first, second):
            write_config(work / "config", state, previous)
            desired = load_config(work / "config")
            apply_config(store, desired, now=NOW, actor="owner", git_commit=None)  # every state's owner (T1)
            with store.session() as session:
                plan = build_plan(desired, read_actual(session))
            assert plan.empty, [(c.action, c.address, c.fields) for c in plan.changes]
            previous = state
    finally:
        store.dispose()
        cleanup()
        shutil.rmtree(work, ignore_errors=True)
