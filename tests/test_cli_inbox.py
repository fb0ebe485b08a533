"""The import cycle from the command line, on the demo's store and inbox: what users read and type."""

from __future__ import annotations

from pathlib import Path

import pytest

from dunningops.spec.models import Inbox
from dunningops.transport.sources import open_source


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from click.testing import CliRunner

    from dunningops.cli import cli

    directory = tmp_path_factory.mktemp("demo")
    # A pinned clock: the demo's ledger, sends and replies are dated from "now".
    result = CliRunner(env={"DUNNINGOPS_NOW": "2026-11-23T08:30:00+00:00"}).invoke(
        cli, ["demo", str(directory)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return directory


@pytest.fixture
def demo(demo_dir: Path, tmp_path: Path, monkeypatch):
    """A fresh copy of the demo (its store and inbox) for each test, run from inside it."""
    import shutil

    copy = Path(shutil.copytree(demo_dir, tmp_path / "demo", symlinks=True))
    monkeypatch.chdir(copy)
    return copy


def test_demo_round_ends_with_the_replies_and_bounces_acted_on(run, tmp_path):
    result = run("demo", tmp_path / "d")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "$ dunningops run import" in out and "1 contact marked invalid" in out and "1 reply to-do," in out
    after = out.split("# the customers who wrote back")[1]
    assert "waiting for the reply to-do" in after


def test_inbox_list_snapshot(run, demo, snapshot):
    result = run("inbox", "list", "--status", "all")
    assert result.exit_code == 0, result.output
    assert result.stdout == snapshot


def test_inbox_show_gives_the_bounce_details_and_the_match(run, demo):
    result = run("inbox", "show", "2")
    assert result.exit_code == 0, result.output
    assert "Bounce: " in result.stdout and "5.1.1 permanent (invalid_address)" in result.stdout
    assert "bounce_original" in result.stdout
    missing = run("inbox", "show", "999")
    assert (
        missing.exit_code == 1
        and missing.stderr.strip() == "Error: no incoming message #999 (see `dunningops inbox list --status all`)"
    )


def test_r8_relink_and_delete_from_the_command_line(run, demo):
    relinked = run("inbox", "relink", "1", "--customer", "C000118", "--as", "alice")
    assert relinked.exit_code == 0, relinked.output
    assert "linked to C000118 (was C000231)" in relinked.stdout and "dismissed" in relinked.stdout
    todos = run("todo", "list", "--kind", "reply")
    assert "C000118" in todos.stdout and "C000231" not in todos.stdout
    deleted = run("inbox", "delete", "1")
    assert deleted.exit_code == 0 and "deleted" in deleted.stdout
    assert run("inbox", "list").stdout.count("\n") == 3  # header + the two linked left
    unknown = run("inbox", "relink", "3", "--customer", "NOPE")
    assert unknown.exit_code == 1 and "no customer 'NOPE'" in unknown.stderr


def test_run_import_again_imports_nothing_and_bare_run_runs_both_cycles(run, demo):
    again = run("run", "import")
    assert again.exit_code == 0 and "Import cycle: 0 new messages" in again.stdout
    both = run("run", "--at", "2026-12-03T08:30:00+01:00")
    assert both.exit_code == 0, both.output
    assert both.stdout.index("Import cycle:") < both.stdout.index("Send cycle at")
    misplaced = run("run", "--at", "2026-12-03T08:30:00+01:00", "send")
    assert misplaced.exit_code == 1 and "put the options after the cycle's name" in misplaced.stderr


def test_an_unreadable_message_is_quarantined_shown_and_kept_raw(run, demo):
    source = open_source(Inbox(path=str(demo / ".dunningops" / "inbox")), demo, {})
    source.deliver(b"")  # type: ignore[attr-defined]
    source.close()
    result = run("run", "import", "--format", "json")
    assert result.exit_code == 0, result.output
    import json

    report = json.loads(result.stdout)
    (quarantined,) = report["quarantined"]
    assert quarantined["reason"] and report["alerts"]
    listed = run("inbox", "list", "--status", "quarantined")
    assert f"{quarantined['id']} " in listed.stdout
    raw = run("inbox", "show", str(quarantined["id"]), "--raw")
    assert raw.exit_code == 0 and raw.stdout_bytes == b""
    alerts = run("alerts", "list")
    assert "quarantined" in alerts.stdout


def test_r1_answer_a_reply_from_its_todo(run, demo):
    listed = run("todo", "list", "--kind", "reply", "--format", "json")
    import json

    (todo,) = json.loads(listed.stdout)
    shown = run("todo", "show", str(todo["id"]))
    assert "Reply from fien.desmet@logistiek-van-damme.be" in shown.stdout and f"todo send {todo['id']} --text" in shown.stdout
    missing = run("todo", "send", str(todo["id"]))
    assert missing.exit_code == 1 and "give the answer with --text" in missing.stderr
    sent = run("todo", "send", str(todo["id"]), "--text", "-", "--as", "claire", input="Merci, bien reçu.\n")
    assert sent.exit_code == 0, sent.output
    assert "to fien.desmet@logistiek-van-damme.be" in sent.stdout
    assert run("todo", "list", "--kind", "reply", "--format", "json").stdout.strip() == "[]"
