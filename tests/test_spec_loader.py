"""Loading the YAML config: valid configs load; every kind of error names file:line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from dunningops.errors import ConfigError
from dunningops.spec import load_config


def _errors(root: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(root)
    return str(info.value)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"fixture lacks {old!r}"
    path.write_text(text.replace(old, new, 1))


def test_example_config_is_valid(config_dir: Path):
    state = load_config(config_dir)
    assert state.settings is not None and state.settings.company.locale.startswith("fr")
    assert len(state.plans) == 3
    # C5: the four default functions are there, plus at least one custom one.
    assert {"accountant", "payer", "purchaser", "sales"} < set(state.contact_functions)
    assert len(state.contact_functions) >= 5
    # One body per template and language, read from the files beside the YAML.
    for tid, template in state.templates.items():
        assert {"fr", "en"} <= set(template.locales)
        assert all(state.template_bodies[(tid, lang)].strip() for lang in template.locales)


def test_fixture_loads_with_sources(v1: Path):
    state = load_config(v1)
    assert state.sources["alias.credit"].file == "dunningops.yaml"
    assert state.sources["alias.credit"].line == 18
    assert state.sources["plan.standard"].file == "plans.yaml"
    assert state.plans["standard"].steps[2].at == "14d"  # 2w, normalised


def test_misspelt_key_names_file_line_and_suggests(v1: Path, snapshot):
    _edit(v1 / "dunningops.yaml", "    display_name: Acme Credit", "    dispaly_name: Acme Credit")
    message = _errors(v1)
    assert "dunningops.yaml:20: aliases[credit].dispaly_name: unknown key 'dispaly_name'; did you mean 'display_name'?" in message
    assert message == snapshot


def test_misspelt_nested_settings_key(v1: Path):
    _edit(v1 / "dunningops.yaml", "caps: {per_day: 300", "caps: {per_dya: 300")
    assert "dunningops.yaml:6: settings.sending.caps.per_dya: unknown key 'per_dya'; did you mean 'per_day'?" in _errors(v1)


def test_unknown_top_level_kind_suggests(v1: Path):
    (v1 / "extra.yaml").write_text("alias:\n  - id: x\n")
    assert "extra.yaml:1: alias: unknown key 'alias'; did you mean 'aliases'?" in _errors(v1)


def test_all_errors_at_once_across_files(v1: Path, snapshot):
    _edit(v1 / "dunningops.yaml", "email: bob@acme.fr", "email: bob-at-acme.fr")
    _edit(v1 / "plans.yaml", "action: call", "action: phone")
    message = _errors(v1)
    assert message.startswith("2 errors in the config:")
    assert "dunningops.yaml:11: members[bob].email: 'bob-at-acme.fr' is not a valid email address" in message
    assert "plans.yaml:10: plans[standard].steps[call].action" in message
    assert message == snapshot


def test_dangling_references_suggest_closest(v1: Path, snapshot):
    _edit(v1 / "plans.yaml", "from: alias.billing", "from: alias.biling")
    _edit(v1 / "plans.yaml", "to: [payer]", "to: [payor]")
    _edit(v1 / "plans.yaml", "template: overdue}", "template: overdu}")
    _edit(v1 / "plans.yaml", "assignee: member.bob", "assignee: member.robert")
    message = _errors(v1)
    assert "plans.yaml:8: plans[standard].steps[courtesy].from: unknown alias 'biling'; did you mean 'billing'?" in message
    assert "steps[courtesy].to: unknown contact function 'payor'; did you mean 'payer'?" in message
    assert "steps[overdue].template: unknown template 'overdu'; did you mean 'overdue'?" in message
    assert "steps[call].assignee: unknown member 'robert'" in message
    assert message == snapshot


def test_a5_portal_alias_must_exist(v1: Path):
    # A5: deleting the alias used for portal notifications is refused until it is replaced.
    _edit(v1 / "dunningops.yaml", "portal: {notifications_alias: billing}", "portal: {notifications_alias: gone}")
    message = _errors(v1)
    assert "dunningops.yaml:8: settings.portal.notifications_alias: unknown alias 'gone'" in message
    assert "an alias used for portal notifications cannot be deleted" in message and "A5" not in message


def test_id_defined_twice_names_both_places(v1: Path):
    (v1 / "more.yaml").write_text("aliases:\n  - {id: billing, email: b2@acme.fr, display_name: Other}\n")
    message = _errors(v1)
    assert "more.yaml:2: aliases[billing]: alias 'billing' is defined twice: also in dunningops.yaml:14" in message


def test_settings_twice_and_missing(v1: Path, tmp_path: Path):
    (v1 / "more.yaml").write_text("settings:\n  company: {name: X}\n  deliverability: {fallback_sender: a@b.fr}\n")
    assert "more.yaml:1: settings: defined twice: also in dunningops.yaml:2" in _errors(v1)
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    (lonely / "a.yaml").write_text("members: []\n")
    assert "settings: no file defines `settings`" in _errors(lonely)


def test_step_offsets_strictly_increase(v1: Path):
    _edit(v1 / "plans.yaml", "at: 7d", "at: -3d")
    assert "plans.yaml:9: plans[standard].steps[overdue].at: step offsets must strictly increase: -3d comes after -3d" in _errors(v1)


def test_bad_duration_and_step_shape(v1: Path):
    _edit(v1 / "plans.yaml", "at: 7d", "at: 7 days")
    _edit(v1 / "plans.yaml", "action: call, assignee", "action: call, send: auto, assignee")
    message = _errors(v1)
    assert "'7 days' is not a duration: write it as 7d, -3d (before the due date) or 2w" in message
    assert "only email actions can be sent automatically" in message and "(E1)" not in message


def test_template_needs_company_language_and_body_file(v1: Path):
    _edit(v1 / "dunningops.yaml", "locale: fr_FR", "locale: de_DE")
    (v1 / "courtesy.en.txt").unlink()
    message = _errors(v1)
    assert "plans.yaml:16: templates[courtesy].locales.en.body: body file 'courtesy.en.txt' not found beside plans.yaml" in message


def test_company_language_missing_from_template(v1: Path):
    _edit(v1 / "dunningops.yaml", "locale: fr_FR", "locale: en_GB")
    message = _errors(v1)
    assert "steps[overdue].template: template 'overdue' has no body for the company language 'en'" in message


def test_template_syntax_error_names_body_file_line(v1: Path):
    (v1 / "overdue.fr.html").write_text("<p>Bonjour</p>\n<p>{{ customer.name </p>\n")
    assert "overdue.fr.html:2: template syntax:" in _errors(v1)


def test_invalid_yaml_and_duplicate_keys(v1: Path):
    (v1 / "broken.yaml").write_text("aliases:\n  - id: x\n   email: y\n")
    (v1 / "dup.yaml").write_text("members: []\nmembers: []\n")
    message = _errors(v1)
    assert "broken.yaml:3: invalid YAML:" in message
    assert "dup.yaml:2: members: key appears twice in the same mapping" in message


def test_moved_and_removed_checks(v1: Path):
    (v1 / "refactor.yaml").write_text(
        "moved:\n  - {from: alias.billing, to: alias.nowhere}\n  - {from: alias.credit, to: template.x}\n"
        "removed:\n  - {from: contact_function.payer, reassign_to: payor}\n"
    )
    message = _errors(v1)
    assert "refactor.yaml:2: moved[alias.billing]: alias.nowhere is not defined in the config" in message
    assert "moved[alias.billing]: alias.billing is still defined in the config" in message
    assert "refactor.yaml:3: moved[alias.credit]: a move stays within one kind" in message
    assert "refactor.yaml:5: removed[contact_function.payer]: contact_function.payer is still defined" in message
    assert "removed[contact_function.payer].reassign_to: unknown contact function 'payor'" in message


def test_removed_requires_explicit_reassign_to(v1: Path):
    (v1 / "refactor.yaml").write_text("removed:\n  - {from: contact_function.gone}\n")
    assert "refactor.yaml:2: removed[0].reassign_to: required key is missing" in _errors(v1)


def test_c8_step_targeting_removed_function(v1: Path):
    # C8: a removed function cannot stay a step's recipient; without one the step goes to the primary contact.
    _edit(v1 / "dunningops.yaml", "  - {id: purchasing, label: Purchasing, labels: {fr: Achats}}\n", "")
    (v1 / "refactor.yaml").write_text("removed:\n  - {from: contact_function.purchasing, reassign_to: null}\n")
    assert "contact function 'purchasing' is removed: take it out of `to`" in _errors(v1)


def test_only_one_default_plan_and_an_owner(v1: Path):
    (v1 / "second.yaml").write_text(
        "plans:\n  - id: other\n    name: Other\n    assign: {default: true}\n"
        "    steps:\n      - {id: call, at: 1d, action: call, assignee: account_manager}\n"
    )
    _edit(v1 / "dunningops.yaml", "role: owner", "role: admin")
    message = _errors(v1)
    assert "second.yaml:4: plans[other].assign.default: only one plan can be the default; 'standard' already is" in message
    assert "no member has role owner" in message
