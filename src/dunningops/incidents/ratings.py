"""T8: the rating widget's signed links, the ratings they record, and the team's email of each.

A link carries an incident's id, signed for ``rating`` and expiring (signing.py): a forged link
is refused (404), a genuine one past its date says so (410), and neither records anything. The
page's GET only shows (mail scanners follow links); its POST records. One rating per incident:
while the incident is open the customer may rate again (the last one counts, ``rated_at``
moves); once it is closed a first rating is still taken (the closure email carries the widget),
but a given one is never changed.

Each rating that changes something is an alert of kind ``rating``, recorded in the rating's
transaction and announced once it has committed (``tell_team``): the team's email goes through
the alerts' email channel (claimed before sending: at most once) to ``notifications.rating.to``,
else ``alerts.email_to``, else the owners.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from dunningops import signing
from dunningops.errors import ConflictError, DunningOpsError, InvalidInputError, NotFoundError

if TYPE_CHECKING:
    from dunningops.alerts.common import AnnounceReport
    from dunningops.dunning.runconfig import RunConfig
    from dunningops.spec.models import Settings
    from dunningops.transport.base import Transport

__all__ = [
    "MAX_MESSAGE",
    "PURPOSE",
    "SCORES",
    "LinkExpiredError",
    "Rated",
    "RatingInputError",
    "RatingPage",
    "page",
    "rating_url",
    "record",
    "team_addresses",
    "tell_team",
]

# Signed, not carried: a rating link's token is no alias link nor a pixel.
PURPOSE = "rating"
SCORES = (1, 2, 3, 4, 5)
MAX_MESSAGE = 2000  # characters, once trimmed
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Control characters but tab and newline: PostgreSQL refuses NUL in text, and none belongs in a message.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class LinkExpiredError(NotFoundError):
    """A genuine rating link past its date: 410, in the customer's language."""

    http_status = 410

    def __init__(self, message: str, language: str):
        super().__init__(message)
        self.language = language


class RatingInputError(InvalidInputError):
    """A score or message the form cannot take; ``field`` is ``score`` or ``message``."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class RatingPage:
    """What the rating page shows of an incident and its rating (``rated_at`` in UTC)."""

    incident_id: int
    reference: str
    observations: str
    open: bool
    customer_id: int
    customer: str
    language: str  # fr | en: the page's and the team email's words follow the customer's locale
    company: str
    timezone: str
    rating: int | None
    message: str | None
    rated_at: datetime | None

    @property
    def changeable(self) -> bool:
        """May a rating be given now: while open, or once closed if none was given."""
        return self.open or self.rating is None

    @property
    def rated_local(self) -> datetime | None:
        """When it was rated, in the company's time zone."""
        return self.rated_at.astimezone(ZoneInfo(self.timezone)) if self.rated_at else None

    @property
    def rated_text(self) -> str | None:
        """``3 décembre 2026 à 10:15`` / ``3 December 2026 at 10:15`` (company time)."""
        from dunningops.render.formatting import long_date

        when = self.rated_local
        if when is None:
            return None
        day = long_date(when.date(), "fr_FR" if self.language == "fr" else "en_GB")
        return f"{day} {'à' if self.language == 'fr' else 'at'} {when:%H:%M}"


@dataclass(frozen=True)
class Rated:
    """What a POST did: the incident as it now is, and the alert telling the team (None: nothing changed)."""

    page: RatingPage
    changed: bool  # False: the same rating again (a second click); nothing recorded
    previous: int | None
    alert_id: int | None
    team: tuple[str, ...]  # who the team's email goes to
    channels: tuple[str, ...]  # where the alert was recorded to be announced


def rating_url(settings: Settings, key: bytes, incident_id: int, at: datetime) -> str:
    """The public link rating incident ``incident_id``, valid ``rating.link_days`` after ``at``."""
    expires_at = at + timedelta(days=settings.notifications.rating.link_days)
    token = signing.sign(key, PURPOSE, str(incident_id), expires_at=expires_at)
    return f"{signing.public_base_url(settings)}/l/r/{token}"


