"""The team console: server-rendered pages (Jinja2, no JavaScript) for signed-in members.

* ``handler.py``: how a request is served (member, CSRF, errors as pages);
* ``auth.py``: sessions, the trusted proxy's header, CSRF tokens; ``credentials.py``: passwords
  (argon2id); ``throttle.py``: the sign-in throttle;
* ``views_*.py``: the pages and their actions (customers, inbox, to-dos, alerts, applies, apply, incidents),
  through the engine's functions; every change is recorded with its member (``store/activity.py``, ``via="console"``);
* ``queries.py``: the paginated reads the engine lacks; ``render.py``: templates, dates, pages.

Mounted at ``/``: the other parts of the server own ``/healthz``, ``/metrics``, ``/api/v1`` and ``/l/``.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from dunningops.web.console import (
    views_alerts,
    views_applies,
    views_apply,
    views_auth,
    views_customers,
    views_inbox,
    views_incidents,
    views_todos,
)
from dunningops.web.console.handler import Console
from dunningops.web.console.render import STATIC
from dunningops.web.context import WebContext

GET, POST = ["GET"], ["POST"]


def routes(ctx: WebContext) -> list[BaseRoute]:
    """The console's routes, served by one ``Console`` (its templates and sign-in throttle)."""
    c = Console(ctx)
    page = c.endpoint
    return [
        Route("/", page(views_applies.overview), methods=GET),
        Route("/signin", page(views_auth.signin_page, public=True), methods=GET),
        Route("/signin", page(views_auth.signin, public=True), methods=POST),
        Route("/signout", page(views_auth.signout), methods=POST),
        Route("/todos", page(views_todos.todo_list), methods=GET),
        Route("/todos/{todo_id:int}", page(views_todos.todo_page), methods=GET),
        Route("/todos/{todo_id:int}/done", page(views_todos.todo_done), methods=POST),
        Route("/todos/{todo_id:int}/dismiss", page(views_todos.todo_dismiss), methods=POST),
        Route("/todos/{todo_id:int}/send", page(views_todos.todo_send), methods=POST),
        Route("/todos/{todo_id:int}/letter.pdf", page(views_todos.todo_letter), methods=GET),
        Route("/inbox", page(views_inbox.inbox_list), methods=GET),
        Route("/inbox/{inbox_id:int}", page(views_inbox.inbox_page), methods=GET),
        Route("/inbox/{inbox_id:int}/relink", page(views_inbox.inbox_relink), methods=POST),
        Route("/inbox/{inbox_id:int}/delete", page(views_inbox.inbox_delete), methods=POST),
        Route("/customers", page(views_customers.customer_list), methods=GET),
        Route("/customers/{external_id:path}", page(views_customers.customer_page), methods=GET),
        Route("/customers/{external_id:path}", page(views_customers.customer_action), methods=POST),
        Route("/incidents", page(views_incidents.incident_list), methods=GET),
        Route("/incidents", page(views_incidents.incident_open), methods=POST),
        Route("/incidents/{reference:path}", page(views_incidents.incident_page), methods=GET),
        Route("/incidents/{reference:path}", page(views_incidents.incident_action), methods=POST),
        Route("/contacts/invalid", page(views_alerts.invalid_contacts), methods=GET),
        Route("/contacts/{contact_id:int}/valid", page(views_alerts.contact_mark_valid), methods=POST),
        Route("/alerts", page(views_alerts.alert_list), methods=GET),
        Route("/alerts/ack-all", page(views_alerts.alert_ack_all), methods=POST),
        Route("/alerts/{alert_id:int}/ack", page(views_alerts.alert_ack), methods=POST),
        Route("/applies", page(views_applies.apply_list), methods=GET),
        Route("/applies/new", page(views_apply.apply_new), methods=GET),
        Route("/applies/new", page(views_apply.apply_post), methods=POST),
        Route("/applies/{apply_id:int}", page(views_applies.apply_page), methods=GET),
        Mount("/static", app=StaticFiles(directory=STATIC, check_dir=False), name="static"),
    ]
