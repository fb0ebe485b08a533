"""What `dunningops forecast` and `dunningops plan --impact` print, in text, markdown and JSON, on a
small real store (the example config, a ledger of nine customers); the impact gates' exit codes; the
markdown's size cap on a huge impact; bad input in one line."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from cycle_helpers import setup_store
from dunningops.forecast.impact import Impact, Line
from dunningops.forecast.model import ASSUMPTIONS, Day, Forecast
from dunningops.forecast.render import (
    IMPACT_MARKDOWN_LIMIT,
    MAX_LINES,
    render_impact_markdown,
    render_impact_text,
    render_plan_with_impact,
)
from dunningops.reconcile.plan import Change, FieldChange, Plan
from dunningops.reconcile.render import MARKDOWN_LIMIT
from dunningops.reconcile.saved import load_plan
from dunningops.store import open_store

EXAMPLE_CONFIG = Path(__file__).resolve().parents[1] / "config"
AT = "2026-12-01T07:00:00Z"  # a Tuesday, 08:00 in Paris: the sending window's start
FORMATS = ["text", "markdown", "json"]

LEDGER = dict(
    customers=(
        "C0042,Acme SA,FR,fr_FR,EUR,thomas,\n"
        "C0043,Müller GmbH,DE,de_DE,EUR,,\n"
        "C0044,Boulangerie Martin SARL,FR,fr_FR,EUR,,\n"
        "C0045,Uhrwerk AG,CH,de_CH,CHF,,\n"
        "C0046,Dubois & Fils,FR,fr_FR,EUR,sophie,\n"
        "C0047,Atelier *Lambert* <SARL> | Lyon,FR,fr_FR,EUR,,\n"
        "C0048,Garnier SAS,FR,fr_FR,EUR,,\n"
        "C0049,Petit Export,FR,fr_FR,EUR,,\n"
        "C0050,Roux Industries Ltd,GB,en_GB,GBP,,\n"
    ),
    contacts=(
        "C0042,paul@acme.example,Paul Blanc,,,payer,true\n"
        "C0042,compta@acme.example,Léa Noir,,,accountant,false\n"
        "C0043,hans@mueller.example,Hans Müller,,,payer,true\n"
        "C0044,anne@martin.example,Anne Martin,,,payer,true\n"
        "C0045,ursula@uhrwerk.example,Ursula Keller,,,payer,true\n"
        "C0046,marc@dubois.example,Marc Dubois,,,payer,true\n"
        "C0047,jeanne@lambert.example,Jeanne Lambert,,,payer,true\n"
        "C0048,luc@garnier.example,Luc Garnier,,,payer,true\n"
        "C0049,ines@petit.example,Inès Petit,,,,true\n"
        "C0050,tom@roux.example,Tom Roux,,,payer,true\n"
    ),
    invoices=(
        "I1,C0042,FA-1,2026-10-28,2026-11-28,1200.00,,EUR,,\n"
        "I2,C0044,FA-2,2026-10-30,2026-11-30,300.00,,EUR,,\n"
        "I3,C0043,FA-3,2026-11-07,2026-12-07,80.00,,EUR,,\n"
        "I4,C0045,FA-4,2026-11-02,2026-12-02,990.00,,CHF,,\n"
        "I5,C0045,FA-5,2026-11-02,2026-12-02,10.00,,CHF,,\n"
        "I6,C0046,FA-6,2026-11-02,2026-12-02,4500.50,,EUR,,\n"
        "I7,C0047,FA-7,2026-10-27,2026-11-26,12345.67,,EUR,,\n"
        "I8,C0048,FA-8,2026-11-04,2026-12-04,99.99,,EUR,,\n"
        "I9,C0049,FA-9,2026-11-10,2026-12-10,250.00,,EUR,,\n"
        "I10,C0050,FA-10,2026-11-01,2026-12-01,800.00,,GBP,,\n"
    ),
)
# The standard plan's first reminder, as the example config has it.
FIRST_REMINDER = (
    "      - id: first-reminder\n        at: 5d\n        action: email\n        send: auto\n        from: alias.billing\n"
)


def _copy_config(tmp_path: Path, name: str = "config") -> Path:
    return Path(shutil.copytree(EXAMPLE_CONFIG, tmp_path / name))


def _edit(config: Path, old: str, new: str) -> None:
    path = config / "plans" / "standard.yaml"
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new))


@pytest.fixture
def shop(tmp_path: Path) -> tuple[Path, str]:
    """The example config applied (its aliases verified) and the ledger above imported, on SQLite."""
    config = _copy_config(tmp_path)
    url = f"sqlite:///{tmp_path}/state.db"
    store = open_store(url)
    setup_store(store, config, tmp_path, **LEDGER, verify=("billing", "portal", "credit", "ceo"))
    store.dispose()
    return config, url


def _forecast(run, shop, *args: str):
    config, url = shop
    return run("forecast", "--config", config, "--database-url", url, "--at", AT, *args)


def _impact(run, shop, *args: str):
    config, url = shop
    return run("plan", "--impact", "--config", config, "--database-url", url, "--at", AT, *args)


# --- the forecast ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_forecast_snapshot(run, shop, fmt, snapshot):
    result = _forecast(run, shop, "--format", fmt)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert result.stdout == snapshot


def test_forecast_json_totals_are_the_days_sums(run, shop):
    # C0045's two CHF invoices go out in one email (grouped): the totals count emails, as the days do.
    data = json.loads(_forecast(run, shop, "--format", "json").stdout)
    assert data["totals"]["sent"] == sum(d["sent"] for d in data["days"]) > 0
    assert data["totals"]["todos"] == sum(d["todos"] for d in data["days"]) > 0
    assert data["assumptions"] == list(ASSUMPTIONS)
    assert (data["start"], data["end"], len(data["days"])) == ("2026-12-01T07:00:00+00:00", "2026-12-30", 30)
    christmas = next(d for d in data["days"] if d["day"] == "2026-12-25")
    assert christmas["cycle_at"] is None and christmas["closed"].startswith("public holiday")


def test_forecast_defaults_to_now_and_30_days(run, shop, monkeypatch):
    config, url = shop
    monkeypatch.setenv("DUNNINGOPS_NOW", AT)
    result = run("forecast", "--config", config, "--database-url", url)
    assert result.exit_code == 0, result.output
    assert result.stdout == _forecast(run, shop, "--days", "30").stdout
    assert result.stdout.startswith("Over the next 30 days (2026-12-01 → 2026-12-30): ")


def test_t6_forecast_names_the_days_the_caps_hold_back(run, tmp_path: Path):
    config = _copy_config(tmp_path)
    yaml_file = config / "dunningops.yaml"
    yaml_file.write_text(yaml_file.read_text().replace("per_day: 300", "per_day: 1"))
    url = f"sqlite:///{tmp_path}/state.db"
    store = open_store(url)
    setup_store(store, config, tmp_path, **LEDGER, verify=("billing", "portal", "credit", "ceo"))
    store.dispose()
    text = _forecast(run, (config, url), "--days", "5").stdout
    data = json.loads(_forecast(run, (config, url), "--days", "5", "--format", "json").stdout)
    held = [d for d in data["days"] if d["held_by_caps"]]
    assert held and all(d["sent"] <= 1 for d in data["days"])
    days = ", ".join(f"{d['day']} ({d['held_by_caps']})" for d in held)
    assert f"The caps (1 a day, 1,000 a month) hold reminders back on {len(held)} days: {days}.\n" in text
    assert "The caps hold nothing back" not in text


def test_forecast_without_an_applied_config_is_one_line(run, tmp_path: Path):
    result = run("forecast", "--config", _copy_config(tmp_path), "--database-url", f"sqlite:///{tmp_path}/s.db", "--at", AT)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == "Error: no config applied yet: run `dunningops apply` first\n"


# --- the impact plan -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_impact_of_a_later_first_reminder_snapshot(run, shop, fmt, snapshot):
    _edit(shop[0], "at: 5d", "at: 7d")
    result = _impact(run, shop, "--format", fmt)
    assert result.exit_code == 0, result.output
    assert result.stdout == snapshot


def test_e7_impact_of_a_later_first_reminder(run, shop):
    _edit(shop[0], "at: 5d", "at: 7d")
    text = _impact(run, shop).stdout
    plan_end = text.index("Plan: 0 to add, 1 to change, 0 to replace, 0 to destroy.")
    assert text.index("Impact on customers") > plan_end  # the impact comes after the plan
    assert "\nOver the next 30 days (2026-12-01 → 2026-12-30): 6 reminders move later, 1 added.\n" in text
    # Acme's first reminder was due on Friday the 4th; 7 days makes it Sunday the 6th: Monday the 7th.
    line = "> standard / first-reminder: 6 reminders move 1–3 days later; 1 of them goes on the working day after a weekend or holiday\n"
    assert line in text
    assert "Acme SA (C0042): 2026-12-04 → 2026-12-07, 1 200.00 EUR" in text  # Friday → Monday
    data = json.loads(_impact(run, shop, "--format", "json").stdout)  # one document: the plan, and its impact
    assert data["summary"] == {"add": 0, "change": 1, "replace": 0, "destroy": 0}
    added, later = data["impact"]["lines"]
    assert (later["change"], later["outcome"], later["plan"], later["step"]) == ("later", "send", "standard", "first-reminder")
    assert later["count"] == data["impact"]["summary"]["reminders"]["later"] == len(later["examples"]) + 3
    assert later["shift_days"] == {"min": 1, "max": 3}
    assert later["after_closed_day"] == 1
    # E7 (by_age): an invoice 5 days overdue no longer enters at the first reminder but at the courtesy email.
    assert (added["change"], added["step"], added["examples"][0]["customer"]) == ("added", "courtesy", "C0047")


def test_impact_of_a_sender_and_send_mode_change_snapshot(run, shop, snapshot):
    # A new sender changes the emails' content; a manual email made automatic is a to-do
    # removed and a reminder added; the minimum delay then pushes a call out of the window.
    _edit(shop[0], FIRST_REMINDER, FIRST_REMINDER.replace("alias.billing", "alias.credit"))
    _edit(shop[0], "send: manual", "send: auto")
    result = _impact(run, shop)
    assert result.exit_code == 0, result.output
    assert "sender alias.billing → alias.credit" in result.stdout
    assert result.stdout == snapshot
    markdown = _impact(run, shop, "--format", "markdown").stdout
    # A name from the ledger cannot bring HTML or formatting into the comment.
    assert "Atelier \\*Lambert\\* &lt;SARL&gt; \\| Lyon" in markdown and "<SARL>" not in markdown


def test_unchanged_config_has_no_impact(run, shop):
    result = _impact(run, shop, "--detailed-exitcode")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("No changes. The store matches the configuration.\n")
    assert "No change for customers in the next 30 days (2026-12-01 → 2026-12-30).\n" in result.stdout
    assert "Assumptions:\n  - payments in the window are assumed not to arrive\n" in result.stdout


def test_impact_when_nothing_is_applied_adds_everything(run, tmp_path: Path):
    result = run(
        "plan", "--impact", "--config", _copy_config(tmp_path), "--database-url", f"sqlite:///{tmp_path}/s.db", "--at", AT
    )
    assert result.exit_code == 0, result.output
    assert "No change for customers in the next 30 days" in result.stdout  # an empty ledger: no customer to chase


def test_saved_plan_holds_the_plan_alone(run, shop, tmp_path: Path):
    _edit(shop[0], "at: 5d", "at: 7d")
    out = tmp_path / "plan.json"
    result = _impact(run, shop, "--format", "json", "--out", out)
    assert result.exit_code == 0, result.output
    assert "impact" in json.loads(result.stdout)
    saved = json.loads(out.read_text())
    assert "impact" not in json.dumps(saved) and load_plan(out).summary()["change"] == 1
    assert result.stderr == f"Saved the plan to {out}; apply it with `dunningops apply {out}`.\n"


# --- the gates -------------------------------------------------------------------------------


def test_max_added_exceeded_exits_3_after_the_output(run, shop):
    _edit(shop[0], "send: manual", "send: auto")  # the personal follow-ups become reminders: 7 added
    result = _impact(run, shop, "--max-added", "6")
    assert result.exit_code == 4
    assert "Impact on customers" in result.stdout  # printed in full first
    assert result.stderr == "impact gate: 7 reminders would be added, more than --max-added 6\n"
    assert _impact(run, shop, "--max-added", "7").exit_code == 0
    assert _impact(run, shop, "--max-added", "7", "--detailed-exitcode").exit_code == 2
    assert _impact(run, shop, "--max-added", "0", "--detailed-exitcode").exit_code == 4  # 4 wins over 2


def test_max_moved_earlier_implies_impact(run, shop):
    _edit(shop[0], "at: 5d", "at: 3d")
    config, url = shop
    result = run("plan", "--config", config, "--database-url", url, "--at", AT, "--max-moved-earlier", "1", "--format", "json")
    assert result.exit_code == 4
    moved = json.loads(result.stdout)["impact"]["summary"]["reminders"]["earlier"]
    assert moved > 1
    assert result.stderr == f"impact gate: {moved} reminders would move earlier, more than --max-moved-earlier 1\n"
    ok = run("plan", "--config", config, "--database-url", url, "--at", AT, "--max-moved-earlier", str(moved), "--max-added", "0")
    assert ok.exit_code == 0 and ok.stderr == ""


# --- bad input -------------------------------------------------------------------------------


def _one_clear_line(result, fragment: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert fragment in errors[0], errors[0]


@pytest.mark.parametrize(
    ("command", "args", "fragment"),
    [
        ("forecast", ("--days", "0"), "'--days': 0 is not in the range 1<=x<=366"),
        ("forecast", ("--days", "400"), "'--days': 400 is not in the range 1<=x<=366"),
        ("forecast", ("--at", "9999-12-31T00:00"), "outside the years 1970–2199"),
        ("plan", ("--impact", "--days", "0"), "'--days': 0 is not in the range 1<=x<=366"),
        ("plan", ("--impact", "--days", "400"), "'--days': 400 is not in the range 1<=x<=366"),
        ("plan", ("--max-added", "-1"), "'--max-added': -1 is not in the range 0<=x<=1000000000"),
        ("plan", ("--max-moved-earlier", "x"), "'--max-moved-earlier': 'x' is not a valid integer"),
        ("plan", ("--impact", "--target", "plan.standard"), "do not pass --target/--exclude with it"),
        ("plan", ("--max-added", "3", "--exclude", "plan.standard"), "do not pass --target/--exclude with it"),
        ("plan", ("--days", "7"), "--days and --at are for --impact"),
        ("plan", ("--at", AT), "--days and --at are for --impact"),
    ],
)
def test_bad_input_is_one_clear_line(run, shop, command, args, fragment):
    config, url = shop
    _one_clear_line(run(command, "--config", config, "--database-url", url, *args), fragment)


def test_cli_day_bounds_are_the_simulations():
    from dunningops.cli.forecast import DEFAULT_DAYS, FORECAST_DAYS
    from dunningops.forecast import simulate

    assert (FORECAST_DAYS.min, FORECAST_DAYS.max, DEFAULT_DAYS) == (1, simulate.MAX_DAYS, simulate.DEFAULT_DAYS)


def test_forecast_help_snapshot(run, snapshot):
    # `plan --help` is snapshotted with the other commands' in test_cli.py.
    result = run("forecast", "--help")
    assert result.exit_code == 0
    assert result.output == snapshot


# --- the markdown's size, on a huge impact (pure logic) --------------------------------------


def _forecast_of(days: int) -> Forecast:
    start = datetime(2026, 12, 1, 7, tzinfo=UTC)
    return Forecast(
        start=start,
        days=[Day(day=date(2026, 12, 1) + timedelta(k), at=None) for k in range(days)],
        events=[],
        targets=0,
        caps=(300, 1000),
    )


def _huge_impact(lines: int = 600) -> Impact:
    out = []
    for i in range(lines):
        line = Line("content" if i % 2 else "later", "send" if i < lines // 2 else "todo", f"plan_{i // 6:03d}", f"step-{i % 6}")
        line.count, line.customers = 50_000, set(range(40_000))
        line.amounts.update({"EUR": 123_456_789_00, "CHF": 5_00, "GBP": 99})
        line.shifts.extend([1, 30])
        line.what |= {"recipients", "sender", "template"}
        for k in range(3):
            name = f"<b>Client {k}</b> | " + "Très Longue Raison Sociale " * 20
            example = {
                "customer": f"C{i:05d}{k}",
                "name": name,
                "before": "2026-12-03",
                "after": "2026-12-05",
                "amount_cents": 120_000,
                "currency": "EUR",
            }
            if i % 2:
                example["changed"] = {
                    "recipients": {
                        "before": [f"to:someone{n}@example.com" for n in range(200)],
                        "after": [f"cc:other{n}@example.com" for n in range(200)],
                    },
                    "sender": {"before": "alias.billing", "after": "alias.credit"},
                }
            line.examples.append(example)
        out.append(line)
    return Impact(_forecast_of(30), _forecast_of(30), out)


def test_markdown_of_a_huge_impact_stays_under_its_share_of_a_comment():
    impact = _huge_impact()
    text = render_impact_markdown(impact)
    assert len(text) <= IMPACT_MARKDOWN_LIMIT
    assert text.startswith(
        "### Impact on customers\n\n**Over the next 30 days (2026-12-01 → 2026-12-30): "
        "7,500,000 reminders move later, 7,500,000 changed; 7,500,000 to-dos move later, 7,500,000 changed.**\n"
    )
    assert text.count("\n| reminders |") + text.count("\n| to-dos |") == MAX_LINES
    assert f"_…and {600 - MAX_LINES:,} more lines: run `dunningops plan --impact` for all of them._" in text
    assert text.count("<details>") == text.count("</details>") == 1
    assert "_Examples of " in text and "more lines are left out to fit a comment._" in text
    # Names escaped; recipients counted by header, their addresses never in a pull-request comment.
    assert "<b>" not in text and "recipients 200 to → 200 cc" in text and "@example.com" not in text
    assert "and 195 more" in render_impact_text(impact)  # the terminal lists five, then counts the rest


def test_plan_and_huge_impact_fit_one_comment():
    change = Change(
        "update", "template", "t", {"body": "a"}, {"body": "b"}, fields=(FieldChange("body", "x" * 5000, "y" * 5000),)
    )
    plan = Plan(
        changes=tuple(
            Change(change.action, change.kind, f"t{i}", change.before, change.after, change.fields) for i in range(100)
        ),
        desired_digest="d",
        actual_digest="a",
    )
    text = render_plan_with_impact(plan, _huge_impact(), "markdown")
    assert len(text) <= MARKDOWN_LIMIT
    assert text.startswith("### dunningops plan\n\n**Plan: 0 to add, 100 to change")
    assert re.search(r"^### Impact on customers$", text, re.M)
    assert text.rstrip().endswith("</details>")


def test_a_simulation_that_would_fill_memory_stops_with_one_line(run, shop, monkeypatch):
    # A pull request's config is untrusted: a plan with a step every day on a large ledger must not
    # fill the runner's memory. The bound is lowered here so that the small ledger reaches it.
    from dunningops.forecast import simulate

    monkeypatch.setattr(simulate, "MAX_EVENTS", 5)
    result = _impact(run, shop)
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: the simulation stopped at 2026-12-")
    assert "more than 5 steps would be performed from 2026-12-01; simulate fewer days (--days)" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
