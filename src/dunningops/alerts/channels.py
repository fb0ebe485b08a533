"""Announcing recorded alerts (C9) on the channels the settings name for their kind.

* ``in_app``: nothing to do: the alert is in the list from the moment it is recorded.
* ``email`` (by_email.py): one email per alert, or a digest, to ``settings.alerts.email_to``, from the fallback sender,
  through the one way out (``outgoing.send``): at most once, since the alert's email channel is
  claimed in the transaction that records the message ``sending``.
* ``slack`` (on_slack.py): an HTTP POST of ``{"text": …}`` to the incoming-webhook URL read from the
  environment variable ``settings.alerts.slack_webhook_env`` (the URL is a secret: never shown).

Announcing runs after the transaction that recorded the alerts committed, and never raises for
a channel's failure: it is recorded on the alert (``failed: …``) and counted in the report, so an
import does not fail because Slack is down. A channel whose outcome is recorded (or that is being
announced) is never tried again, so running ``announce`` again on ``pending()`` alerts is safe.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from dunningops.alerts import store as alert_store
from dunningops.alerts.by_email import announce_by_email, email_text
from dunningops.alerts.common import DIGEST_SIZE, KIND_LABELS, TIMEOUT_S, AnnounceReport, HttpPost
from dunningops.alerts.on_slack import announce_on_slack, post_json, slack_text
from dunningops.spec.models import Settings
from dunningops.transport.base import Transport

__all__ = [
    "DIGEST_SIZE",
    "KIND_LABELS",
    "AnnounceReport",
    "HttpPost",
    "announce",
    "announce_recorded",
    "email_text",
    "post_json",
    "slack_text",
]


def announce(
    store,
    alert_ids: Iterable[int],
    *,
    settings: Settings,
    env: Mapping[str, str],
    transport: Transport | None,
    at: datetime,
    domain: str,
    http_post: HttpPost | None = None,
    timeout_s: float = TIMEOUT_S,
) -> AnnounceReport:
    """Announce the alerts ``alert_ids`` on their kind's channels; never raises for a channel's failure.

    Args:
        store: the store (``dunningops.store.Store``); the alerts are committed already.
        alert_ids: the alerts to announce (``record``'s ids, or ``store.pending``'s).
        settings: the applied settings: the channels per kind, the company and its fallback sender.
        env: where the Slack webhook URL is read (``settings.alerts.slack_webhook_env``).
        transport: sends the alert emails; None leaves them pending (a problem line says so).
        at: the instant recorded and put in the emails' Date.
        domain: the right-hand side of the emails' Message-IDs.
        http_post: posts to Slack; defaults to the standard library's urllib.
        timeout_s: how long to wait for Slack's answer.
    """
    report = AnnounceReport()
    with store.session() as session:
        rows = alert_store.for_announcing(session, alert_ids)
    for row in rows:
        if (row["channels"] or {}).get("in_app") == "shown":
            report._add(report.counts, "in_app")
    wanted = {c: [r for r in rows if _due(r, c, settings)] for c in alert_store.ANNOUNCED}
    _drop_unconfigured(store, rows, settings)
    if wanted["email"]:
        announce_by_email(store, wanted["email"], settings, transport, at, domain, report)
    if wanted["slack"]:
        announce_on_slack(store, wanted["slack"], settings, env, http_post or post_json, timeout_s, report)
    return report


def announce_recorded(
    store,
    alert_ids: Iterable[int],
    *,
    at: datetime,
    transport_factory: Callable[[Any], Transport] | None,
    env: Mapping[str, str],
    http_post: HttpPost | None = None,
) -> AnnounceReport:
    """``announce`` with the applied settings, opening (and closing) a transport only when an alert
    kind is to be emailed: what a cycle calls once its alerts have committed."""
    from dunningops.dunning.context import message_domain
    from dunningops.dunning.runconfig import RunConfig

    ids = list(alert_ids)
    with store.session() as session:
        config = RunConfig.from_store(session)
    settings = config.settings
    emailed = any("email" in settings.alerts.channels_for(kind) for kind in settings.alerts.kinds())
    transport = transport_factory(config) if (ids and emailed and transport_factory is not None) else None
    try:
        return announce(
            store,
            ids,
            settings=settings,
            env=env,
            transport=transport,
            at=at,
            domain=message_domain(settings),
            http_post=http_post,
        )
    finally:
        if transport is not None:
            transport.close()


def _due(row: dict[str, Any], channel: str, settings: Settings) -> bool:
    # Configured for the kind now, and not tried yet (a channel recorded since is never tried again).
    configured = channel in settings.alerts.channels_for(row["kind"])
    return configured and (row["channels"] or {}).get(channel, alert_store.PENDING) == alert_store.PENDING


def _drop_unconfigured(store, rows: list[dict[str, Any]], settings: Settings) -> None:
    """A channel left ``pending`` that the settings no longer name is closed, so ``pending()`` ends."""
    stale = [
        (r["id"], c)
        for r in rows
        for c in alert_store.ANNOUNCED
        if (r["channels"] or {}).get(c) == alert_store.PENDING and c not in settings.alerts.channels_for(r["kind"])
    ]
    if stale:
        with store.session(write_lock=True) as session:
            for alert_id, channel in stale:
                if alert_store.claim(session, alert_id, channel):
                    alert_store.set_channel(session, alert_id, channel, "skipped: no longer configured")