def _incident_of(key: bytes, token: str, now: datetime) -> tuple[int, bool]:
    """(incident id, expired) of a genuine link; NotFoundError for anything else."""
    value = signing.verify(key, PURPOSE, token, now)
    expired = False
    if value is None:
        # The signature alone: a genuine link past its date says so; a forged one learns nothing.
        value, expired = signing.verify(key, PURPOSE, token, _EPOCH), True
    if value is None or not value.isascii() or not value.isdigit():
        raise NotFoundError("this rating link is not valid")
    return int(value), expired


def _language(customer_locale: str | None, company_locale: str) -> str:
    for locale in (customer_locale, company_locale):
        language = (locale or "").split("_")[0]
        if language in ("fr", "en"):
            return language
    return "en"


def _load(session: Session, incident_id: int, settings: Settings, *, lock: bool = False) -> RatingPage:
    from dunningops.store.schema import CustomerRow
    from dunningops.store.schema_notices import IncidentRow

    incidents, customers = IncidentRow.__table__, CustomerRow.__table__
    query = (
        select(
            incidents.c.id,
            incidents.c.reference,
            incidents.c.observations,
            incidents.c.state,
            incidents.c.customer_id,
            incidents.c.rating,
            incidents.c.rating_message,
            incidents.c.rated_at,
            customers.c.name,
            customers.c.locale,
        )
        .join_from(incidents, customers, customers.c.id == incidents.c.customer_id)
        .where(incidents.c.id == incident_id)
    )
    # PostgreSQL: a rating and a closing of the same incident wait for each other (SQLite: the writer's lock).
    row = session.execute(query.with_for_update(of=incidents) if lock else query).first()
    if row is None:
        raise NotFoundError("this rating link is not valid: its request no longer exists")
    company = settings.company
    return RatingPage(
        incident_id=row.id,
        reference=row.reference,
        observations=row.observations,
        open=row.state == "open",
        customer_id=row.customer_id,
        customer=row.name,
        language=_language(row.locale, company.locale),
        company=company.name,
        timezone=company.timezone,
        rating=row.rating,
        message=row.rating_message,
        rated_at=row.rated_at,
    )


def page(session: Session, key: bytes, token: str, now: datetime, settings: Settings) -> RatingPage:
    """The incident a rating link is for (a GET: reads only).

    Raises:
        NotFoundError: a forged or altered link, or its incident is gone.
        LinkExpiredError: a genuine link past its date.
    """
    incident_id, expired = _incident_of(key, token, now)
    shown = _load(session, incident_id, settings)
    if expired:
        raise LinkExpiredError("this rating link has expired", shown.language)
    return shown


def parse_score(value: Any) -> int:
    """A score from the form (1 to 5)."""
    text = str(value).strip() if value is not None else ""
    if not (text.isascii() and text.isdigit()) or int(text) not in SCORES:
        raise RatingInputError("choose a score from 1 to 5", "score")
    return int(text)


def clean_message(value: str | None) -> str | None:
    """The customer's message, trimmed (None when empty); at most MAX_MESSAGE characters."""
    text = _CONTROL.sub("", (value or "").replace("\r\n", "\n").replace("\r", "\n")).strip()
    if len(text) > MAX_MESSAGE:
        raise RatingInputError(f"the message is {len(text):,} characters long; at most {MAX_MESSAGE:,}", "message")
    return text or None


def team_addresses(session: Session, settings: Settings) -> list[str]:
    """Who hears of a rating: ``notifications.rating.to``, else ``alerts.email_to``, else the owners."""
    from dunningops.store.schema import MemberRow

    if settings.notifications.rating.to:
        return list(settings.notifications.rating.to)
    if settings.alerts.email_to:
        return list(settings.alerts.email_to)
    return list(session.scalars(select(MemberRow.email).where(MemberRow.role == "owner").order_by(MemberRow.id)))


def _channels(settings: Settings, team: list[str]) -> list[str]:
    wanted = settings.alerts.rating if settings.alerts.rating is not None else ["in_app", "email"]
    return [c for c in wanted if c != "email" or team]


