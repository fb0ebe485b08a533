"""T7: the unpaid-invoice notification, sent on demand to the customers a filter selects.

Which customers: those with at least one open, unpaused invoice at least ``overdue_min`` days past
its due date (default 1: every invoice already overdue; days counted in company time), not paused
themselves, and not notified in the last ``since_last`` days (``customers.last_notified_at``; a
customer never notified qualifies). ``--customer`` narrows the selection to the customers it
names, and is the only way to reach anyone when the notification is off by default
(``settings.notifications.debtor.enabled: false``). The email lists the invoices that matched.

At most once: ``last_notified_at`` is set in the transaction that records the emails
``sending`` (a compare-and-set against the value the selection read, so two runs at once cannot
both notify a customer), and put back only for the emails that reached nobody (``failed``,
``deferred``). A customer whose last notification may or may not have arrived (``sending``,
``unknown``) is left out unless asked again explicitly (``again``).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from dunningops.dunning.calendar import SendingCalendar
from dunningops.dunning.due import invoice_paused
from dunningops.dunning.runconfig import RunConfig
from dunningops.dunning.schedule import sent_counts
from dunningops.errors import ConflictError, NotFoundError
from dunningops.notify import deliver
from dunningops.notify.deliver import Notice, Ready, Skipped
from dunningops.outgoing import Outcome, Recorded
from dunningops.permissions import Actor, require
from dunningops.render import RenderedEmail
from dunningops.spec.models import Caps
from dunningops.spec.notices import CustomerNotice
from dunningops.store.engine import Store
from dunningops.store.schema import CustomerRow, InvoiceRow, MessageRow
from dunningops.transport.base import Transport

__all__ = ["DEFAULT_OVERDUE_MIN", "Filters", "Result", "Selection", "Summary", "notify", "select", "send", "summarise"]

# Not "customers": select()'s parameter of that name (the external ids asked for) would hide it.
customer_t, invoice_t, message_t = CustomerRow.__table__, InvoiceRow.__table__, MessageRow.__table__
DEFAULT_OVERDUE_MIN = 1
BATCH = 1000  # customers per query, per rendering batch, per recording transaction
UNCERTAIN = ("sending", "unknown")  # may or may not have reached the customer
WHAT = "sending the unpaid-invoice notification"


@dataclass(frozen=True)
class Filters:
    """What selects the customers: ``customers`` are external ids (empty: every customer)."""

    overdue_min: int = DEFAULT_OVERDUE_MIN
    since_last: int | None = None
    customers: tuple[str, ...] = ()
    again: bool = False


@dataclass(frozen=True)
class Line:
    """An invoice the notification lists."""

    id: int
    number: str
    due_date: date
    outstanding_cents: int
    currency: str


@dataclass
class Target:
    """A customer the notification covers, and the invoices that matched."""

    customer_id: int
    external_id: str
    name: str
    last_notified_at: datetime | None
    lines: list[Line] = field(default_factory=list)


@dataclass
class Selection:
    notice: CustomerNotice
    filters: Filters
    targets: list[Target]
    left_out: list[Skipped]  # named customers the filters leave out, and uncertain earlier notifications

    @property
    def named_only(self) -> bool:
        """Off by default: only the customers named are covered."""
        return not self.notice.enabled


def _roles(config: RunConfig) -> dict[str, list[str]]:
    return {role: list(perms) for role, perms in config.settings.roles.items()}


def _settings(config: RunConfig) -> CustomerNotice:
    notice = config.settings.notifications.debtor
    if notice is None:
        raise ConflictError("no unpaid-invoice notification in the applied config (settings.notifications.debtor)")
    return notice


def select(
    session: Session,
    config: RunConfig,
    *,
    at: datetime,
    overdue_min: int | None = None,
    since_last: int | None = None,
    customers: Sequence[str] = (),
    again: bool = False,
) -> Selection:
    """The customers the notification covers at ``at`` and the invoices each email lists (set-based, by batches).

    Raises:
        NotFoundError: a customer named in ``customers`` does not exist.
        ConflictError: the applied config has no unpaid-invoice notification.
    """
    notice = _settings(config)
    filters = Filters(DEFAULT_OVERDUE_MIN if overdue_min is None else overdue_min, since_last, tuple(customers), again)
    calendar = SendingCalendar(config.settings)
    today = calendar.local(at).date()
    notified_before = _notified_before(calendar, today, since_last)
    named = _named(session, filters.customers)
    if not named and not notice.enabled:
        return Selection(notice, filters, [], [])
    conditions = [
        invoice_t.c.status == "open",
        ~invoice_paused(invoice_t, today),
        invoice_t.c.due_date <= today - timedelta(days=filters.overdue_min),
        sa.or_(customer_t.c.paused_until.is_(None), customer_t.c.paused_until < today),
    ]
    if notified_before is not None:
        conditions.append(sa.or_(customer_t.c.last_notified_at.is_(None), customer_t.c.last_notified_at < notified_before))
    query = (
        sa.select(
            customer_t.c.id,
            customer_t.c.external_id,
            customer_t.c.name,
            customer_t.c.last_notified_at,
            invoice_t.c.id.label("invoice_id"),
            invoice_t.c.number,
            invoice_t.c.due_date,
            invoice_t.c.outstanding_cents,
            invoice_t.c.currency,
        )
        .join(invoice_t, invoice_t.c.customer_id == customer_t.c.id)
        .where(*conditions)
        .order_by(customer_t.c.external_id, invoice_t.c.due_date, invoice_t.c.id)
    )
    chunks = [query] if not named else [query.where(customer_t.c.id.in_(ids)) for ids in _chunks(sorted(named))]
    found: dict[int, Target] = {}
    for q in chunks:
        for row in session.execute(q.execution_options(yield_per=BATCH)):
            target = found.get(row.id)
            if target is None:
                target = found[row.id] = Target(row.id, row.external_id, row.name, row.last_notified_at)
            target.lines.append(Line(row.invoice_id, row.number, row.due_date, row.outstanding_cents, row.currency))
    targets = sorted(found.values(), key=lambda t: t.external_id)
    left_out = [
        Skipped(Notice(cid), _who(row), _why_left_out(row, filters, today, notified_before, calendar))
        for cid, row in sorted(named.items(), key=lambda kv: kv[1].external_id)
        if cid not in found
    ]
    if not again:
        uncertain = _uncertain(session, [t.customer_id for t in targets])
        left_out += [
            Skipped(Notice(t.customer_id, tag=t), _who(t), uncertain[t.customer_id])
            for t in targets
            if t.customer_id in uncertain
        ]
        targets = [t for t in targets if t.customer_id not in uncertain]
    return Selection(notice, filters, targets, left_out)


def _notified_before(calendar: SendingCalendar, today: date, since_last: int | None) -> datetime | None:
    """The instant a customer's last notification must precede: the start of the company day after
    ``today - since_last`` (notified on that day or earlier: at least ``since_last`` days ago)."""
    if since_last is None:
        return None
    return datetime.combine(today - timedelta(days=since_last - 1), time(0), calendar.tz)


def _named(session: Session, external_ids: tuple[str, ...]) -> dict[int, Any]:
    if not external_ids:
        return {}
    rows: list[Any] = []
    for chunk in _chunks(sorted(set(external_ids))):
        rows += session.execute(
            sa.select(
                customer_t.c.id,
                customer_t.c.external_id,
                customer_t.c.name,
                customer_t.c.paused_until,
                customer_t.c.pause_reason,
                customer_t.c.last_notified_at,
            ).where(customer_t.c.external_id.in_(chunk))
        ).all()
    missing = sorted(set(external_ids) - {r.external_id for r in rows})
    if missing:
        raise NotFoundError(f"no customer {', '.join(repr(m) for m in missing[:10])}{' …' if len(missing) > 10 else ''}")
    return {r.id: r for r in rows}


def _why_left_out(row: Any, filters: Filters, today: date, notified_before: datetime | None, calendar: SendingCalendar) -> str:
    if row.paused_until is not None and row.paused_until >= today:
        return f"paused until {row.paused_until} ({row.pause_reason or 'no reason given'})"
    if notified_before is not None and row.last_notified_at is not None and row.last_notified_at >= notified_before:
        return f"last notified on {calendar.local(row.last_notified_at):%Y-%m-%d}, less than {filters.since_last} days ago"
    if filters.overdue_min == 0:
        return "no open, unpaused invoice is due"
    return f"no open, unpaused invoice is {filters.overdue_min} day{'s' if filters.overdue_min != 1 else ''} or more overdue"


def _uncertain(session: Session, customer_ids: list[int]) -> dict[int, str]:
    """The customers whose last notification may or may not have arrived: the reason, per customer id."""
    out: dict[int, str] = {}
    for chunk in _chunks(customer_ids):
        rows = session.execute(
            sa.select(customer_t.c.id, message_t.c.message_id, message_t.c.created_at)
            .join(
                message_t,
                sa.and_(
                    message_t.c.customer_id == customer_t.c.id,
                    message_t.c.kind == "notification",
                    message_t.c.created_at == customer_t.c.last_notified_at,
                    message_t.c.status.in_(UNCERTAIN),
                ),
            )
            .where(customer_t.c.id.in_(chunk))
        )
        for r in rows:
            out[r.id] = (
                f"the last notification ({r.message_id}, {r.created_at:%Y-%m-%d %H:%M} UTC) was interrupted or got no "
                "clear answer from the server, so it may already have arrived; not sent again (--again sends it anyway)"
            )
    return out


def _who(row: Any) -> dict:
    """The customer as deliver.Skipped names it, from a customers row or a Target."""
    cid = row.customer_id if isinstance(row, Target) else row.id
    return {"id": cid, "external_id": row.external_id, "name": row.name}


def _chunks(items: Sequence, size: int = BATCH) -> list[list]:
    it = iter(items)
    return [list(c) for c in iter(lambda: list(itertools.islice(it, size)), [])]


# --- the summary shown before sending -----------------------------------------------------


@dataclass
class Summary:
    """What the notification covers: the emails ready, the customers skipped, and the caps' room (T6)."""

    selection: Selection
    ready: list[Ready]
    skipped: list[Skipped]
    room_today: int
    room_month: int
    lines: dict[int, Line]  # invoice id → what the emails list
    caps: Caps

    @property
    def room(self) -> int:
        return max(0, min(self.room_today, self.room_month))

    @property
    def room_words(self) -> str:
        return f"{self.room} left {'today' if self.room_today <= self.room_month else 'this month'}"

    @property
    def invoices(self) -> int:
        return sum(len(r.invoice_ids) for r in self.ready)

    @property
    def recipients(self) -> int:
        return sum(len(r.recipients.to) + len(r.recipients.cc) for r in self.ready)

    def total(self, ready: Ready) -> dict[str, int]:
        """Outstanding cents per currency of one email's invoices."""
        out: dict[str, int] = defaultdict(int)
        for i in ready.invoice_ids:
            out[self.lines[i].currency] += self.lines[i].outstanding_cents
        return dict(out)

    @property
    def totals(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for r in self.ready:
            for currency, cents in self.total(r).items():
                out[currency] += cents
        return dict(sorted(out.items()))

    def over_caps(self) -> str | None:
        """Why sending them all would pass the caps (nothing is sent then), or None."""
        if len(self.ready) <= self.room:
            return None
        caps = self.caps
        return (
            f"sending {len(self.ready)} emails would pass the sending caps ({caps.per_day}/day, {caps.per_month}/month; "
            f"{self.room_words}): narrow the selection (--customer, --overdue-min, --since-last-notification)"
        )

    def to_dict(self) -> dict:
        return {
            "customers": len(self.ready),
            "invoices": self.invoices,
            "recipients": self.recipients,
            "totals": {c: f"{cents / 100:.2f}" for c, cents in self.totals.items()},
            "named_only": self.selection.named_only,
            "filters": {
                "overdue_min": self.selection.filters.overdue_min,
                "since_last_notification": self.selection.filters.since_last,
                "customers": list(self.selection.filters.customers),
            },
            "caps": {"left_today": max(0, self.room_today), "left_this_month": max(0, self.room_month)},
            "emails": [
                {
                    "customer": r.customer["external_id"],
                    "name": r.customer["name"],
                    "language": r.language,
                    "subject": r.email.subject,
                    "to": [c.email for c in r.recipients.to],
                    "cc": [c.email for c in r.recipients.cc],
                    "invoices": [self.lines[i].number for i in r.invoice_ids],
                    "totals": {c: f"{cents / 100:.2f}" for c, cents in self.total(r).items()},
                }
                for r in self.ready
            ],
            "skipped": [
                {"customer": s.customer["external_id"], "name": s.customer["name"], "reason": s.reason} for s in self.skipped
            ],
        }


def _prepare(session: Session, config: RunConfig, n: CustomerNotice, notices: list[Notice], at: datetime) -> list:
    return deliver.prepare(session, config, notices, template=n.template, sender_ref=n.from_, to=n.to, cc=n.cc, at=at)


def summarise(session: Session, config: RunConfig, selection: Selection, *, at: datetime) -> Summary:
    """Address and render each selected customer's email (C6, C9: a customer nobody can be written to is skipped)."""
    notice = selection.notice
    ready: list[Ready] = []
    skipped = list(selection.left_out)
    lines = {line.id: line for t in selection.targets for line in t.lines}
    for batch in _chunks(selection.targets):
        notices = [Notice(t.customer_id, [line.id for line in t.lines], tag=t) for t in batch]
        for item in _prepare(session, config, notice, notices, at):
            if isinstance(item, Ready):
                # Only the subject is kept: a summary of 100,000 customers must not hold 100,000 rendered
                # emails in memory; each batch is rendered again when it is sent (send()).
                ready.append(dataclasses.replace(item, email=RenderedEmail(item.email.subject, "", "")))
            else:
                skipped.append(item)
    today, month = sent_counts(session, SendingCalendar(config.settings), at)
    caps = config.settings.sending.caps
    return Summary(selection, ready, skipped, caps.per_day - today, caps.per_month - month, lines, caps)


# --- sending ------------------------------------------------------------------------------


def send(
    store: Store, config: RunConfig, summary: Summary, *, at: datetime, transport_factory: Callable[[RunConfig], Transport]
) -> list[Outcome]:
    """Send the emails ready, a batch at a time, through the one way out (at most once; caps checked as recorded).

    Raises:
        ConflictError: the caps, or another notification to one of the customers recorded since the
            selection (nothing of that batch was sent).
        TransportError: the transport cannot work as configured (after recording the outcomes).
    """
    previous = {t.customer_id: t.last_notified_at for t in summary.selection.targets}
    names = {t.customer_id: t.external_id for t in summary.selection.targets}

    def reserve(session: Session, recorded: list[Recorded]) -> None:
        ids = [r.letter.customer_id for r in recorded if r.letter.customer_id is not None]
        # Compare-and-set: the value the selection read must still be there (two runs at once notify a customer once).
        now_there = dict(
            session.execute(
                sa.select(customer_t.c.id, customer_t.c.last_notified_at)
                .where(customer_t.c.id.in_(ids))
                # FOR NO KEY UPDATE on PostgreSQL: the messages just inserted hold KEY SHARE on these rows.
                .with_for_update(key_share=True)
            ).all()
        )
        moved = [names[i] for i in ids if i not in now_there or now_there[i] != previous[i]]
        if moved:
            raise ConflictError(
                f"customer {', '.join(moved[:10])}: another unpaid-invoice notification was recorded since the selection; "
                "nothing was sent (run the command again)"
            )
        session.execute(sa.update(customer_t).where(customer_t.c.id.in_(ids)).values(last_notified_at=at))

    def settle(session: Session, outcomes: list[Outcome]) -> None:
        # Nothing reached the customer: the last notification is the one before.
        back: dict[datetime | None, list[int]] = defaultdict(list)
        for o in outcomes:
            if o.status in ("failed", "deferred") and o.letter.customer_id is not None:
                back[previous[o.letter.customer_id]].append(o.letter.customer_id)
        for value, ids in back.items():
            session.execute(
                sa.update(customer_t)
                .where(customer_t.c.id.in_(ids), customer_t.c.last_notified_at == at)
                .values(last_notified_at=value)
            )

    outcomes: list[Outcome] = []
    transport = transport_factory(config)
    try:
        for chunk in _chunks(summary.ready):
            # Rendered again, as the summary was (the same data, the same instant): the summary kept subjects only.
            with store.session() as session:
                fresh = _prepare(session, config, summary.selection.notice, [r.notice for r in chunk], at)
            batch = [r for r in fresh if isinstance(r, Ready)]
            outcomes += deliver.send(
                store,
                config,
                batch,
                template=summary.selection.notice.template,
                at=at,
                transport=transport,
                reserve=reserve,
                settle=settle,
            )
    finally:
        transport.close()
    return outcomes


@dataclass
class Result:
    summary: Summary
    outcomes: list[Outcome]
    actor: Actor | None = None
    sent: bool = False  # False: a dry run, nothing to send, or the confirmation declined


def notify(
    store: Store,
    *,
    at: datetime,
    filters: Filters,
    actor: str | None,
    transport_factory: Callable[[RunConfig], Transport],
    dry_run: bool = False,
    show: Callable[[Summary], None] | None = None,
    confirm: Callable[[Summary], bool] | None = None,
) -> Result:
    """``dunningops notify debtors``: select, summarise (``show``), check the caps, ask (``confirm``), send.

    T1: sending needs the ``send`` permission, checked before anything else; a dry run needs none.

    Raises:
        PermissionDeniedError: the actor may not send on demand.
        ConflictError: the caps (before asking), or as ``send``.
        NotFoundError: a customer named does not exist.
    """
    with store.session() as session:
        config = RunConfig.from_store(session)
        who = None if dry_run else require(config.members, _roles(config), actor, "send", WHAT)
        selection = select(
            session,
            config,
            at=at,
            overdue_min=filters.overdue_min,
            since_last=filters.since_last,
            customers=filters.customers,
            again=filters.again,
        )
        summary = summarise(session, config, selection, at=at)
    if show is not None:
        show(summary)
    if dry_run or not summary.ready:
        return Result(summary, [], who)
    if problem := summary.over_caps():
        raise ConflictError(problem)
    if confirm is not None and not confirm(summary):
        return Result(summary, [], who)
    outcomes = send(store, config, summary, at=at, transport_factory=transport_factory)
    return Result(summary, outcomes, who, sent=True)
