"""T1 permissions, on SQLite and PostgreSQL: who may apply what (checked against the members of the
applied config, never the desired one), the escalation guard (members and roles are for owners and
admins), the actor (--actor, by email in any case, the commit's author in CI), on-demand sends
(T5), and the console's apply made as the signed-in member, over real HTTP."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select

from console_helpers import csrf_of, make_world, signed_in
from dunningops.permissions import who_acts
from dunningops.reconcile import build_plan
from dunningops.reconcile.apply import apply_config
from dunningops.reconcile.permissions import MEMBERS, needed
from dunningops.spec import load_config
from dunningops.store.config_objects import read_actual
from dunningops.store.engine import open_store
from dunningops.store.schema import ApplyRow, MessageRow

FIXTURES = Path(__file__).with_name("fixtures")
ROOT = Path(__file__).resolve().parents[1]
AT = "2026-11-24T08:30:00+01:00"  # inside the sending window

# v1 with two more roles and a member in each.
ROLES = "  roles: {editor: [templates], collector: [send]}\n"
MORE_MEMBERS = (
    "  - {id: dan, email: dan@acme.fr, name: Dan Roche, role: editor}\n"
    "  - {id: karim, email: karim@acme.fr, name: Karim Benali, role: collector}\n"
)


def _with_roles(v1: Path) -> Path:
    path = v1 / "dunningops.yaml"
    text = path.read_text()
    text = text.replace("  portal: {notifications_alias: billing}\n", "  portal: {notifications_alias: billing}\n" + ROLES)
    text = text.replace("role: admin}\n", "role: admin}\n" + MORE_MEMBERS, 1)
    path.write_text(text)
    return v1


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def _change_templates(config: Path, *names: str) -> None:
    for name in names:
        body = next(config.glob(f"{name}.fr.*"))
        body.write_text(body.read_text() + "\n<!-- T1 -->\n" if body.suffix == ".html" else body.read_text() + "\nMerci.\n")


def _state(url: str) -> tuple[dict, int]:
    """The store's config objects ({address: fields}) and its number of applies."""
    store = open_store(url)
    try:
        with store.session() as s:
            return {a: o.fields for a, o in read_actual(s).items()}, s.scalar(select(func.count()).select_from(ApplyRow))
    finally:
        store.dispose()


def _applies(url: str) -> list[ApplyRow]:
    store = open_store(url)
    try:
        with store.session() as s:
            return list(s.scalars(select(ApplyRow).order_by(ApplyRow.id)))
    finally:
        store.dispose()


@pytest.fixture
def applied(run, v1: Path, database_url: str):
    """v1 with roles, first applied by bob, a plain member: the first apply is allowed to anyone."""
    config = _with_roles(v1)

    def cli(*args: str, actor: str | None = None):
        more = ("--actor", actor) if actor else ()
        return run(*args, "--config", config, "--database-url", database_url, *more)

    first = cli("apply", "--auto-approve", actor="bob")
    assert first.exit_code == 0, first.output
    return config, database_url, cli


# --- apply -------------------------------------------------------------------------------------


def test_t1_the_first_apply_is_allowed_to_anyone_and_recorded_without_a_member(applied):
    _, url, cli = applied
    (row,) = _applies(url)
    assert (row.actor, row.actor_member, row.actor_role) == ("bob", None, None)  # nobody was a member yet
    assert cli("history").stdout.split("  ")[2] == "bob"


def test_t1_an_admin_changes_a_template_and_history_shows_the_actor_and_role(applied):
    config, url, cli = applied
    _change_templates(config, "courtesy")
    done = cli("apply", "--auto-approve", actor="chloe")
    assert done.exit_code == 0, done.output
    assert "Apply complete! Resources: 0 added, 1 changed" in done.stdout
    row = _applies(url)[-1]
    assert (row.actor, row.actor_member, row.actor_role) == ("chloe", "chloe", "admin")
    history = cli("history")
    assert history.stdout.splitlines()[0].split("  ")[2] == "chloe (admin)"
    as_json = json.loads(cli("history", "--format", "json").stdout)[0]
    assert (as_json["actor"], as_json["actor_member"], as_json["actor_role"]) == ("chloe", "chloe", "admin")


