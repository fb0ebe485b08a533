"""How every console request is served: read the form, find the member (or send them to sign in),
check the form's CSRF token, run the view in a worker thread, and turn errors into pages.

A view is a plain function ``view(ask) -> Response``: ``Ask`` carries the request, the applied
config, the member, the posted fields and "now" (the app's clock). Errors a user can cause
(``DunningOpsError``) become a page with their status (404, 409, 422, ...); anything else is
logged with its traceback and the user reads one line: never a traceback.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from dunningops.dunning.runconfig import RunConfig
from dunningops.errors import ConflictError, DunningOpsError, InvalidInputError, NotFoundError
from dunningops.store.activity import record_activity
from dunningops.store.meta import signing_key
from dunningops.web.console import auth
from dunningops.web.console.render import HEADERS, Pager, environment, local_time
from dunningops.web.console.throttle import SignInThrottle
from dunningops.web.context import WebContext

log = logging.getLogger("dunningops.web.console")

MAX_BODY = 512 * 1024  # a form: an answer to a customer is the longest field (100,000 characters)
MAX_FIELDS = 30
MAX_ID = 2**63 - 1
PAGE_SIZE, MAX_PAGE_SIZE = 50, 200

# What a page says after an action (the redirect carries only the code: no text from a URL is shown).
FLASHES = {
    "done": "The to-do is marked done.",
    "dismissed": "The to-do is dismissed.",
    "sent": "The email has been sent.",
    "relinked": "The message is linked to its new customer.",
    "deleted": "The message is deleted from the inbox.",
    "acked": "The alert is acknowledged.",
    "acked_all": "All alerts are acknowledged.",
    "valid": "The contact is marked valid: reminders go to it again.",
    "paused": "The customer is paused.",
    "resumed": "The customer's dunning goes on.",
    "signed_out": "You are signed out.",
}

# An engine error may end with where to look on the command line; the console has its own pages for that.
_CLI_HINT = re.compile(r"\s*\((?:see|use) `dunningops [^)]*\)")


def status_of(exc: DunningOpsError) -> int:
    # A form's value refused is 422 (the request was well formed; its content was not).
    return 422 if isinstance(exc, InvalidInputError) else exc.http_status


def user_message(exc: DunningOpsError) -> str:
    text = _CLI_HINT.sub("", str(exc)).strip()
    return text[:1].upper() + text[1:] if text else "That cannot be done."


class Console:
    """What the console's routes share: the web context, the templates, the sign-in throttle."""

    def __init__(self, ctx: WebContext):
        self.ctx = ctx
        self.env = environment()
        self.throttle = SignInThrottle()

    @property
    def app(self):
        return self.ctx.app

    def endpoint(self, view: Callable[[Ask], Response], *, public: bool = False) -> Callable[[Request], Any]:
        """The ASGI endpoint of ``view``: ``public`` views (sign-in) need no member and check their own token."""

        async def serve(request: Request) -> Response:
            form: dict[str, str] = {}
            if request.method == "POST":
                length = request.headers.get("content-length")
                if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
                    return self.bare_error(request, 413, "This form is too large.")
                try:
                    data = await request.form(max_files=0, max_fields=MAX_FIELDS, max_part_size=MAX_BODY)
                except HTTPException:
                    return self.bare_error(request, 400, "This form could not be read.")
                form = {k: v for k, v in data.items() if isinstance(v, str)}
            return await run_in_threadpool(self.handle, view, request, form, public)

        return serve

    def handle(self, view: Callable[[Ask], Response], request: Request, form: dict[str, str], public: bool) -> Response:
        ask: Ask | None = None
        try:
            try:
                config = self.ctx.config()
            except ConflictError:
                return self.bare_error(request, 503, "The console opens once a configuration has been applied.")
            now = self.app.now()
            with self.app.session() as session:
                key = signing_key(session)
                member = auth.identify(session, request, config, key, now)
                seen = member is not None and member.session_id is not None and auth.needs_seen(session, member.session_id, now)
            if seen and member is not None and member.session_id is not None:
                with self.app.store.session(write_lock=True) as session:
                    auth.mark_seen(session, member.session_id, now)
            ask = Ask(self, request, config, member, form, now, key)
            if not public:
                if member is None:
                    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                    where = "/signin?" + urlencode({"next": target}) if request.method in ("GET", "HEAD") else "/signin"
                    return RedirectResponse(where, 303)
                if request.method == "POST" and not auth.same(member.csrf, form.get("csrf")):
                    return ask.error(
                        403, "This form has expired or did not come from this console: go back, reload the page and try again."
                    )
            return view(ask)
        except DunningOpsError as exc:
            if ask is None:
                return self.bare_error(request, status_of(exc), user_message(exc))
            return ask.error(status_of(exc), user_message(exc))
        except Exception:
            log.exception("console: %s %s failed", request.method, request.url.path)
            message = "Something went wrong on our side; it has been logged. Try again, or tell whoever runs dunningops."
            return ask.error(500, message) if ask is not None else self.bare_error(request, 500, message)

    def bare_error(self, request: Request, status: int, message: str) -> Response:
        """An error page before anything is known of the member (no menu)."""
        html = self.env.get_template("error.html").render(
            member=None, nav=None, company=None, csrf="", flash=None, status_code=status, message=message, back=None
        )
        return HTMLResponse(html, status, headers=HEADERS)


