"""Announcing recorded alerts (C9) on the channels the settings name for their kind.

* ``in_app``: nothing to do: the alert is in the list from the moment it is recorded.
* ``email``: one email per alert to ``settings.alerts.email_to``, from the fallback sender,
  through the one way out (``outgoing.send``): at most once, since the alert's email channel is
  claimed in the transaction that records the message ``sending``.
* ``slack``: an HTTP POST of ``{"text": …}`` to the incoming-webhook URL read from the
  environment variable ``settings.alerts.slack_webhook_env`` (the URL is a secret: never shown).

Announcing runs after the transaction that recorded the alerts committed, and never raises for
a channel's failure: it is recorded on the alert (``failed: …``) and counted in the report, so an
import does not fail because Slack is down. A channel whose outcome is recorded (or that is being
announced) is never tried again, so running ``announce`` again on ``pending()`` alerts is safe.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from dunningops import outgoing
from dunningops.alerts import store as alert_store
from dunningops.errors import DunningOpsError
from dunningops.outgoing import Letter, NotClaimed, Outcome, Recorded
from dunningops.spec.models import Settings
from dunningops.transport.base import Transport, TransportError
from dunningops.transport.message import Address, OutgoingMessage

__all__ = ["KIND_LABELS", "AnnounceReport", "HttpPost", "announce", "announce_recorded", "email_text", "slack_text"]

# (url, JSON body, timeout in seconds) -> (HTTP status, response text); raises OSError when there is no answer.
HttpPost = Callable[[str, bytes, float], tuple[int, str]]

TIMEOUT_S = 10.0
KIND_LABELS = {
    "bounce": "Bounce",
    "complaint": "Spam complaint",
    "sending_refused": "Email refused",
    "promise_broken": "Promise broken",
    "quarantined": "Unreadable email",
}
CHANNEL_ORDER = ("in_app", "email", "slack")
MAX_DETAILS = 5  # a Slack line or an email stays short; `alerts show` has them all
MAX_VALUE = 200
MAX_SUBJECT_TITLE = 180
DIGEST_SIZE = 100  # alerts per email when several are announced at once


@dataclass
class AnnounceReport:
    """What announcing did: per channel, the alerts announced and the ones that failed.

    ``counts``: in_app (listed), email (sent), slack (posted). ``failed``: per channel, the
    alerts whose announcement failed or may not have arrived (``unknown``, ``deferred``).
    ``waiting``: per channel, the alerts left ``pending``, not tried (no transport, a transport
    that cannot work, a webhook that did not answer): ``alerts announce`` tries them later.
    ``problems``: one line per failure, for the log; never a secret.
    """

    counts: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    waiting: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.waiting and not self.problems

    def _add(self, counter: dict[str, int], channel: str) -> None:
        counter[channel] = counter.get(channel, 0) + 1

    def line(self) -> str:
        done = ", ".join(f"{n} {c}" for c, n in _in_order(self.counts)) or "nothing"
        failed = ", ".join(f"{n} {c}" for c, n in _in_order(self.failed))
        waiting = ", ".join(f"{n} {c}" for c, n in _in_order(self.waiting))
        return (
            f"Alerts announced: {done}"
            + (f"; failed: {failed}" if failed else "")
            + (f"; not tried yet: {waiting}" if waiting else "")
            + "."
        )


def _in_order(counts: dict[str, int]) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda item: CHANNEL_ORDER.index(item[0]) if item[0] in CHANNEL_ORDER else 99)


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
        _announce_by_email(store, wanted["email"], settings, transport, at, domain, report)
    if wanted["slack"]:
        _announce_on_slack(store, wanted["slack"], settings, env, http_post or post_json, timeout_s, report)
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


def _fail_all(store, rows: list[dict[str, Any]], channel: str, outcome: str, report: AnnounceReport) -> None:
    """Record the same failure for every alert of ``rows`` on ``channel`` (those not tried meanwhile)."""
    with store.session(write_lock=True) as session:
        for row in rows:
            if alert_store.claim(session, row["id"], channel):
                alert_store.set_channel(session, row["id"], channel, outcome)
                report._add(report.failed, channel)
    report.problems.append(f"{channel}: {len(rows)} alert(s) {outcome}")


def _leave_waiting(rows: list[dict[str, Any]], channel: str, why: str, report: AnnounceReport) -> None:
    """Not tried: they stay ``pending`` (``store.pending``) for a later announce."""
    report.waiting[channel] = report.waiting.get(channel, 0) + len(rows)
    report.problems.append(f"{channel}: {len(rows)} alert(s) not tried ({why}); `dunningops alerts announce` tries them again")


# --- email ---------------------------------------------------------------------------------


def _one_line(text: Any, limit: int) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _details(row: dict[str, Any]) -> list[tuple[str, str]]:
    """The first few details with a value, each on one short line."""
    found = [(str(k), _one_line(v, MAX_VALUE)) for k, v in (row.get("details") or {}).items() if v not in (None, "", [], {})]
    return found[:MAX_DETAILS]


def _customer(row: dict[str, Any]) -> str | None:
    if not row.get("customer"):
        return None
    return f"{row['customer']} ({row['customer_name']})" if row.get("customer_name") else str(row["customer"])


def email_text(row: dict[str, Any]) -> str:
    """The alert email's plain text: the title, what it is about, a few details, how to act on it."""
    lines = [_one_line(row["title"], 1000), "", f"What:      {KIND_LABELS.get(row['kind'], row['kind'])}"]
    if (customer := _customer(row)) is not None:
        lines.append(f"Customer:  {customer}")
    if row.get("contact_email"):
        lines.append(f"Contact:   {row['contact_email']}")
    if row.get("created_at") is not None:
        lines.append(f"When:      {row['created_at']:%Y-%m-%d %H:%M} UTC")
    details = _details(row)
    if details:
        lines += ["", *(f"{k}: {v}" for k, v in details)]
    lines += [
        "",
        f"See it with `dunningops alerts show {row['id']}`; acknowledge it with `dunningops alerts ack {row['id']}`.",
    ]
    return "\n".join(lines) + "\n"


