"""Bad input on the command line ends in one clear line and a meaningful exit code, never a traceback;
one exit-code contract for every output format."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, update

from dunningops.store.schema import AliasRow, TemplateRow

AT = "2026-11-24T08:30:00+01:00"  # a Tuesday morning, inside the sending window


def _one_clear_line(result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@pytest.mark.parametrize(("args", "fragment"), [
    (("messages", "--limit", "99999999999999999999"), "1<=x<=1000000"),
    (("history", "--limit", "99999999999999999999"), "1<=x<=1000000"),
    (("customers", "list", "--limit", "99999999999999999999"), "1<=x<=1000000"),
    (("customers", "list", "--overdue-days", "1e20"), "'1e20'"),
    (("customers", "list", "--overdue-days", "99999999999"), "0<=x<=36500"),
    (("contacts", "show", "1e20"), "'1e20'"),
    (("contacts", "show", "99999999999999999999"), "is not in the range"),
    (("todo", "show", "0"), "is not in the range"),
    (("run", "send", "--dry-run", "--at", "9999-12-31T00:00"), "outside the years 1970–2199"),
    (("run", "send", "--dry-run", "--at", "0001-01-01T00:00"), "outside the years 1970–2199"),
    (("run", "send", "--dry-run", "--at", "tomorrow"), "is not an ISO 8601 timestamp"),
])
def test_out_of_range_options_are_one_usage_line(run, repo, args, fragment):
    config, url = repo
    _one_clear_line(run(*args, "--config", config, "--database-url", url), fragment)


@pytest.mark.parametrize("value", ["garbage", "9999-12-31T23:59:59+00:00"])
def test_bad_pinned_clock_is_one_line(run, repo, monkeypatch, value):
    config, url = repo
    monkeypatch.setenv("DUNNINGOPS_NOW", value)
    _one_clear_line(run("status", "--config", config, "--database-url", url), "DUNNINGOPS_NOW")


def test_usage_errors_exit_1_like_every_error(run, repo):
    # Exit 2 is kept for "changes present" (plan --detailed-exitcode), as in Terraform.
    config, url = repo
    result = run("run", "send", "--no-such-option", "--config", config, "--database-url", url)
    assert result.exit_code == 1 and "No such option" in result.stderr


def test_unknown_contact_is_not_found(run, repo):
    config, url = repo
    _one_clear_line(run("contacts", "show", "999", "--config", config, "--database-url", url), "no contact #999")


def test_a3_alias_verify_accepts_a_code_beginning_with_a_dash(run, repo):
    # Codes issued before they were made shell-safe could begin with "-": the command takes them.
    config, url = repo
    code = "-NKNiYexampleCode"
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(update(AliasRow.__table__).where(AliasRow.id == "billing")
                           .values(verification_token=hashlib.sha256(code.encode()).hexdigest()))
    engine.dispose()
    result = run("alias", "verify", code, "--config", config, "--database-url", url)
    assert result.exit_code == 0, result.output
    assert "Alias billing is verified" in result.stdout


def test_preview_file_names_never_leave_the_output_directory(run, repo, tmp_path: Path):
    config, url = repo
    customers = tmp_path / "odd.csv"
    customers.write_text("external_id,name,country,locale,currency\n../../escape/C9,Odd SARL,FR,fr_FR,EUR\n")
    contacts = tmp_path / "odd-contacts.csv"
    contacts.write_text("customer_external_id,email,name,functions,primary\n../../escape/C9,odd@example.fr,Odd,payer,true\n")
    invoices = tmp_path / "odd-invoices.csv"
    invoices.write_text("external_id,customer_external_id,number,issue_date,due_date,amount\n"
                        "I-ODD,../../escape/C9,F-ODD,2026-10-01,2026-11-27,100.00\n")
    for kind, path in (("customers", customers), ("contacts", contacts), ("invoices", invoices)):
        assert run("ledger", "import", kind, path, "--config", config, "--database-url", url).exit_code == 0
    out = tmp_path / "preview"
    result = run("template", "preview", "courtesy", "--customer", "../../escape/C9", "--out", out,
                 "--config", config, "--database-url", url)
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in out.iterdir())
    assert written == ["courtesy.escape_C9.fr.html", "courtesy.escape_C9.fr.txt"]
    assert not (tmp_path / "escape").exists()


def test_run_send_json_and_table_share_the_exit_code_on_render_errors(run, repo):
    # One contract for every format: reminders that failed to render make the run exit 1 in both.
    config, url = repo
    engine = create_engine(url)
    with engine.begin() as connection:
        row = connection.execute(TemplateRow.__table__.select().where(TemplateRow.id == "courtesy")).mappings().one()
        locales = {lang: {**loc, "body": loc["body"] + "{{ customer.vat_number }}"} for lang, loc in row["locales"].items()}
        connection.execute(update(TemplateRow.__table__).where(TemplateRow.id == "courtesy").values(locales=locales))
    engine.dispose()
    as_json = run("run", "send", "--at", AT, "--format", "json", "--config", config, "--database-url", url)
    assert as_json.exit_code == 1
    data = json.loads(as_json.stdout)
    assert data["ok"] is False and any("vat_number" in e for e in data["errors"])
    as_table = run("run", "send", "--at", AT, "--config", config, "--database-url", url)
    assert as_table.exit_code == 1 and "vat_number" in as_table.stderr
