"""To-dos (E1): the list, one to-do with what it prepared, and what a member does with it: mark it
done, dismiss it, or send its email (A6: from the sender it preselected, or another allowed one;
a reply to-do: the member's answer, in the customer's thread, R1)."""

from __future__ import annotations

from sqlalchemy import select
from starlette.responses import Response

from dunningops.dunning import letters, todos
from dunningops.dunning.manual import MAX_ANSWER, send_todo
from dunningops.dunning.runconfig import RunConfig
from dunningops.errors import InvalidInputError
from dunningops.store.schema import CustomerRow
from dunningops.web.console import queries
from dunningops.web.console.handler import Ask

STATUSES = ("open", "done", "dismissed", "sent", "all")
KINDS = ("email", "call", "letter", "reply", "bounce", "no_recipient", "promise_broken")
KIND_LABELS = {
    "email": "Manual email",
    "call": "Call",
    "letter": "Letter",
    "reply": "Reply to answer",
    "bounce": "Undelivered email",
    "no_recipient": "Nobody to write to",
    "promise_broken": "Promise to pay broken",
}


def todo_list(ask: Ask) -> Response:
    status = ask.arg("status") or "open"
    kind = ask.arg("kind")
    if status not in STATUSES or (kind and kind not in KINDS):
        raise InvalidInputError("unknown to-do status or kind")
    mine = ask.arg("mine") == "1"
    limit, offset = ask.paging()
    with ask.app.session() as session:
        page = queries.todos_page(
            session,
            status=None if status == "all" else status,
            assignee=ask.member_id if mine else None,
            kind=kind,
            limit=limit,
            offset=offset,
        )
    return ask.render(
        "todos.html",
        nav="todos",
        todos=page,
        pager=ask.pager(page.total, len(page), limit, offset),
        status=status,
        kind=kind,
        mine=mine,
        statuses=STATUSES,
        kinds=KINDS,
        labels=KIND_LABELS,
        members=ask.config.members,
    )


def sender_choices(config: RunConfig, manager: str | None, preselected: str | None) -> list[tuple[str, str]]:
    """A6: who a manual email may be from: an alias, the customer's account manager, or a named member."""
    company = config.settings.company.name
    choices: list[tuple[str, str]] = []
    for alias_id, alias in sorted(config.aliases.items()):
        label = f"{alias['display_name']} <{alias['email']}>"
        if not alias["verified"]:
            label += f" (not verified yet: sent as {company})"
        choices.append((f"alias.{alias_id}", label))
    if manager and manager in config.members:
        m = config.members[manager]
        choices.append(("account_manager", f"The account manager, {m['name']} <{m['email']}>"))
    for member_id, m in sorted(config.members.items()):
        choices.append((f"member.{member_id}", f"{m['name']} <{m['email']}>"))
    if preselected and preselected not in {ref for ref, _ in choices}:
        # The step's sender could not be used when it was prepared (the company's address stood in).
        choices.insert(0, (preselected, f"{company} <{config.settings.deliverability.fallback_sender}>"))
    return choices


def _todo(ask: Ask) -> tuple[dict, list[tuple[str, str]], str | None, dict | None]:
    todo_id = ask.path_id("todo_id")
    with ask.app.session() as session:
        todo = todos.get(session, todo_id)
        manager = session.scalar(select(CustomerRow.account_manager).where(CustomerRow.id == todo["customer_id"]))
        sent = queries.sent_from_todo(session, todo_id, todo["customer_id"])
    payload = todo["payload"] or {}
    preselected = f"member.{ask.member_id}" if todo["kind"] == "reply" else payload.get("sender")
    return todo, sender_choices(ask.config, manager, preselected), preselected, sent


def todo_page(ask: Ask) -> Response:
    todo, choices, preselected, sent = _todo(ask)
    payload = todo["payload"] or {}
    letter, postal = None, None
    if todo["kind"] == "letter":
        company = ask.config.settings.company
        with ask.app.session() as session:
            letter = letters.describe(session, todo["id"])
            postal = letters.postal_address(session, todo["customer_id"], company.country, company.locale)
    can_send = todo["status"] == "open" and (
        todo["kind"] == "reply" or (todo["kind"] == "email" and bool(payload.get("subject")))
    )
    return ask.render(
        "todo.html",
        nav="todos",
        todo=todo,
        payload=payload,
        label=KIND_LABELS.get(todo["kind"], todo["kind"]),
        choices=choices,
        preselected=preselected,
        can_send=can_send,
        sent=sent,
        members=ask.config.members,
        max_answer=MAX_ANSWER,
        letter=letter,
        postal=postal,
    )


def todo_letter(ask: Ask) -> Response:
    """The letter to-do's PDF, to print: made on first request, then the same document every time."""
    doc = letters.document(ask.app.store, ask.path_id("todo_id"), ask.now)
    headers = {
        "Content-Disposition": f'attachment; filename="{doc.name}"',  # the name is ASCII letters, digits, . - _
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }
    return Response(doc.data, media_type=letters.PDF, headers=headers)


def _close(ask: Ask, status: str, flash: str) -> Response:
    todo_id = ask.path_id("todo_id")
    with ask.change() as session:
        todos.close(session, todo_id, status, ask.member_id, ask.now)
        ask.record(session, f"todo.{'done' if status == 'done' else 'dismiss'}", f"todo:{todo_id}")
    return ask.redirect(f"/todos/{todo_id}", flash)


def todo_done(ask: Ask) -> Response:
    return _close(ask, "done", "done")


def todo_dismiss(ask: Ask) -> Response:
    return _close(ask, "dismissed", "dismissed")


def todo_send(ask: Ask) -> Response:
    """The prepared email (or the answer to a reply) through the one way out, at most once (dunning/manual.py)."""
    todo, choices, _, _ = _todo(ask)
    todo_id = todo["id"]
    sender = ask.field("sender", max_length=200)
    if sender not in {ref for ref, _ in choices}:
        raise InvalidInputError("choose the sender among the ones offered")
    answer = None
    if todo["kind"] == "reply":
        answer = ask.field("answer", max_length=MAX_ANSWER)
        if answer is not None and not answer.strip():
            raise InvalidInputError("write the answer to send")
    send_todo(
        ask.app.store,
        todo_id,
        at=ask.now,
        sender=sender,
        member=ask.member_id,
        transport_factory=ask.app.transport,
        text=answer,
        # What the member did, in the transaction that takes the to-do (before the email leaves).
        on_claim=lambda session: ask.record(session, "todo.send", f"todo:{todo_id}", sender=sender, customer=todo["customer"]),
    )
    return ask.redirect(f"/todos/{todo_id}", "sent")
