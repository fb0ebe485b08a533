"""Alerts by email: one email per alert, or a digest of several, to ``settings.alerts.email_to``, from
the fallback sender, through the one way out (``outgoing.send``): at most once, since each alert's
email channel is claimed in the transaction that records the message ``sending``.

Ratings (T8) go to their own addresses: ``settings.notifications.rating.to``, else ``email_to``,
else the owners, whether announced at once or retried later (the daemon, ``alerts announce``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dunningops import outgoing
from dunningops.alerts import store as alert_store
from dunningops.alerts.common import (
    DIGEST_SIZE,
    KIND_LABELS,
    MAX_SUBJECT_TITLE,
    MAX_VALUE,
    AnnounceReport,
    customer_of,
    details_of,
    leave_waiting,
    one_line,
)
from dunningops.errors import DunningOpsError
from dunningops.outgoing import Letter, NotClaimed, Outcome, Recorded
from dunningops.spec.models import Settings
from dunningops.transport.base import Transport, TransportError
from dunningops.transport.message import Address, OutgoingMessage


def email_text(row: dict[str, Any]) -> str:
    """The alert email's plain text: the title, what it is about, a few details, how to act on it."""
    lines = [one_line(row["title"], 1000), "", f"What:      {KIND_LABELS.get(row['kind'], row['kind'])}"]
    if (customer := customer_of(row)) is not None:
        lines.append(f"Customer:  {customer}")
    if row.get("contact_email"):
        lines.append(f"Contact:   {row['contact_email']}")
    if row.get("created_at") is not None:
        lines.append(f"When:      {row['created_at']:%Y-%m-%d %H:%M} UTC")
    details = details_of(row)
    if details:
        lines += ["", *(f"{k}: {v}" for k, v in details)]
    lines += [
        "",
        f"See it with `dunningops alerts show {row['id']}`; acknowledge it with `dunningops alerts ack {row['id']}`.",
    ]
    return "\n".join(lines) + "\n"


def _owners(store) -> list[str]:
    from sqlalchemy import select

    from dunningops.store.schema import MemberRow

    with store.session() as session:
        return list(session.scalars(select(MemberRow.email).where(MemberRow.role == "owner").order_by(MemberRow.id)))


def _groups(store, rows: list[dict[str, Any]], settings: Settings) -> list[tuple[tuple[str, ...], list[dict[str, Any]]]]:
    """The alerts by the addresses their email goes to, in order (one group unless there are ratings)."""
    team = tuple(settings.alerts.email_to)
    owners: list[str] | None = None
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        to = team
        if row["kind"] == "rating":
            to = tuple(settings.notifications.rating.to) or team
            if not to:
                owners = _owners(store) if owners is None else owners
                to = tuple(owners)
        groups.setdefault(to, []).append(row)
    return list(groups.items())


def _letter(row: dict[str, Any], settings: Settings, at: datetime, to: tuple[str, ...] = ()) -> Letter:
    company = settings.company.name
    return Letter(
        message=OutgoingMessage(
            message_id="",
            # From the fallback sender, as the other system emails: always an address we may send from.
            from_=Address(settings.deliverability.fallback_sender, company),
            to=[Address(a) for a in to or settings.alerts.email_to],
            subject=f"[{company}] {KIND_LABELS.get(row['kind'], 'Alert')}: {one_line(row['title'], MAX_SUBJECT_TITLE)}",
            text=email_text(row),
            headers={"Auto-Submitted": "auto-generated", "X-Dunningops-Alert": str(row["id"])},
            date=at,
        ),
        # Not counted against the caps (T6), and no customer: the email goes to the team, so neither
        # the minimum delay between a customer's emails nor C9's refused-recipient rule may see it.
        kind="alert",
        automatic=True,
        tag=row["id"],
    )


def _email_outcome(outcome: Outcome) -> str:
    if outcome.status == "failed":
        return f"failed: {one_line(outcome.problem, MAX_VALUE)}"
    return outcome.status  # sent | deferred | unknown


