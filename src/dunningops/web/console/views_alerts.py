"""Alerts (C9) to acknowledge, and contacts marked invalid by a bounce, to mark valid again (C10)."""

from __future__ import annotations

from starlette.responses import Response

from dunningops.alerts import store as alert_store
from dunningops.alerts.common import KIND_LABELS
from dunningops.ledger.contacts import mark_valid
from dunningops.ledger.queries import list_contacts
from dunningops.web.console.handler import Ask


def alert_list(ask: Ask) -> Response:
    everything = ask.arg("all") == "1"
    limit, offset = ask.paging()
    with ask.app.session() as session:
        page = alert_store.list_alerts(session, acked=None if everything else False, limit=limit, offset=offset)
    return ask.render(
        "alerts.html",
        nav="alerts",
        alerts=page,
        pager=ask.pager(page.total, len(page), limit, offset),
        everything=everything,
        labels=KIND_LABELS,
    )


def alert_ack(ask: Ask) -> Response:
    alert_id = ask.path_id("alert_id")
    with ask.change() as session:
        if alert_store.ack(session, [alert_id], by=ask.member_id, at=ask.now):
            ask.record(session, "alert.ack", f"alert:{alert_id}")
    return ask.redirect("/alerts", "acked")


def alert_ack_all(ask: Ask) -> Response:
    with ask.change() as session:
        count = alert_store.ack_all(session, by=ask.member_id, at=ask.now)
        if count:
            ask.record(session, "alert.ack_all", "alerts", count=count)
    return ask.redirect("/alerts", "acked_all")


def invalid_contacts(ask: Ask) -> Response:
    limit, offset = ask.paging()
    with ask.app.session() as session:
        page = list_contacts(session, invalid=True, limit=limit, offset=offset)
    return ask.render(
        "contacts_invalid.html", nav="contacts", contacts=page, pager=ask.pager(page.total, len(page), limit, offset)
    )


def contact_mark_valid(ask: Ask) -> Response:
    contact_id = ask.path_id("contact_id")
    with ask.change() as session:
        mark_valid(session, contact_id, ask.now)
        ask.record(session, "contact.mark_valid", f"contact:{contact_id}")
    return ask.redirect("/contacts/invalid", "valid")
