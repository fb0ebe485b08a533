"""Who is asking: a signed-in member (a session cookie), or the member a trusted reverse proxy names;
and the CSRF tokens every form carries.

A session's cookie holds a random token; the store keeps only its sha256 (``console_sessions.id``),
so reading the table gives nobody a way in. Sessions end ``settings.console.session_minutes`` after
sign-in, at sign-out, when the member's password is set again, and as soon as the member is no
longer in the applied config (checked on every request).

``settings.console.trusted_user_header``: a request *from an address in* ``trusted_proxies``
carrying that header is the member it names (id or email); from anywhere else the header is
ignored, so a client cannot name itself. Such a member has no session row: their forms' CSRF token
is an HMAC of their id under the store's signing key.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session
from starlette.requests import Request

from dunningops.dunning.runconfig import RunConfig
from dunningops.store.schema import ConsoleSessionRow
from dunningops.web.console.credentials import find_member

sessions = ConsoleSessionRow.__table__

SESSION_COOKIE = "dunningops_session"
SIGNIN_COOKIE = "dunningops_signin"  # the sign-in form's own CSRF cookie (no session exists yet)
SEEN_EVERY = timedelta(minutes=5)  # last_seen_at is refreshed at most this often (a write per page would be too many)


@dataclass(frozen=True)
class SignedIn:
    """The member behind a request."""

    id: str
    name: str
    email: str
    role: str
    csrf: str
    session_id: str | None  # None: named by the trusted reverse proxy

    @property
    def by_proxy(self) -> bool:
        return self.session_id is None


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _mac(key: bytes, purpose: str, value: str) -> str:
    return hmac.new(key, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


def same(expected: str, given: str | None) -> bool:
    """Constant-time comparison of a token with what the form sent."""
    return bool(given) and hmac.compare_digest(expected.encode(), str(given).encode())


def signin_token(key: bytes, cookie: str) -> str:
    """The sign-in form's CSRF token: bound to its cookie, which only our pages set."""
    return _mac(key, "console-signin", cookie)


@lru_cache(maxsize=64)
def _networks(proxies: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    out = []
    for p in proxies:
        try:
            out.append(ipaddress.ip_network(p.strip(), strict=False))
        except ValueError:
            continue  # not an address: it trusts nobody
    return tuple(out)


def from_trusted_proxy(request: Request, proxies: list[str]) -> bool:
    """Whether the peer of this connection (not a forwarded-for header: that the client writes) is a trusted proxy."""
    if request.client is None:
        return False
    try:
        peer = ipaddress.ip_address(request.client.host)
    except ValueError:
        return False
    return any(peer in network for network in _networks(tuple(proxies)))


def _member(config: RunConfig, member_id: str, csrf: str, session_id: str | None) -> SignedIn:
    m = config.members[member_id]
    return SignedIn(member_id, m["name"], m["email"], m["role"], csrf, session_id)


def identify(session: Session, request: Request, config: RunConfig, key: bytes, now: datetime) -> SignedIn | None:
    """The member behind ``request``, or None (not signed in, session expired, member no longer in the config)."""
    console = config.settings.console
    if console.trusted_user_header and from_trusted_proxy(request, console.trusted_proxies):
        named = request.headers.get(console.trusted_user_header)
        if named is not None:
            # The proxy decides who this is: a name that is no member gets nobody's session either.
            member = find_member(config, named)
            return _member(config, member, _mac(key, "console-proxy", member), None) if member else None
    token = request.cookies.get(SESSION_COOKIE)
    if not token or len(token) > 200:
        return None
    row = session.execute(select(sessions).where(sessions.c.id == digest(token))).mappings().first()
    if row is None or row["expires_at"] <= now or row["member_id"] not in config.members:
        return None
    return _member(config, row["member_id"], row["csrf"], row["id"])


def needs_seen(session: Session, session_id: str, now: datetime) -> bool:
    seen = session.scalar(select(sessions.c.last_seen_at).where(sessions.c.id == session_id))
    return seen is not None and now - seen >= SEEN_EVERY


def mark_seen(session: Session, session_id: str, now: datetime) -> None:
    session.execute(update(sessions).where(sessions.c.id == session_id).values(last_seen_at=now))


def start_session(session: Session, member_id: str, *, now: datetime, minutes: int) -> tuple[str, datetime]:
    """A new session for ``member_id``; returns the cookie's token (shown once, never stored) and when it ends.

    Expired sessions of anyone are removed on the way (sign-ins are rare; the table stays small)."""
    session.execute(delete(sessions).where(sessions.c.expires_at <= now))
    token = secrets.token_urlsafe(32)
    expires = now + timedelta(minutes=minutes)
    session.execute(
        insert(sessions).values(
            id=digest(token),
            member_id=member_id,
            csrf=secrets.token_hex(32),
            created_at=now,
            expires_at=expires,
            last_seen_at=now,
        )
    )
    return token, expires


def end_session(session: Session, session_id: str) -> None:
    session.execute(delete(sessions).where(sessions.c.id == session_id))


def local_path(target: str | None, default: str = "/") -> str:
    """``target`` if it is a path on this site (``/todos?x=1``), else ``default``: never a redirect elsewhere."""
    if not target or len(target) > 2000 or not target.startswith("/") or target.startswith(("//", "/\\")):
        return default
    if any(ord(c) < 32 or c == "\\" for c in target) or target.split("?")[0] in ("/signin", "/signout"):
        return default
    return target
