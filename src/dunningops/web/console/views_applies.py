"""The home page, and the applies of the config (the audit trail) with what each one's plan changed."""

from __future__ import annotations

from starlette.responses import Response

from dunningops.alerts import store as alert_store
from dunningops.alerts.common import KIND_LABELS
from dunningops.web.console import queries
from dunningops.web.console.handler import Ask
from dunningops.web.console.views_todos import KIND_LABELS as TODO_LABELS

# Terraform's words and symbols: a user's habits are an interface.
SYMBOLS = {"create": "+", "update": "~", "replace": "-/+", "delete": "-", "move": "→"}
WORDS = {
    "create": "created",
    "update": "updated in place",
    "replace": "replaced",
    "delete": "destroyed",
    "move": "moved",
}


def overview(ask: Ask) -> Response:
    with ask.app.session() as session:
        counts = queries.overview(session, ask.member_id)
        mine = queries.todos_page(session, status="open", assignee=ask.member_id, limit=10)
        alerts = alert_store.list_alerts(session, acked=False, limit=5)
    return ask.render(
        "overview.html", nav="home", counts=counts, mine=mine, alerts=alerts, alert_labels=KIND_LABELS, labels=TODO_LABELS
    )


def apply_list(ask: Ask) -> Response:
    limit, offset = ask.paging()
    with ask.app.session() as session:
        page = queries.applies_page(session, limit=limit, offset=offset)
    return ask.render("applies.html", nav="applies", applies=page, pager=ask.pager(page.total, len(page), limit, offset))


def apply_page(ask: Ask) -> Response:
    with ask.app.session() as session:
        row = queries.one_apply(session, ask.path_id("apply_id"))
    return ask.render("apply.html", nav="applies", a=row, symbols=SYMBOLS, words=WORDS, plans=ask.config.plans)
