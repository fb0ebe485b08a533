"""Signed, expiring tokens for the public links (alias verification, open tracking), and their base URL.

A token is ``<payload>.<signature>``, both URL-safe base64 without padding: the payload is the
expiry (Unix seconds) and the value; the signature an HMAC-SHA256, under the store's key, of the
purpose and the payload. The purpose is signed but not carried: a pixel's token is no alias link.
The value is readable by whoever holds the link (it is signed, not encrypted): put no secret in it.

``verify`` answers the value or None, and nothing in between: a wrong purpose, an altered byte,
a guess, an expired token, a malformed string all look alike to the caller (a 404 to the user).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only a type: the one way out imports this module and stays clear of spec/
    from dunningops.spec.models import Settings

__all__ = ["public_base_url", "sign", "verify"]

# Far above any link we make (a Message-ID is at most 255 characters); refuses large inputs cheaply.
MAX_TOKEN = 2048


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, purpose: str, payload: bytes) -> bytes:
    # The NUL keeps "ab"+"c" apart from "a"+"bc"; purposes are our own constants, without NUL.
    return hmac.new(key, purpose.encode() + b"\x00" + payload, hashlib.sha256).digest()


def sign(key: bytes, purpose: str, value: str, expires_at: datetime) -> str:
    """A URL-safe token carrying ``value`` for ``purpose`` until ``expires_at`` (an aware instant)."""
    if not key:
        raise ValueError("an empty signing key")
    if "\x00" in purpose:
        raise ValueError("a purpose may not contain NUL")
    if expires_at.tzinfo is None:
        raise ValueError("expires_at must be an aware datetime")
    payload = f"{int(expires_at.timestamp())}.{value}".encode()
    return f"{_b64(payload)}.{_b64(_mac(key, purpose, payload))}"


def verify(key: bytes, purpose: str, token: str, now: datetime) -> str | None:
    """The value ``token`` carries if it was signed with ``key`` for ``purpose`` and is not expired, else None."""
    if not isinstance(token, str) or not token.isascii() or len(token) > MAX_TOKEN:
        return None
    encoded, dot, _ = token.rpartition(".")
    if not dot:
        return None
    try:
        payload = _unb64(encoded)
        expiry, sep, value = payload.decode("utf-8").partition(".")
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        return None
    if not sep or not expiry.isascii() or not expiry.isdigit():
        return None
    # Compare the whole token as it should be, in constant time: base64 has spare bits and skips
    # stray characters when decoding, so a token differing from ours anywhere is refused.
    expected = f"{_b64(payload)}.{_b64(_mac(key, purpose, payload))}"
    if not hmac.compare_digest(expected.encode(), token.encode()):
        return None
    if now.timestamp() >= int(expiry):
        return None
    return value


def public_base_url(settings: Settings) -> str:
    """Where people reach the public links: ``settings.daemon.public_url``, else ``http://host:port`` (no trailing /)."""
    daemon = settings.daemon
    if daemon.public_url:
        return daemon.public_url.rstrip("/")
    host = f"[{daemon.host}]" if ":" in daemon.host else daemon.host  # an IPv6 address goes in brackets
    return f"http://{host}:{daemon.port}"
