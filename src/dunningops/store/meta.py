"""Facts about the store itself (``store_meta``): the organisation's tag, the links' signing key."""

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


def signing_key(session: Session) -> bytes:
    """The key of the public links' HMAC signatures (written once by migration 0007).

    In the store, not the config: every daemon of one store signs and checks with the same key,
    and nobody who writes the config can read or choose it.
    """
    return bytes.fromhex(session.execute(select(meta.c.value).where(meta.c.key == "signing_key")).scalar_one())
