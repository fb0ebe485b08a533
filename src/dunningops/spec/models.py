"""The config's pydantic models: one class per YAML kind, ``extra="forbid"`` everywhere.

A misspelt key is an error (the loader turns it into file:line and a
suggestion). Rule ids from ../shared/spec/behaviour.md are cited where a
field implements one.
"""

from __future__ import annotations

import re
from datetime import time
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ConfigDict, Field, field_validator, model_validator

from dunningops.spec.base import SENDERS, Model
from dunningops.spec.notices import Notifications, Permission
from dunningops.spec.types import Days, Email, Id

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
AlertChannel = Literal["in_app", "email", "slack"]


# Typed default factories: a lambda's list literal would be inferred as list[str].
def _working_days() -> list[Weekday]:
    return ["mon", "tue", "wed", "thu", "fri"]


def _in_app_only() -> list[AlertChannel]:
    return ["in_app"]


# --- settings -------------------------------------------------------------------------


class Company(Model):
    name: str = Field(min_length=1)
    country: str = Field(default="FR", pattern=r"^[A-Z]{2}$", description="ISO 3166 code; public holidays follow it")
    timezone: str = "Europe/Paris"
    locale: str = Field(default="fr_FR", pattern=r"^[a-z]{2}(_[A-Z]{2})?$")
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    logo_url: str | None = None
    brand_color: str = Field(default="#1f4e79", pattern=r"^#[0-9a-fA-F]{6}$")
    address: list[str] = Field(
        default_factory=list, max_length=6, description="our postal address, a line each: the letterhead of letters"
    )
    legal: str | None = Field(default=None, max_length=300, description="legal mentions printed at the foot of letters")

    @field_validator("address")
    @classmethod
    def _address_lines(cls, value: list[str]) -> list[str]:
        for line in value:
            if not line.strip() or len(line) > 200 or any(ord(c) < 32 for c in line):
                raise ValueError(f"{line!r} is not an address line (one line, 1-200 characters)")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/Paris)") from None
        return value

    @property
    def language(self) -> str:
        return self.locale.split("_")[0]


