"""Small value types shared by the config models: ids, emails, durations, references."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator

_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
# Deliberately simple: a local part, an @ and a dotted domain. Full RFC 5322
# validation belongs to the SMTP server; this catches typos in review.
_EMAIL = re.compile(r"^[^@\s<>]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_DURATION = re.compile(r"^(-?\d+)\s*([dw])$")

KINDS = ("settings", "member", "alias", "contact_function", "template", "plan")
# Offsets and delays are bounded so that a due date plus an offset stays a real date
# (an offset of 9999999d overflowed the send cycle); ten years either way is ample.
MAX_DAYS = 3650


def _check_id(value: str) -> str:
    if not _ID.match(value):
        raise ValueError(
            f"{value!r} is not a valid id: use lower-case letters, digits, '-' and '_' "
            "(at most 63 characters, starting with a letter or digit)"
        )
    return value


def _check_email(value: str) -> str:
    if not _EMAIL.match(value):
        raise ValueError(f"{value!r} is not a valid email address")
    return value.strip()


def parse_days(value: object) -> int:
    """'7d' → 7, '-3d' → -3, '2w' → 14, 5 → 5."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 7d, -3d or 2w")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        m = _DURATION.match(value.strip())
        if m:
            n = int(m.group(1))
            return n * 7 if m.group(2) == "w" else n
    raise ValueError(f"{value!r} is not a duration: write it as 7d, -3d (before the due date) or 2w")


def _normalise_days(value: object) -> str:
    # The bound is checked where config is validated; parse_days stays lenient for rows already stored.
    days = parse_days(value)
    if not -MAX_DAYS <= days <= MAX_DAYS:
        raise ValueError(f"{value!r} is too far: durations go from -{MAX_DAYS}d to {MAX_DAYS}d (ten years)")
    return f"{days}d"


Id = Annotated[str, AfterValidator(_check_id)]
Email = Annotated[str, AfterValidator(_check_email)]
# Durations are kept as normalised strings ("14d") so that the plan shows them
# the way people write them; ``parse_days`` turns them into numbers.
Days = Annotated[str, BeforeValidator(_normalise_days)]


def split_ref(ref: str) -> tuple[str, str | None]:
    """'alias.billing' → ('alias', 'billing'); 'account_manager' → ('account_manager', None)."""
    kind, _, ident = ref.partition(".")
    return kind, (ident or None)
