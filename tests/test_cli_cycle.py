"""The send cycle's commands as a person uses them: run send, status, todo, alias, template."""

from __future__ import annotations

import json
import re
from pathlib import Path


AT = "2026-11-24T08:30:00+01:00"  # a Tuesday morning, inside the sending window


def test_run_send_dry_run_table_and_json(run, repo, snapshot):
    config, url = repo
    dry = run("run", "send", "--dry-run", "--at", AT, "--config", config, "--database-url", url)
    assert dry.exit_code == 0, dry.output
    assert dry.stdout == snapshot(name="dry-run")
    as_json = json.loads(run("run", "send", "--dry-run", "--at", AT, "--format", "json", "--config", config, "--database-url", url).stdout)
    assert as_json["dry_run"] is True and {d["outcome"] for d in as_json["decisions"]} == {"send"}


def test_run_send_then_status_todos_and_maildir(run, repo):
    config, url = repo
    sent = run("run", "send", "--at", AT, "--config", config, "--database-url", url)
    assert sent.exit_code == 0, sent.output
    assert "Send cycle at 2026-11-24 07:30 UTC: 2 sent, 0 failed, 0 deferred, 0 to-dos" in sent.stdout
    assert "3 alias confirmation emails sent." in sent.stdout
    # The embedded transport: a maildir beside the config's repo.
    assert len(list((config.parent / ".dunningops" / "maildir" / "new").iterdir())) == 5
    status = run("status", "--config", config, "--database-url", url)
    assert status.stdout.startswith("Messages: 5 sent\n")
    assert "Alias confirmations waiting to be sent: 0" in status.stdout
    history = run("messages", "--customer", "C1", "--config", config, "--database-url", url)
    assert "standard.courtesy" in history.stdout and "auto" in history.stdout and "sent" in history.stdout  # E6
    later = run("run", "send", "--at", "2026-12-04T08:30:00+01:00", "--config", config, "--database-url", url)
    assert "to-dos" in later.stdout
    todos = run("todo", "list", "--config", config, "--database-url", url)
    assert "overdue" in todos.stdout and "bob" in todos.stdout
    todo_id = re.search(r"^(\d+)\s+email", todos.stdout, re.M).group(1)
    shown = run("todo", "show", todo_id, "--config", config, "--database-url", url)
    assert "Subject: " in shown.stdout and "From: " in shown.stdout
    done = run("todo", "dismiss", todo_id, "--as", "alice", "--config", config, "--database-url", url)
    assert done.stdout == f"To-do #{todo_id} is dismissed.\n"
    again = run("todo", "done", todo_id, "--config", config, "--database-url", url)
    assert again.exit_code == 1 and "already dismissed" in again.stderr


def test_alias_verify_from_the_confirmation_email(run, repo):
    config, url = repo
    run("run", "send", "--at", AT, "--config", config, "--database-url", url)
    maildir = config.parent / ".dunningops" / "maildir" / "new"
    texts = [p.read_text(errors="replace") for p in maildir.iterdir()]
    confirmation = next(t for t in texts if "alias verify" in t)
    token = re.search(r"dunningops alias verify (\S+)", confirmation).group(1)
    ok = run("alias", "verify", token, "--config", config, "--database-url", url)
    assert ok.exit_code == 0 and "is verified" in ok.stdout
    bad = run("alias", "verify", "nope", "--config", config, "--database-url", url)
    assert bad.exit_code == 1 and "matches no alias" in bad.stderr
    shown = run("show", "--config", config, "--database-url", url)
    assert shown.stdout.count(" verified ") == 1


def test_template_vars_preview_and_proof(run, repo, tmp_path: Path):
    config, url = repo
    variables = run("template", "vars")
    assert "customer.name" in variables.stdout and "@CUSTOMERNAME@" in variables.stdout
    out = tmp_path / "preview"
    preview = run("template", "preview", "courtesy", "--customer", "C1", "--out", out, "--config", config, "--database-url", url)
    assert preview.exit_code == 0, preview.output
    assert (out / "courtesy.C1.fr.html").read_text().startswith("<!DOCTYPE html>")
    assert "Bonjour Paul Martin" in (out / "courtesy.C1.fr.txt").read_text()
    proof = run("template", "proof", "courtesy", "--to", "me@acme.fr", "--customer", "C1", "--config", config, "--database-url", url)
    assert proof.stdout == "C1: sent to me@acme.fr\n"  # T3
    sent = run("template", "send", "courtesy", "--customer", "C1", "--config", config, "--database-url", url)
    assert sent.stdout == "C1: sent to paul@martin.fr\n"  # T5: the primary contact
    missing = run("template", "preview", "nope", "--customer", "C1", "--config", config, "--database-url", url)
    assert missing.exit_code == 1 and "no template 'nope'" in missing.stderr
