"""Facts about the store itself (``store_meta``): the organisation's tag."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from dunningops.store.schema import MetaRow

meta = MetaRow.__table__


def organisation_tag(session: Session) -> str:
    """This store's organisation tag (written once by migration 0006), put in its Message-IDs.

    Read per call and not cached: one process may open several stores (tests, two
    organisations), and the read is one primary-key lookup per batch of messages.
    """
    return session.execute(select(meta.c.value).where(meta.c.key == "organisation")).scalar_one()
