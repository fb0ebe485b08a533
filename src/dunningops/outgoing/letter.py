"""A letter: one email to send with what its history records; what became of it once recorded and sent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dunningops.transport.base import SendResult
from dunningops.transport.message import OutgoingMessage

# What the history says of a reminder's step: a deferred reminder's next send reuses its Message-ID.
REMINDER_KEY = ("kind", "plan_id", "step_id", "customer_id", "anchor_invoice_id")


@dataclass(frozen=True)
class Letter:
    """One email and what the history records about it.

    ``message.message_id`` is ignored: the way out assigns it (or reuses a deferred one's).
    ``reuse`` names history columns: a ``deferred`` row with the same values for them lends
    its Message-ID (and row) to this send; ``reuse_id`` names such a row directly.
    ``tag`` is the caller's own (a draft, an outbox id), handed back with the outcome.
    """

    message: OutgoingMessage
    kind: str
    automatic: bool = False
    customer_id: int | None = None
    plan_id: str | None = None
    step_id: str | None = None
    anchor_invoice_id: int | None = None
    todo_id: int | None = None
    template_id: str | None = None
    language: str | None = None
    sender_ref: str | None = None
    invoice_ids: tuple[int, ...] = ()
    performed_by: str | None = None
    reuse: tuple[str, ...] = ()
    reuse_id: int | None = None
    # E6: the base URL of the public links when its plan tracks opens (a pixel is added); "" otherwise.
    track_opens: str = ""
    tag: Any = None

    def key(self, columns: tuple[str, ...]) -> tuple:
        return tuple(getattr(self, c) for c in columns)


@dataclass(frozen=True)
class Recorded:
    """A letter once its row is committed ``sending``: its row id and the message as it is sent."""

    letter: Letter
    id: int
    message: OutgoingMessage
    reused: bool = False


@dataclass(frozen=True)
class Outcome:
    """What became of a recorded letter: ``status`` is what the history now says."""

    recorded: Recorded
    result: SendResult
    status: str  # sent | failed | deferred | unknown

    @property
    def letter(self) -> Letter:
        return self.recorded.letter

    @property
    def message_id(self) -> str:
        return self.recorded.message.message_id

    @property
    def problem(self) -> str:
        return f"{self.result.code} {self.result.detail}" if self.result.code is not None else self.result.detail
