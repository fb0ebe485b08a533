"""What a send cycle did, for every output format: counts, decisions, errors, and one exit code."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from dunningops.alerts.events import AlertEvent
from dunningops.dunning.pause_ends import Ending
from dunningops.dunning.reasons import waiting_reason
from dunningops.dunning.schedule import Decision
from dunningops.errors import DunningOpsError, UnavailableError


@dataclass
class CycleReport:
    at: datetime
    dry_run: bool = False
    # Every decision, in the due query's order, unless the caller took them batch by batch as they were
    # final (run_send's ``on_decisions``: memory flat); the counts below are kept either way.
    decisions: list[Decision] = field(default_factory=list)
    due: int = 0  # the due steps decided
    counts: Counter = field(default_factory=Counter)  # their outcomes
    waiting: Counter = field(default_factory=Counter)  # the waits' and skips' reasons, as dunning/reasons.py's categories
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    unconfirmed: int = 0  # handed to the server without a clear answer: may have left, never re-sent
    todos: int = 0
    unknown: int = 0  # `sending` rows of an interrupted run, marked unknown now
    confirmations: int = 0  # A3 alias confirmation emails delivered from the outbox
    # Pauses past their date, ended first thing (in a dry run: what the real run would end; nothing written).
    pauses_ended: list[Ending] = field(default_factory=list)
    # What the team must know (a broken promise to pay), for the caller to record and announce. Empty in a
    # dry run, which raises nothing: its pauses_ended say what would be.
    alerts: list[AlertEvent] = field(default_factory=list)
    alert_ids: list[int] = field(default_factory=list)  # the alerts recorded (in_app), to announce after the run
    errors: list[str] = field(default_factory=list)  # reminders that could not be rendered, and `fatal`
    # Each reminder's fate (message_id, customer, kind, status, detail), for the daemon's log events.
    messages: list[dict] = field(default_factory=list)
    fatal: DunningOpsError | None = None  # the transport cannot work as configured: the run stopped
    # False: ``messages`` stays empty (the CLI logs no message one by one): a row per email sent
    # was what grew with the store in a run of 100,000 customers.
    keep_messages: bool = True

    def add(self, batch: list[Decision], *, keep: bool = True) -> None:
        """Count decisions once they are final (prepared, claimed); keep them when ``keep``."""
        self.due += len(batch)
        for d in batch:
            self.counts[d.outcome] += 1
            if d.outcome in ("wait", "skip"):
                # RunRules' category is the one its reason reads as (cheap: most due steps wait); a
                # wait set later (a step another cycle took) has none.
                self.waiting[d.category or waiting_reason(d.reason)] += 1
        if keep:
            self.decisions += batch

    def add_messages(self, fates: list[dict]) -> None:
        """Each reminder's fate, for the caller's log, when it keeps them (``keep_messages``)."""
        if self.keep_messages:
            self.messages += fates

    def outcomes(self) -> Counter:
        return Counter(self.counts)

    @property
    def ok(self) -> bool:
        """Every due reminder could be rendered and the transport worked (bounces and deferrals are not the run's fault)."""
        return self.fatal is None and not self.errors

    @property
    def nothing_delivered(self) -> bool:
        """Emails were due but every one was deferred (the server down or refusing for now): worth a non-zero exit."""
        return self.deferred > 0 and not (self.sent or self.failed or self.unconfirmed)

    @property
    def exit_code(self) -> int:
        """One contract for every output format: 0 ok; the fatal error's code (3, server unavailable); 1 when
        reminders could not be rendered; 3 when nothing could be delivered (a cron job must notice)."""
        if self.fatal is not None:
            return self.fatal.exit_code
        if not self.ok:
            return 1
        return UnavailableError.exit_code if self.nothing_delivered else 0
