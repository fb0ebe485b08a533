"""``/api/v1``: JSON for the systems around dunningops (C7: contacts and their functions "by API").

Accounting systems push the ledger (upserts with the CSV import's checks, all or nothing per
request) and read customers' state, to-dos and message history, with a token from
``dunningops token create`` (tokens.py). ``ENDPOINTS`` is the one table both served (http.py)
and described (openapi.py, at ``/api/v1/openapi.json``).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from dunningops.web.api import reads
from dunningops.web.api.http import PREFIX, Endpoint, Param, fallback, route
from dunningops.web.api.models import CustomerDetail, CustomerPage, MessageList, TodoList, UpsertResult
from dunningops.web.api.openapi import OPENAPI_PATH, build_openapi
from dunningops.web.api.upserts import upsert
from dunningops.web.context import WebContext

__all__ = ["ENDPOINTS", "routes"]

_WRITE_ERRORS = (400, 403, 409, 413, 422)
_LIMIT = "At most this many."


def _upsert(kind: str, what: str) -> Endpoint:
    return Endpoint(
        "POST",
        f"/{kind}",
        f"upsert_{kind}",
        f"Create or update {what}",
        "write",
        upsert(kind),
        UpsertResult,
        body=kind,
        errors=_WRITE_ERRORS,
        description=(
            f"Upserts {what} as `dunningops ledger import {kind}` does: the same checks and messages, and an item is "
            "the whole record, as a row is (a field left out is emptied). The same items posted again change nothing "
            "(all `unchanged`). One invalid item and nothing is written (422, every problem with its item's index and "
            "field)."
        ),
    )


ENDPOINTS: list[Endpoint] = [
    _upsert("customers", "customers (by external id)"),
    _upsert("contacts", "contacts (by customer and email): functions, primary contact, validity"),
    _upsert("invoices", "invoices (by external id)"),
    _upsert("payments", "payments and credit notes (by external id)"),
    Endpoint(
        "GET",
        "/customers",
        "list_customers",
        "Customers with their state: plan, open balance, days overdue, pause",
        "read",
        reads.customers_page,
        CustomerPage,
        params=(
            Param("limit", _LIMIT, "int", 100, 1, 1000),
            Param("offset", "Skip this many first.", "int", 0, 0, 10**9),
            Param("plan", "Only customers in this plan."),
            Param("origin", "Only customers of this origin.", choices=("import", "manual", "incoming_message")),
            Param("overdue_days", "Only customers with an open invoice at least this many days overdue.", "int", None, 0, 36_500),
        ),
        errors=(400,),
    ),
    Endpoint(
        "GET",
        "/customers/{external_id}",
        "get_customer",
        "One customer: contacts, open invoices, pauses",
        "read",
        reads.customer_detail,
        CustomerDetail,
        errors=(404,),
    ),
    Endpoint(
        "GET",
        "/customers/{external_id}/todos",
        "list_customer_todos",
        "One customer's to-dos",
        "read",
        reads.customer_todos,
        TodoList,
        params=(
            Param("status", "Default: open.", default="open", choices=reads.TODO_STATUSES),
            Param("limit", _LIMIT, "int", 200, 1, 1000),
        ),
        errors=(400, 404),
    ),
    Endpoint(
        "GET",
        "/customers/{external_id}/messages",
        "list_customer_messages",
        "One customer's message history, newest first",
        "read",
        reads.customer_messages,
        MessageList,
        params=(Param("limit", _LIMIT, "int", 100, 1, 1000),),
        errors=(400, 404),
    ),
    Endpoint(
        "GET",
        "/todos",
        "list_todos",
        "To-dos for the team",
        "read",
        reads.all_todos,
        TodoList,
        params=(
            Param("status", "Default: open.", default="open", choices=reads.TODO_STATUSES),
            Param("assignee", "Only this member's."),
            Param("kind", "Only this kind (email, call, letter, reply, …)."),
            Param("limit", _LIMIT, "int", 200, 1, 1000),
        ),
        errors=(400,),
    ),
]


def routes(ctx: WebContext) -> list[BaseRoute]:
    """The API's routes, its description, and a JSON 404/405 for anything else under /api/v1."""
    document = build_openapi(ENDPOINTS)

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    served = [(e.method, e.path) for e in ENDPOINTS] + [("GET", OPENAPI_PATH)]
    return [
        *(route(ctx, e) for e in ENDPOINTS),
        Route(PREFIX + OPENAPI_PATH, openapi, methods=["GET"], name="api.openapi"),
        fallback(served),
    ]
