"""Forecast and impact renderers: text (a terminal), markdown (a pull-request comment), json (CI).

Functions of a ``Forecast`` or an ``Impact`` alone, like reconcile/render.py's of a ``Plan``: they
count and format, and write nowhere but their return value. The output is deterministic (sorted,
and no instant but the window's own days), so that it can be snapshotted and diffed.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

from dunningops.forecast.impact import CHANGES, Impact, Line
from dunningops.forecast.model import ASSUMPTIONS, Day, Forecast
from dunningops.reconcile.plan import Plan
from dunningops.reconcile.render import MARKDOWN_LIMIT, RENDERERS, render_markdown
from dunningops.tables import money, render_table

__all__ = [
    "FORECAST_RENDERERS",
    "IMPACT_MARKDOWN_LIMIT",
    "IMPACT_RENDERERS",
    "MAX_LINES",
    "caps_line",
    "forecast_headline",
    "impact_headline",
    "render_forecast_json",
    "render_forecast_markdown",
    "render_forecast_text",
    "render_impact_json",
    "render_impact_markdown",
    "render_impact_text",
    "render_plan_with_impact",
]

# The impact's share of a pull-request comment: `plan --impact` gives the plan what is left of it.
IMPACT_MARKDOWN_LIMIT = 20_000
MAX_LINES = 40  # impact lines shown in markdown (the terminal shows them all)
MAX_ROWS = 100  # rows of the forecast's totals, and days named in its caps line, in markdown
NAME_CHARS = 80  # a customer's name in an example; ledgers hold long ones
RECIPIENTS_SHOWN = 5

OUTCOMES = (("send", "Reminders (emails to customers)"), ("todo", "To-dos for people"))
NOUNS = {"send": ("reminder", "reminders"), "todo": ("to-do", "to-dos")}
SIGNS = {"added": "+", "removed": "-", "earlier": "<", "later": ">", "content": "~"}
# What a change does, for one and for several: "1 moves later", "12 move later".
VERBS = {
    "added": ("added", "added"),
    "removed": ("removed", "removed"),
    "earlier": ("moves earlier", "move earlier"),
    "later": ("moves later", "move later"),
    "content": ("changed", "changed"),
}
CHANGE_WORDS = {"added": "added", "removed": "removed", "earlier": "moved earlier", "later": "moved later", "content": "changed"}
CHANGED = ("kind", "todo_kind", "template", "sender", "recipients")  # the order of an example's `changed`
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~#])")


def _plural(count: int, one: str, many: str) -> str:
    return f"{count:,} {one if count == 1 else many}"


def _window(days: int, start: Any, end: Any) -> str:
    return f"the next {_plural(days, 'day', 'days')} ({start} → {end})"


def _amounts(amounts: dict[str, int]) -> str:
    return " + ".join(money(cents, currency) for currency, cents in sorted(amounts.items()) if currency) or "no amount"


def _plain(text: str) -> str:
    """Text from the ledger on one terminal line: no line breaks, no control characters."""
    return " ".join("".join(c if c.isprintable() else " " for c in str(text)).split())


def _md(text: str) -> str:
    """Text from the ledger (customer names) shown as itself in markdown: no HTML, no formatting."""
    text = _plain(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", text)


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


# --- the impact ------------------------------------------------------------------------------


def impact_headline(impact: Impact) -> str:
    """'Over the next 30 days (2026-12-01 → 2026-12-30): 84 reminders move later, 12 added; 5 to-dos added.'"""
    window = _window(len(impact.after.days), impact.start, impact.end)
    if impact.empty:
        return f"No change for customers in {window}."
    groups = []
    for outcome, _title in OUTCOMES:
        # The biggest change first: what a reviewer should look at before the rest.
        counts = sorted(((impact.count(c, outcome), i, c) for i, c in enumerate(CHANGES)), key=lambda x: (-x[0], x[1]))
        phrases = [f"{n:,} {VERBS[c][n != 1]}" for n, _i, c in counts if n]
        if phrases:
            first = counts[0][0]
            phrases[0] = f"{first:,} {NOUNS[outcome][first != 1]} {VERBS[counts[0][2]][first != 1]}"
            groups.append(", ".join(phrases))
    return f"Over {window}: {'; '.join(groups)}."


def _shift(line: Line) -> str:
    """'2 days later', '1–3 days earlier'."""
    if not line.shifts:
        if line.beyond:
            return "past the window" if line.change == "later" else "into the window"
        return ""
    lo, hi = sorted((abs(min(line.shifts)), abs(max(line.shifts))))
    way = "later" if line.change == "later" else "earlier"
    shift = f"{_plural(hi, 'day', 'days')} {way}" if lo == hi else f"{lo:,}–{hi:,} days {way}"
    return shift + (f" ({line.beyond:,} {'past' if way == 'later' else 'from past'} the window)" if line.beyond else "")


def _detail(line: Line) -> str:
    """What sets the line apart: the shift of a move, what changed in the content."""
    if line.change in ("earlier", "later"):
        return _shift(line) + _closed_days(line)
    if line.change == "added":
        return _closed_days(line).removeprefix("; ")
    if line.change == "content":
        return "changed: " + ", ".join(sorted(line.what))
    return ""


def _who(line: Line) -> str:
    customers = len(line.customers)
    if line.count == customers:
        return _plural(customers, "customer", "customers")
    # An invoice-level plan: each target is an invoice.
    return f"{_plural(line.count, 'invoice', 'invoices')}, {_plural(customers, 'customer', 'customers')}"


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, list):
        if not value:
            return "nobody"
        more = len(value) - RECIPIENTS_SHOWN
        return ", ".join(value[:RECIPIENTS_SHOWN]) + (f" and {more:,} more" if more > 0 else "")
    return str(value)


def _example(example: dict[str, Any], escape: Callable[[str], str]) -> str:
    """'Acme SA (C0042): 2026-12-03 → 2026-12-05, 1 200.00 EUR' (and what changed in the content)."""
    name = example["name"] if len(example["name"]) <= NAME_CHARS else example["name"][: NAME_CHARS - 1] + "…"
    before, after = example["before"], example["after"]
    days = f"{before} → {after}" if before and after and before != after else (after or before)
    if example.get("due_outside_window"):  # a move from or to past the window: the step's due date there
        outside = f"past the window (due {example['due_outside_window']})"
        days = f"{before} → {outside}" if before else f"{outside} → {after}"
    text = f"{escape(name)} ({escape(example['customer'])}): {days}, {money(example['amount_cents'], example['currency'])}"
    changed = example.get("changed") or {}
    for key in sorted(changed, key=CHANGED.index):
        what = "to-do kind" if key == "todo_kind" else key
        shown = _shown if key != "recipients" or escape is not _md else _headcount
        text += f"; {what} {escape(shown(changed[key]['before']))} → {escape(shown(changed[key]['after']))}"
    return text


def _headcount(recipients: list[str]) -> str:
    """Recipients without their addresses ('1 to, 1 cc'): a pull-request comment may be read by
    people who see the config but not the ledger's contacts."""
    counts = Counter(r.split(":", 1)[0] for r in recipients)
    return ", ".join(f"{counts[h]} {h}" for h in ("to", "cc", "bcc") if counts[h]) or "nobody"


