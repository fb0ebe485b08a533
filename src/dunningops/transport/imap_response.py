"""Reading the answers to the two commands the import sends most (UID FETCH of the sizes, and of the
bodies) with a few regular expressions: imapclient's general parser cost more than the transfer.
An answer of a shape these do not know is left to imapclient (``parse_bodies``' second result)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone

Body = tuple[bytes, datetime | None, int | None]  # raw, INTERNALDATE (UTC), RFC822.SIZE
_UID = re.compile(rb"[( ]UID (\d+)")
_SIZE = re.compile(rb"[( ]RFC822\.SIZE (\d+)")
_DATE = re.compile(rb'[( ]INTERNALDATE "\s?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)"')
_BODY_LITERAL = re.compile(rb"[( ]BODY\[\] \{\d+\}$")
_RESPONSE_START = re.compile(rb"\d+ \(")  # "12 (": a FETCH response of its own, not the rest of one after a literal
_MONTHS = {m.encode(): i for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), 1)}


def uid_set(uids: Sequence[int]) -> str:
    """``"3:5,9"`` for ``[3, 4, 5, 9]``: runs as ranges keep the command short."""
    ordered = sorted(set(uids))
    parts: list[str] = []
    start = previous = ordered[0]
    for uid in [*ordered[1:], None]:
        if uid is not None and uid == previous + 1:
            previous = uid
            continue
        parts.append(f"{start}:{previous}" if previous > start else str(start))
        if uid is not None:
            start = previous = uid
    return ",".join(parts)


def internaldate(text: bytes) -> datetime | None:
    """INTERNALDATE (``"01-Dec-2026 10:35:00 +0100"``) as an aware UTC datetime; None when absent or malformed."""
    found = _DATE.search(text)
    if found is None:
        return None
    day, month, year, hour, minute, second, sign, zone_hours, zone_minutes = found.groups()
    number = _MONTHS.get(month.lower())
    if number is None:
        return None
    offset = timedelta(hours=int(zone_hours), minutes=int(zone_minutes))
    try:
        local = datetime(int(year), number, int(day), int(hour), int(minute), int(second))
        return local.replace(tzinfo=timezone(-offset if sign == b"-" else offset)).astimezone(UTC)
    except ValueError:
        return None


def parse_sizes(data: Sequence[bytes | tuple[bytes, bytes]]) -> dict[int, int]:
    """UID -> RFC822.SIZE from imaplib's answer to ``UID FETCH set (RFC822.SIZE)``."""
    sizes: dict[int, int] = {}
    for item in data:
        if isinstance(item, bytes):
            uid, size = _UID.search(item), _SIZE.search(item)
            # Lines without both are unsolicited updates (another client's flags): not answers to this.
            if uid is not None and size is not None:
                sizes[int(uid[1])] = int(size[1])
    return sizes


def parse_uids(data: Sequence[bytes | tuple[bytes, bytes]]) -> list[int]:
    """The UIDs in imaplib's answer to ``FETCH set (UID)``."""
    return [int(found[1]) for item in data if isinstance(item, bytes) and (found := _UID.search(item))]


def parse_bodies(data: Sequence[bytes | tuple[bytes, bytes]]) -> tuple[dict[int, Body], set[int]]:
    """imaplib's answer to ``UID FETCH set (BODY.PEEK[] INTERNALDATE RFC822.SIZE)``.

    Returns UID -> (raw, INTERNALDATE, RFC822.SIZE), and the UIDs answered in
    a shape this does not read (a body as a quoted string rather than a literal).
    imaplib splits a response at its literal: ``(head, literal)``, whose head
    ends with ``BODY[] {n}``, then the rest of the response as the next item
    (``b")"``, or the items the server put after the body).
    """
    found: dict[int, Body] = {}
    unparsed: set[int] = set()
    i = 0
    while i < len(data):
        item = data[i]
        i += 1
        if isinstance(item, tuple):
            head, raw = item[0], item[1]
            following = data[i] if i < len(data) else None
            tail = b""
            if isinstance(following, bytes) and not _RESPONSE_START.match(following):
                tail = following
                i += 1
            uid = _UID.search(head) or _UID.search(tail)
            if uid is None:
                continue  # an unsolicited response that happens to carry a literal
            if not _BODY_LITERAL.search(head):
                unparsed.add(int(uid[1]))
                continue
            text = head + tail
            size = _SIZE.search(text)
            found[int(uid[1])] = (raw, internaldate(text), int(size[1]) if size else None)
        else:
            uid = _UID.search(item)
            if uid is not None and b"BODY[" in item:
                unparsed.add(int(uid[1]))
    return found, unparsed