def _letter(row: dict[str, Any], settings: Settings, at: datetime) -> Letter:
    company = settings.company.name
    return Letter(
        message=OutgoingMessage(
            message_id="",
            # From the fallback sender, as the other system emails: always an address we may send from.
            from_=Address(settings.deliverability.fallback_sender, company),
            to=[Address(a) for a in settings.alerts.email_to],
            subject=f"[{company}] {KIND_LABELS.get(row['kind'], 'Alert')}: {_one_line(row['title'], MAX_SUBJECT_TITLE)}",
            text=email_text(row),
            headers={"Auto-Submitted": "auto-generated", "X-Dunningops-Alert": str(row["id"])},
            date=at,
        ),
        # Not counted against the caps (T6), and no customer: the email goes to the team, so neither
        # the minimum delay between a customer's emails nor C9's refused-recipient rule may see it.
        kind="alert",
        automatic=True,
        tag=row["id"],
    )


def _email_outcome(outcome: Outcome) -> str:
    if outcome.status == "failed":
        return f"failed: {_one_line(outcome.problem, MAX_VALUE)}"
    return outcome.status  # sent | deferred | unknown


def _announce_by_email(
    store,
    rows: list[dict[str, Any]],
    settings: Settings,
    transport: Transport | None,
    at: datetime,
    domain: str,
    report: AnnounceReport,
) -> None:
    if transport is None:
        _leave_waiting(rows, "email", "no transport to send with", report)
        return
    # An import that reads 800 bounces sends the team a few digests, not 800 emails.
    chunks = [rows[start : start + DIGEST_SIZE] for start in range(0, len(rows), DIGEST_SIZE)]
    for n, chunk in enumerate(chunks):
        ids = [row["id"] for row in chunk]

        # Defs, not lambdas: mypy cannot infer a lambda's type with a default argument.
        def reserve(session, recorded: list[Recorded], ids: list[int] = ids) -> None:
            # All or nothing: an alert another process took makes the whole digest step back (below).
            if not all(alert_store.claim(session, alert_id, "email") for alert_id in ids):
                raise NotClaimed(f"alerts {ids}")

        def settle(session, outcomes: list[Outcome], ids: list[int] = ids) -> None:
            for o in outcomes:
                for alert_id in ids:
                    alert_store.set_channel(session, alert_id, "email", _email_outcome(o))

        try:
            letters = [_letter(chunk[0], settings, at) if len(chunk) == 1 else _digest(chunk, settings, at)]
            outcomes = outgoing.send(store, transport, letters, at=at, domain=domain, reserve=reserve, settle=settle)
            if not outcomes and len(chunk) > 1:
                # Not claimed as a whole (another process announces some of them): one email each.
                for row in chunk:
                    _announce_by_email(store, [row], settings, transport, at, domain, report)
                continue
        except TransportError as exc:
            # The transport cannot work as configured: these alerts' outcome (deferred) is recorded;
            # the rest wait, pending, for the setup to be fixed.
            report.failed["email"] = report.failed.get("email", 0) + len(chunk)
            report.problems.append(f"email: alerts {_ids(ids)}: {exc}")
            rest = [row for later in chunks[n + 1 :] for row in later]
            if rest:
                _leave_waiting(rest, "email", "the transport cannot send", report)
            return
        except DunningOpsError as exc:
            # The store refused the rows (nothing sent, still pending) or the outcome (stays `sending`).
            report.failed["email"] = report.failed.get("email", 0) + len(chunk)
            report.problems.append(f"email: alerts {_ids(ids)}: {exc}")
            continue
        for o in outcomes:
            if o.status == "sent":
                report.counts["email"] = report.counts.get("email", 0) + len(chunk)
            else:
                report.failed["email"] = report.failed.get("email", 0) + len(chunk)
                report.problems.append(f"email: alerts {_ids(ids)}: {_email_outcome(o)}")