def announce_by_email(
    store,
    rows: list[dict[str, Any]],
    settings: Settings,
    transport: Transport | None,
    at: datetime,
    domain: str,
    report: AnnounceReport,
) -> None:
    if transport is None:
        leave_waiting(rows, "email", "no transport to send with", report)
        return
    groups = _groups(store, rows, settings)
    if len(groups) > 1:
        for _, group in groups:
            announce_by_email(store, group, settings, transport, at, domain, report)
        return
    to = groups[0][0] if groups else ()
    if not to:
        leave_waiting(rows, "email", "nobody to send the alert to", report)
        return
    # An import that reads 800 bounces sends the team a few digests, not 800 emails.
    chunks = [rows[start : start + DIGEST_SIZE] for start in range(0, len(rows), DIGEST_SIZE)]
    for n, chunk in enumerate(chunks):
        ids = [row["id"] for row in chunk]

        # Defs, not lambdas: mypy cannot infer a lambda's type with a default argument.
        def reserve(session, recorded: list[Recorded], ids: list[int] = ids) -> None:
            # All or nothing: an alert another process took makes the whole digest step back (below).
            if not all(alert_store.claim(session, alert_id, "email") for alert_id in ids):
                raise NotClaimed(f"alerts {ids}")

        def settle(session, outcomes: list[Outcome], ids: list[int] = ids) -> None:
            for o in outcomes:
                for alert_id in ids:
                    alert_store.set_channel(session, alert_id, "email", _email_outcome(o))

        try:
            letters = [_letter(chunk[0], settings, at, to) if len(chunk) == 1 else _digest(chunk, settings, at, to)]
            outcomes = outgoing.send(store, transport, letters, at=at, domain=domain, reserve=reserve, settle=settle)
            if not outcomes and len(chunk) > 1:
                # Not claimed as a whole (another process announces some of them): one email each.
                for row in chunk:
                    announce_by_email(store, [row], settings, transport, at, domain, report)
                continue
        except TransportError as exc:
            # The transport cannot work as configured: these alerts' outcome (deferred) is recorded;
            # the rest wait, pending, for the setup to be fixed.
            report.failed["email"] = report.failed.get("email", 0) + len(chunk)
            report.problems.append(f"email: alerts {_ids(ids)}: {exc}")
            rest = [row for later in chunks[n + 1 :] for row in later]
            if rest:
                leave_waiting(rest, "email", "the transport cannot send", report)
            return
        except DunningOpsError as exc:
            # The store refused the rows (nothing sent, still pending) or the outcome (stays `sending`).
            report.failed["email"] = report.failed.get("email", 0) + len(chunk)
            report.problems.append(f"email: alerts {_ids(ids)}: {exc}")
            continue
        for o in outcomes:
            if o.status == "sent":
                report.counts["email"] = report.counts.get("email", 0) + len(chunk)
            else:
                report.failed["email"] = report.failed.get("email", 0) + len(chunk)
                report.problems.append(f"email: alerts {_ids(ids)}: {_email_outcome(o)}")


def _ids(ids: list[int]) -> str:
    return ", ".join(f"#{i}" for i in ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")


def _digest(rows: list[dict[str, Any]], settings: Settings, at: datetime, to: tuple[str, ...] = ()) -> Letter:
    """Several alerts in one email: a count by kind in the subject, each alert's text in the body."""
    company = settings.company.name
    kinds: dict[str, int] = {}
    for row in rows:
        kinds[row["kind"]] = kinds.get(row["kind"], 0) + 1
    what = ", ".join(f"{n} {KIND_LABELS.get(k, k).lower()}" for k, n in sorted(kinds.items()))
    body = f"{len(rows)} alerts ({what}).\n\n" + "\n---\n\n".join(email_text(row) for row in rows)
    return Letter(
        message=OutgoingMessage(
            message_id="",
            from_=Address(settings.deliverability.fallback_sender, company),
            to=[Address(a) for a in to or settings.alerts.email_to],
            subject=f"[{company}] {len(rows)} alerts: {what}",
            text=body,
            headers={"Auto-Submitted": "auto-generated", "X-Dunningops-Alert": ",".join(str(r["id"]) for r in rows)},
            date=at,
        ),
        kind="alert",
        automatic=True,
        tag=rows[0]["id"],
    )
