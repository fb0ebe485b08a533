"""E6 "opened": the tracking pixel of a plan's emails (``track_opens``, off by default) and its first load.

The pixel's URL carries a signed token of the email's Message-ID (signing.py), so a guessed or
altered URL names no email and records nothing. Only the first load counts: mail clients and
proxies load images again and again, and the history wants when the email was first opened.
"""

from __future__ import annotations

import dataclasses
import html
import re
from datetime import UTC, datetime, timedelta
from typing import cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from dunningops import signing
from dunningops.store.schema import MessageRow
from dunningops.transport.message import OutgoingMessage

__all__ = ["PIXEL_DAYS", "PURPOSE", "pixel_url", "record_open", "with_pixel"]

messages = MessageRow.__table__

PURPOSE = "open"
PIXEL_DAYS = 180  # long enough for an email read late; after that a load records nothing
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


def pixel_url(base_url: str, key: bytes, message_id: str, now: datetime) -> str:
    """The pixel's URL for the email ``message_id``, valid ``PIXEL_DAYS`` from ``now``."""
    token = signing.sign(key, PURPOSE, message_id, now + timedelta(days=PIXEL_DAYS))
    return f"{base_url.rstrip('/')}/l/o/{token}.gif"


def with_pixel(message: OutgoingMessage, base_url: str, key: bytes) -> OutgoingMessage:
    """``message`` with a 1x1 image in its html part that tells us when it is opened.

    Call it once the Message-ID is assigned. The image goes before ``</body>``, or at the end of
    a fragment; the text part is untouched, and a message without html is returned as it is.
    The link's 180 days run from the message's Date (the run's instant), else from now.
    """
    if message.html is None:
        return message
    if not message.message_id:
        raise ValueError("the tracking pixel needs the message's Message-ID")
    now = message.date or datetime.now(UTC)
    src = html.escape(pixel_url(base_url, key, message.message_id, now), quote=True)
    img = f'<img src="{src}" width="1" height="1" alt="" style="display:block;border:0;width:1px;height:1px">'
    ends = list(_BODY_END.finditer(message.html))
    if ends:
        at = ends[-1].start()
        body = message.html[:at] + img + message.html[at:]
    else:
        body = message.html + img
    return dataclasses.replace(message, html=body)


def record_open(session: Session, token: str, key: bytes, now: datetime) -> bool:
    """Record the first open of the email a pixel token names; True when the token is good.

    True: the token is genuine and unexpired and its email is in the history (``opened_at`` is
    set if it was not, never moved again). False: nothing names an email, nothing changed.
    """
    message_id = signing.verify(key, PURPOSE, token, now)
    if message_id is None:
        return False
    result = session.execute(
        update(messages).where(messages.c.message_id == message_id, messages.c.opened_at.is_(None)).values(opened_at=now)
    )
    if cast(CursorResult, result).rowcount == 1:  # an UPDATE's result is a CursorResult
        return True
    # Opened before, or no such email (e.g. the store was restored from before it was sent).
    return session.scalar(select(messages.c.id).where(messages.c.message_id == message_id)) is not None