@dataclass
class Ask:
    """One request, as a view sees it."""

    console: Console
    request: Request
    config: RunConfig
    member: auth.SignedIn | None
    form: dict[str, str]
    now: datetime
    key: bytes = field(repr=False)

    @property
    def app(self):
        return self.console.app

    @property
    def member_id(self) -> str:
        assert self.member is not None  # views behind sign-in only
        return self.member.id

    # --- reading the request ---------------------------------------------------------------

    def arg(self, name: str) -> str | None:
        value = self.request.query_params.get(name)
        return value.strip()[:200] if value is not None and value.strip() else None

    def number(self, name: str, default: int, lo: int, hi: int) -> int:
        value = self.request.query_params.get(name)
        if value is None or value == "":
            return default
        if not value.isdigit() or not lo <= int(value) <= hi:
            raise InvalidInputError(f"{name} must be a whole number from {lo} to {hi:,}")
        return int(value)

    def paging(self) -> tuple[int, int]:
        """``limit`` and ``offset`` of a list page, from the query string."""
        return self.number("limit", PAGE_SIZE, 1, MAX_PAGE_SIZE), self.number("offset", 0, 0, 10**9)

    def pager(self, total: int, shown: int, limit: int, offset: int) -> Pager:
        return Pager(self.request.url.path, dict(self.request.query_params), offset, limit, total, shown)

    def path_id(self, name: str) -> int:
        value = self.request.path_params[name]
        if not 1 <= value <= MAX_ID:
            raise NotFoundError("there is nothing at this address")
        return value

    def field(self, name: str, *, required: bool = True, max_length: int = 500) -> str | None:
        value = self.form.get(name, "")
        if name != "answer":
            value = value.strip()
        if not value:
            if required:
                raise InvalidInputError(f"the form's {name.replace('_', ' ')} is missing")
            return None
        if len(value) > max_length:
            raise InvalidInputError(
                f"the form's {name.replace('_', ' ')} is too long ({len(value):,} characters; at most {max_length:,})"
            )
        return value

    # --- answering -------------------------------------------------------------------------

    def render(self, template: str, *, http_status: int = 200, nav: str | None = None, **data: Any) -> HTMLResponse:
        flash = FLASHES.get(self.request.query_params.get("flash", ""))
        html = self.console.env.get_template(template).render(
            member=self.member,
            csrf=self.member.csrf if self.member else "",
            company=self.config.settings.company.name,
            nav=nav,
            flash=flash,
            when=local_time(self.config.settings.company.timezone),
            **data,
        )
        return HTMLResponse(html, http_status, headers=HEADERS)

    def error(self, status: int, message: str) -> HTMLResponse:
        path = self.request.url.path
        back = path.rsplit("/", 1)[0] or "/" if self.request.method == "POST" else None
        return self.render("error.html", http_status=status, status_code=status, message=message, back=auth.local_path(back, "/"))

    def redirect(self, path: str, flash: str | None = None) -> RedirectResponse:
        """After an action: back to a page (303, so a reload does not post again), with what happened."""
        target = quote(path, safe="/?=&%") + ((("&" if "?" in path else "?") + f"flash={flash}") if flash else "")
        return RedirectResponse(target, 303, headers={"Cache-Control": "no-store"})

    # --- changing things -------------------------------------------------------------------

    @contextmanager
    def change(self) -> Iterator[Session]:
        """One write transaction (SQLite: BEGIN IMMEDIATE, so it waits for another writer instead of failing)."""
        with self.app.store.session(write_lock=True) as session:
            yield session

    def record(self, session: Session, action: str, target: str, **details: Any) -> None:
        """What the member did, in the transaction of the change."""
        record_activity(session, member=self.member_id, via="console", action=action, at=self.now, target=target, details=details)