def _ids(ids: list[int]) -> str:
    return ", ".join(f"#{i}" for i in ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")


def _digest(rows: list[dict[str, Any]], settings: Settings, at: datetime) -> Letter:
    """Several alerts in one email: a count by kind in the subject, each alert's text in the body."""
    company = settings.company.name
    kinds: dict[str, int] = {}
    for row in rows:
        kinds[row["kind"]] = kinds.get(row["kind"], 0) + 1
    what = ", ".join(f"{n} {KIND_LABELS.get(k, k).lower()}" for k, n in sorted(kinds.items()))
    body = f"{len(rows)} alerts ({what}).\n\n" + "\n---\n\n".join(email_text(row) for row in rows)
    return Letter(
        message=OutgoingMessage(
            message_id="",
            from_=Address(settings.deliverability.fallback_sender, company),
            to=[Address(a) for a in settings.alerts.email_to],
            subject=f"[{company}] {len(rows)} alerts: {what}",
            text=body,
            headers={"Auto-Submitted": "auto-generated", "X-Dunningops-Alert": ",".join(str(r["id"]) for r in rows)},
            date=at,
        ),
        kind="alert",
        automatic=True,
        tag=rows[0]["id"],
    )


# --- Slack ---------------------------------------------------------------------------------


def _mrkdwn(text: Any) -> str:
    # Slack's escaping: only these three are control characters in message text.
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(row: dict[str, Any]) -> str:
    """The Slack message: the kind and title in bold, the customer and contact, a few details."""
    label = KIND_LABELS.get(row["kind"], row["kind"])
    lines = [f"*{_mrkdwn(label)}: {_mrkdwn(_one_line(row['title'], 1000))}*"]
    about = []
    if (customer := _customer(row)) is not None:
        about.append(f"Customer: {_mrkdwn(customer)}")
    if row.get("contact_email"):
        about.append(f"Contact: {_mrkdwn(row['contact_email'])}")
    if about:
        lines.append(" · ".join(about))
    details = _details(row)
    if details:
        lines.append(" · ".join(f"{_mrkdwn(k)}: {_mrkdwn(v)}" for k, v in details))
    lines.append(f"`dunningops alerts show {row['id']}`")
    return "\n".join(lines)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A webhook that redirects is not Slack's: the answer is recorded, the body never re-posted elsewhere.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def post_json(url: str, body: bytes, timeout: float) -> tuple[int, str]:
    """POST ``body`` as JSON with urllib; returns the status and the response's text (its start)."""
    opener = urllib.request.build_opener(_NoRedirects())
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": "dunningops"}
    )
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, response.read(2000).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:  # a non-2xx answer: an answer all the same
        with exc:
            return exc.code, exc.read(2000).decode("utf-8", "replace")


