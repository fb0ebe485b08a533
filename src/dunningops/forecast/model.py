"""What a simulation says: the steps it performs day by day, and each day's counts. Data only;
forecast/render.py shows it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

__all__ = ["ASSUMPTIONS", "Day", "Event", "Forecast"]

# Said in every output: what the simulation takes for granted.
ASSUMPTIONS = (
    "payments in the window are assumed not to arrive",
    "nobody replies, and nobody acts on the to-dos",
    "the send cycle runs as the daemon runs it: every send_every_minutes inside the sending window, on working days",
)


@dataclass(frozen=True, slots=True)
class Event:
    """One step performed on a simulated day: an email sent, or a to-do made for a person."""

    day: date
    plan: str
    step: str
    customer_id: int
    customer: str  # external id
    customer_name: str
    anchor_invoice_id: int
    outcome: str  # send | todo
    todo_kind: str | None  # to-dos: email | letter | call | no_recipient (an automatic email nobody can receive)
    template: str | None
    sender: str | None  # alias.x | member.x | fallback (emails only)
    recipients: tuple[str, ...]  # "to:a@x", "cc:b@y", … (emails only)
    amount_cents: int  # outstanding of the invoices the step covers
    currency: str
    invoices: int  # how many invoices the step covers
    merged: int = 0  # other invoice-level targets of the customer that go out with this one
    # Its due day, inside the window, had no send cycle (a weekend, a public holiday): it goes on the next one.
    after_closed_day: bool = False

    @property
    def key(self) -> tuple[str, str, int, int]:
        """The step for one target: what the action row of the real cycle is unique on."""
        return (self.plan, self.step, self.customer_id, self.anchor_invoice_id)

    @property
    def content(self) -> tuple:
        """What the customer or the team would see change: the kind, template, sender and recipients."""
        return (self.outcome, self.todo_kind, self.template, self.sender, self.recipients)

    def to_dict(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "plan": self.plan,
            "step": self.step,
            "customer": self.customer,
            "customer_name": self.customer_name,
            "anchor_invoice_id": self.anchor_invoice_id,
            "outcome": self.outcome,
            "todo_kind": self.todo_kind,
            "template": self.template,
            "sender": self.sender,
            "recipients": list(self.recipients),
            "amount_cents": self.amount_cents,
            "currency": self.currency,
            "invoices": self.invoices,
        }


@dataclass
class Day:
    """One day of the window: whether a send cycle runs, and what it does."""

    day: date
    at: datetime | None  # the day's first send cycle; None: no cycle (not a sending day, a holiday)
    closed: str | None = None  # why no cycle runs that day
    cycles: list[datetime] = field(default_factory=list)  # the daemon's send cycles that day
    ran: int = 0  # how many of them were simulated: the later ones would do nothing new
    room: int = 0  # emails the caps (T6) allow at the cycle's start
    sent: Counter = field(default_factory=Counter)  # (plan, step) → emails
    todos: Counter = field(default_factory=Counter)  # (plan, step) → to-dos
    waiting: Counter = field(default_factory=Counter)  # reason category (dunning/reasons.py) → due steps held back

    @property
    def held_by_caps(self) -> int:
        return self.waiting.get("caps", 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "cycle_at": self.at.isoformat() if self.at else None,
            "cycles": len(self.cycles),
            "cycles_simulated": self.ran,  # the later ones find nothing new to do
            "closed": self.closed,
            "room": self.room,
            "sent": sum(self.sent.values()),
            "todos": sum(self.todos.values()),
            "held_by_caps": self.held_by_caps,
            "waiting": dict(sorted(self.waiting.items())),
            "by_step": [
                {"plan": p, "step": s, "sent": self.sent.get((p, s), 0), "todos": self.todos.get((p, s), 0)}
                for p, s in sorted(set(self.sent) | set(self.todos))
            ],
        }


@dataclass
class Forecast:
    """A simulation of the send cycle over ``len(days)`` days from ``start`` with one config."""

    start: datetime
    days: list[Day]
    events: list[Event]
    targets: int  # targets with a step due within the window, as loaded
    caps: tuple[int, int]  # (per day, per month)
    # The targets' next steps still to come at the window's end: Event.key → the step's due date.
    pending: dict[tuple[str, str, int, int], date] = field(default_factory=dict)

    @property
    def end(self) -> date:
        return self.days[-1].day if self.days else self.start.date()

    def totals(self) -> dict[str, int]:
        # Emails and to-dos, as the days count them: a grouped email covers several targets (events).
        return {
            "sent": sum(sum(d.sent.values()) for d in self.days),
            "todos": sum(sum(d.todos.values()) for d in self.days),
            "days_held_by_caps": sum(1 for d in self.days if d.held_by_caps),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "assumptions": list(ASSUMPTIONS),
            "caps": {"per_day": self.caps[0], "per_month": self.caps[1]},
            "targets": self.targets,
            "totals": self.totals(),
            "days": [d.to_dict() for d in self.days],
        }
