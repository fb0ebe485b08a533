"""Helpers for the forecast tests: a store on the example config, and a walk of the real send cycle
day by day at exactly the instants a forecast simulates, read back from the action rows, the to-dos,
the messages and the maildir, so that a test can hold the forecast made on day 0 against what was
actually done on each day.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import hashlib
import json
import shutil
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from email.message import EmailMessage
from pathlib import Path

from sqlalchemy import func, select

from cycle_helpers import setup_store
from dunningops.dunning.calendar import SendingCalendar
from dunningops.dunning.cycle import run_send
from dunningops.dunning.reasons import waiting_reason
from dunningops.dunning.runconfig import RunConfig
from dunningops.dunning.schedule import sent_counts
from dunningops.forecast.model import Event, Forecast
from dunningops.store import open_store
from dunningops.store.engine import Store
from dunningops.store.schema import ActionRow, CustomerRow, InvoiceRow, MessageRow, PauseRow, TodoRow
from dunningops.transport.maildir import MaildirTransport

EXAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "config"
# The example config's aliases a person has confirmed (A3); `credit` is left unverified on purpose:
# its emails go out from the fallback sender.
VERIFIED = ("billing", "portal", "ceo")


def example_config(tmp: Path) -> Path:
    """A copy of the example config that a test may edit."""
    return Path(shutil.copytree(EXAMPLE_CONFIG, tmp / "config"))


def edit(path: Path, old: str, new: str, count: int = 1) -> None:
    """Replace ``old`` by ``new`` in a config file, checking that the text was there ``count`` times."""
    text = path.read_text()
    assert text.count(old) == count, f"{path.name}: {old!r} found {text.count(old)} times, expected {count}"
    path.write_text(text.replace(old, new))


def build_store(url: str, config: Path, tmp: Path, ledger: dict[str, str], *, verify: tuple[str, ...] = VERIFIED) -> Store:
    """A store with ``config`` applied (on Friday 20 November 2026) and ``ledger`` imported."""
    store = open_store(url)
    data = tmp / "ledger"
    data.mkdir(exist_ok=True)
    setup_store(store, config, data, verify=verify, **ledger)
    return store


# --- what a step became ----------------------------------------------------------------------


@dataclass(frozen=True)
class Done:
    """One target's step on one day, in the test's words (external ids), as the forecast said it or
    as the real cycle did it: the email sent (sender, recipients) or the to-do made (its kind)."""

    plan: str
    step: str
    customer: str
    anchor: str  # the anchor invoice's external id
    outcome: str  # send | todo
    todo_kind: str | None
    sender: str | None
    recipients: tuple[str, ...]
    # What the step covers: its invoices and their outstanding amount (cents). The real cycle keeps
    # no invoice list for an email nobody can receive (a no_recipient to-do): None there, on both sides.
    invoices: int | None
    amount_cents: int | None

    def __str__(self) -> str:
        what = f"send from {self.sender}" if self.outcome == "send" else f"to-do {self.todo_kind}"
        if self.outcome == "todo" and self.sender:
            what += f" (prepared from {self.sender})"
        to = f" {' '.join(self.recipients)}" if self.recipients else ""
        covers = f", {self.invoices} invoice(s), {self.amount_cents} cents" if self.invoices is not None else ""
        return f"{self.plan}.{self.step} {self.customer}/{self.anchor}: {what}{to}{covers}"


@dataclass
class Names:
    """Store ids → external ids, for diffs a person can read."""

    customers: dict[int, str]
    invoices: dict[int, str]
    outstanding: dict[int, int]  # invoice id → cents (no payment arrives during a walk)

    @classmethod
    def load(cls, store: Store) -> Names:
        with store.session() as s:
            rows = s.execute(select(InvoiceRow.id, InvoiceRow.external_id, InvoiceRow.outstanding_cents)).all()
            return cls(
                dict(s.execute(select(CustomerRow.id, CustomerRow.external_id)).all()),
                {r.id: r.external_id for r in rows},
                {r.id: r.outstanding_cents for r in rows},
            )

    def of(self, e: Event) -> Done:
        known = e.todo_kind != "no_recipient"
        return Done(
            e.plan,
            e.step,
            self.customers[e.customer_id],
            self.invoices[e.anchor_invoice_id],
            e.outcome,
            e.todo_kind,
            e.sender,
            e.recipients,
            e.invoices if known else None,
            e.amount_cents if known else None,
        )

    def covered(self, level: str, anchor: int, invoice_ids: list[int]) -> tuple[int, int]:
        """(invoices, cents) one target's step covers, from the invoices its email or to-do lists: in an
        invoice-level plan, each target covers its own invoice (merged ones share the email)."""
        ids = [i for i in invoice_ids if i == anchor] if level == "invoice" else list(invoice_ids)
        return len(ids), sum(self.outstanding[i] for i in ids)


def forecast_by_day(forecast: Forecast, names: Names) -> dict[date, list[Done]]:
    out: dict[date, list[Done]] = {d.day: [] for d in forecast.days}
    for e in forecast.events:
        out[e.day].append(names.of(e))
    return {day: sorted(steps, key=str) for day, steps in out.items()}


# --- the walk -----------------------------------------------------------------------------------


@dataclass
class Cycle:
    """What one day's real send cycles did."""

    day: date
    at: datetime
    room: int  # emails the caps allowed at the cycle's start, from the store's history
    steps: list[Done] = field(default_factory=list)
    sent: Counter = field(default_factory=Counter)  # (plan, step) → reminder emails
    todos: Counter = field(default_factory=Counter)  # (plan, step) → to-dos
    waiting: Counter = field(default_factory=Counter)  # reason category → due steps held back
    mails: list[EmailMessage] = field(default_factory=list)  # the reminders written to the maildir
    # Message-ID → the step its history row was sent for (plan, step, customer, anchor: external ids).
    keys: dict[str, tuple[str, str, str, str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


class Maildir:
    """The real cycle's maildir transport, and the files each cycle added."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.seen: set[str] = set()

    def factory(self, config: RunConfig) -> MaildirTransport:
        return MaildirTransport(self.folder)

    def files(self) -> list[Path]:
        new = self.folder / "new"
        return sorted(new.iterdir()) if new.exists() else []

    def new_mails(self) -> list[EmailMessage]:
        fresh = [f for f in self.files() if f.name not in self.seen]
        self.seen |= {f.name for f in fresh}
        mails = [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in fresh]
        return [m for m in mails if isinstance(m, EmailMessage)]


def walk(store: Store, forecast: Forecast, maildir: Maildir) -> list[Cycle]:
    """Runs the real send cycle at every instant the daemon would on each simulated day
    (``Day.cycles``: every send_every_minutes inside the window), in order, and reads back what
    the day's cycles did: their action rows (with their to-dos and messages) and maildir files.
    A ``Cycle`` is one day's cycles together; its reasons for waiting are the day's last cycle's."""
    names = Names.load(store)
    with store.session() as s:
        levels = {p.id: p.level for p in RunConfig.from_store(s).plans.values()}
    cycles = []
    maildir.new_mails()  # anything there before the walk is not the walk's
    for day in forecast.days:
        if day.at is None:
            continue
        assert day.cycles and day.cycles[0] == day.at
        with store.session() as s:
            config = RunConfig.from_store(s)
            calendar = SendingCalendar(config.settings)
            today, month = sent_counts(s, calendar, day.at)
            last_action = s.scalar(select(func.max(ActionRow.id))) or 0
            caps = config.settings.sending.caps
        cycle = Cycle(day.day, day.at, max(0, min(caps.per_day - today, caps.per_month - month)))
        for at in day.cycles:
            report = run_send(store, at=at, transport_factory=maildir.factory)
            cycle.errors += report.errors
        cycle.waiting.update(waiting_reason(d.reason) for d in report.decisions if d.outcome not in ("send", "todo"))
        instants = set(day.cycles)
        with store.session() as s:
            rows = s.execute(
                select(ActionRow, TodoRow, MessageRow)
                .outerjoin(TodoRow, TodoRow.id == ActionRow.todo_id)
                .outerjoin(MessageRow, MessageRow.id == ActionRow.message_id)
                .where(ActionRow.id > last_action)
                .order_by(ActionRow.id)
            ).all()
            for action, todo, message in rows:
                assert action.performed_at in instants, f"{action.plan_id}.{action.step_id} performed at {action.performed_at}"
                cycle.steps.append(_done(names, levels[action.plan_id], action, todo, message))
            for m in s.scalars(select(MessageRow).where(MessageRow.kind == "reminder", MessageRow.created_at.in_(instants))):
                cycle.sent[(m.plan_id, m.step_id)] += 1
                assert m.anchor_invoice_id is not None and m.customer_id is not None
                key = (m.plan_id, m.step_id, names.customers[m.customer_id], names.invoices[m.anchor_invoice_id])
                cycle.keys[m.message_id.strip("<>")] = key
            for t in s.scalars(select(TodoRow).where(TodoRow.plan_id.is_not(None), TodoRow.created_at.in_(instants))):
                cycle.todos[(t.plan_id, t.step_id)] += 1
        cycle.steps.sort(key=str)
        cycle.mails = [m for m in maildir.new_mails() if m["X-Dunningops-Customer"]]
        cycles.append(cycle)
    return cycles


def _done(names: Names, level: str, action: ActionRow, todo: TodoRow | None, message: MessageRow | None) -> Done:
    customer, anchor = names.customers[action.customer_id], names.invoices[action.anchor_invoice_id]
    if action.outcome == "sent":
        assert message is not None and message.status == "sent", f"{action.step_id} {customer}: {message and message.status}"
        recipients = tuple(
            f"{h}:{a}"
            for h, addrs in (("to", message.to_addresses), ("cc", message.cc_addresses), ("bcc", message.bcc_addresses))
            for a in addrs
        )
        invoices, cents = names.covered(level, action.anchor_invoice_id, message.invoice_ids)
        return Done(
            action.plan_id, action.step_id, customer, anchor, "send", None, message.sender_ref, recipients, invoices, cents
        )
    assert action.outcome == "todo" and todo is not None, f"{action.step_id} {customer}: {action.outcome}"
    p = todo.payload
    sender = p.get("sender")  # a manual email is prepared for a person, its sender preselected (A6)
    recipients = tuple(f"{h}:{a}" for h in ("to", "cc", "bcc") for a in p.get(h, ()))
    covered: tuple[int | None, int | None] = (None, None)
    if todo.kind != "no_recipient":
        covered = names.covered(level, action.anchor_invoice_id, p["invoice_ids"])
    return Done(action.plan_id, action.step_id, customer, anchor, "todo", todo.kind, sender, recipients, *covered)


# --- the comparison -----------------------------------------------------------------------------


def mismatches(forecast: Forecast, cycles: list[Cycle], store: Store) -> list[str]:
    """Every difference between the forecast and the walk, day by day, in a person's words."""
    names = Names.load(store)
    expected = forecast_by_day(forecast, names)
    with store.session() as s:
        config = RunConfig.from_store(s)
    out: list[str] = []
    walked = {c.day: c for c in cycles}
    for day in forecast.days:
        label = f"{day.day} ({day.day:%a})"
        c = walked.get(day.day)
        if day.at is None:
            if expected[day.day]:
                out.append(f"{label}: no cycle ({day.closed}), yet the forecast has {len(expected[day.day])} steps")
            continue
        assert c is not None and c.at == day.at
        if c.errors:
            out.append(f"{label}: the real cycle reported errors: {c.errors}")
        want, got = Counter(expected[day.day]), Counter(c.steps)
        for s in sorted((want - got).elements(), key=str):
            out.append(f"{label}: forecast only:   {s}")
        for s in sorted((got - want).elements(), key=str):
            out.append(f"{label}: real cycle only: {s}")
        for what, a, b in (
            ("emails by step", +day.sent, +c.sent),
            ("to-dos by step", +day.todos, +c.todos),
            ("steps held back, by reason", +day.waiting, +c.waiting),
        ):
            if a != b:
                out.append(f"{label}: {what}: forecast {dict(sorted(a.items()))}, real cycle {dict(sorted(b.items()))}")
        if day.room != c.room:
            out.append(f"{label}: room under the caps: forecast {day.room}, real cycle {c.room}")
        out += [f"{label}: {p}" for p in _mail_problems(config, c, expected[day.day])]
    return out


def assert_walk_matches(forecast: Forecast, cycles: list[Cycle], store: Store) -> None:
    problems = mismatches(forecast, cycles, store)
    if problems:
        raise AssertionError("the forecast made on day 0 differs from what the send cycle did:\n  " + "\n  ".join(problems))


def _mail_problems(config: RunConfig, c: Cycle, expected: list[Done]) -> list[str]:
    """Each reminder in the maildir against the forecast's email for its step (found by its
    Message-ID's history row): From, To, Cc, and the envelope (Bcc included)."""
    sends = {(s.plan, s.step, s.customer, s.anchor): s for s in expected if s.outcome == "send"}
    problems = []
    if len(c.mails) != sum(c.sent.values()):
        problems.append(f"{len(c.mails)} reminders in the maildir, {sum(c.sent.values())} recorded sent")
    for m in c.mails:
        key = c.keys.get(str(m["Message-ID"]).strip().strip("<>"))
        lead = sends.get(key) if key else None
        if lead is None:
            problems.append(f"a reminder to {m['X-Dunningops-Customer']} ({m['Subject']}) that the forecast does not send")
            continue
        headers = {h: tuple(a.lower() for _, a in email.utils.getaddresses(m.get_all(h, []))) for h in ("To", "Cc")}
        want = {h: tuple(r.split(":", 1)[1].lower() for r in lead.recipients if r.startswith(f"{h.lower()}:")) for h in headers}
        if headers != want:
            problems.append(f"{lead}: the maildir's To/Cc {headers}, the forecast's {want}")
        envelope = sorted(a.strip().lower() for a in str(m["X-Envelope-To"] or "").split(",") if a.strip())
        if envelope != sorted(r.split(":", 1)[1].lower() for r in lead.recipients):
            problems.append(f"{lead}: the envelope goes to {envelope}")
        sender = email.utils.parseaddr(str(m["From"]))[1].lower()
        if sender != from_address(config, lead.sender):
            problems.append(f"{lead}: From {sender}, expected {from_address(config, lead.sender)}")
        if str(m["X-Dunningops-Customer"]) != lead.customer:
            problems.append(f"{lead}: the maildir's customer header says {m['X-Dunningops-Customer']}")
    return problems


def from_address(config: RunConfig, ref: str | None) -> str:
    """The address an email from ``ref`` leaves from, said independently of senders.py: the
    identity's own address inside the deliverability domain (A2), the fallback sender otherwise."""
    fallback = config.settings.deliverability.fallback_sender
    kind, _, ident = (ref or "").partition(".")
    address = {"alias": config.aliases, "member": config.members}.get(kind, {}).get(ident, {}).get("email", fallback)
    domain = config.settings.deliverability.domain or ""
    return address.lower() if address.lower().endswith("@" + domain.lower()) else fallback.lower()


# --- "it writes nothing" ------------------------------------------------------------------------


def fingerprint(store: Store) -> dict[str, object]:
    """Row counts of every table, and a digest of the history the send cycle writes (actions,
    messages, to-dos, pauses, customers and invoices as the cycle changes them)."""
    # Every table the store has, the import cycle's and the daemon's included.
    from dunningops.store import schema_daemon, schema_inbox  # noqa: F401
    from dunningops.store.schema import Base

    out: dict[str, object] = {}
    with store.session() as s:
        for table in Base.metadata.sorted_tables:
            out[f"rows.{table.name}"] = s.scalar(select(func.count()).select_from(table))
        for row in (ActionRow, MessageRow, TodoRow, PauseRow, CustomerRow, InvoiceRow):
            table = row.__table__
            rows = s.execute(select(table).order_by(*table.primary_key.columns)).mappings().all()
            text = json.dumps([dict(r) for r in rows], default=str, sort_keys=True)
            out[f"digest.{table.name}"] = hashlib.sha256(text.encode()).hexdigest()
    return out
