"""Signing in and out."""

from __future__ import annotations

import secrets

from starlette.responses import Response

from dunningops.store.activity import record_activity
from dunningops.web.console import auth
from dunningops.web.console.credentials import MAX_LENGTH, find_member, verify_password
from dunningops.web.console.handler import Ask

SIGNIN_COOKIE_SECONDS = 3600


def _secure(ask: Ask) -> bool:
    # Behind https the cookies never travel in clear; on plain http (a laptop, a test) they must still work.
    return (ask.config.settings.daemon.public_url or "").startswith("https://")


def _form(ask: Ask, *, status: int = 200, problem: str | None = None, who: str = "") -> Response:
    cookie = ask.request.cookies.get(auth.SIGNIN_COOKIE)
    if not cookie or len(cookie) > 100:
        cookie = secrets.token_urlsafe(24)
    response = ask.render(
        "signin.html",
        http_status=status,
        signin_csrf=auth.signin_token(ask.key, cookie),
        next=auth.local_path(ask.arg("next") or ask.form.get("next")),
        problem=problem,
        who=who,
    )
    response.set_cookie(
        auth.SIGNIN_COOKIE,
        cookie,
        max_age=SIGNIN_COOKIE_SECONDS,
        path="/signin",
        httponly=True,
        samesite="lax",
        secure=_secure(ask),
    )
    return response


def signin_page(ask: Ask) -> Response:
    if ask.member is not None:
        return ask.redirect(auth.local_path(ask.arg("next")))
    return _form(ask)


def signin(ask: Ask) -> Response:
    """Check the member's password; a few failures a minute per member and per address, then a pause."""
    cookie = ask.request.cookies.get(auth.SIGNIN_COOKIE) or ""
    if not cookie or not auth.same(auth.signin_token(ask.key, cookie), ask.form.get("csrf")):
        return _form(ask, status=403, problem="The sign-in form had expired: please try again.")
    who = ask.form.get("member", "").strip()[:320]
    password = ask.form.get("password", "")[: MAX_LENGTH + 1]
    address = ask.request.client.host if ask.request.client else "unknown"
    keys = [f"member:{who.lower()}", f"address:{address}"]
    throttle = ask.console.throttle
    if throttle.blocked(keys, ask.now):
        return _form(ask, status=429, problem="Too many failed sign-ins: wait a minute, then try again.", who=who)
    member = find_member(ask.config, who) if who else None
    with ask.change() as session:
        ok = verify_password(session, member, password) if password else False
        if ok and member is not None:
            token, _ = auth.start_session(session, member, now=ask.now, minutes=ask.config.settings.console.session_minutes)
            record_activity(session, member=member, via="console", action="console.signin", at=ask.now, target=f"member:{member}")
    if not ok or member is None:
        throttle.failed(keys, ask.now)
        return _form(ask, status=401, problem="That name and password do not match.", who=who)
    throttle.succeeded(keys[0])
    response = ask.redirect(auth.local_path(ask.form.get("next")))
    response.set_cookie(
        auth.SESSION_COOKIE,
        token,
        max_age=ask.config.settings.console.session_minutes * 60,
        path="/",
        httponly=True,
        samesite="lax",
        secure=_secure(ask),
    )
    response.delete_cookie(auth.SIGNIN_COOKIE, path="/signin")
    return response


def signout(ask: Ask) -> Response:
    assert ask.member is not None
    if ask.member.by_proxy:  # the proxy signs people in and out; there is no session here to end
        return ask.redirect("/")
    with ask.change() as session:
        auth.end_session(session, ask.member.session_id or "")
        ask.record(session, "console.signout", f"member:{ask.member_id}")
    response = ask.redirect("/signin", "signed_out")
    response.delete_cookie(auth.SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=_secure(ask))
    return response
