"""Alerts on Slack: an HTTP POST of ``{"text": …}`` to the incoming-webhook URL read from the
environment variable ``settings.alerts.slack_webhook_env`` (the URL is a secret: never shown)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from dunningops.alerts import store as alert_store
from dunningops.alerts.common import (
    KIND_LABELS,
    MAX_VALUE,
    AnnounceReport,
    HttpPost,
    customer_of,
    details_of,
    fail_all,
    leave_waiting,
    one_line,
)
from dunningops.spec.models import Settings


def _mrkdwn(text: Any) -> str:
    # Slack's escaping: only these three are control characters in message text.
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(row: dict[str, Any]) -> str:
    """The Slack message: the kind and title in bold, the customer and contact, a few details."""
    label = KIND_LABELS.get(row["kind"], row["kind"])
    lines = [f"*{_mrkdwn(label)}: {_mrkdwn(one_line(row['title'], 1000))}*"]
    about = []
    if (customer := customer_of(row)) is not None:
        about.append(f"Customer: {_mrkdwn(customer)}")
    if row.get("contact_email"):
        about.append(f"Contact: {_mrkdwn(row['contact_email'])}")
    if about:
        lines.append(" · ".join(about))
    details = details_of(row)
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
        raise _Unreachable(f"failed: could not connect ({one_line(why, MAX_VALUE)})") from None
    except OSError as exc:
        raise _Unreachable(f"failed: could not connect ({one_line(exc.strerror or type(exc).__name__, MAX_VALUE)})") from None
    except ValueError:  # http.client.InvalidURL and the like: their message quotes the URL
        return "failed: the webhook URL is malformed"
    if 200 <= status < 300:
        return "sent"
    answer = one_line(answer.replace(url, "***"), 100)
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


def announce_on_slack(
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
        fail_all(store, rows, "slack", problem, report)
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
                leave_waiting(rows[i + 1 :], "slack", "the webhook did not answer", report)
            return
        with store.session(write_lock=True) as session:
            alert_store.set_channel(session, row["id"], "slack", outcome)
        if outcome == "sent":
            report._add(report.counts, "slack")
        else:
            report._add(report.failed, "slack")
            report.problems.append(f"slack: alert #{row['id']}: {outcome}")
