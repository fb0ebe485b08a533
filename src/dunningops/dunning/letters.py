"""The letter to-do's document: an A4 PDF of the letter rendered when the to-do was created (its
payload), with the company's letterhead and the customer's postal address.

Made on first request, not in the send cycle (WeasyPrint's import costs ~1 s and a page ~20-80 ms;
the send cycle is benchmarked and most letters are printed days later, if at all), then kept in
``todo_documents``: every later download is the same document, byte for byte.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from dunningops.dunning import todos
from dunningops.dunning.runconfig import RunConfig
from dunningops.errors import InvalidInputError
from dunningops.render.layout import text_to_html
from dunningops.render.pdf import address_lines, letter_pdf
from dunningops.store.engine import Store
from dunningops.store.schema import CustomerRow
from dunningops.store.schema_notices import TodoDocumentRow

__all__ = ["PDF", "LetterDocument", "describe", "document", "document_name", "postal_address"]

PDF = "application/pdf"
documents, customers = TodoDocumentRow.__table__, CustomerRow.__table__
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class LetterDocument(NamedTuple):
    name: str
    data: bytes


def document(store: Store, todo_id: int, at: datetime) -> LetterDocument:
    """The PDF of letter to-do ``todo_id``: the stored one, else made now and stored (the first one
    stored wins if two requests make it at once).

    Raises:
        NotFoundError: no such to-do. InvalidInputError: it is not a letter, or holds no rendered letter.
        LetterTooLargeError, UnavailableError: from render.pdf (too long to print; no Pango).
    """
    with store.session() as session:
        todo = todos.get(session, todo_id)
        _check(todo)
        if (stored := _stored(session, todo_id)) is not None:
            return stored
        name = document_name(todo)
        source = _source(session, todo)
    data = letter_pdf(**source)  # outside any transaction: it takes a while
    with store.session(write_lock=True) as session:
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        session.execute(
            dialect.insert(documents)
            .values(
                todo_id=todo_id,
                name=name,
                content_type=PDF,
                data=data,
                sha256=hashlib.sha256(data).hexdigest(),
                created_at=at,
            )
            .on_conflict_do_nothing(index_elements=["todo_id", "name"])
        )
        stored = _stored(session, todo_id)
    assert stored is not None  # written above, or by whoever was first
    return stored


def describe(session: Session, todo_id: int) -> dict[str, Any] | None:
    """The letter's stored document (name, sha256, size, created_at), or None while not made yet."""
    row = (
        session.execute(
            select(documents.c.name, documents.c.sha256, func.length(documents.c.data).label("size"), documents.c.created_at)
            .where(documents.c.todo_id == todo_id, documents.c.content_type == PDF)
            .order_by(documents.c.id)
            .limit(1)
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


def postal_address(session: Session, customer_id: int, from_country: str | None, locale: str) -> list[str]:
    """The customer's postal address as the letter prints it (empty: the ledger has none)."""
    row = session.execute(
        select(
            customers.c.address_line1, customers.c.address_line2, customers.c.postal_code, customers.c.city, customers.c.country
        ).where(customers.c.id == customer_id)
    ).one()
    return address_lines(row._mapping, from_country=from_country, locale=locale)


def document_name(todo: dict[str, Any]) -> str:
    """``letter-<plan>-<step>-<customer>.pdf``, safe as a file name anywhere."""
    parts = [todo.get("plan_id"), todo.get("step_id"), todo.get("customer")]
    safe = [_UNSAFE.sub("-", str(p)).strip("-.")[:80] for p in parts if p]
    return "-".join(["letter", *(p for p in safe if p)]) + ".pdf" if any(safe) else f"letter-{todo['id']}.pdf"


def _check(todo: dict[str, Any]) -> None:
    if todo["kind"] != "letter":
        kind = todo["kind"].replace("_", " ")
        raise InvalidInputError(f"to-do #{todo['id']} is a {kind} to-do, not a letter: it has no document")
    payload = todo["payload"] or {}
    if not payload.get("subject") or not (payload.get("html") or payload.get("text")):
        raise InvalidInputError(f"to-do #{todo['id']} holds no rendered letter to print")


def _stored(session: Session, todo_id: int) -> LetterDocument | None:
    row = session.execute(
        select(documents.c.name, documents.c.data)
        .where(documents.c.todo_id == todo_id, documents.c.content_type == PDF)
        .order_by(documents.c.id)
        .limit(1)
    ).first()
    return LetterDocument(row.name, bytes(row.data)) if row else None


def _source(session: Session, todo: dict[str, Any]) -> dict[str, Any]:
    """letter_pdf's arguments: the applied company settings, the customer's address as the ledger
    has it now, the letter as rendered when the to-do was made, dated that day."""
    config = RunConfig.from_store(session)
    company = config.settings.company
    customer = session.execute(
        select(
            customers.c.name,
            customers.c.address_line1,
            customers.c.address_line2,
            customers.c.postal_code,
            customers.c.city,
            customers.c.country,
            customers.c.locale,
        ).where(customers.c.id == todo["customer_id"])
    ).one()
    payload = todo["payload"]
    language = payload.get("language") or company.language
    locale = next((loc for loc in (customer.locale, company.locale) if loc and loc.split("_")[0] == language), language)
    design = (config.templates.get(payload.get("template") or "") or {}).get("design")
    # The text design's own words make cleaner paragraphs than the email layout around them.
    body = text_to_html(payload["text"]) if design == "text" and payload.get("text") else payload.get("html") or ""
    if not body:
        body = text_to_html(payload.get("text") or "")
    return {
        "company": {
            "name": company.name,
            "address": list(company.address),
            "legal": company.legal,
            "brand_color": company.brand_color,
            "logo_url": company.logo_url,
            "country": company.country,
        },
        "customer": dict(customer._mapping),
        "subject": payload["subject"],
        "body_html": body,
        "date": todo["created_at"].astimezone(ZoneInfo(company.timezone)).date(),
        "language": language,
        "locale": locale,
    }
