"""The injected clock: everything that needs "now" takes it from here or from its caller.

``DUNNINGOPS_NOW`` (an ISO timestamp) pins the CLI's clock, for tests,
reproducible demos and previewing a future instant. Every instant is aware and
in UTC once it leaves this module.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from dunningops.errors import InvalidInputError

ENV_NOW = "DUNNINGOPS_NOW"
# Instants outside these years are typing mistakes, and date arithmetic near year 1 or
# 9999 overflows: refuse them where they come in, with the range in the message.
EARLIEST_YEAR, LATEST_YEAR = 1970, 2199
Clock = Callable[[], datetime]


def parse_instant(value: str, what: str = "timestamp") -> datetime:
    """An ISO 8601 instant (an offset is honoured; none means UTC) as an aware UTC datetime."""
    try:
        at = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInputError(f"{what}: {value!r} is not an ISO 8601 timestamp such as 2026-12-01T08:30+01:00") from None
    if not EARLIEST_YEAR <= at.year <= LATEST_YEAR:
        raise InvalidInputError(f"{what}: {value!r} is outside the years {EARLIEST_YEAR}–{LATEST_YEAR}")
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC)


def now(env: Mapping[str, str] = os.environ) -> datetime:
    """The current instant, or the one pinned by ``DUNNINGOPS_NOW``."""
    pinned = env.get(ENV_NOW)
    if pinned:
        return parse_instant(pinned, ENV_NOW)
    return datetime.now(UTC)


def from_env(env: Mapping[str, str] = os.environ) -> Clock:
    """A clock for this environment; a malformed ``DUNNINGOPS_NOW`` fails here, once, with one line."""
    if env.get(ENV_NOW):
        pinned = parse_instant(env[ENV_NOW], ENV_NOW)
        return lambda: pinned
    return lambda: datetime.now(UTC)