def test_t1_a_plain_member_is_refused_and_nothing_is_written(applied, snapshot):
    config, url, cli = applied
    before = _state(url)
    _change_templates(config, "courtesy", "overdue")
    refused = cli("apply", "--auto-approve", actor="bob")
    assert refused.exit_code == 1
    assert refused.stdout == ""  # refused before the plan is shown for confirmation
    assert refused.stderr == (
        "Error: bob (role member) may not change template.courtesy, template.overdue: "
        "that needs the role owner, admin or editor (permission templates)\n"
    )
    assert refused.stderr == snapshot(name="refusal")
    assert _state(url) == before  # the store's templates unchanged, no applies row


def test_t1_plan_warns_when_its_actor_could_not_apply_it(applied):
    config, _, cli = applied
    _change_templates(config, "courtesy")
    planned = cli("plan", actor="bob@acme.fr")
    assert planned.exit_code == 0
    assert "template.courtesy" in planned.stdout
    assert planned.stderr == (
        "warning: bob (role member) may not change template.courtesy: that needs the role owner, admin or editor "
        "(permission templates); apply will refuse this plan\n"
    )
    assert cli("plan", actor="dan").stderr == ""


def test_t1_a_role_with_templates_may_change_templates_but_not_notification_settings(applied):
    config, url, cli = applied
    _change_templates(config, "courtesy")
    assert cli("apply", "--auto-approve", actor="dan").exit_code == 0
    _edit(config / "dunningops.yaml", "  portal: {notifications_alias: billing}\n", "  portal: {notifications_alias: credit}\n")
    _edit(config / "dunningops.yaml", ROLES, ROLES + "  notifications: {rating: {link_days: 10}}\n")
    before = _state(url)
    refused = cli("apply", "--auto-approve", actor="dan")
    assert refused.exit_code == 1
    assert refused.stderr == (
        "Error: dan (role editor) may not change settings.portal.notifications_alias, settings.notifications.rating: "
        "that needs the role owner or admin (permission notifications)\n"
    )
    assert _state(url) == before
    assert cli("apply", "--auto-approve", actor="alice").exit_code == 0  # the owner may
    assert _state(url)[0]["settings"]["portal"]["notifications_alias"] == "credit"


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        pytest.param(("role: editor}", "role: admin}"), "member.dan", id="own-role"),
        pytest.param((ROLES, "  roles: {editor: [templates, notifications], collector: [send]}\n"), "settings.roles", id="roles"),
        pytest.param(("email: dan@acme.fr", "email: alice.new@acme.fr"), "member.dan", id="own-email"),
        pytest.param(("  - {id: karim,", "  - {id: karim2,"), "member.karim2, member.karim", id="member-renamed"),
    ],
)
def test_t1_nobody_grants_themselves_a_permission(applied, edit, named):
    config, url, cli = applied
    _edit(config / "dunningops.yaml", *edit)
    _change_templates(config, "courtesy")  # a change the editor may make, in the same apply
    before = _state(url)
    refused = cli("apply", "--auto-approve", actor="dan")
    assert refused.exit_code == 1
    assert refused.stderr == (
        f"Error: dan (role editor) may not change {named}: that needs the role owner or admin (members and roles)\n"
    )
    assert _state(url) == before
    # The check is against the applied members: what the config would make dan does not count.
    assert cli("apply", "--auto-approve", actor="chloe").exit_code == 0


