"""One batch of the import cycle as it goes through: what was read (``Incoming``) and what it did (``Effects``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from dunningops.alerts.events import AlertEvent
from dunningops.inbox.match import Match
from dunningops.inbox.parse import ParsedMail

EXCERPT = 500
TEMPORARY_PREFIX = "mail:"  # R6: a temporary customer's external id is its sender's address


@dataclass
class Incoming:
    """One message of a batch, as the importer read it."""

    source: str
    folder: str
    key: str
    dedupe_key: str
    raw: bytes | None
    parsed: ParsedMail | None = None
    problem: str | None = None  # why it is quarantined
    match: Match | None = None


@dataclass
class Effects:
    """What a batch did, for the report."""

    linked: int = 0
    ignored: int = 0
    quarantined: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    reply_todos: int = 0
    bounce_todos: int = 0
    invalidated: int = 0
    temporary_customers: int = 0
    alerts: list[AlertEvent] = field(default_factory=list)
    handled_ids: list[int] = field(default_factory=list)  # linked rows to flag or move after commit
    quarantine: list[dict] = field(default_factory=list)

    def add(self, other: Effects) -> None:
        for name in ("linked", "ignored", "quarantined", "reply_todos", "bounce_todos", "invalidated", "temporary_customers"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for kind, n in other.by_kind.items():
            self.by_kind[kind] = self.by_kind.get(kind, 0) + n
        self.alerts += other.alerts
        self.handled_ids += other.handled_ids
        self.quarantine += other.quarantine