def _phrase(line: Line) -> str:
    """'84 reminders move 1–3 days later', '2 to-dos added', '3 reminders changed (sender)'."""
    several = line.count != 1
    noun = NOUNS[line.outcome][several]
    if line.change in ("earlier", "later"):
        return f"{line.count:,} {noun} {'move' if several else 'moves'} {_shift(line)}{_closed_days(line)}"
    detail = ", ".join(sorted(line.what))
    return f"{line.count:,} {noun} {VERBS[line.change][several]}" + (f" ({detail})" if detail else "") + _closed_days(line)


def _closed_days(line: Line) -> str:
    """'; 12 of them on the working day after a weekend or holiday', for moves and additions."""
    n = line.after_closed_day
    if not n or line.change not in ("earlier", "later", "added"):
        return ""
    who = "it goes" if line.count == 1 else "1 of them goes" if n == 1 else f"{n:,} of them go"
    return f"; {who} on the working day after a weekend or holiday"


def render_impact_text(impact: Impact) -> str:
    """For a terminal: the headline, the assumptions, then every line with its examples."""
    out = ["Impact on customers", "", impact_headline(impact), "", "Assumptions:"]
    out.extend(f"  - {a}" for a in ASSUMPTIONS)
    for outcome, title in OUTCOMES:
        lines = [line for line in impact.lines if line.outcome == outcome]
        if not lines:
            continue
        out.extend(["", f"{title}:"])
        for line in lines:
            out.extend(
                [
                    "",
                    f"  {SIGNS[line.change]} {line.plan} / {line.step}: {_phrase(line)}",
                    f"      {_who(line)}: {_amounts(line.amounts)}",
                ]
            )
            out.extend(f"      {_example(e, _plain)}" for e in line.examples)
            if line.count > len(line.examples):
                out.append(f"      … and {line.count - len(line.examples):,} more")
    return "\n".join(out) + "\n"


