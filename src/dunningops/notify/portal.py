"""A9: payment receipts and failed-payment emails, owed by the ledger import, each sent once.

The ledger import owes them (``owed.owe``, in the transaction that writes the payments): one
``portal_notifications`` row per payment it creates, when that notification is configured and
enabled and the payment is recent (``max_age_days``: a first import's history owes nothing).
Importing the file again owes nothing more (the rows exist; one per payment).

``send_pending`` sends what is owed after the import committed, and what the caps (T6) held back
at each send cycle: ``pending`` → ``sending`` (claimed, checked, in the transaction that records the
message ``sending``) → ``sent`` | ``failed`` | ``unknown``; ``deferred`` goes back to ``pending``
(sent again later with the same Message-ID). A row left ``sending`` (a crash) is never sent again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from dunningops.dunning.calendar import SendingCalendar
from dunningops.dunning.runconfig import RunConfig
from dunningops.dunning.schedule import sent_counts
from dunningops.errors import ConflictError, DunningOpsError
from dunningops.notify import deliver
from dunningops.notify.owed import KINDS, has_pending, owe, rowcount, settle_interrupted
from dunningops.outgoing import NotClaimed, Outcome, Recorded
from dunningops.spec.notices import PortalNotice
from dunningops.store.engine import Store
from dunningops.store.schema import AliasRow, InvoiceRow, MessageRow, PaymentRow, TemplateRow
from dunningops.store.schema_notices import PortalNotificationRow
from dunningops.transport.base import Transport, TransportError

__all__ = ["KINDS", "LABELS", "PortalReport", "has_pending", "owe", "send_pending", "settle_interrupted"]

notices, payments, invoices = PortalNotificationRow.__table__, PaymentRow.__table__, InvoiceRow.__table__
messages = MessageRow.__table__
LABELS = {"payment_receipt": "Payment receipts", "payment_failed": "Failed-payment emails"}
# Rows read at a time, and emails recorded `sending` (and handed to the transport) at a time: a
# process killed mid-send leaves at most one chunk `unknown`.
PAGE = 500
SEND_CHUNK = 40
REASONS_SHOWN = 3


# --- sent, after the commit -------------------------------------------------------------------


@dataclass
class KindCounts:
    sent: int = 0
    failed: int = 0
    unknown: int = 0
    deferred: int = 0
    skipped: int = 0
    held: int = 0  # left pending: past the sending caps, or the transport could not send now
    reasons: list[str] = field(default_factory=list)  # why each was skipped or failed

    def any(self) -> bool:
        return bool(self.sent or self.failed or self.unknown or self.deferred or self.skipped or self.held)


@dataclass
class PortalReport:
    """What ``send_pending`` did, by notification kind (``payment_receipt``, ``payment_failed``)."""

    kinds: dict[str, KindCounts] = field(default_factory=dict)
    # Each email's fate (message_id, customer, kind, status, detail), as the send cycle reports its own.
    messages: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    fatal: DunningOpsError | None = None  # the transport cannot work as configured: sending stopped

    def of(self, kind: str) -> KindCounts:
        return self.kinds.setdefault(kind, KindCounts())

    @property
    def sent(self) -> int:
        return sum(k.sent for k in self.kinds.values())

    def lines(self) -> list[str]:
        """One line per kind that had anything: "Payment receipts: 3 sent, 1 skipped (…)." """
        out = []
        for kind in KINDS.values():
            c = self.kinds.get(kind)
            if c is None or not c.any():
                continue
            parts = [f"{c.sent} sent"]
            for n, words in (
                (c.failed, "failed"),
                (c.unknown, "possibly sent (not sent again)"),
                (c.deferred, "deferred (sent again later)"),
                (c.skipped, "skipped"),
                (c.held, "held back (sent by the next send cycle)"),
            ):
                if n:
                    parts.append(f"{n} {words}")
            why = ""
            if c.reasons:
                shown = "; ".join(c.reasons[:REASONS_SHOWN])
                more = len(c.reasons) - REASONS_SHOWN
                why = f" ({shown}{f'; and {more} more' if more > 0 else ''})"
            out.append(f"{LABELS[kind]}: {', '.join(parts)}{why}.")
        return out


@dataclass(frozen=True)
class _Owed:
    id: int
    kind: str
    customer_id: int
    invoice_id: int
    message_id: int | None  # a deferred try's message, sent again with its Message-ID
    payment: dict


def send_pending(
    store: Store,
    config: RunConfig | None = None,
    *,
    at: datetime,
    transport: Transport | None = None,
    transport_factory: Callable[[RunConfig], Transport] | None = None,
    limit: int | None = None,
) -> PortalReport:
    """Send the pending notifications, oldest first, as many as the caps (T6) and ``limit`` allow;
    the rest stay pending. ``config``: the applied config (read from the store when not given).

    The transport is made with ``transport_factory`` only if something is to be sent.
    """
    report = PortalReport()
    with store.session() as session:
        if not has_pending(session):
            return report
        config = config or RunConfig.from_store(session)
    with store.session(write_lock=True) as session:
        settle_interrupted(session)
    opened: list[Transport] = []

    def way_out() -> Transport:
        # Made only once something is to be sent; closed at the end if made here.
        if transport is not None:
            return transport
        if not opened:
            assert transport_factory is not None, "send_pending() needs a transport or a transport_factory"
            opened.append(transport_factory(config))
        return opened[0]

    try:
        after, budget = 0, limit
        stop = False
        while not stop:
            with store.session() as session:
                page = _pending(session, after, PAGE)
                room = _room(session, config, at)
            if not page:
                break
            after = page[-1].id
            rows = _still_wanted(store, config, page, report)
            allowed = room if budget is None else min(room, budget)
            for start in range(0, len(rows), SEND_CHUNK):
                if allowed <= 0:  # the caps (T6) or the limit: the rest waits, pending
                    stop = True
                    break
                tried, go_on = _send_chunk(store, config, rows[start : start + SEND_CHUNK], at, way_out, allowed, report)
                allowed -= tried
                if budget is not None:
                    budget -= tried
                if not go_on:
                    stop = True
                    break
            stop = stop or len(page) < PAGE or budget == 0
    finally:
        for made in opened:
            made.close()
    _count_held(store, report)
    return report


def _pending(session: Session, after: int, count: int) -> list[_Owed]:
    rows = session.execute(
        select(
            notices.c.id,
            notices.c.kind,
            invoices.c.customer_id,  # the invoice's customer now (a merge may have moved it)
            notices.c.message_id,
            messages.c.status.label("message_status"),
            payments.c.external_id,
            payments.c.amount_cents,
            payments.c.paid_on,
            invoices.c.id.label("invoice_id"),
            invoices.c.number,
            invoices.c.currency,
            invoices.c.outstanding_cents,
        )
        .join(payments, payments.c.id == notices.c.payment_id)
        .join(invoices, invoices.c.id == payments.c.invoice_id)
        .outerjoin(messages, messages.c.id == notices.c.message_id)
        .where(notices.c.status == "pending", notices.c.id > after)
        .order_by(notices.c.id)
        .limit(count)
    )
    return [
        _Owed(
            r.id,
            r.kind,
            r.customer_id,
            r.invoice_id,
            r.message_id if r.message_status == "deferred" else None,
            {
                "reference": r.external_id,
                "amount_cents": r.amount_cents,
                "currency": r.currency,
                "paid_on": r.paid_on,
                "invoice_number": r.number,
                "outstanding_cents": r.outstanding_cents,
            },
        )
        for r in rows
    ]


def _room(session: Session, config: RunConfig, at: datetime) -> int:
    """T6: a receipt is a customer email; what the caps leave today and this month."""
    day, month = sent_counts(session, SendingCalendar(config.settings), at)
    caps = config.settings.sending.caps
    return max(0, min(caps.per_day - day, caps.per_month - month))


def _notice(config: RunConfig, kind: str) -> PortalNotice | None:
    notice = getattr(config.settings.notifications, kind, None)
    return notice if isinstance(notice, PortalNotice) else None


def _still_wanted(store: Store, config: RunConfig, rows: list[_Owed], report: PortalReport) -> list[_Owed]:
    """Rows whose notification was disabled (or the portal alias unset) since they were owed: skipped."""
    alias = config.settings.portal.notifications_alias
    off: dict[int, str] = {}
    for r in rows:
        notice = _notice(config, r.kind)
        if notice is None or not notice.enabled:
            off[r.id] = "the notification is disabled in the applied config"
        elif not alias:
            off[r.id] = "no alias is chosen for portal notifications (settings.portal.notifications_alias)"
    if off:
        with store.session(write_lock=True) as session:
            _mark_skipped(session, off)
        for r in rows:
            if r.id in off:
                report.of(r.kind).skipped += 1
                report.of(r.kind).reasons.append(f"payment {r.payment['reference']}: {off[r.id]}")
    return [r for r in rows if r.id not in off]


def _mark_skipped(session: Session, reasons: dict[int, str]) -> None:
    session.execute(
        update(notices)
        .where(notices.c.id == bindparam("nid"), notices.c.status == "pending")
        .values(status="skipped", reason=bindparam("why")),
        [{"nid": nid, "why": why} for nid, why in reasons.items()],
    )


def _count_held(store: Store, report: PortalReport) -> None:
    """What stays pending after this run (past the caps, the limit, or a transport that failed),
    besides the ones deferred now (counted as such)."""
    with store.session() as session:
        left = session.execute(
            select(notices.c.kind, func.count()).where(notices.c.status == "pending").group_by(notices.c.kind)
        ).all()
    for kind, n in left:
        counts = report.of(kind)
        counts.held = max(0, n - counts.deferred)


def _send_chunk(
    store: Store,
    config: RunConfig,
    chunk: list[_Owed],
    at: datetime,
    way_out: Callable[[], Transport],
    allowed: int,
    report: PortalReport,
) -> tuple[int, bool]:
    """Prepare one chunk and send the first ``allowed`` that can be (oldest first): (how many were
    handed to the way out, whether to go on: False past the caps or once the transport failed)."""
    alias = config.settings.portal.notifications_alias
    ready: list[tuple[str, deliver.Ready]] = []
    for kind in KINDS.values():
        mine = [r for r in chunk if r.kind == kind]
        notice = _notice(config, kind)
        if not mine or notice is None:
            continue
        wanted = [
            deliver.Notice(r.customer_id, invoice_ids=[r.invoice_id], extra={"payment": r.payment}, tag=r, reuse_id=r.message_id)
            for r in mine
        ]
        with store.session() as session:
            prepared = deliver.prepare(
                session, config, wanted, template=notice.template, sender_ref=f"alias.{alias}", to=notice.to, at=at
            )
        skipped = {p.notice.tag.id: p.reason for p in prepared if isinstance(p, deliver.Skipped)}
        if skipped:
            # A notice nobody can receive (C6, C9) or whose template fails: said, never retried.
            with store.session(write_lock=True) as session:
                _mark_skipped(session, skipped)
            for p in prepared:
                if isinstance(p, deliver.Skipped):
                    report.of(kind).skipped += 1
                    report.of(kind).reasons.append(f"customer {p.customer['external_id']}: {p.reason}")
        ready += [(kind, p) for p in prepared if isinstance(p, deliver.Ready)]
    ready.sort(key=lambda kp: kp[1].notice.tag.id)
    taken = ready[:allowed]
    for kind in KINDS.values():
        mine_ready = [p for k, p in taken if k == kind]
        if not mine_ready:
            continue
        if not _send_ready(store, config, mine_ready, _template(config, kind), kind, at, way_out(), report):
            return len(taken), False
    return len(taken), len(taken) == len(ready)


def _template(config: RunConfig, kind: str) -> str:
    notice = _notice(config, kind)
    assert notice is not None
    return notice.template


def _send_ready(
    store: Store,
    config: RunConfig,
    ready: list[deliver.Ready],
    template: str,
    kind: str,
    at: datetime,
    transport: Transport,
    report: PortalReport,
) -> bool:
    if not ready:
        return True
    try:
        outcomes = deliver.send(
            store,
            config,
            ready,
            template=template,
            at=at,
            transport=transport,
            reserve=_claim,
            settle=lambda session, outcomes: _record(session, outcomes, at),
        )
    except TransportError as exc:
        # The outcomes are recorded (deferred: back to pending); the rest waits for the setup to be fixed.
        report.fatal = exc
        return False
    except ConflictError:
        # The caps were reached meanwhile (another process sent): these stay pending (counted held back).
        return False
    except DunningOpsError as exc:
        # The store refused the `sending` rows (still pending) or the outcomes (they stay `sending`: never re-sent).
        report.problems.append(str(exc))
        return False
    if not outcomes and len(ready) > 1:
        # Not claimed as a whole: another process sends some of them; one at a time, each its own claim.
        return all(_send_ready(store, config, [r], template, kind, at, transport, report) for r in ready)
    for o in outcomes:
        _count(report, kind, o)
    return True


def _claim(session: Session, recorded: list[Recorded]) -> None:
    """``pending`` → ``sending`` with the message's row, committed with it: two processes never both send one."""
    ids = [r.letter.tag.notice.tag.id for r in recorded]
    claimed = session.execute(
        update(notices).where(notices.c.id.in_(ids), notices.c.status == "pending").values(status="sending")
    )
    if rowcount(claimed) != len(ids):
        raise NotClaimed(f"portal notifications {ids}")
    session.execute(
        update(notices).where(notices.c.id == bindparam("nid")).values(message_id=bindparam("mid")),
        [{"nid": r.letter.tag.notice.tag.id, "mid": r.id} for r in recorded],
    )


