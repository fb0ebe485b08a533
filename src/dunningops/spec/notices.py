"""The config of notifications besides the plans (T7, T8, A9) and of who may do what (T1)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from dunningops.spec.base import SENDERS, Model
from dunningops.spec.types import Email, Id


class CustomerNotice(Model):
    """A notification to customers (T7, T8): its template (subject and message, with tags), sender and recipients."""

    enabled: bool = Field(
        default=True, description="sent by default (T7: to every customer the filters select; T8: for every incident)"
    )
    template: Id
    from_: str = Field(alias="from", description=f"the sender: {SENDERS}")
    to: list[Id] = Field(default_factory=list, description="contact functions; none = the primary contact")
    cc: list[Id] = Field(default_factory=list)


class PortalNotice(Model):
    """A9: a portal notification, sent from ``settings.portal.notifications_alias``."""

    enabled: bool = True
    template: Id
    to: list[Id] = Field(default_factory=list, description="contact functions; none = the primary contact")
    max_age_days: int = Field(
        default=7,
        ge=0,
        le=366,
        description="only payments dated within this many days of their import are notified (older ones are history, "
        "e.g. a first import of the ledger)",
    )


class RatingNotice(Model):
    """T8: the rating widget's links, and who in the team hears of each rating."""

    to: list[Email] = Field(
        default_factory=list, max_length=100, description="the team's addresses told of each rating; none = alerts.email_to"
    )
    link_days: int = Field(default=30, ge=1, le=365, description="a rating link works this many days after it was sent")


class Notifications(Model):
    """Notifications to customers besides the dunning plans (T7, T8, A9), and the team's of ratings (T8)."""

    debtor: CustomerNotice | None = Field(default=None, description="the unpaid-invoice notification (T7)")
    incident_opened: CustomerNotice | None = Field(default=None, description="sent when an incident is opened")
    incident_closed: CustomerNotice | None = Field(default=None, description="sent when an incident is closed")
    payment_receipt: PortalNotice | None = Field(default=None, description="sent when the ledger records a payment")
    payment_failed: PortalNotice | None = Field(default=None, description="sent when the ledger records a failed payment")
    rating: RatingNotice = Field(default_factory=RatingNotice)


Permission = Literal["templates", "notifications", "send"]
BUILT_IN_ROLES = ("owner", "admin", "member")
