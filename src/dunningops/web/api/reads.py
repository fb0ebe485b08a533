"""GET /api/v1/…: customers with their state, one customer's picture, its to-dos and its message
history, the to-dos; from the engine's own reads (those `customers list|show`, `todo list` and
`messages` call)."""

from __future__ import annotations

from typing import Any

from dunningops.dunning.todos import list_todos
from dunningops.ledger.queries import customer_id, list_customers, show_customer
from dunningops.outgoing.history import list_messages
from dunningops.store.schema import CustomerRow, TodoRow
from dunningops.web.api.http import Call
from dunningops.web.api.models import CustomerDetail, CustomerPage, MessageList, TodoList, shape
from dunningops.web.context import WebContext

TODO_STATUSES = ("open", "done", "dismissed", "sent", "all")
todos, customers = TodoRow.__table__, CustomerRow.__table__


def customers_page(ctx: WebContext, call: Call) -> dict[str, Any]:
    q = call.query
    with ctx.app.session() as session:
        page = list_customers(
            session,
            today=ctx.app.now().date(),
            origin=q["origin"],
            plan=q["plan"],
            overdue_days=q["overdue_days"],
            limit=q["limit"],
            offset=q["offset"],
        )
    return shape(CustomerPage, {"total": page.total, "offset": page.offset, "limit": q["limit"], "customers": page.rows})


def customer_detail(ctx: WebContext, call: Call) -> dict[str, Any]:
    with ctx.app.session() as session:
        data = show_customer(session, call.path["external_id"], ctx.app.now().date(), mail_limit=0)
    return shape(CustomerDetail, data)


def customer_todos(ctx: WebContext, call: Call) -> dict[str, Any]:
    status = call.query["status"]
    with ctx.app.session() as session:
        cid = customer_id(session, call.path["external_id"])
        rows = list_todos(session, status=None if status == "all" else status, customer_id=cid, limit=call.query["limit"])
    return shape(TodoList, {"todos": rows})


def customer_messages(ctx: WebContext, call: Call) -> dict[str, Any]:
    external_id = call.path["external_id"]
    with ctx.app.session() as session:
        customer_id(session, external_id)  # 404 for a customer that does not exist (not an empty history)
        rows = list_messages(session, customer=external_id, limit=call.query["limit"])
    return shape(MessageList, {"messages": rows})


def all_todos(ctx: WebContext, call: Call) -> dict[str, Any]:
    q = call.query
    with ctx.app.session() as session:
        rows = list_todos(
            session,
            status=None if q["status"] == "all" else q["status"],
            assignee=q["assignee"],
            kind=q["kind"],
            limit=q["limit"],
        )
    return shape(TodoList, {"todos": rows})