def render_impact_markdown(impact: Impact, limit: int = IMPACT_MARKDOWN_LIMIT) -> str:
    """For a pull request: the headline and the assumptions, a table of the lines (at most
    ``MAX_LINES``), then their examples folded in a ``<details>``; under ``limit`` characters."""
    head = ["### Impact on customers", "", f"**{impact_headline(impact)}**", ""]
    head.append("_Assumptions: " + "; ".join(ASSUMPTIONS) + "._")
    if impact.empty:
        return "\n".join(head) + "\n"
    lines = impact.lines[:MAX_LINES]
    table = ["", "| | plan | step | change | count | customers | amounts | detail |", "|---|---|---|---|--:|--:|---|---|"]
    for line in lines:
        kind = "reminders" if line.outcome == "send" else "to-dos"
        table.append(
            f"| {kind} | `{line.plan}` | `{line.step}` | {CHANGE_WORDS[line.change]} | {line.count:,} "
            f"| {len(line.customers):,} | {_amounts(line.amounts)} | {_detail(line)} |"
        )
    text = "\n".join(head + table) + "\n"
    if len(impact.lines) > len(lines):
        text += f"\n_…and {len(impact.lines) - len(lines):,} more lines: run `dunningops plan --impact` for all of them._\n"
    # The examples, as many lines' as fit: the table above already counts every line shown.
    footer = "\n</details>\n"
    room = limit - len(text) - len(footer) - 400
    blocks: list[str] = []
    title = ""
    for line in lines:
        block = []
        if line.outcome != title:
            title = line.outcome
            block.extend(["", f"**{dict(OUTCOMES)[line.outcome]}**", ""])
        block.append(f"- `{line.plan}` / `{line.step}`: {_phrase(line)}")
        block.extend(f"  - {_example(e, _md)}" for e in line.examples)
        if line.count > len(line.examples):
            block.append(f"  - … and {line.count - len(line.examples):,} more")
        chunk = "\n".join(block) + "\n"
        if len(chunk) > room:
            blocks.append(f"\n_Examples of {len(lines) - len(blocks):,} more lines are left out to fit a comment._\n")
            break
        blocks.append(chunk)
        room -= len(chunk)
    return text + "\n<details><summary>Examples</summary>\n" + "".join(blocks) + footer


def render_impact_json(impact: Impact) -> str:
    return _json(impact.to_dict())


IMPACT_RENDERERS: dict[str, Callable[[Impact], str]] = {
    "text": render_impact_text,
    "markdown": render_impact_markdown,
    "json": render_impact_json,
}


def render_plan_with_impact(plan: Plan, impact: Impact, fmt: str) -> str:
    """`plan --impact`: the plan, then its impact. Markdown: both fit one comment (the plan gets what
    the impact leaves); json: one document, the plan's object with an "impact" key."""
    if fmt == "json":
        data = json.loads(RENDERERS["json"](plan))  # the plan's own JSON, secrets masked
        data["impact"] = impact.to_dict()
        return _json(data)
    if fmt == "markdown":
        shown = render_impact_markdown(impact)
        return render_markdown(plan, limit=MARKDOWN_LIMIT - len(shown) - 1) + "\n" + shown
    return RENDERERS[fmt](plan) + "\n" + IMPACT_RENDERERS[fmt](impact)


# --- the forecast ----------------------------------------------------------------------------


def forecast_headline(forecast: Forecast) -> str:
    emails = sum(sum(d.sent.values()) for d in forecast.days)
    todos = sum(sum(d.todos.values()) for d in forecast.days)
    window = _window(len(forecast.days), forecast.start.date(), forecast.end)
    return (
        f"Over {window}: {_plural(emails, 'reminder', 'reminders')} to customers, {_plural(todos, 'to-do', 'to-dos')} for people."
    )


def _cycle(day: Day) -> str:
    if day.at is not None:
        return f"{day.at:%H:%M %Z}"
    reason = day.closed or "no cycle"
    # The weekday column already says which day it is; the window's list of days would be noise.
    return "none: " + ("not a sending day" if reason.startswith("not a sending day") else reason)


def _day_rows(forecast: Forecast) -> list[dict[str, Any]]:
    rows = []
    for d in forecast.days:
        row: dict[str, Any] = {"day": d.day.isoformat(), "weekday": f"{d.day:%a}", "cycle": _cycle(d)}
        if d.at is not None:
            row |= {
                "emails": f"{sum(d.sent.values()):,}",
                "todos": f"{sum(d.todos.values()):,}",
                "caps": f"{d.held_by_caps:,}",
                "room": f"{d.room:,}",
            }
        rows.append(row)
    return rows