class Deliverability(Model):
    # A2, E5: mail from an address outside ``domain`` (or with no domain) goes
    # out from ``fallback_sender``.
    domain: str | None = Field(default=None, pattern=r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
    fallback_sender: Email


class Window(Model):
    # E3: weekdays, 08:00-09:00 company time by default.
    days: list[Weekday] = Field(default_factory=_working_days, min_length=1)
    start: str = "08:00"
    end: str = "09:00"

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not re.match(r"^\d{2}:\d{2}$", value):
            raise ValueError(f"{value!r} is not a time of day: write it as HH:MM")
        time.fromisoformat(value)
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.start >= self.end:
            raise ValueError(f"the window must end after it starts ({self.start} >= {self.end})")
        return self


class Caps(Model):
    # T6: caps keep mail from being classed as spam; sending resumes when they allow.
    per_day: int = Field(default=300, ge=1)
    per_month: int = Field(default=1000, ge=1)

    @model_validator(mode="after")
    def _day_within_month(self) -> Caps:
        if self.per_day > self.per_month:
            raise ValueError(f"per_day ({self.per_day}) cannot exceed per_month ({self.per_month})")
        return self


class Transport(Model):
    kind: Literal["maildir", "smtp"] = "maildir"
    path: str = Field(default=".dunningops/maildir", description="maildir: folder, relative to the repo root")
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    # Secrets come only from the environment: the config names the variables.
    username_env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    password_env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    timeout_seconds: float = Field(default=30, gt=0)

    @model_validator(mode="after")
    def _smtp_needs_host(self) -> Transport:
        if self.kind == "smtp" and not self.host:
            raise ValueError("an smtp transport needs a host")
        return self


class Sending(Model):
    window: Window = Field(default_factory=Window)
    caps: Caps = Field(default_factory=Caps)
    skip_public_holidays: bool = True
    transport: Transport = Field(default_factory=Transport)


class Replies(Model):
    # R2/R3: imported mail only notifies unless ``manage`` is on; R6: ``import: all``.
    manage: bool = False
    import_: Literal["matched", "all"] = Field(default="matched", alias="import")


class Inbox(Model):
    """Where the import cycle reads replies and bounces; R7: each organisation has its own.

    Two organisations reading one shared mailbox each keep their own position in it (in their
    own store), take only the mail that is theirs (``accept_to``, and replies to their own
    messages), and only ever move or flag the messages they imported.
    """

    kind: Literal["maildir", "imap"] = "maildir"
    path: str = Field(default=".dunningops/inbox", description="maildir: folder, relative to the repo root")
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Literal["ssl", "starttls", "none"] = "ssl"
    # Secrets come only from the environment: the config names the variables.
    username_env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    password_env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    timeout_seconds: float = Field(default=30, gt=0, le=600)
    folders: list[str] = Field(default_factory=lambda: ["INBOX"], min_length=1, max_length=50)
    # What happens to a message once imported: left as it is, flagged, or moved to another folder.
    after_import: Literal["keep", "flag", "move"] = "keep"
    flag: str = Field(default="$Dunningops", pattern=r"^\\?[A-Za-z0-9$_.-]{1,64}$")
    move_to: str | None = Field(default=None, min_length=1, max_length=200)
    # R7: only mail addressed (To, Cc, Delivered-To) to one of these is this organisation's; empty: all.
    accept_to: list[Email] = Field(default_factory=list, max_length=100)

    @field_validator("folders")
    @classmethod
    def _folder_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not name or len(name) > 200 or any(ord(c) < 32 for c in name):
                raise ValueError(f"{name!r} is not a folder name")
        return value

    @model_validator(mode="after")
    def _complete(self) -> Inbox:
        if self.kind == "imap" and not self.host:
            raise ValueError("an imap inbox needs a host")
        if self.after_import == "move" and not self.move_to:
            raise ValueError("after_import: move needs `move_to` (the folder handled mail goes to)")
        return self


class Alerts(Model):
    # C9: where each kind of alert is announced; every alert is also kept in the store's list.
    bounce: list[AlertChannel] = Field(default_factory=_in_app_only, description="an email to a contact bounced")
    complaint: list[AlertChannel] = Field(default_factory=_in_app_only, description="a recipient reported our email as spam")
    sending_refused: list[AlertChannel] = Field(
        default_factory=_in_app_only, description="a mail server refused our email for our setup's sake (policy, spam)"
    )
    promise_broken: list[AlertChannel] = Field(default_factory=_in_app_only, description="a promise to pay passed unpaid")
    quarantined: list[AlertChannel] = Field(default_factory=_in_app_only, description="an incoming email could not be read")
    rating: list[AlertChannel] | None = Field(
        default=None,
        description=(
            "a customer rated how an incident was handled; its email goes to notifications.rating.to, else email_to, "
            "else the owners; none = the in-app list and that email"
        ),
    )
    email_to: list[Email] = Field(default_factory=list)
    slack_webhook_env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]*$")

    @staticmethod
    def kinds() -> tuple[str, ...]:
        """The alert kinds that have a channel list here (alerts/events.py ALERT_KINDS, kept in step by a test)."""
        return ("bounce", "complaint", "sending_refused", "promise_broken", "quarantined", "rating")

    def channels_for(self, kind: str) -> list[AlertChannel]:
        """The channels an alert of ``kind`` goes to (an unknown kind: the in-app list only)."""
        if kind == "rating" and self.rating is None:
            # T8: by email when these settings know an address; incidents/ratings.py also asks the other sources.
            return ["in_app", "email"] if self.email_to else ["in_app"]
        return list(getattr(self, kind)) if kind in self.kinds() else ["in_app"]

    @model_validator(mode="after")
    def _channels_have_targets(self) -> Alerts:
        for kind in self.kinds():
            channels = getattr(self, kind) or []
            label = kind.replace("_", " ")
            # A rating's email has other addresses to go to (notifications.rating.to, the owners).
            if "email" in channels and not self.email_to and kind != "rating":
                raise ValueError(f"{label} alerts by email need `email_to`")
            if "slack" in channels and not self.slack_webhook_env:
                raise ValueError(f"{label} alerts on Slack need `slack_webhook_env` (the variable holding the webhook URL)")
        return self


class Portal(Model):
    # A9: portal notifications go out from one alias; A5 guards its deletion.
    notifications_alias: Id | None = None


