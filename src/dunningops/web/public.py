"""The public links, under ``/l/``: the alias confirmation page (A3), the open-tracking pixel (E6)
and the rating page of an incident (T8).

Anyone on the Internet can reach them, so each carries a signed, expiring token (signing.py): a
guessed, altered, expired or superseded link gets a 404 and changes nothing, and a 404 never says
which (but a genuine rating link past its date says so, 410). A GET changes nothing on the
confirmation and rating pages (mail scanners prefetch links); their forms POST. The pages are
server-rendered, without JavaScript or anything loaded from elsewhere.
"""

from __future__ import annotations

import base64
import logging
from functools import cache
from pathlib import Path
from urllib.parse import parse_qs

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from dunningops import signing
from dunningops.dunning import aliases
from dunningops.errors import ConflictError, NotFoundError
from dunningops.incidents import ratings
from dunningops.outgoing import tracking
from dunningops.store.activity import record_activity
from dunningops.store.meta import signing_key
from dunningops.web.context import WebContext

__all__ = ["routes"]

log = logging.getLogger(__name__)

# A rating form: a score and a message of 2,000 characters, up to 9 bytes each once percent-encoded.
MAX_RATING_FORM = 32 * 1024

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


async def _small_form(request: Request, limit: int) -> dict[str, str] | None:
    """A URL-encoded form's fields (the first value of each); None past ``limit`` bytes, unread."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}  # nothing the form sends: read as an empty form
    try:
        fields = parse_qs(body.decode("ascii"), keep_blank_values=True, max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {name: values[0] for name, values in fields.items()}


def _score(value: str | None) -> int | None:
    """T8: the score a star link of the email chose (``?score=N``), to preselect; None for anything else."""
    return int(value) if value and value.isascii() and value.isdigit() and int(value) in ratings.SCORES else None


def routes(ctx: WebContext) -> list[BaseRoute]:
    """``GET|POST /l/alias/{token}``, ``GET /l/o/{token}.gif`` and ``GET|POST /l/r/{token}``."""

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

    async def rating_link(request: Request) -> Response:
        form = None
        if request.method == "POST":
            form = await _small_form(request, MAX_RATING_FORM)
            if form is None:
                return Response("This form is too large.", status_code=413, media_type="text/plain", headers=HEADERS)
        return await run_in_threadpool(rating, request, form)

    def rating_form(token: str, status: int = 200, **values) -> HTMLResponse:
        settings = ctx.config().settings
        with ctx.app.session() as session:
            shown = ratings.page(session, key(), token, ctx.app.now(), settings)
        if not shown.changeable and status == 409:
            return _page("rating_done.html", 409, state="locked", language=shown.language, shown=shown, company=shown.company)
        values = {"chosen": None, "typed": None, "error": None, **values}
        return _page("rating.html", status, shown=shown, scores=ratings.SCORES, max_message=ratings.MAX_MESSAGE, **values)

    def rating(request: Request, form: dict[str, str] | None) -> Response:
        # T8: the GET shows (mail scanners follow links), only the form's POST records.
        token, now, config = request.path_params["token"], ctx.app.now(), ctx.config()
        company = config.settings.company
        try:
            if form is None:
                return rating_form(token, chosen=_score(request.query_params.get("score")))
            try:
                rated = ratings.record(
                    ctx.app.store, token, form.get("score"), form.get("message"), now, settings=config.settings
                )
            except ratings.RatingInputError as exc:
                return rating_form(token, 400, chosen=_score(form.get("score")), typed=form.get("message"), error=exc.field)
            except ConflictError:
                return rating_form(token, 409)
        except ratings.LinkExpiredError as exc:
            return _page("rating_done.html", 410, state="expired", language=exc.language, company=company.name)
        except NotFoundError:
            language = "fr" if company.locale.startswith("fr") else "en"
            return _page("rating_done.html", 404, state="invalid", language=language, company=company.name)
        response = _page("rating_done.html", state="thanks", language=rated.page.language, shown=rated.page, company=company.name)
        if rated.alert_id is not None:
            # After the answer: the customer does not wait on the mail server (the alert is committed already).
            response.background = BackgroundTask(tell_team, rated, config, now)
        return response

    def tell_team(rated: ratings.Rated, config, at) -> None:
        try:
            report = ratings.tell_team(
                ctx.app.store, rated, config=config, transport_factory=ctx.app.transport, env=ctx.app.env, at=at
            )
        except Exception:
            # Left as recorded (pending or sending): `alerts announce` and the daemon's cycles pick it up.
            log.exception("rating alert #%s: announcing failed", rated.alert_id)
            return
        for problem in report.problems if report else ():
            log.warning("rating alert #%s: %s", rated.alert_id, problem)

    return [
        Route("/l/alias/{token}", alias_link, methods=["GET", "POST"], name="alias_link"),
        Route("/l/o/{token}.gif", pixel, methods=["GET"], name="open_pixel"),
        Route("/l/r/{token}", rating_link, methods=["GET", "POST"], name="rating_link"),
    ]