def test_t1_a_non_member_may_change_what_needs_no_permission_but_not_templates(applied):
    config, url, cli = applied
    _edit(config / "dunningops.yaml", "display_name: Acme Credit", "display_name: Acme Crédit")
    assert cli("apply", "--auto-approve", actor="ops@elsewhere.com").exit_code == 0
    row = _applies(url)[-1]
    assert (row.actor, row.actor_member, row.actor_role) == ("ops@elsewhere.com", None, None)
    _change_templates(config, "courtesy")
    refused = cli("apply", "--auto-approve", actor="ops@elsewhere.com")
    assert refused.stderr == (
        "Error: ops@elsewhere.com (not a member) may not change template.courtesy: "
        "that needs the role owner, admin or editor (permission templates)\n"
    )


def test_t1_the_actor_is_found_by_email_in_any_case(applied):
    config, url, cli = applied
    _change_templates(config, "courtesy")
    assert cli("apply", "--auto-approve", actor="CHLOE@Acme.FR").exit_code == 0
    row = _applies(url)[-1]
    assert (row.actor, row.actor_member, row.actor_role) == ("CHLOE@Acme.FR", "chloe", "admin")
    assert cli("history").stdout.splitlines()[0].split("  ")[2] == "CHLOE@Acme.FR (chloe, admin)"


def test_t1_a_saved_plan_is_checked_when_applied(applied, tmp_path: Path):
    config, _, cli = applied
    _change_templates(config, "courtesy")
    saved = tmp_path / "plan.json"
    assert cli("plan", "--out", str(saved)).exit_code == 0
    refused = cli("apply", str(saved), actor="bob")
    assert refused.exit_code == 1 and "bob (role member) may not change template.courtesy" in refused.stderr
    assert cli("apply", str(saved), actor="alice").exit_code == 0


# --- who acts ----------------------------------------------------------------------------------


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True)


@pytest.fixture
def git_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real repository holding v1 (with roles) in config/, committed by chloe; no global git config."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in ("DUNNINGOPS_ACTOR", "CI", "GITHUB_ACTIONS", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(name, raising=False)
    repo = tmp_path / "repo"
    repo.mkdir()
    _with_roles(Path(shutil.copytree(FIXTURES / "v1", repo / "config")))
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.email=Chloe@Acme.fr", "-c", "user.name=Chloé Petit", "commit", "-qm", "v1")
    return repo


def test_t1_who_acts_in_ci_is_the_commits_author_else_gits_user_email(git_repo: Path, monkeypatch):
    config = git_repo / "config"
    _git(git_repo, "config", "user.email", "bob@acme.fr")
    assert who_acts(config) == "bob@acme.fr"  # on a workstation: who is at the keyboard
    monkeypatch.setenv("CI", "true")
    assert who_acts(config) == "Chloe@Acme.fr"  # in CI: who made the change being applied
    assert who_acts(config, "alice") == "alice"  # --actor wins
    monkeypatch.setenv("DUNNINGOPS_ACTOR", "dan")
    assert who_acts(config) == "dan"


def test_t1_ci_applies_as_the_merge_commits_author(run, git_repo: Path, database_url: str, monkeypatch):
    monkeypatch.delenv("DUNNINGOPS_ACTOR", raising=False)  # the run fixture's (git_repo removes it too)
    monkeypatch.setenv("CI", "true")
    config = git_repo / "config"
    assert run("apply", "--auto-approve", "--config", config, "--database-url", database_url).exit_code == 0
    _change_templates(config, "courtesy")
    _git(git_repo, "-c", "user.email=bob@acme.fr", "-c", "user.name=Bob", "commit", "-qam", "courtesy")
    refused = run("apply", "--auto-approve", "--config", config, "--database-url", database_url)
    assert refused.exit_code == 1 and refused.stderr.startswith("Error: bob (role member) may not change template.courtesy")
    author = ("-c", "user.email=Chloe@Acme.fr", "-c", "user.name=Chloé")
    _git(git_repo, *author, "commit", "-q", "--amend", "--reset-author", "--no-edit")  # the merge commit, by chloe
    assert run("apply", "--auto-approve", "--config", config, "--database-url", database_url).exit_code == 0
    row = _applies(database_url)[-1]
    assert (row.actor, row.actor_member, row.actor_role) == ("Chloe@Acme.fr", "chloe", "admin")


