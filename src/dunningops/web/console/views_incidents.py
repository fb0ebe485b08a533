"""Incidents (T8): the list (by state and rating), one incident with its rating and the notifications
sent, and what a member does: open one (from a customer's page), close it, send a notification
it is owed. The signed-in member is the actor; each change is recorded with them."""

from __future__ import annotations

from urllib.parse import quote

from starlette.responses import Response

from dunningops.errors import InvalidInputError
from dunningops.incidents import notices
from dunningops.incidents.incidents import (
    KINDS,
    MAX_NOTE,
    MAX_OBSERVATIONS,
    close_incident,
    list_incidents,
    open_incident,
    show_incident,
)
from dunningops.web.console.handler import Ask

STATES = ("open", "closed", "all")
RATINGS = ("rated", "unrated")
# What the page says after an action: a code in the address, never text from it.
DONE = {"opened": "The incident is opened.", "closed": "The incident is closed.", "notified": "Done."}
NOTICE = {
    "sent": "The customer was notified.",
    "off": "No notification was sent: it is off for this incident.",
    "not_sent": "The notification could not be sent: see why below.",
    "failed": "The mail server refused the notification.",
    "unknown": "The notification may have reached the mail server (no clear answer): it is not sent again.",
    "deferred": "The notification was not delivered this time: it can be sent again below.",
    "already": "The notification had been recorded before: it is not sent again.",
}


def incident_list(ask: Ask) -> Response:
    state, rating = ask.arg("state") or "open", ask.arg("rating")
    if state not in STATES or (rating and rating not in RATINGS):
        raise InvalidInputError("unknown incident state or rating filter")
    limit, offset = ask.paging()
    with ask.app.session() as session:
        page = list_incidents(
            session,
            state=None if state == "all" else state,
            rating=(rating,) if rating else (),
            limit=limit,
            offset=offset,
        )
    return ask.render(
        "incidents.html",
        nav="incidents",
        incidents=page,
        pager=ask.pager(page.total, len(page), limit, offset),
        state=state,
        rating=rating,
        states=STATES,
        ratings=RATINGS,
    )


def incident_page(ask: Ask) -> Response:
    reference = ask.request.path_params["reference"]
    with ask.app.session() as session:
        incident = show_incident(session, reference)
        waiting = notices.pending(session, ask.config, incident["id"], at=ask.now)
    said = [DONE[code]] if (code := ask.arg("done")) in DONE else []
    if (code := ask.arg("notice")) in NOTICE:
        said.append(NOTICE[code or ""])
    return ask.render(
        "incident.html",
        nav="incidents",
        i=incident,
        waiting=[(r, r.line) for r in waiting],
        can_send=any(r.status == "owed" for r in waiting),
        said=" ".join(said),
        members=ask.config.members,
        max_note=MAX_NOTE,
    )


def _to(ask: Ask, reference: str, done: str, result: dict) -> Response:
    notice = (result.get("notification") or {}).get("status")
    query = f"?done={done}" + (f"&notice={notice}" if notice in NOTICE else "")
    return ask.redirect(f"/incidents/{quote(reference, safe='')}{query}")


def _notify(ask: Ask) -> bool | None:
    return {"default": None, "yes": True, "no": False}.get(ask.form.get("notify", "default"))


def incident_open(ask: Ask) -> Response:
    """Open an incident of the customer named in the form (the customer's page), the member as its actor."""
    customer = ask.field("customer", max_length=128) or ""
    kind = ask.field("kind", max_length=20) or ""
    if kind not in KINDS:
        raise InvalidInputError("choose the kind of incident")
    invoice = ask.field("invoice", required=False, max_length=128)
    observations = ask.field("observations", max_length=MAX_OBSERVATIONS) or ""
    result = open_incident(
        ask.app.store,
        customer=customer,
        invoice=invoice,
        kind=kind,
        observations=observations,
        notify=_notify(ask),
        actor=ask.member_id,
        at=ask.now,
        origin="console",
        transport_factory=ask.app.transport,
        on_change=lambda s, ref: ask.record(s, "incident.open", f"incident:{ref}", customer=customer, invoice=invoice),
    )
    return _to(ask, result["reference"], "opened", result)


def incident_action(ask: Ask) -> Response:
    """Close the incident, or send the notifications it is owed."""
    reference = ask.request.path_params["reference"]
    action = ask.field("action", max_length=20)
    if action == "close":
        note = ask.field("note", required=False, max_length=MAX_NOTE)
        result = close_incident(
            ask.app.store,
            reference,
            note=note,
            notify=_notify(ask),
            actor=ask.member_id,
            at=ask.now,
            transport_factory=ask.app.transport,
            on_change=lambda s, ref: ask.record(s, "incident.close", f"incident:{ref}", note=note),
        )
        return _to(ask, reference, "closed", result)
    if action == "notify":
        results = notices.send_owed(ask.app.store, reference, at=ask.now, transport_factory=ask.app.transport)
        with ask.change() as session:
            ask.record(session, "incident.notify", f"incident:{reference}", sent=[r.event for r in results if r.status == "sent"])
        last = next((r for r in reversed(results) if r.status not in ("already", "off")), None)
        return _to(ask, reference, "notified", {"notification": last.to_dict() if last else None})
    raise InvalidInputError("unknown action")
