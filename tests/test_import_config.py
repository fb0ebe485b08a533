"""`dunningops import-config DIR`: the applied state written back as YAML, so that `plan` on it is empty.

Every store test runs on SQLite and PostgreSQL. The property test generates small configs (three
template designs, bodies beside or below their YAML, multi-line and YAML-1.1-ambiguous strings),
applies them, imports them back and plans: no changes.
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
from sqlalchemy import update

from dunningops.errors import ConflictError, InvalidInputError
from dunningops.reconcile import build_plan
from dunningops.reconcile.adopt import adopt_store, write_directory
from dunningops.reconcile.apply import apply_config
from dunningops.spec import load_config
from dunningops.store import open_store
from dunningops.store.config_objects import read_actual
from dunningops.store.schema import AliasRow, SettingsRow, TemplateRow

NOW = datetime(2026, 11, 23, 8, 30, tzinfo=UTC)
REPO = Path(__file__).resolve().parent.parent


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def applied(database_url: str):
    """A store with the example config applied, and a function applying another config dir."""
    store = open_store(database_url)

    def apply(config: Path):
        apply_config(store, load_config(config), now=NOW, actor="test")
        return store

    yield apply
    store.dispose()


# --- the example config ---------------------------------------------------------------------------


def test_example_config_imports_validates_plans_empty_and_is_stable(applied, database_url, run, tmp_path: Path):
    store = applied(REPO / "config")
    result = adopt_store(store, tmp_path / "adopted")
    assert result.changes == ()
    out = tmp_path / "adopted"
    written = _files(out)
    assert set(written) == set(result.files)
    assert {
        "dunningops.yaml",
        "team.yaml",
        "contact_functions.yaml",
        "plans/standard.yaml",
        "templates/courtesy.yaml",
        "templates/courtesy.fr.txt.j2",
        "templates/final-notice.en.blocks.yaml",
        "templates/formal-notice.fr.html.j2",
    } <= set(written)
    # Bodies byte for byte as the example has them.
    for name in ("courtesy.fr.txt.j2", "final-notice.en.blocks.yaml", "formal-notice.fr.html.j2"):
        assert written[f"templates/{name}"] == (REPO / "config" / "templates" / name).read_bytes()
    assert run("validate", "--config", out).exit_code == 0
    plan = run("plan", "--config", out, "--database-url", database_url, "--detailed-exitcode")
    assert plan.exit_code == 0, plan.output
    assert "No changes." in plan.stdout
    assert run("fmt", "--check", "--config", out).exit_code == 0  # already canonical
    adopt_store(store, tmp_path / "again")
    assert _files(tmp_path / "again") == written  # same store, same bytes


def test_actual_only_state_is_never_written(applied, tmp_path: Path):
    store = applied(REPO / "tests" / "fixtures" / "v1")
    adopt_store(store, tmp_path / "before")
    with store.session() as session:
        session.execute(update(AliasRow).values(verified=True, verified_at=NOW, last_sent_at=NOW))
        session.execute(update(TemplateRow).values(last_sent_at=NOW))
    adopt_store(store, tmp_path / "after")
    after = _files(tmp_path / "after")
    assert after == _files(tmp_path / "before")
    assert not any(b"verified" in text or b"last_sent" in text for text in after.values())


def test_state_the_config_cannot_say_is_reported(applied, tmp_path: Path, run, database_url):
    # An older version's settings row, without the daemon block: plan will add its defaults.
    store = applied(REPO / "tests" / "fixtures" / "v1")
    with store.session() as session:
        row = session.get(SettingsRow, "settings")
        session.execute(update(SettingsRow).values(data={k: v for k, v in row.data.items() if k != "daemon"}))
    assert adopt_store(store, tmp_path / "a").changes == ("update settings",)
    result = run("import-config", tmp_path / "b", "--database-url", database_url)
    assert result.exit_code == 0
    assert "shows 1 change(s) (update settings)" in result.stderr


# --- refusals ---------------------------------------------------------------------------------------


def test_a_non_empty_directory_is_refused_and_left_alone(applied, tmp_path: Path, run, database_url):
    store = applied(REPO / "tests" / "fixtures" / "v1")
    target = tmp_path / "config"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(ConflictError, match="is not empty"):
        adopt_store(store, target)
    assert _files(target) == {"notes.txt": b"mine"}
    refused = run("import-config", target, "--database-url", database_url)
    assert refused.exit_code == 1 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and "pass --force" in refused.stderr and "Traceback" not in refused.output
    # --force replaces it; an empty directory needs no --force.
    forced = run("import-config", target, "--force", "--database-url", database_url)
    assert forced.exit_code == 0, forced.output
    assert "notes.txt" not in _files(target) and "dunningops.yaml" in _files(target)
    (tmp_path / "empty").mkdir()
    assert adopt_store(store, tmp_path / "empty").files
    # Never over a Git repository, even with --force; never over a file.
    (target / ".git").mkdir()
    with pytest.raises(ConflictError, match="Git repository"):
        adopt_store(store, target, force=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConflictError, match="not a directory"):
        adopt_store(store, tmp_path / "file", force=True)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no staging left behind


def test_a_store_with_nothing_applied_gives_one_clear_line(run, database_url, tmp_path: Path):
    result = run("import-config", tmp_path / "out", "--database-url", database_url)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("Error: the store at ") and result.stderr.endswith(
        "holds no applied config: there is nothing to import\n"
    )
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_an_invalid_stored_object_writes_nothing(applied, tmp_path: Path):
    store = applied(REPO / "tests" / "fixtures" / "v1")
    with store.session() as session:
        session.execute(update(TemplateRow).where(TemplateRow.id == "overdue").values(design="comic"))
    (tmp_path / "w").mkdir()
    with pytest.raises(InvalidInputError, match=r"template.overdue in the store is not valid config \(design: "):
        adopt_store(store, tmp_path / "w" / "out")
    assert list((tmp_path / "w").iterdir()) == []


def test_a_failed_check_leaves_nothing_half_written(tmp_path: Path):
    def broken(root: Path) -> tuple[str, ...]:
        assert (root / "a" / "b.yaml").read_text() == "x: 1\n"  # written in full before the check
        raise InvalidInputError("no")

    with pytest.raises(InvalidInputError):
        write_directory(tmp_path / "out", {"a/b.yaml": "x: 1\n"}, check=broken)
    assert list(tmp_path.iterdir()) == []


# --- what users read ----------------------------------------------------------------------------------


def test_help_snapshot(run, snapshot):
    result = run("import-config", "--help")
    assert result.exit_code == 0
    assert result.output == snapshot


def test_v1_files_snapshot(run, v1: Path, tmp_path: Path, snapshot):
    url = f"sqlite:///{tmp_path}/state.db"
    assert run("apply", "--config", v1, "--database-url", url, "--auto-approve").exit_code == 0
    result = run("import-config", tmp_path / "out", "--database-url", url)
    assert result.exit_code == 0, result.output
    assert result.stdout.replace(str(tmp_path), "TMP") == snapshot(name="output")
    files = {name: text.decode().replace(url, "sqlite:///TMP/state.db") for name, text in _files(tmp_path / "out").items()}
    assert files == snapshot(name="files")
    # v1 keeps its bodies beside the YAML: so do the files written (the plan compares their paths).
    assert {"courtesy.en.txt", "courtesy.fr.txt", "overdue.fr.html", "courtesy.yaml", "overdue.yaml"} <= set(files)
    plan = run("plan", "--config", tmp_path / "out", "--database-url", url, "--detailed-exitcode")
    assert plan.exit_code == 0, plan.output


# --- property: any applied config imports back to an empty plan ----------------------------------------

ids = st.sampled_from(["a", "b", "c", "d"])
# Strings PyYAML (YAML 1.1) would read as something else, and multi-line ones.
texts = st.sampled_from(
    [
        "Acme",
        "Équipe Crédit",
        "yes",
        "no",
        "10:30",
        "2026-01-01",
        "null",
        "~",
        "#1 team",
        "a: b",
        "'quoted'",
        '"dq"',
        " leading",
        "trailing ",
        "@TAG",
    ]
)
signatures = st.sampled_from(["", "Cordialement,\nL'équipe", "Line 1\n  indented\n\nLast", "Trailing\n", "\nLeading", "x\ty"])
# French always: the company's language needs a body in every template a plan uses.
languages = st.sets(st.sampled_from(["en", "no", "on"]), max_size=1).map(lambda extra: {"fr", *extra})
BODIES = {
    "text": ("txt", "Bonjour {{ customer.name }},\n\nMerci.\n"),
    "html": ("html", "<p>Bonjour {{ customer.name }}</p>\r\n<p>Merci</p>"),
    "blocks": ("yaml", '- type: heading\n  text: "Rappel"\n- type: paragraph\n  text: "{{ customer.name }}"\n'),
}


@st.composite
def configs(draw) -> dict:
    members = [{"id": "owner", "email": "owner@acme.fr", "name": draw(texts), "role": "owner"}]
    members += [
        {"id": f"m{i}", "email": f"m{i}@acme.fr", "name": draw(texts), "role": draw(st.sampled_from(["admin", "member"]))}
        for i in sorted(draw(st.sets(ids, max_size=2)))
    ]
    aliases = [
        {"id": f"al-{i}", "email": f"{i}@acme.fr", "display_name": draw(texts), "signature": draw(signatures)}
        for i in sorted(draw(st.sets(ids, min_size=1, max_size=3)))
    ]
    functions = [
        {
            "id": f"fn-{i}",
            "label": draw(texts),
            "labels": {lang: draw(texts) for lang in draw(st.sets(st.sampled_from(["fr", "no", "en"]), max_size=2))},
        }
        for i in sorted(draw(st.sets(ids, min_size=1, max_size=3)))
    ]
    templates = [
        {
            "id": f"t-{i}",
            "name": draw(texts),
            "design": draw(st.sampled_from(["text", "html", "blocks"])),
            "languages": sorted(draw(languages)),
            "subject": draw(st.sampled_from(["Rappel {{ customer.name }}", "yes"])),
        }
        for i in sorted(draw(st.sets(ids, min_size=1, max_size=3)))
    ]
    plans = []
    for i in sorted(draw(st.sets(ids, max_size=2))):
        steps = []
        for n, at in enumerate(sorted(draw(st.sets(st.integers(-10, 60), min_size=1, max_size=3)))):
            action = draw(st.sampled_from(["email", "call", "letter"]))
            step = {"id": f"s{n}", "at": f"{at}d", "action": action}
            if action == "email":
                step |= {
                    "send": draw(st.sampled_from(["auto", "manual"])),
                    "from": draw(st.sampled_from([f"alias.{a['id']}" for a in aliases] + ["account_manager"])),
                    "to": draw(st.lists(st.sampled_from([f["id"] for f in functions]), unique=True, max_size=2)),
                    "template": draw(st.sampled_from([t["id"] for t in templates])),
                }
            elif action == "letter":
                step |= {"template": draw(st.sampled_from([t["id"] for t in templates]))}
            else:
                step |= {"assignee": draw(st.sampled_from(["account_manager"] + [f"member.{m['id']}" for m in members]))}
            steps.append(step)
        plans.append(
            {
                "id": f"p-{i}",
                "name": draw(texts),
                "level": draw(st.sampled_from(["customer", "invoice"])),
                "min_contact_delay": f"{draw(st.integers(0, 7))}d",
                "track_opens": draw(st.booleans()),
                "steps": steps,
            }
        )
    settings_doc = {
        "company": {"name": draw(texts), "country": draw(st.sampled_from(["FR", "NO"]))},
        "deliverability": {"domain": "acme.fr", "fallback_sender": "r@mail.example"},
        "sending": {
            "caps": {"per_day": draw(st.integers(1, 500)), "per_month": 1000},
            "window": {"start": draw(st.sampled_from(["07:00", "08:00"])), "end": draw(st.sampled_from(["10:30", "09:00"]))},
        },
        "portal": {"notifications_alias": draw(st.sampled_from([None] + [a["id"] for a in aliases]))},
        "safety": {"max_destroy_share": draw(st.sampled_from([0.3, 1.0, 0.125]))},
    }
    return {
        "settings": settings_doc,
        "members": members,
        "aliases": aliases,
        "functions": functions,
        "templates": templates,
        "plans": plans,
        "nested": draw(st.booleans()),
    }


def write_config(root: Path, config: dict) -> None:
    """One YAML file; bodies beside it, or in a folder below (the two layouts teams use)."""
    root.mkdir(parents=True)
    folder = "bodies/" if config["nested"] else ""
    templates = []
    for t in config["templates"]:
        ext, body = BODIES[t["design"]]
        locales = {}
        for lang in t["languages"]:
            name = f"{folder}{t['id']}.{lang}.{ext}"
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(body.encode())
            locales[lang] = {"subject": t["subject"], "body": name}
        templates.append({"id": t["id"], "name": t["name"], "design": t["design"], "locales": locales})
    doc = {
        "settings": config["settings"],
        "members": config["members"],
        "aliases": config["aliases"],
        "contact_functions": config["functions"],
        "templates": templates,
        "plans": config["plans"],
    }
    (root / "config.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))


_n = itertools.count()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=configs())
def test_any_applied_config_imports_back_to_an_empty_plan(backend: str, request: pytest.FixtureRequest, config: dict):
    work = Path(tempfile.mkdtemp(prefix="dunningops-adopt-"))
    if backend == "sqlite":
        url, cleanup = f"sqlite:///{work}/state.db", lambda: None
    else:
        server = request.getfixturevalue("postgres_server")
        name = f"adopt_{next(_n)}"
        server.create_database(name)
        url, cleanup = server.url(name), lambda: server.drop_database(name)
    store = open_store(url)
    try:
        write_config(work / "config", config)
        apply_config(store, load_config(work / "config"), now=NOW, actor="prop")
        result = adopt_store(store, work / "adopted")
        assert result.changes == ()
        with store.session() as session:
            plan = build_plan(load_config(work / "adopted"), read_actual(session))
        assert plan.empty, [(c.action, c.address, c.fields) for c in plan.changes]
    finally:
        store.dispose()
        cleanup()
        shutil.rmtree(work, ignore_errors=True)


def test_stored_body_paths_are_kept_unless_unsafe_or_taken(applied, tmp_path: Path):
    store = applied(REPO / "tests" / "fixtures" / "v1")
    with store.session() as session:
        row = session.get(TemplateRow, "courtesy")
        fr, en = row.locales["fr"], row.locales["en"]
        # One path leaves the directory; the other is a name the layout keeps for the team file.
        locales = {"fr": {**fr, "body_file": "../outside.txt"}, "en": {**en, "body_file": "team.yaml"}}
        session.execute(update(TemplateRow).where(TemplateRow.id == "courtesy").values(locales=locales))
    result = adopt_store(store, tmp_path / "out")
    files = _files(tmp_path / "out")
    assert files["templates/courtesy.fr.txt.j2"] == fr["body"].encode()
    assert files["templates/courtesy.en.txt.j2"] == en["body"].encode()
    assert files["templates/courtesy.yaml"].count(b"body: courtesy.") == 2
    assert files["overdue.fr.html"]  # a safe stored path is kept
    assert not (tmp_path / "outside.txt").exists()
    assert result.changes == ("update template.courtesy",)  # the new paths: the plan shows them
