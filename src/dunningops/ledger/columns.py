"""What each import file holds: its columns, which are required, and how a value is parsed.

Parsers are plain functions (str → value) that raise ValueError with a message
for the user; they run once per cell, so they stay cheap (no pydantic per row).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

_EMAIL = re.compile(r"^[^@\s<>,;]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
# Bounds a finance team would expect, checked at parse time so that a bad cell is one
# clear error here rather than an overflow in the store (bigint) or in the send cycle
# (a due date plus a step offset past year 9999).
MAX_CENTS = 99_999_999_999_999  # 999,999,999,999.99: any currency's invoice, far below bigint
MAX_UNITS_DIGITS = 12
MIN_DATE, MAX_DATE = date(1900, 1, 1), date(2199, 12, 31)
_TRUE = {"true", "1", "yes", "y", "oui", "x"}
_FALSE = {"false", "0", "no", "n", "non", ""}


@dataclass(frozen=True)
class Column:
    name: str
    required: bool = False
    parse: str = "text"  # text | line | upper2 | upper3 | locale | date | cents | bool | email | list
    max_length: int = 500


KINDS: dict[str, tuple[Column, ...]] = {
    "customers": (
        Column("external_id", True, max_length=128),
        Column("name", True),
        Column("country", parse="upper2"),
        Column("locale", parse="locale"),
        Column("currency", parse="upper3"),
        Column("account_manager"),
        Column("plan"),
        # The postal address letters are printed with (country is ``country``); empty: none.
        Column("address_line1", parse="line", max_length=200),
        Column("address_line2", parse="line", max_length=200),
        Column("postal_code", parse="line", max_length=32),
        Column("city", parse="line", max_length=100),
    ),
    "contacts": (
        Column("customer_external_id", True, max_length=128),
        Column("email", True, "email", 320),
        Column("name"),
        Column("phone", max_length=64),
        Column("job"),
        Column("functions", parse="list"),
        Column("primary", parse="bool"),
        Column("valid", parse="bool"),  # C10: true marks it valid again, false invalid; empty leaves it
    ),
    "invoices": (
        Column("external_id", True, max_length=128),
        Column("customer_external_id", True, max_length=128),
        Column("number", True, max_length=128),
        Column("issue_date", parse="date"),
        Column("due_date", True, "date"),
        Column("amount", True, "cents"),
        Column("outstanding", parse="cents"),
        Column("currency", parse="upper3"),
        Column("document_url", max_length=2000),
        Column("status"),
    ),
    "payments": (
        Column("external_id", True, max_length=128),
        Column("invoice_external_id", True, max_length=128),
        Column("date", True, "date"),
        Column("amount", True, "cents"),
        Column("kind"),  # PAYMENT_KINDS; empty: payment
    ),
}
# A payment row's kinds: a payment and a credit note reduce the invoice's outstanding amount; a
# failed payment (A9: the failed-payment email) reduces nothing.
PAYMENT_KINDS = ("payment", "credit_note", "failed")
REDUCING_KINDS = ("payment", "credit_note")


def make_parsers(date_format: str | None, decimal_comma: bool) -> dict[str, Callable[[str], Any]]:
    """The cell parsers for one file, bound to its date and number conventions."""

    def parse_date(value: str) -> date:
        try:
            day = datetime.strptime(value, date_format).date() if date_format else date.fromisoformat(value)
        except ValueError:
            expected = date_format or "YYYY-MM-DD"
            raise ValueError(f"{value!r} is not a date (expected {expected})") from None
        if not MIN_DATE <= day <= MAX_DATE:
            raise ValueError(f"{value!r} is out of range (dates go from {MIN_DATE} to {MAX_DATE})")
        return day

    def too_large(value: str) -> ValueError:
        return ValueError(f"{value!r} is too large (amounts go up to {MAX_CENTS // 100:,}.{MAX_CENTS % 100:02d})")

    def parse_cents(value: str) -> int:
        if not decimal_comma:
            # Fast path for what exports mostly hold ("1234.50"): no regex, no replace.
            units, dot, decimals = value.partition(".")
            short = len(units) <= MAX_UNITS_DIGITS
            if units.isdecimal() and short and ((decimals.isdecimal() and len(decimals) <= 2) or not dot):
                return int(units) * 100 + (int(decimals.ljust(2, "0")) if decimals else 0)
        text = value.replace("\u00a0", "").replace("\u202f", "").replace(" ", "")
        if decimal_comma:
            text = text.replace(".", "").replace(",", ".")
        match = re.fullmatch(r"(-?)(\d+)(?:\.(\d{1,2}))?", text)
        if not match:
            raise ValueError(f"{value!r} is not an amount (expected e.g. 1234.50)")
        sign, units, decimals = match.groups()
        if sign:
            raise ValueError(f"{value!r} is negative: amounts are positive (a credit note is a payment of kind credit_note)")
        units = units.lstrip("0")
        if len(units) > MAX_UNITS_DIGITS:  # before int(): a 10,000-digit cell costs nothing
            raise too_large(value)
        return int(units or "0") * 100 + int((decimals or "0").ljust(2, "0"))

    def parse_bool(value: str) -> bool:
        low = value.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError(f"{value!r} is not true or false")

    def parse_email(value: str) -> str:
        if not _EMAIL.match(value):
            raise ValueError(f"{value!r} is not a valid email address")
        return value.lower()

    def parse_upper(n: int, what: str) -> Callable[[str], str]:
        def parse(value: str) -> str:
            up = value.upper()
            if len(up) != n or not up.isalpha():
                raise ValueError(f"{value!r} is not a {what}")
            return up

        return parse

    def parse_locale(value: str) -> str:
        if not re.fullmatch(r"[a-z]{2}([_-][A-Za-z]{2})?", value):
            raise ValueError(f"{value!r} is not a locale (expected e.g. fr_FR)")
        return value.replace("-", "_")

    def parse_line(value: str) -> str:
        # A line of a postal address: a line break or a tab would move the rest off the envelope's window.
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError(f"{value!r} is not one line (no line breaks or control characters)")
        return value

    def parse_list(value: str) -> list[str]:
        return [part.strip() for part in re.split(r"[;|,]", value) if part.strip()]

    return {
        "text": lambda v: v,
        "line": parse_line,
        "date": parse_date,
        "cents": parse_cents,
        "bool": parse_bool,
        "email": parse_email,
        "upper2": parse_upper(2, "country code (ISO 3166, e.g. FR)"),
        "upper3": parse_upper(3, "currency code (e.g. EUR)"),
        "locale": parse_locale,
        "list": parse_list,
    }
