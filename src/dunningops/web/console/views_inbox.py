"""The inbox (R1): replies, auto-replies, bounces and complaints; one message, re-linked to another
customer or deleted (R8: the reply to-dos follow, and the customers' next actions are computed again)."""

from __future__ import annotations

from starlette.responses import Response

from dunningops.errors import InvalidInputError
from dunningops.inbox import people
from dunningops.web.console.handler import Ask

STATUSES = ("linked", "ignored", "quarantined", "all")
KINDS = ("reply", "auto_reply", "bounce", "complaint")
KIND_LABELS = {"reply": "Reply", "auto_reply": "Auto-reply", "bounce": "Bounce", "complaint": "Spam complaint"}
# How a message found its customer (R5), in words.
MATCHED_BY = {
    "in_reply_to": "it answers one of our emails",
    "references": "it answers one of our emails",
    "bounce_original": "it returns one of our emails",
    "sender": "the sender is one of its contacts",
    "recipient": "the failed address is one of its contacts",
    "relinked": "linked by hand",
    "temporary": "a temporary customer made for its sender",
}


def inbox_list(ask: Ask) -> Response:
    status, kind = ask.arg("status") or "linked", ask.arg("kind")
    if status not in STATUSES or (kind and kind not in KINDS):
        raise InvalidInputError("unknown message status or kind")
    limit, offset = ask.paging()
    with ask.app.session() as session:
        rows, total = people.list_inbox(
            session, status=None if status == "all" else status, kind=kind, limit=limit, offset=offset
        )
    return ask.render(
        "inbox.html",
        nav="inbox",
        messages=rows,
        pager=ask.pager(total, len(rows), limit, offset),
        status=status,
        kind=kind,
        statuses=STATUSES,
        kinds=KINDS,
        labels=KIND_LABELS,
    )


def inbox_page(ask: Ask) -> Response:
    inbox_id = ask.path_id("inbox_id")
    with ask.app.session() as session:
        row = people.get(session, inbox_id)
    row.pop("raw", None)  # a quarantined message's bytes: for `inbox show --raw`, never a page
    return ask.render("inbox_message.html", nav="inbox", m=row, labels=KIND_LABELS, matched_by=MATCHED_BY)


def inbox_relink(ask: Ask) -> Response:
    inbox_id = ask.path_id("inbox_id")
    customer = ask.field("customer", max_length=128) or ""
    with ask.change() as session:
        notes = people.relink(session, inbox_id, customer, at=ask.now, by=ask.member_id)
        ask.record(session, "inbox.relink", f"inbox:{inbox_id}", customer=customer, notes=notes)
    return ask.redirect(f"/inbox/{inbox_id}", "relinked")


def inbox_delete(ask: Ask) -> Response:
    inbox_id = ask.path_id("inbox_id")
    if ask.form.get("confirm") != "yes":
        raise InvalidInputError("tick the box to confirm the deletion")
    with ask.change() as session:
        notes = people.delete(session, inbox_id, at=ask.now, by=ask.member_id)
        ask.record(session, "inbox.delete", f"inbox:{inbox_id}", notes=notes)
    return ask.redirect("/inbox", "deleted")