def record(store, token: str, score: Any, message: str | None, at: datetime, *, settings: Settings | None = None) -> Rated:
    """Record the rating a link's form POSTed, with the alert telling the team, in one transaction.

    Args:
        store: the store (``dunningops.store.Store``).
        token: the link's token.
        score: 1 to 5 (the form's text or a number).
        message: the customer's optional message (trimmed; at most MAX_MESSAGE characters).
        at: now; the rating's ``rated_at``.
        settings: the applied settings (None: read from the store).

    Raises:
        NotFoundError: a forged link, or its incident is gone; LinkExpiredError: a link past its date.
        RatingInputError: no score from 1 to 5, or a message too long.
        ConflictError: the incident is closed and was rated already: its rating no longer changes.
    """
    from dunningops.alerts import store as alert_store
    from dunningops.store.activity import record_activity
    from dunningops.store.meta import signing_key
    from dunningops.store.schema_notices import IncidentRow

    with store.session(write_lock=True) as session:
        if settings is None:
            from dunningops.dunning.runconfig import RunConfig

            settings = RunConfig.from_store(session).settings
        incident_id, expired = _incident_of(signing_key(session), token, at)
        before = _load(session, incident_id, settings, lock=True)
        if expired:
            raise LinkExpiredError("this rating link has expired", before.language)
        # Checked under the lock, after the link: a forged link never learns what the form may hold.
        chosen, text = parse_score(score), clean_message(message)
        if before.rating == chosen and before.message == text:
            # The same rating again (a second click, a reload): nothing new for anyone.
            return Rated(before, False, before.rating, None, (), ())
        if not before.changeable:
            raise ConflictError(f"request {before.reference} is closed and was rated already: its rating no longer changes")
        incidents = IncidentRow.__table__
        session.execute(
            update(incidents)
            .where(incidents.c.id == incident_id, or_(incidents.c.state == "open", incidents.c.rating.is_(None)))
            .values(rating=chosen, rating_message=text, rated_at=at)
        )
        after = _load(session, incident_id, settings)
        team = team_addresses(session, settings)
        channels = _channels(settings, team)
        alerts = settings.alerts.model_copy(update={"rating": channels})
        (alert_id,) = alert_store.record(session, [_event(after, before.rating)], at=at, settings=alerts)
        record_activity(
            session,
            member=None,
            via="link",
            action="incident.rate",
            at=at,
            target=after.reference,
            details={"rating": chosen, "previous": before.rating},
        )
    return Rated(after, True, before.rating, alert_id, tuple(team), tuple(channels))


def _event(rated: RatingPage, previous: int | None):
    from dunningops.alerts.events import AlertEvent

    when = rated.rated_local
    if previous is not None:
        what = f"{rated.customer} changed their rating of request {rated.reference} from {previous}/5 to {rated.rating}/5"
    else:
        what = f"{rated.customer} rated request {rated.reference} {rated.rating}/5"
    return AlertEvent(
        kind="rating",
        # The message in the title too: the one line the list, the email and Slack show first.
        title=f"{what}: “{rated.message}”" if rated.message else what,
        customer_id=rated.customer_id,
        details={
            "incident": rated.reference,
            "rating": f"{rated.rating}/5",
            "previous rating": f"{previous}/5" if previous is not None else None,
            "rated at": f"{when:%Y-%m-%d %H:%M} ({rated.timezone})" if when else None,
            "state": "open" if rated.open else "closed",
            "message": rated.message,
        },
    )


def tell_team(
    store,
    rated: Rated,
    *,
    config: RunConfig,
    transport_factory: Callable[[RunConfig], Transport] | None,
    env: Mapping[str, str],
    at: datetime,
) -> AnnounceReport | None:
    """Announce a rating's alert once it has committed: the team's email (and Slack when configured).

    Never raises for a channel's failure (it is recorded on the alert). A transport that cannot be
    opened leaves the email ``pending``: `dunningops alerts announce` and the daemon try it later.
    """
    from dunningops.alerts.channels import announce
    from dunningops.dunning.context import message_domain

    if rated.alert_id is None:
        return None
    settings = config.settings
    # The rating's own addresses, where the alert machinery reads the team's.
    alerts = settings.alerts.model_copy(update={"email_to": list(rated.team), "rating": list(rated.channels)})
    told = settings.model_copy(update={"alerts": alerts})
    transport = None
    if "email" in rated.channels and transport_factory is not None:
        try:
            transport = transport_factory(config)
        except (DunningOpsError, OSError):
            transport = None  # announce() below leaves the email waiting, with a problem line
    try:
        return announce(
            store, [rated.alert_id], settings=told, env=env, transport=transport, at=at, domain=message_domain(settings)
        )
    finally:
        if transport is not None:
            transport.close()