DAY_COLUMNS = [
    ("day", "DAY"),
    ("weekday", "WEEKDAY"),
    ("cycle", "CYCLE"),
    ("emails", "EMAILS"),
    ("todos", "TO-DOS"),
    ("caps", "HELD BY CAPS"),
    ("room", "ROOM"),
]
STEP_COLUMNS = [("plan", "PLAN"), ("step", "STEP"), ("emails", "EMAILS"), ("todos", "TO-DOS")]


def _step_totals(forecast: Forecast) -> list[dict[str, Any]]:
    """Emails and to-dos per plan and step: plans by name, a plan's steps in the order they first act."""
    sent: Counter = Counter()
    todos: Counter = Counter()
    first: dict[tuple[str, str], Any] = {}
    for d in forecast.days:
        sent.update(d.sent)
        todos.update(d.todos)
        for key in (*d.sent, *d.todos):
            first.setdefault(key, d.day)
    keys = sorted(first, key=lambda k: (k[0], first[k], k[1]))
    rows = [{"plan": p, "step": s, "emails": f"{sent[(p, s)]:,}", "todos": f"{todos[(p, s)]:,}"} for p, s in keys]
    if rows:
        rows.append({"plan": "total", "step": "", "emails": f"{sum(sent.values()):,}", "todos": f"{sum(todos.values()):,}"})
    return rows


def caps_line(forecast: Forecast, limit: int | None = None) -> str:
    held = [d for d in forecast.days if d.held_by_caps]
    if not held:
        return "The caps hold nothing back in this window."
    per_day, per_month = forecast.caps
    shown = held if limit is None else held[:limit]
    days = ", ".join(f"{d.day} ({d.held_by_caps:,})" for d in shown)
    if len(held) > len(shown):
        days += f" and {len(held) - len(shown):,} more days"
    return (
        f"The caps ({per_day:,} a day, {per_month:,} a month) hold reminders back on {_plural(len(held), 'day', 'days')}: {days}."
    )


def render_forecast_text(forecast: Forecast) -> str:
    """For a terminal: the headline and the assumptions, the days, the totals by step, the caps."""
    out = [forecast_headline(forecast), "", "Assumptions:", *(f"  - {a}" for a in ASSUMPTIONS), ""]
    out.append(render_table(_day_rows(forecast), DAY_COLUMNS))
    totals = _step_totals(forecast)
    out.append("By plan and step:")
    out.append(render_table(totals, STEP_COLUMNS) if totals else "No step acts in this window.\n")
    out.append(caps_line(forecast))
    return "\n".join(out) + "\n"


def render_forecast_markdown(forecast: Forecast) -> str:
    out = ["### dunningops forecast", "", f"**{forecast_headline(forecast)}**", ""]
    out.extend(["_Assumptions: " + "; ".join(ASSUMPTIONS) + "._", ""])
    out.extend(["| day | | cycle | emails | to-dos | held by caps | room |", "|---|---|---|--:|--:|--:|--:|"])
    for row in _day_rows(forecast):
        cells = [row["day"], row["weekday"], _md(row["cycle"]), *(row.get(k, "") for k in ("emails", "todos", "caps", "room"))]
        out.append("| " + " | ".join(cells) + " |")
    totals = _step_totals(forecast)
    out.extend(["", "**By plan and step**", ""])
    if totals:
        out.extend(["| plan | step | emails | to-dos |", "|---|---|--:|--:|"])
        *steps, total = totals
        out.extend(f"| `{r['plan']}` | `{r['step']}` | {r['emails']} | {r['todos']} |" for r in steps[:MAX_ROWS])
        if len(steps) > MAX_ROWS:
            out.append(f"| _…and {len(steps) - MAX_ROWS:,} more steps_ | | | |")
        out.append(f"| **total** | | **{total['emails']}** | **{total['todos']}** |")
    else:
        out.append("No step acts in this window.")
    out.extend(["", caps_line(forecast, MAX_ROWS)])
    return "\n".join(out) + "\n"


def render_forecast_json(forecast: Forecast) -> str:
    return _json(forecast.to_dict())


FORECAST_RENDERERS: dict[str, Callable[[Forecast], str]] = {
    "text": render_forecast_text,
    "markdown": render_forecast_markdown,
    "json": render_forecast_json,
}