class _Unreachable(Exception):
    """No answer from the webhook: the next posts of this run would wait the same, so they wait for a later run."""

    def __init__(self, outcome: str):
        super().__init__(outcome)
        self.outcome = outcome


def _post_outcome(post: HttpPost, url: str, text: str, timeout_s: float) -> str:
    """``sent`` or ``failed: …``; raises _Unreachable (with the outcome to record) when there was no answer.

    Never shows the URL: a reason that could hold it (a malformed URL's) is replaced by a plain one.
    """
    body = json.dumps({"text": text}, ensure_ascii=False).encode("utf-8")
    try:
        status, answer = post(url, body, timeout_s)
    except TimeoutError:
        # The message was sent and no answer came: it may have been posted.
        raise _Unreachable(f"unknown: no answer within {timeout_s:g} s (it may have been posted)") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            raise _Unreachable(f"failed: could not connect within {timeout_s:g} s") from None
        why = reason.strerror if isinstance(reason, OSError) and reason.strerror else type(reason).__name__
        raise _Unreachable(f"failed: could not connect ({_one_line(why, MAX_VALUE)})") from None
    except OSError as exc:
        raise _Unreachable(f"failed: could not connect ({_one_line(exc.strerror or type(exc).__name__, MAX_VALUE)})") from None
    except ValueError:  # http.client.InvalidURL and the like: their message quotes the URL
        return "failed: the webhook URL is malformed"
    if 200 <= status < 300:
        return "sent"
    answer = _one_line(answer.replace(url, "***"), 100)
    if 300 <= status < 400:
        return f"failed: HTTP {status} (a redirect: not followed)"
    return f"failed: HTTP {status}" + (f" {answer}" if answer else "")


def _webhook_url(settings: Settings, env: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The URL, or the failure to record (naming the variable, never its value)."""
    variable = settings.alerts.slack_webhook_env
    url = env.get(variable) if variable else None
    if not url:
        state = "is empty" if url == "" else "is not set"
        return None, f"failed: the environment variable {variable} (the Slack webhook URL) {state}"
    scheme = urlsplit(url.strip()).scheme.lower()
    if scheme not in ("https", "http") or not urlsplit(url.strip()).netloc:
        return None, f"failed: the Slack webhook URL in {variable} must start with https:// (or http://)"
    return url.strip(), None


def _announce_on_slack(
    store,
    rows: list[dict[str, Any]],
    settings: Settings,
    env: Mapping[str, str],
    post: HttpPost,
    timeout_s: float,
    report: AnnounceReport,
) -> None:
    url, problem = _webhook_url(settings, env)
    if url is None:
        assert problem is not None
        _fail_all(store, rows, "slack", problem, report)
        return
    for i, row in enumerate(rows):
        # Claimed and committed before the POST: a second announce, or a crash, never posts it twice.
        with store.session(write_lock=True) as session:
            if not alert_store.claim(session, row["id"], "slack"):
                continue
        try:
            outcome = _post_outcome(post, url, slack_text(row), timeout_s)
        except _Unreachable as exc:
            with store.session(write_lock=True) as session:
                alert_store.set_channel(session, row["id"], "slack", exc.outcome)
            report._add(report.failed, "slack")
            report.problems.append(f"slack: alert #{row['id']}: {exc.outcome}")
            if rows[i + 1 :]:
                _leave_waiting(rows[i + 1 :], "slack", "the webhook did not answer", report)
            return
        with store.session(write_lock=True) as session:
            alert_store.set_channel(session, row["id"], "slack", outcome)
        if outcome == "sent":
            report._add(report.counts, "slack")
        else:
            report._add(report.failed, "slack")
            report.problems.append(f"slack: alert #{row['id']}: {outcome}")
