"""The pull-request workflow: the sticky plan comment against a local stand-in of GitHub's REST API,
the job summary, and the workflows and the action checked by GitHub's schemas and a security linter."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from dunningops.github.body import COMMENT_LIMIT, SUMMARY_LIMIT
from github_helpers import REPO, TOKEN, FakeGitHub, start_fake_github

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("dunningops-*.yml"))
DOC_WORKFLOWS = sorted((ROOT / "docs" / "github").glob("dunningops-*.yml"))
MARKER = "<!-- dunningops-plan -->"
PR = 7


@pytest.fixture
def github(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeGitHub]:
    """The stand-in API, and the environment a runner gives a pull request's job."""
    gh, server = start_fake_github()
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"action": "synchronize", "number": PR, "pull_request": {"number": PR}}))
    for name, value in {
        "GITHUB_TOKEN": TOKEN,
        "GITHUB_REPOSITORY": REPO,
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_API_URL": gh.url,
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_RUN_ID": "4242",
    }.items():
        monkeypatch.setenv(name, value)
    yield gh
    server.shutdown()
    server.server_close()


def _plan_md(tmp_path: Path, text: str, name: str = "plan.md") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


SMALL = "### dunningops plan\n\n**Plan: 1 to add, 0 to change, 0 to replace, 0 to destroy.**\n\n| | object | action |\n"


def test_comment_created_then_updated_in_place(run, github: FakeGitHub, tmp_path: Path):
    other = github.add(PR, "Coverage: 93% (no change)")
    first = run("github", "comment", "--body-file", _plan_md(tmp_path, SMALL))
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith(f"Created the plan comment on pull request #{PR}: https://github.com/")
    assert len(github.comments[PR]) == 2

    second_plan = SMALL.replace("1 to add", "2 to add")
    second = run("github", "comment", "--body-file", _plan_md(tmp_path, second_plan))
    assert second.exit_code == 0, second.output
    assert second.stdout.startswith("Updated the plan comment")
    ours = [c for c in github.comments[PR] if MARKER in c["body"]]
    assert len(ours) == 1  # still one comment, edited in place
    assert ours[0]["body"] == MARKER + "\n" + second_plan
    assert other["body"] == "Coverage: 93% (no change)"  # another bot's comment is left alone
    assert ("PATCH", f"/repos/{REPO}/issues/comments/{ours[0]['id']}") in github.requests


def test_comment_found_on_a_later_page(run, github: FakeGitHub, tmp_path: Path):
    github.page_size = 2
    for i in range(3):
        github.add(PR, f"review {i}")
    ours = github.add(PR, MARKER + "\nold plan", user="github-actions[bot]")
    github.add(PR, "later chatter")
    result = run("github", "comment", "--body-file", _plan_md(tmp_path, SMALL))
    assert result.exit_code == 0, result.output
    assert "Updated" in result.stdout
    assert len(github.comments[PR]) == 5
    assert ours["body"] == MARKER + "\n" + SMALL
    pages = [p for m, p in github.requests if m == "GET"]
    assert len(pages) == 2 and "page=2" in pages[1]  # followed Link: rel="next", stopped once found


def test_too_long_plan_is_cut_below_the_limit_with_a_pointer(run, github: FakeGitHub, tmp_path: Path):
    block = "<details><summary>change</summary>\n\n```diff\n" + '+ field = "value"\n' * 40 + "```\n</details>\n"
    long_plan = SMALL + block * 200  # about 150,000 characters
    assert len(long_plan) > 2 * COMMENT_LIMIT
    result = run("github", "comment", "--body-file", _plan_md(tmp_path, long_plan))
    assert result.exit_code == 0, result.output
    (body,) = github.bodies(PR)
    assert len(body) < COMMENT_LIMIT
    assert body.startswith(MARKER + "\n" + SMALL)  # the summary first
    assert body.rstrip().endswith(
        "_The plan is too long for a comment and is cut here: the whole plan is in the "
        f"[job summary](https://github.com/{REPO}/actions/runs/4242)._"
    )
    kept = body.split("_The plan is too long")[0]
    assert kept.count("```") % 2 == 0 and kept.count("<details>") == kept.count("</details>")  # blocks closed


def test_5xx_is_retried_then_created(run, github: FakeGitHub, tmp_path: Path):
    github.faults = [(500, "Server Error"), (502, "Bad Gateway")]
    result = run("github", "comment", "--body-file", _plan_md(tmp_path, SMALL))
    assert result.exit_code == 0, result.output
    assert github.bodies(PR) == [MARKER + "\n" + SMALL]
    assert [m for m, _ in github.requests] == ["GET", "GET", "GET", "POST"]


