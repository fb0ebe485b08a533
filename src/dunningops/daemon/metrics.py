"""The daemon's Prometheus metrics, on a registry of its own (two daemons in one test process, or
a daemon beside other libraries' metrics, never mix), and what /healthz says of the last cycles.

Counters grow with what the cycles did; ``dunningops_due`` and ``dunningops_waiting`` are the
picture at the last send cycle (every due step, and the ones that wait or are skipped, by reason).
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from dunningops.dunning.reasons import WAITING_REASONS, waiting_reason

# The `_created` series (each counter's creation time) double the output and say nothing here.
disable_created_metrics()

if TYPE_CHECKING:
    from dunningops.dunning.report import CycleReport
    from dunningops.inbox.importer import ImportReport

__all__ = ["CYCLES", "MESSAGE_STATUSES", "WAITING_REASONS", "Metrics", "waiting_reason"]

CYCLES = ("send", "import")
MESSAGE_STATUSES = ("sent", "failed", "deferred", "unknown")
IMPORT_KINDS = ("reply", "auto_reply", "bounce", "complaint", "quarantined")
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


class Metrics:
    """Counters, gauges and a histogram of the daemon's cycles; thread-safe (the loop writes, the
    HTTP server's threads read)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.messages = Counter("dunningops_messages", "Reminders handed to the transport, by outcome.", ["status"], registry=r)
        self.bounces = Counter("dunningops_bounces", "Bounces read by the import cycle.", registry=r)
        self.imported = Counter(
            "dunningops_imported", "Messages imported, by kind (quarantined: unreadable).", ["kind"], registry=r
        )
        self.due = Gauge("dunningops_due", "Due steps at the last send cycle, whatever happened to them.", registry=r)
        self.waiting = Gauge(
            "dunningops_waiting",
            "Due steps that waited or were skipped at the last send cycle, by reason.",
            ["reason"],
            registry=r,
        )
        self.cycle_seconds = Histogram(
            "dunningops_cycle_seconds", "How long each cycle took.", ["cycle"], buckets=BUCKETS, registry=r
        )
        self.cycle_errors = Counter("dunningops_cycle_errors", "Cycles that stopped on an error.", ["cycle"], registry=r)
        self.last_success = Gauge(
            "dunningops_last_success_timestamp_seconds", "When the last successful cycle ran (Unix time).", ["cycle"], registry=r
        )
        # Every label value exists from the start: a rate over a series that appears late misses its first step.
        for status in MESSAGE_STATUSES:
            self.messages.labels(status)
        for kind in IMPORT_KINDS:
            self.imported.labels(kind)
        for reason in WAITING_REASONS:
            self.waiting.labels(reason)
        for cycle in CYCLES:
            self.cycle_seconds.labels(cycle)
            self.cycle_errors.labels(cycle)
        self._lock = threading.Lock()
        self._last: dict[str, dict[str, Any]] = {}

    # --- what the loop reports ----------------------------------------------------------

    def send_cycle(self, report: CycleReport, *, seconds: float) -> None:
        """A send cycle that ran to its end (a transport's fatal error included: its results are recorded)."""
        for status, n in (
            ("sent", report.sent),
            ("failed", report.failed),
            ("deferred", report.deferred),
            # No clear answer from the server, and the sends of an interrupted run found now.
            ("unknown", report.unconfirmed + report.unknown),
        ):
            if n:
                self.messages.labels(status).inc(n)
        self.due.set(report.due)
        waiting = report.waiting
        for reason in WAITING_REASONS:
            self.waiting.labels(reason).set(waiting.get(reason, 0))
        error = str(report.fatal) if report.fatal is not None else None
        self._finished("send", report.at, seconds, error)

    def import_cycle(self, report: ImportReport, *, seconds: float) -> None:
        kinds = dict(report.effects.by_kind)
        if report.effects.quarantined:
            kinds["quarantined"] = report.effects.quarantined
        for kind, n in kinds.items():
            if n:
                self.imported.labels(kind).inc(n)
        if kinds.get("bounce"):
            self.bounces.inc(kinds["bounce"])
        error = str(report.fatal) if report.fatal is not None else None
        self._finished("import", report.at, seconds, error)

    def cycle_failed(self, cycle: str, *, at: datetime, seconds: float, error: str) -> None:
        """A cycle that raised: it counts as an error, and the last success stays where it was."""
        self._finished(cycle, at, seconds, error)

    def _finished(self, cycle: str, at: datetime, seconds: float, error: str | None) -> None:
        self.cycle_seconds.labels(cycle).observe(seconds)
        with self._lock:
            last = self._last.setdefault(cycle, {"last_success": None})
            last.update(at=at.isoformat(), ok=error is None, seconds=round(seconds, 3), error=error)
            if error is None:
                last["last_success"] = at.isoformat()
        if error is None:
            self.last_success.labels(cycle).set(at.timestamp())
        else:
            self.cycle_errors.labels(cycle).inc()

    # --- what the HTTP server reads -----------------------------------------------------

    def last_cycles(self) -> dict[str, dict[str, Any]]:
        """Per cycle: when it last ran, whether it succeeded, how long it took, its error, its last success."""
        with self._lock:
            return {cycle: dict(values) for cycle, values in self._last.items()}

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text format and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
