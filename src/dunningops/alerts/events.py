"""An alert as the cycles raise it, before it is recorded and announced."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

AlertKind = Literal["bounce", "complaint", "sending_refused", "promise_broken", "quarantined", "rating"]
ALERT_KINDS: tuple[AlertKind, ...] = ("bounce", "complaint", "sending_refused", "promise_broken", "quarantined", "rating")


@dataclass(frozen=True)
class AlertEvent:
    """Something the team must act on.

    ``title`` is the one line people read in the list, the email's subject and the Slack
    message; ``details`` holds what explains it (the bounce's status and diagnostic, the
    promise's date and amount), shown by ``alerts show`` and sent along.
    """

    kind: AlertKind
    title: str
    customer_id: int | None = None
    contact_email: str | None = None
    inbox_message_id: int | None = None
    message_id: int | None = None  # our outgoing message it is about (messages.id)
    details: dict[str, Any] = field(default_factory=dict)
