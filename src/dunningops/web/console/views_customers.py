"""Customers: the list, and one customer's picture (contacts, open invoices, the active pause) with
its timeline of mail sent and received, to-dos and pauses (R1, E6); pausing and resuming it."""

from __future__ import annotations

from datetime import date
from urllib.parse import quote

from starlette.responses import Response

from dunningops.dunning.pauses import LABELS, REASONS, company_today, pause_customer, resume_customer
from dunningops.dunning.runconfig import RunConfig
from dunningops.errors import InvalidInputError
from dunningops.ledger.queries import RATING_STATUSES, show_customer
from dunningops.web.console import queries
from dunningops.web.console.handler import Ask

ORIGINS = ("import", "manual", "incoming_message")


def customer_list(ask: Ask) -> Response:
    search, origin, rating = ask.arg("q"), ask.arg("origin"), ask.arg("rating")
    if origin and origin not in ORIGINS:
        raise InvalidInputError("unknown customer origin")
    if rating and rating not in RATING_STATUSES:
        raise InvalidInputError("unknown rating status")
    limit, offset = ask.paging()
    with ask.app.session() as session:
        today = company_today(session, ask.now)
        page = queries.customers_page(
            session, today=today, search=search, origin=origin, rating=rating, limit=limit, offset=offset
        )
    return ask.render(
        "customers.html",
        nav="customers",
        customers=page,
        pager=ask.pager(page.total, len(page), limit, offset),
        q=search or "",
        origin=origin,
        origins=ORIGINS,
        rating=rating,
        ratings=RATING_STATUSES,
    )


def customer_page(ask: Ask) -> Response:
    external_id = ask.request.path_params["external_id"]
    limit, offset = ask.paging()
    with ask.app.session() as session:
        today = company_today(session, ask.now)
        # The timeline below has the mail (a page of it); the head, contacts, invoices and pauses come from here.
        customer = show_customer(session, external_id, today, mail_limit=0)
        events = queries.timeline(session, customer["id"], limit=limit, offset=offset)
    return ask.render(
        "customer.html",
        nav="customers",
        c=customer,
        events=events,
        pager=ask.pager(events.total, len(events), limit, offset),
        today=today,
        reasons=[(r, LABELS[r]) for r in REASONS],
        members=ask.config.members,
        names=_names(ask.config),
    )


def _names(config: RunConfig) -> dict[str, str]:
    """A sender or member reference (``alias.billing``, ``member.bob``, ``bob``) as people read it (A8)."""
    names = {"fallback": config.settings.company.name}
    names.update({f"alias.{a}": alias["display_name"] for a, alias in config.aliases.items()})
    for m, member in config.members.items():
        names[m] = names[f"member.{m}"] = member["name"]
    return names


def customer_action(ask: Ask) -> Response:
    """Pause the customer until a date, for a reason; or resume it now."""
    external_id = ask.request.path_params["external_id"]
    action = ask.field("action", max_length=20)
    with ask.change() as session:
        if action == "pause":
            until, reason = _day(ask.field("until", max_length=10) or ""), ask.field("reason", max_length=20)
            if reason not in REASONS:
                raise InvalidInputError("choose the reason for the pause")
            note = ask.field("note", required=False, max_length=2000)
            pause_customer(session, external_id, until=until, reason=reason, note=note, by=ask.member_id, now=ask.now)
            ask.record(session, "customer.pause", f"customer:{external_id}", until=until.isoformat(), reason=reason, note=note)
            flash = "paused"
        elif action == "resume":
            resume_customer(session, external_id, by=ask.member_id, now=ask.now)
            ask.record(session, "customer.resume", f"customer:{external_id}")
            flash = "resumed"
        else:
            raise InvalidInputError("unknown action")
    return ask.redirect(f"/customers/{quote(external_id, safe='')}", flash)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInputError(f"{text!r} is not a date (YYYY-MM-DD)") from None
