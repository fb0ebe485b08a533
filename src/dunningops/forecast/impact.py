"""What a config change does to customers: two simulations of the same window (the applied config
and the desired one) compared step by step, target by target. Data only; forecast/render.py shows it.

Each target's step (plan, step, customer, anchor: what the real cycle's action row is unique on)
is matched across the two: in one only (added, removed), in both on other days (moved earlier,
later), or on the same footing but another template, sender, recipients or kind (content). A
step in one window only that the other config still has to do after the window (its target's
next step at the window's end) is a move too, past the window or into it: not a removal.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from dunningops.forecast.model import ASSUMPTIONS, Event, Forecast

__all__ = ["CHANGES", "EXAMPLES", "Impact", "Line", "compare"]

CHANGES = ("added", "removed", "earlier", "later", "content")
EXAMPLES = 3  # named examples per line


@dataclass
class Line:
    """One kind of change for one step of one plan, emails or to-dos."""

    change: str  # added | removed | earlier | later | content
    outcome: str  # send (emails) | todo (to-dos for people)
    plan: str
    step: str
    count: int = 0  # targets (a customer, or an invoice in an invoice-level plan)
    customers: set[int] = field(default_factory=set)
    amounts: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # currency → cents
    shifts: list[int] = field(default_factory=list)  # moved: days later (+) or earlier (-)
    examples: list[dict[str, Any]] = field(default_factory=list)
    what: set[str] = field(default_factory=set)  # content: template | sender | recipients | kind
    beyond: int = 0  # moved: from or to a day past the window (the step's due date is known, its day is not)
    after_closed_day: int = 0  # on the next working day after a weekend or holiday its due day fell on

    def add(self, before: Event | None, after: Event | None, *, due_outside: date | None = None) -> None:
        e = after or before
        assert e is not None
        self.count += 1
        self.beyond += due_outside is not None
        self.after_closed_day += bool(after and after.after_closed_day)
        self.customers.add(e.customer_id)
        self.amounts[e.currency] += e.amount_cents
        if before and after and before.day != after.day:
            self.shifts.append((after.day - before.day).days)
        if before and after and before.content != after.content:
            self.what |= _what_changed(before, after)
        if len(self.examples) < EXAMPLES:
            self.examples.append(_example(before, after, due_outside))

    def to_dict(self) -> dict[str, Any]:
        return {
            "change": self.change,
            "outcome": self.outcome,
            "plan": self.plan,
            "step": self.step,
            "count": self.count,
            "customers": len(self.customers),
            "amounts": dict(sorted(self.amounts.items())),
            "shift_days": {"min": min(self.shifts), "max": max(self.shifts)} if self.shifts else None,
            "beyond_window": self.beyond,
            "after_closed_day": self.after_closed_day,
            "what": sorted(self.what),
            "examples": self.examples,
        }


@dataclass
class Impact:
    before: Forecast
    after: Forecast
    lines: list[Line]

    @property
    def start(self) -> date:
        return self.after.start.date()

    @property
    def end(self) -> date:
        return self.after.end

    @property
    def empty(self) -> bool:
        return not self.lines

    def count(self, change: str, outcome: str = "send") -> int:
        """Targets with ``change`` (reminders by default: the emails to customers)."""
        return sum(line.count for line in self.lines if line.change == change and line.outcome == outcome)

    def summary(self) -> dict[str, dict[str, int]]:
        return {o: {c: self.count(c, o) for c in CHANGES} for o in ("send", "todo")}

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "assumptions": list(ASSUMPTIONS),
            "summary": {"reminders": self.summary()["send"], "todos": self.summary()["todo"]},
            "before": self.before.totals(),
            "after": self.after.totals(),
            "lines": [line.to_dict() for line in self.lines],
        }


def compare(before: Forecast, after: Forecast) -> Impact:
    """The changes from ``before`` (the applied config's simulation) to ``after`` (the desired one's)."""
    old = {e.key: e for e in before.events}
    new = {e.key: e for e in after.events}
    lines: dict[tuple[str, str, str, str], Line] = {}

    def line(change: str, e: Event) -> Line:
        key = (e.plan, e.step, e.outcome, change)
        if key not in lines:
            lines[key] = Line(change, e.outcome, e.plan, e.step)
        return lines[key]

    # Oldest day first, then customer: the examples are the first ones a reviewer would meet.
    for key in sorted(old.keys() | new.keys(), key=lambda k: (_day(old.get(k), new.get(k)), k)):
        b, a = old.get(key), new.get(key)
        if b is None:
            assert a is not None
            if key in before.pending:  # the applied config does it after the window: it moves into it
                line("earlier", a).add(None, a, due_outside=before.pending[key])
            else:
                line("added", a).add(None, a)
        elif a is None:
            if key in after.pending:  # still to come with the desired config, after the window
                line("later", b).add(b, None, due_outside=after.pending[key])
            else:
                line("removed", b).add(b, None)
        elif b.outcome != a.outcome:  # an email became a to-do, or the reverse: gone from one, new in the other
            line("removed", b).add(b, None)
            line("added", a).add(None, a)
        else:
            if a.day != b.day:
                line("earlier" if a.day < b.day else "later", a).add(b, a)
            if a.content != b.content:
                line("content", a).add(b, a)
    order = {c: i for i, c in enumerate(CHANGES)}
    return Impact(before, after, sorted(lines.values(), key=lambda x: (x.outcome != "send", x.plan, x.step, order[x.change])))


def _day(b: Event | None, a: Event | None) -> date:
    return min(e.day for e in (b, a) if e is not None)


def _what_changed(b: Event, a: Event) -> set[str]:
    names = ("kind", "kind", "template", "sender", "recipients")
    return {n for n, x, y in zip(names, b.content, a.content, strict=True) if x != y}


def _example(b: Event | None, a: Event | None, due_outside: date | None) -> dict[str, Any]:
    e = a or b
    assert e is not None
    out: dict[str, Any] = {
        "customer": e.customer,
        "name": e.customer_name,
        "before": b.day.isoformat() if b else None,
        "after": a.day.isoformat() if a else None,
        # A move from or to past the window: the step's due date there (its day would depend on the caps, the calendar).
        "due_outside_window": due_outside.isoformat() if due_outside else None,
        "amount_cents": e.amount_cents,
        "currency": e.currency,
    }
    if b and a and b.content != a.content:
        out["changed"] = {
            n: {"before": _show(x), "after": _show(y)}
            for n, x, y in zip(("kind", "todo_kind", "template", "sender", "recipients"), b.content, a.content, strict=True)
            if x != y
        }
    return out


def _show(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