# What a notification becomes with its message's outcome; deferred: nothing left, owed again.
_STATUS = {"sent": "sent", "failed": "failed", "unknown": "unknown", "deferred": "pending"}


def _record(session: Session, outcomes: list[Outcome], at: datetime) -> None:
    rows = [
        {
            "nid": o.letter.tag.notice.tag.id,
            "st": _STATUS.get(o.status, "unknown"),
            "why": None if o.status == "sent" else (o.problem or None),
            "at": at if o.status == "sent" else None,
        }
        for o in outcomes
    ]
    if rows:
        session.execute(
            update(notices)
            .where(notices.c.id == bindparam("nid"))
            .values(status=bindparam("st"), reason=bindparam("why"), sent_at=bindparam("at")),
            rows,
        )
    sent = [o for o in outcomes if o.status == "sent"]
    if sent:  # T4: the template's last send; the alias's too
        session.execute(
            update(TemplateRow.__table__).where(TemplateRow.id.in_({o.letter.template_id for o in sent})).values(last_sent_at=at)
        )
        refs = {o.letter.sender_ref or "" for o in sent}
        aliases = {ref.split(".", 1)[1] for ref in refs if ref.startswith("alias.")}
        if aliases:
            session.execute(update(AliasRow.__table__).where(AliasRow.id.in_(aliases)).values(last_sent_at=at))


def _count(report: PortalReport, kind: str, o: Outcome) -> None:
    counts = report.of(kind)
    ready: deliver.Ready = o.letter.tag
    customer = ready.customer["external_id"]
    if o.status == "sent":
        counts.sent += 1
    elif o.status == "failed":
        counts.failed += 1
        counts.reasons.append(f"customer {customer}: {o.problem}")
    elif o.status == "deferred":
        counts.deferred += 1
    else:
        counts.unknown += 1
    report.messages.append(
        {"message_id": o.message_id, "customer": customer, "kind": kind, "status": o.status, "detail": o.problem}
    )
