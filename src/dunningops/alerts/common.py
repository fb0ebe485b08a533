"""What the channels share: the labels, the limits, the report of an announce, and the few words
of an alert that every channel shows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dunningops.alerts import store as alert_store

# (url, JSON body, timeout in seconds) -> (HTTP status, response text); raises OSError when there is no answer.
HttpPost = Callable[[str, bytes, float], tuple[int, str]]

TIMEOUT_S = 10.0
KIND_LABELS = {
    "bounce": "Bounce",
    "complaint": "Spam complaint",
    "sending_refused": "Email refused",
    "promise_broken": "Promise broken",
    "quarantined": "Unreadable email",
    "rating": "Rating",
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
        done = ", ".join(f"{n} {c}" for c, n in in_order(self.counts)) or "nothing"
        failed = ", ".join(f"{n} {c}" for c, n in in_order(self.failed))
        waiting = ", ".join(f"{n} {c}" for c, n in in_order(self.waiting))
        return (
            f"Alerts announced: {done}"
            + (f"; failed: {failed}" if failed else "")
            + (f"; not tried yet: {waiting}" if waiting else "")
            + "."
        )


def in_order(counts: dict[str, int]) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda item: CHANNEL_ORDER.index(item[0]) if item[0] in CHANNEL_ORDER else 99)


def fail_all(store, rows: list[dict[str, Any]], channel: str, outcome: str, report: AnnounceReport) -> None:
    """Record the same failure for every alert of ``rows`` on ``channel`` (those not tried meanwhile)."""
    with store.session(write_lock=True) as session:
        for row in rows:
            if alert_store.claim(session, row["id"], channel):
                alert_store.set_channel(session, row["id"], channel, outcome)
                report._add(report.failed, channel)
    report.problems.append(f"{channel}: {len(rows)} alert(s) {outcome}")


def leave_waiting(rows: list[dict[str, Any]], channel: str, why: str, report: AnnounceReport) -> None:
    """Not tried: they stay ``pending`` (``store.pending``) for a later announce."""
    report.waiting[channel] = report.waiting.get(channel, 0) + len(rows)
    report.problems.append(f"{channel}: {len(rows)} alert(s) not tried ({why}); `dunningops alerts announce` tries them again")


def one_line(text: Any, limit: int) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def details_of(row: dict[str, Any]) -> list[tuple[str, str]]:
    """The first few details with a value, each on one short line."""
    found = [(str(k), one_line(v, MAX_VALUE)) for k, v in (row.get("details") or {}).items() if v not in (None, "", [], {})]
    return found[:MAX_DETAILS]


def customer_of(row: dict[str, Any]) -> str | None:
    if not row.get("customer"):
        return None
    return f"{row['customer']} ({row['customer_name']})" if row.get("customer_name") else str(row["customer"])