class Safety(Model):
    # Like octoDNS's thresholds: an apply that destroys or replaces more than
    # this share of existing objects needs --allow-destroy.
    max_destroy_share: float = Field(default=0.3, ge=0, le=1)
    min_objects: int = Field(default=10, ge=0, description="the share applies once the store holds this many objects")


class Daemon(Model):
    """`dunningops daemon`: how often each cycle runs, and its one HTTP server."""

    send_every_minutes: int = Field(
        default=15, ge=1, le=1440, description="the send cycle's interval; it sends only inside the sending window"
    )
    import_every_minutes: int = Field(default=5, ge=1, le=1440, description="the import cycle's interval")
    host: str = Field(
        default="127.0.0.1",
        pattern=r"^[A-Za-z0-9.:-]{1,253}$",
        description="the address the HTTP server (console, API, links, metrics) listens on",
    )
    port: int = Field(default=8780, ge=1, le=65535)
    public_url: str | None = Field(
        default=None,
        pattern=r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$",
        description="where customers and aliases reach the public links (verification, tracking pixel); "
        "default: http://host:port",
    )


class Console(Model):
    """The team console: who signs in and how long a session lasts."""

    session_minutes: int = Field(default=480, ge=5, le=43200, description="a session ends this long after sign-in")
    trusted_user_header: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9-]{1,64}$",
        description="sign members in from this header set by an authenticating reverse proxy (its value: a member id "
        "or email); honoured only from trusted_proxies",
    )
    trusted_proxies: list[str] = Field(default_factory=lambda: ["127.0.0.1", "::1"], max_length=50)


class Settings(Model):
    company: Company
    deliverability: Deliverability
    sending: Sending = Field(default_factory=Sending)
    replies: Replies = Field(default_factory=Replies)
    inbox: Inbox = Field(default_factory=Inbox)
    alerts: Alerts = Field(default_factory=Alerts)
    portal: Portal = Field(default_factory=Portal)
    safety: Safety = Field(default_factory=Safety)
    daemon: Daemon = Field(default_factory=Daemon)
    console: Console = Field(default_factory=Console)
    notifications: Notifications = Field(default_factory=Notifications)
    # T1: roles besides owner and admin (who may do everything), each with its permissions;
    # `member` may be listed to give plain members some.
    roles: dict[Id, list[Permission]] = Field(
        default_factory=dict,
        description="role → permissions (templates, notifications, send); owner and admin have them all",
    )

    @field_validator("roles")
    @classmethod
    def _custom_roles(cls, value: dict[str, list[Permission]]) -> dict[str, list[Permission]]:
        for role in value:
            if role in ("owner", "admin"):
                raise ValueError(f"role {role!r} is built in and has every permission: it cannot be redefined")
        return value


# --- people and identities ----------------------------------------------------------------


class Member(Model):
    id: Id
    email: Email
    name: str = Field(min_length=1)
    role: Id = Field(default="member", description="owner, admin, member, or a role of settings.roles (T1)")


class Alias(Model):
    """A1: a sender identity. A4: only display_name and signature may change."""

    id: Id
    email: Email
    display_name: str = Field(min_length=1)
    signature: str = ""


class ContactFunction(Model):
    """C5: a contact function with translatable labels."""

    id: Id
    label: str = Field(min_length=1)
    labels: dict[str, str] = Field(default_factory=dict, description="label per language, e.g. {fr: Payeur}")

    @field_validator("labels")
    @classmethod
    def _languages(cls, value: dict[str, str]) -> dict[str, str]:
        for lang in value:
            if not re.match(r"^[a-z]{2}$", str(lang)):
                raise ValueError(f"{lang!r} is not a language code: use two letters such as fr or en")
        return value


# --- templates ----------------------------------------------------------------------------


class TemplateLocale(Model):
    subject: str = Field(min_length=1)
    body: str = Field(min_length=1, description="file beside the YAML holding the body for this language")


class Template(Model):
    """T2: name, subject, a body in one of three designs, one body file per language."""

    id: Id
    name: str = Field(min_length=1)
    design: Literal["text", "html", "blocks"] = "text"
    locales: dict[str, TemplateLocale] = Field(min_length=1)

    @field_validator("locales")
    @classmethod
    def _languages(cls, value: dict[str, TemplateLocale]) -> dict[str, TemplateLocale]:
        for lang in value:
            if not re.match(r"^[a-z]{2}$", lang):
                raise ValueError(f"{lang!r} is not a language code: use two letters such as fr or en")
        return value