def test_t1_the_apply_workflow_passes_the_merge_commits_author_through_the_actions_env():
    for path in (ROOT / ".github" / "workflows" / "dunningops-apply.yml", ROOT / "docs" / "github" / "dunningops-apply.yml"):
        step = yaml.safe_load(path.read_text())["jobs"]["apply"]["steps"][-1]
        assert step["with"]["command"] == "apply"
        assert step["with"]["actor"] == "${{ github.event.head_commit.author.email }}"
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert action["runs"]["steps"][-1]["env"]["DUNNINGOPS_ACTOR"] == "${{ inputs.actor }}"


# --- which changes need what -------------------------------------------------------------------


def test_t1_needed_names_blocks_of_settings_and_the_sign_in_header(v1: Path, sqlite_url: str):
    store = open_store(sqlite_url)
    try:
        with store.session() as s:
            created = build_plan(load_config(v1), read_actual(s))
        # A settings object created (when members are already there) sets its notifications and roles.
        need = needed(created)
        assert {"settings.portal.notifications_alias", "settings.notifications.rating"} <= set(need["notifications"])
        assert {"settings.roles", "member.alice", "member.bob"} <= set(need[MEMBERS])
        assert need["templates"] == ["template.courtesy", "template.overdue"]
        apply_config(store, load_config(v1), now=datetime(2026, 11, 20, tzinfo=UTC), actor="x")
        header = "  console: {trusted_user_header: X-User}\n"
        _edit(v1 / "dunningops.yaml", "  replies: {manage: true}\n", "  replies: {manage: true}\n" + header)
        _edit(v1 / "dunningops.yaml", "name: Bob Durand", "name: Bob Durand-Martin")
        with store.session() as s:
            edited = build_plan(load_config(v1), read_actual(s))
        # Sign-in from a proxy's header decides who members are; a member's name does not.
        assert needed(edited) == {MEMBERS: ["settings.console.trusted_user_header"]}
    finally:
        store.dispose()


# --- on-demand sends (T5) ----------------------------------------------------------------------


def _ledger(cli) -> None:
    for kind in ("customers", "contacts", "invoices", "payments"):
        assert cli("ledger", "import", kind, str(FIXTURES / "ledger" / f"{kind}.csv")).exit_code == 0


def _sent(url: str) -> list[tuple[str, str]]:
    store = open_store(url)
    try:
        with store.session() as s:
            return [(r.kind, r.status) for r in s.scalars(select(MessageRow).where(MessageRow.kind == "on_demand"))]
    finally:
        store.dispose()


def test_t5_template_send_needs_the_send_permission_proofs_do_not(applied, monkeypatch):
    _, url, cli = applied
    _ledger(cli)
    monkeypatch.setenv("DUNNINGOPS_NOW", AT)
    refused = cli("template", "send", "courtesy", "--customer", "C1", actor="bob")
    assert refused.exit_code == 1
    assert refused.stderr == (
        "Error: sending template courtesy on demand: bob has the role member; it needs the role owner, admin or collector\n"
    )
    stranger = cli("template", "send", "courtesy", "--customer", "C1", actor="nobody@x.fr")
    assert stranger.stderr == (
        "Error: sending template courtesy on demand: 'nobody@x.fr' is not a member; it needs the role owner, admin or collector\n"
    )
    assert _sent(url) == []  # nothing left
    proof = cli("template", "proof", "courtesy", "--to", "bob@acme.fr", "--customer", "C1")
    assert proof.stdout == "C1: sent to bob@acme.fr\n"  # T3: a proof goes to a colleague, whoever asks
    sent = cli("template", "send", "courtesy", "--customer", "C1", actor="karim")
    assert sent.exit_code == 0, sent.output
    assert sent.stdout == "C1: sent to paul@martin.fr\n"
    assert _sent(url) == [("on_demand", "sent")]  # once