def test_429_with_retry_after_is_retried(run, github: FakeGitHub, tmp_path: Path):
    github.add(PR, "hello")
    assert run("github", "comment", "--body-file", _plan_md(tmp_path, SMALL)).exit_code == 0
    github.faults = [(429, "You have exceeded a secondary rate limit")]  # on the list, with Retry-After: 0
    result = run("github", "comment", "--body-file", _plan_md(tmp_path, SMALL + "more\n"))
    assert result.exit_code == 0, result.output
    assert len(github.comments[PR]) == 2 and github.bodies(PR)[1] == MARKER + "\n" + SMALL + "more\n"


def test_403_is_one_line_without_the_token(run, github: FakeGitHub, tmp_path: Path):
    github.faults = [(403, "Resource not accessible by integration")]
    result = run("github", "comment", "--body-file", _plan_md(tmp_path, SMALL))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"Error: GitHub API: GET /repos/{REPO}/issues/{PR}/comments?per_page=100: 403 Resource not accessible by integration\n"
    )
    assert TOKEN not in result.output


def test_bad_token_is_one_line_without_the_token(run, github: FakeGitHub, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_wrong-secret-value")
    result = run("github", "comment", "--body-file", _plan_md(tmp_path, SMALL))
    assert result.exit_code == 1
    assert result.stderr.endswith(": 401 Bad credentials\n") and result.stderr.count("\n") == 1
    assert "ghs_wrong-secret-value" not in result.output


def test_missing_environment_is_one_clear_line(run, github: FakeGitHub, tmp_path: Path, monkeypatch):
    monkeypatch.delenv("GITHUB_TOKEN")
    result = run("github", "comment", "--body-file", _plan_md(tmp_path, SMALL))
    assert result.exit_code == 1 and result.stderr.startswith("Error: GITHUB_TOKEN is not set")
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.delenv("GITHUB_EVENT_PATH")
    result = run("github", "comment", "--body-file", _plan_md(tmp_path, SMALL))
    assert result.exit_code == 1 and "pass --pr" in result.stderr
    assert run("github", "comment", "--body-file", _plan_md(tmp_path, SMALL), "--pr", "9").exit_code == 0
    assert github.bodies(9) == [MARKER + "\n" + SMALL]
    assert github.requests and github.bodies(PR) == []


def test_validate_errors_come_first_and_the_plan_is_not_shown(run, github: FakeGitHub, tmp_path: Path):
    problem = "dunningops.yaml:20: aliases[credit].display_nme: unknown key"
    errors = _plan_md(tmp_path, f"Error: 1 error in the config:\n  {problem}\n", "errors.txt")
    result = run("github", "comment", "--body-file", tmp_path / "missing.md", "--errors-file", errors)
    assert result.exit_code == 0, result.output
    (body,) = github.bodies(PR)
    assert body.splitlines()[:4] == [MARKER, "### dunningops plan", "", "**The config is not valid: the plan was not run.**"]
    assert problem in body
    # An empty errors file (validate passed): the plan is posted.
    (tmp_path / "errors.txt").write_text("")
    assert run("github", "comment", "--body-file", _plan_md(tmp_path, SMALL), "--errors-file", errors).exit_code == 0
    assert github.bodies(PR) == [MARKER + "\n" + SMALL]


def test_other_marker_keeps_comments_apart(run, github: FakeGitHub, tmp_path: Path):
    run("github", "comment", "--body-file", _plan_md(tmp_path, SMALL))
    result = run("github", "comment", "--body-file", _plan_md(tmp_path, SMALL), "--marker", "dunningops-staging")
    assert result.exit_code == 0 and "Created" in result.stdout
    assert len(github.comments[PR]) == 2
    bad = run("github", "comment", "--body-file", _plan_md(tmp_path, SMALL), "--marker", "x -->")
    assert bad.exit_code == 1 and "Invalid value for '--marker'" in bad.stderr


def test_summary_is_appended_and_cut_to_one_mib(run, tmp_path: Path, monkeypatch):
    summary = tmp_path / "step_summary.md"
    summary.write_text("## Tests\n\nall passed\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = run("github", "summary", "--body-file", _plan_md(tmp_path, SMALL))
    assert result.exit_code == 0, result.output
    assert summary.read_text() == "## Tests\n\nall passed\n" + SMALL
    huge = SMALL + "| `+` | `template.é-%d` | create |\n" * 60_000  # about 1.9 MB
    assert run("github", "summary", "--body-file", _plan_md(tmp_path, huge)).exit_code == 0
    text = summary.read_text(encoding="utf-8")
    assert len(text.encode("utf-8")) < SUMMARY_LIMIT
    assert text.rstrip().endswith("run `dunningops plan` for the whole plan._")
    monkeypatch.delenv("GITHUB_STEP_SUMMARY")
    missing = run("github", "summary", "--body-file", _plan_md(tmp_path, SMALL))
    assert missing.exit_code == 1 and missing.stderr.startswith("Error: GITHUB_STEP_SUMMARY is not set")


def test_comment_body_of_a_small_plan_snapshot(run, github: FakeGitHub, v1: Path, sqlite_url: str, tmp_path: Path, snapshot):
    assert run("apply", "--config", v1, "--database-url", sqlite_url, "--auto-approve").exit_code == 0
    yaml_file = v1 / "dunningops.yaml"
    yaml_file.write_text(yaml_file.read_text().replace("display_name: Acme Credit", "display_name: Acme Credit Team"))
    planned = run("plan", "--config", v1, "--database-url", sqlite_url, "--format", "markdown")
    assert planned.exit_code == 0, planned.output
    assert run("github", "comment", "--body-file", _plan_md(tmp_path, planned.stdout)).exit_code == 0
    (body,) = github.bodies(PR)
    assert "**Plan: 0 to add, 1 to change, 0 to replace, 0 to destroy.**" in body.splitlines()[:4]
    assert body == snapshot


def test_comment_help_snapshot(run, snapshot):
    result = run("github", "comment", "--help")
    assert result.exit_code == 0
    assert result.output == snapshot


# The workflows and the action, as CI checks them.


def _tool(name: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / name), *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_workflows_pass_githubs_schema():
    assert len(WORKFLOWS) == 3 and len(DOC_WORKFLOWS) == 3
    result = _tool("check-jsonschema", "--builtin-schema", "vendor.github-workflows", *WORKFLOWS, *DOC_WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_action_passes_githubs_schema():
    result = _tool("check-jsonschema", "--builtin-schema", "vendor.github-actions", ROOT / "action.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflows_and_action_pass_zizmor():
    result = _tool("zizmor", "--offline", "--no-progress", *WORKFLOWS, *DOC_WORKFLOWS, ROOT / "action.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_docs_workflows_are_the_repositorys_with_a_pinned_action():
    for ours, docs in zip(WORKFLOWS, DOC_WORKFLOWS, strict=True):
        assert ours.name == docs.name
        local = re.sub(r"uses: \./ # zizmor: ignore\[self-repository\].*", "uses: ACTION", ours.read_text())
        remote = re.sub(r"uses: dunningops/dunningops@[0-9a-f]{40} #.*", "uses: ACTION", docs.read_text())
        assert local == remote


def _uses(data: dict) -> list[str]:
    return [s["uses"] for job in data.get("jobs", {}).values() for s in job.get("steps", []) if "uses" in s]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_least_permissions_and_pinned_actions(path: Path):
    data = yaml.safe_load(path.read_text())
    triggers = data[True]  # YAML 1.1 reads the key `on` as true
    assert "pull_request_target" not in triggers
    assert data["permissions"] == {}
    for name, job in data["jobs"].items():
        perms = job["permissions"]
        assert perms.get("contents") == "read"
        assert ("pull-requests" in perms and perms["pull-requests"] == "write") == (name == "comment")
        for step in job["steps"]:
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False
    for uses in _uses(data):
        assert uses.startswith("./") or re.fullmatch(r"[\w-]+/[\w-]+@[0-9a-f]{40}", uses), uses
    if "comment" in data["jobs"]:  # the job that can write to the pull request never sees the store's secret
        assert "secrets." not in yaml.safe_dump(data["jobs"]["comment"])


def test_apply_runs_one_at_a_time_and_only_a_saved_plan():
    data = yaml.safe_load((ROOT / ".github" / "workflows" / "dunningops-apply.yml").read_text())
    assert data["concurrency"] == {"group": "dunningops-apply", "cancel-in-progress": False}
    assert data[True]["push"]["branches"] == ["main"]
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    script = action["runs"]["steps"][-1]["run"]
    assert 'dunningops apply "$OUT/plan.json"' in script and "nothing is applied without a reviewed plan" in script
    assert "${{" not in "".join(s.get("run", "") for s in action["runs"]["steps"])  # inputs only through env


def test_scheduled_run_workflow():
    data = yaml.safe_load((ROOT / ".github" / "workflows" / "dunningops-run.yml").read_text())
    assert set(data[True]) == {"schedule", "workflow_dispatch"}
    assert data["jobs"]["run"]["steps"][-1]["with"]["command"] == "run"


# The composite action's own script, run by bash as a runner would (without the Python set-up steps).


def _action_step(tmp_path: Path, command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    step = action["runs"]["steps"][-1]
    script = tmp_path / "step.sh"
    script.write_text(step["run"])
    defaults = {name: spec.get("default", "") for name, spec in action["inputs"].items()}
    full = {
        "PATH": f"{BIN}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "COMMAND": command,
        "DUNNINGOPS_DATABASE_URL": "",
        "DUNNINGOPS_CONFIG": defaults["config"],
        "PLAN_FORMAT": defaults["plan-format"],
        "IMPACT_DAYS": defaults["impact-days"],
        "OUT": str(tmp_path / "out"),
        "COMMENT_TOKEN": "",
        "MARKER": defaults["marker"],
        "GITHUB_OUTPUT": str(tmp_path / "github_output"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "step_summary.md"),
        **env,
    }
    return subprocess.run(["bash", str(script)], capture_output=True, text=True, cwd=tmp_path, env=full, timeout=120)


def test_action_plans_posts_and_applies_the_saved_plan(github: FakeGitHub, v1: Path, sqlite_url: str, tmp_path: Path):
    env = {"DUNNINGOPS_CONFIG": str(v1), "DUNNINGOPS_DATABASE_URL": sqlite_url, "DUNNINGOPS_NOW": "2026-11-20T09:00:00+00:00"}
    gh_env = {k: v for k, v in os.environ.items() if k.startswith("GITHUB_") and k != "GITHUB_TOKEN"}
    summary = {"GITHUB_STEP_SUMMARY": str(tmp_path / "s.md")}
    planned = _action_step(tmp_path, "plan", {**env, **gh_env, **summary, "COMMENT_TOKEN": TOKEN})
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert (tmp_path / "out" / "plan.json").exists()
    (body,) = github.bodies(PR)
    assert body.startswith(MARKER + "\n### dunningops plan\n\n**Plan: ")
    assert "\n### Impact on customers\n\n**No change for customers in the next 30 days (2026-11-20 → 2026-12-19).**\n" in body
    assert (tmp_path / "s.md").read_text().startswith("### dunningops plan")
    assert (tmp_path / "github_output").read_text() == f"plan-file={tmp_path / 'out' / 'plan.json'}\n"

    applied = _action_step(tmp_path, "apply", env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "Apply complete!" in applied.stdout
    again = _action_step(tmp_path, "apply", env)  # the same plan again: the store has moved on
    assert again.returncode == 1
    assert again.stderr == "Error: the store changed since this plan was made (another apply?); run `dunningops plan` again\n"


@pytest.mark.parametrize(("days", "shown"), [("7", "in the next 7 days"), ("0", None)])
def test_action_plan_impact_days(v1: Path, sqlite_url: str, tmp_path: Path, days: str, shown: str | None):
    env = {"DUNNINGOPS_CONFIG": str(v1), "DUNNINGOPS_DATABASE_URL": sqlite_url, "DUNNINGOPS_NOW": "2026-11-20T09:00:00+00:00"}
    planned = _action_step(tmp_path, "plan", {**env, "IMPACT_DAYS": days, "PLAN_FORMAT": "json"})
    assert planned.returncode == 0, planned.stdout + planned.stderr
    markdown = (tmp_path / "out" / "plan.md").read_text()
    # After validate's line, the plan again in the log, in plan-format, with the same impact.
    logged = json.loads(planned.stdout[planned.stdout.index("\n{") :])
    if shown is None:
        assert "Impact on customers" not in markdown and "impact" not in logged
    else:
        assert f"**No change for customers {shown} (2026-11-20 → 2026-11-26).**" in markdown
        assert logged["impact"]["end"] == "2026-11-26"
    assert "impact" not in (tmp_path / "out" / "plan.json").read_text()  # the saved plan is the plan alone


def test_action_shows_config_errors_and_refuses_apply_without_a_plan(v1: Path, sqlite_url: str, tmp_path: Path):
    yaml_file = v1 / "dunningops.yaml"
    yaml_file.write_text(yaml_file.read_text().replace("display_name: Acme Credit", "display_nme: Acme Credit"))
    env = {"DUNNINGOPS_CONFIG": str(v1), "DUNNINGOPS_DATABASE_URL": sqlite_url}
    planned = _action_step(tmp_path, "plan", env)
    assert planned.returncode == 1
    assert not (tmp_path / "out" / "plan.json").exists()
    assert "**The config is not valid: the plan was not run.**" in (tmp_path / "step_summary.md").read_text()
    refused = _action_step(tmp_path / "out", "apply", {**env, "OUT": str(tmp_path / "nowhere")})
    assert refused.returncode == 1
    assert refused.stdout.strip() == (
        f"::error::No saved plan at {tmp_path / 'nowhere'}/plan.json: nothing is applied without a reviewed plan."
    )