# --- plans --------------------------------------------------------------------------------


class Assign(Model):
    default: bool = Field(default=False, description="customers matched by no other plan get this one")
    where: dict[Literal["country", "currency", "locale"], list[str]] = Field(default_factory=dict)


class Step(Model):
    """E1: one action of a plan: email (auto or manual), call or letter."""

    id: Id
    at: Days = Field(description="offset from the due date: -3d before, 7d after")
    action: Literal["email", "call", "letter"]
    send: Literal["auto", "manual"] = Field(default="manual", description="automatic sending is set per email action")
    from_: str | None = Field(default=None, alias="from", description=f"the sender: {SENDERS}")
    to: list[Id] = Field(default_factory=list, description="contact functions; none = the primary contact")
    cc: list[Id] = Field(default_factory=list)
    bcc: list[Id] = Field(default_factory=list)
    template: Id | None = None
    assignee: str | None = Field(default=None, description="who gets the to-do: account_manager or member.<id>")

    @model_validator(mode="after")
    def _shape(self) -> Step:
        if self.action != "email" and self.send == "auto":
            raise ValueError(f"step {self.id}: only email actions can be sent automatically")
        if self.action == "email" and not self.from_:
            raise ValueError(f"step {self.id}: an email action needs `from` ({SENDERS})")
        if self.action in ("email", "letter") and not self.template:
            raise ValueError(f"step {self.id}: a {self.action} action needs a template")
        if self.action != "email" and (self.from_ or self.cc or self.bcc):
            raise ValueError(f"step {self.id}: from/cc/bcc only apply to email actions")
        return self


class Plan(Model):
    id: Id
    name: str = Field(min_length=1)
    level: Literal["customer", "invoice"] = "customer"
    assign: Assign = Field(default_factory=Assign)
    min_contact_delay: Days = "0d"
    reply_to: Email | None = Field(default=None, description="replies go here instead of the sender")
    # E7: first_step is the standard logic (a customer new to the plan starts at its first step,
    # however overdue); by_age starts at the step the anchor invoice's age has reached.
    entry: Literal["first_step", "by_age"] = Field(
        default="first_step",
        description="where a customer (or invoice) new to the plan starts: first_step, or by_age, "
        "the step its oldest invoice's age has reached (earlier steps are skipped)",
    )
    group_invoices: bool = Field(
        default=True,
        description="invoice-level plans: the invoices of one customer at the same step on the same day "
        "go out in one email (customer-level plans always send one email per customer)",
    )
    track_opens: bool = Field(
        default=False, description="put a tracking pixel in this plan's emails, so the history shows when one was opened"
    )
    steps: list[Step] = Field(min_length=1)

    @field_validator("min_contact_delay")
    @classmethod
    def _not_negative(cls, value: str) -> str:
        if value.startswith("-"):
            raise ValueError("min_contact_delay cannot be negative")
        return value


# --- refactoring ----------------------------------------------------------------------------


class Moved(Model):
    """A rename: the object keeps its history and what points at it (like Terraform's moved)."""

    from_: str = Field(alias="from", pattern=r"^[a-z_]+\.[a-z0-9][a-z0-9_-]*$")
    to: str = Field(pattern=r"^[a-z_]+\.[a-z0-9][a-z0-9_-]*$")


class Removed(Model):
    """C8: deleting a contact function says where its contacts go (or ``null``: nowhere)."""

    from_: str = Field(alias="from", pattern=r"^contact_function\.[a-z0-9][a-z0-9_-]*$")
    reassign_to: Id | None


class ConfigFile(Model):
    """One YAML file of the config directory; every kind is optional, files are merged."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        title="dunningops config file",
        json_schema_extra={"$id": "https://dunningops.dev/schema/config-v1.json"},
    )

    version: Literal[1] = 1
    settings: Settings | None = None
    members: list[Member] = Field(default_factory=list)
    aliases: list[Alias] = Field(default_factory=list)
    contact_functions: list[ContactFunction] = Field(default_factory=list)
    templates: list[Template] = Field(default_factory=list)
    plans: list[Plan] = Field(default_factory=list)
    moved: list[Moved] = Field(default_factory=list)
    removed: list[Removed] = Field(default_factory=list)