# --- the console -------------------------------------------------------------------------------


@pytest.fixture
def world(database_url: str, v1: Path, tmp_path: Path):
    w = make_world(database_url, v1, tmp_path)
    yield w
    w.app.close()


@pytest.fixture
def base(world, live_server) -> str:
    return live_server(world.web())


def _console_plan(world) -> str:
    with world.app.session() as s:
        return build_plan(world.app.load_config(), read_actual(s)).digest


def test_t1_console_apply_by_a_signed_in_owner(world, base):
    config = world.app.config_dir
    _change_templates(config, "courtesy")
    _edit(config / "dunningops.yaml", "display_name: Acme Credit", "display_name: Acme <b>Credit</b>")
    http = signed_in(base, "alice")
    page = http.get("/applies/new")
    assert page.status_code == 200
    assert "# template.courtesy will be updated in place" in page.text and "# alias.credit will be updated" in page.text
    assert "Acme &lt;b&gt;Credit&lt;/b&gt;" in page.text and "<b>Credit" not in page.text  # escaped
    assert "Apply these changes" in page.text and "recorded as made by Alice Martin (owner)" in page.text
    digest = _console_plan(world)
    assert f'name="plan" value="{digest}"' in page.text
    before = len(world.rows(ApplyRow))
    done = http.post("/applies/new", data={"csrf": csrf_of(page.text), "plan": digest})
    assert done.status_code == 303, done.text
    rows = world.rows(ApplyRow)
    assert len(rows) == before + 1
    new = rows[-1]
    assert done.headers["location"] == f"/applies/{new['id']}"
    assert (new["actor"], new["actor_member"], new["actor_role"]) == ("alice", "alice", "owner")
    shown = http.get(done.headers["location"])
    assert "by alice (role owner)" in shown.text and "template.courtesy" in shown.text
    assert "alice <small>(owner)</small>" in http.get("/applies").text
    again = http.get("/applies/new")
    assert "Nothing to apply." in again.text and "Apply these changes" not in again.text


def test_t1_console_apply_by_a_member_is_refused_with_the_message(world, base):
    config = world.app.config_dir
    _change_templates(config, "courtesy")
    before = world.rows(ApplyRow)
    http = signed_in(base, "bob")
    page = http.get("/applies/new")
    assert page.status_code == 200
    message = "Bob (role member) may not change template.courtesy: that needs the role owner or admin (permission templates)"
    assert message + "." in page.text and "Apply these changes" not in page.text
    # Posted anyway (the form is not offered): the apply refuses it.
    refused = http.post("/applies/new", data={"csrf": csrf_of(page.text), "plan": _console_plan(world)})
    assert refused.status_code == 403
    assert message in refused.text
    assert world.rows(ApplyRow) == before


def test_t1_console_refuses_a_plan_that_changed_since_it_was_shown(world, base):
    config = world.app.config_dir
    _change_templates(config, "courtesy")
    http = signed_in(base, "alice")
    page = http.get("/applies/new")
    shown = _console_plan(world)
    _change_templates(config, "overdue")  # someone edits the config meanwhile
    stale = http.post("/applies/new", data={"csrf": csrf_of(page.text), "plan": shown})
    assert stale.status_code == 409
    assert "The plan changed since it was shown: look at it again before applying" in stale.text
    bad = http.post("/applies/new", data={"csrf": csrf_of(page.text), "plan": "nope"})
    assert bad.status_code == 422
    no_csrf = http.post("/applies/new", data={"plan": shown})
    assert no_csrf.status_code == 403
    assert not [r for r in world.rows(ApplyRow) if r["actor_member"] == "alice"]
