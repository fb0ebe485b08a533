"""The public links, under ``/l/``: the alias confirmation page (A3) and the open-tracking pixel (E6).

Anyone on the Internet can reach them, so each carries a signed, expiring token (signing.py): a
guessed, altered, expired or superseded link gets a 404 and changes nothing, and a 404 never says
which. A GET changes nothing on the confirmation page (mail scanners prefetch links); its form
POSTs. The pages are server-rendered, without JavaScript or anything loaded from elsewhere.
"""

from __future__ import annotations

import base64
from functools import cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from dunningops import signing
from dunningops.dunning import aliases
from dunningops.outgoing import tracking
from dunningops.store.activity import record_activity
from dunningops.store.meta import signing_key
from dunningops.web.context import WebContext

__all__ = ["routes"]

# The smallest transparent GIF (1x1, 42 bytes).
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")

# The token is in the URL: no Referer carries it elsewhere, no cache keeps the page, nothing runs.
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}


@cache
def _templates() -> Environment:
    folder = Path(__file__).with_name("templates")
    return Environment(loader=FileSystemLoader(folder), autoescape=select_autoescape(["html"]), auto_reload=False)


def _page(name: str, status: int = 200, **values) -> HTMLResponse:
    return HTMLResponse(_templates().get_template(f"public/{name}").render(**values), status_code=status, headers=HEADERS)


def routes(ctx: WebContext) -> list[BaseRoute]:
    """``GET|POST /l/alias/{token}`` and ``GET /l/o/{token}.gif``."""

    keys: list[bytes] = []

    def key() -> bytes:
        # Written once with the store (migration 0007), never changed: read it once per server.
        if not keys:
            with ctx.app.session() as session:
                keys.append(signing_key(session))
        return keys[0]

    # Sync handlers: Starlette runs them in its thread pool, beside the sync store.
    def alias_link(request: Request) -> Response:
        token, now, writes = request.path_params["token"], ctx.app.now(), request.method == "POST"
        if signing.verify(key(), aliases.LINK_PURPOSE, token, now) is None:
            return _page("not_found.html", 404)  # a forged link costs no transaction
        # A writer on SQLite begins IMMEDIATE: a read turned write would fail, not wait, beside another writer.
        with ctx.app.store.session(write_lock=writes) as session:
            if writes:
                # A3: the same write as `alias verify CODE`, committed with this session, and on the record.
                alias = aliases.verify_link(session, key(), token, now)
                if alias is not None and not alias.verified:
                    record_activity(session, member=None, via="link", action="alias.verify", at=now, target=alias.id)
            else:
                alias = aliases.alias_of_link(session, key(), token, now)
        if alias is None:
            return _page("not_found.html", 404)
        company = ctx.config().settings.company.name
        if request.method == "POST" or alias.verified:
            return _page("alias_done.html", alias=alias, company=company, already=alias.verified)
        return _page("alias_confirm.html", alias=alias, company=company)

    def pixel(request: Request) -> Response:
        token, now = request.path_params["token"], ctx.app.now()
        found = signing.verify(key(), tracking.PURPOSE, token, now) is not None
        if found:
            with ctx.app.store.session(write_lock=True) as session:
                found = tracking.record_open(session, token, key(), now)
        if not found:
            return Response(status_code=404, headers={"Cache-Control": "no-store"})
        # no-store: nothing between the reader and us keeps the pixel, so a first open reaches us.
        return Response(PIXEL, media_type="image/gif", headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})

    return [
        Route("/l/alias/{token}", alias_link, methods=["GET", "POST"], name="alias_link"),
        Route("/l/o/{token}.gif", pixel, methods=["GET"], name="open_pixel"),
    ]
