"""The daemon: the import cycle every few minutes, the send cycle inside the sending window, one
HTTP server (console, API, public links, /healthz, /metrics) beside them, until SIGTERM or SIGINT.

``Daemon`` is the loop, with its clock and sleeper injected so that a test walks simulated days in
a second. Each wake-up reads the applied config again (only when an apply happened since), so an
``apply`` made while the daemon runs is used by its next cycle, intervals and window included. A
cycle that fails is logged and the loop goes on at the next interval: one bad cycle never kills
the daemon. A stop (the signal handler sets an event) wakes the sleeper at once; a cycle in flight
finishes what it handed to a server (the send cycle releases the rest, the import cycle ends after
its batch), so a clean stop leaves no message ``unknown``.

`dunningops daemon` itself (the lock, the HTTP server, the signals) is ``serve.run_daemon``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from dunningops.daemon import logs
from dunningops.daemon.metrics import Metrics
from dunningops.daemon.schedule import MAX_NAP, Due, next_due, sleep_seconds
from dunningops.errors import DunningOpsError, LockError, UnavailableError

if TYPE_CHECKING:
    from dunningops.app import App
    from dunningops.dunning.calendar import SendingCalendar
    from dunningops.dunning.report import CycleReport
    from dunningops.dunning.runconfig import RunConfig
    from dunningops.inbox.importer import ImportReport
    from dunningops.store.runners import Runner

__all__ = ["Daemon"]

# A daemon waits little for a cycle another process runs (PostgreSQL: several daemons share a
# store): it logs that the cycle is busy and tries again at its next interval.
LOCK_TIMEOUT_S = 5.0
MESSAGE_LEVELS = {"sent": "info", "failed": "warning", "deferred": "warning", "unknown": "warning"}


class Daemon:
    """The scheduler loop of one process.

    Args:
        app: the application (store, transports, mail source, environment).
        metrics: where cycles are counted (a new ``Metrics`` when not given).
        clock: "now" (default: ``app.now``).
        sleep: waits a number of seconds (default: until then, or until ``stop()``); a test passes
            one that advances its fake clock.
        lock_timeout_s: how long a cycle waits for the same cycle run by another process.
    """

    def __init__(
        self,
        app: App,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] | None = None,
        sleep: Callable[[float], object] | None = None,
        logger: Any = None,
        lock_timeout_s: float = LOCK_TIMEOUT_S,
    ):
        self.app = app
        self.metrics = metrics or Metrics()
        self.clock = clock or app.now
        self.stopping = threading.Event()
        self._sleep = sleep or self.stopping.wait
        self.log = logger or logs.get_logger()
        self.lock_timeout_s = lock_timeout_s
        self.last_send: datetime | None = None
        self.last_import: datetime | None = None
        self.exit_code = 0  # for --once: the worst outcome of the cycles run
        self.runner: Runner | None = None
        self._config: RunConfig | None = None
        self._calendar: SendingCalendar | None = None
        self._serial: int | None = None
        self._problem: str | None = None  # why there is no config to run on, logged when it changes

    # --- lifetime -----------------------------------------------------------------------

    def stop(self, reason: str = "asked") -> None:
        """Stop after the cycle in flight (callable from a signal handler or another thread)."""
        if not self.stopping.is_set():
            self.log.info("daemon.stopping", reason=reason)
        self.stopping.set()

    def run(self, *, once: bool = False, http: str | None = None) -> int:
        """Run until ``stop()`` (``once``: each due cycle once). Returns the exit code: 0 after a
        clean stop; with ``once``, the worst of the cycles' (1 an error, 3 a server unavailable)."""
        self._register()
        self.log.info("daemon.start", pid=os.getpid(), store=self.app.store.dialect, http=http, once=once)
        try:
            while not self.stopping.is_set():
                due = self.tick()
                if due is not None:
                    self.log.log(
                        logging.INFO if once else logging.DEBUG,
                        "daemon.next",
                        send=due.send.isoformat(),
                        **{"import": due.import_.isoformat()},
                    )
                if once or self.stopping.is_set():
                    break
                now = self.clock()
                self._sleep(sleep_seconds(due, now) if due is not None else MAX_NAP.total_seconds())
        finally:
            self._unregister()
            self.log.info("daemon.stop", last_send=_iso(self.last_send), last_import=_iso(self.last_import))
        return self.exit_code if once else 0

    def _register(self) -> None:
        # The runner row says which process sends (store/runners.py); kept for the daemon's life.
        from dunningops.store.runners import register

        if self.runner is None:
            self.runner = register(self.app.store, kind="daemon")

    def _unregister(self) -> None:
        if self.runner is not None:
            runner, self.runner = self.runner, None
            try:
                runner.close()
            except Exception:  # the row only informs; a stop must not fail on it
                self.log.warning("daemon.runner_not_closed", exc_info=True)

    # --- one wake-up --------------------------------------------------------------------

    def tick(self) -> Due | None:
        """Run the cycles due now (the import cycle first: a customer who has just replied is not
        chased in the same minute); the next instants, or None when there is no config to run on."""
        if self._read_config() is None:
            return None
        now = self.clock()
        if self._due(now).import_now(now) and not self.stopping.is_set():
            self.import_cycle(now)
            self.last_import = now
            if self._read_config() is None:
                return None
        now = self.clock()
        if self._due(now).send_now(now) and not self.stopping.is_set():
            self.send_cycle(now)
            self.last_send = now
        return self._due(self.clock())

    def _due(self, now: datetime) -> Due:
        assert self._config is not None and self._calendar is not None
        d = self._config.settings.daemon
        return next_due(
            self._calendar,
            send_every=timedelta(minutes=d.send_every_minutes),
            import_every=timedelta(minutes=d.import_every_minutes),
            last_send=self.last_send,
            last_import=self.last_import,
            now=now,
        )

    def _read_config(self) -> RunConfig | None:
        """The applied config, read again only after an apply (its id tells); None, logged once, when none."""
        from dunningops.dunning.calendar import SendingCalendar
        from dunningops.dunning.runconfig import RunConfig
        from dunningops.store.schema import ApplyRow

        try:
            with self.app.session() as session:
                serial = session.scalar(select(func.max(ApplyRow.id))) or 0
                if serial != self._serial:
                    config = RunConfig.from_store(session)
                    before, self._serial = self._serial, serial
                    self._config, self._calendar = config, SendingCalendar(config.settings)
                    logs.add_secrets(logs.secret_values(config.settings, self.app.env))
                    d = config.settings.daemon
                    self.log.info(
                        "config.loaded" if before is None else "config.changed",
                        apply=serial,
                        send_every_minutes=d.send_every_minutes,
                        import_every_minutes=d.import_every_minutes,
                    )
        except (DunningOpsError, DBAPIError) as exc:
            self._config_problem(self._message(exc))
            code = exc.exit_code if isinstance(exc, DunningOpsError) else UnavailableError.exit_code
            self.exit_code = max(self.exit_code, code)
            return None
        self._config_problem(None)
        return self._config

    def _config_problem(self, problem: str | None) -> None:
        if problem != self._problem:
            if problem is not None:
                self.log.warning("daemon.waiting", reason=problem)
            elif self._problem is not None:
                self.log.info("daemon.resumed")
        self._problem = problem

    # --- the cycles ---------------------------------------------------------------------

    def send_cycle(self, at: datetime) -> CycleReport | None:
        """One send cycle at ``at``, then the alerts it raised announced; None when it could not run."""
        from dunningops.dunning.cycle import run_send

        started = time.monotonic()
        try:
            report = run_send(
                self.app.store,
                at=at,
                transport_factory=self.app.transport,
                lock_timeout_s=self.lock_timeout_s,
                runner=self.runner,
                stop=self.stopping,
                # The report's counts are all the loop needs: the decisions are not kept (memory flat).
                on_decisions=_forget,
            )
        except Exception as exc:
            self._failed("send", at, started, exc)
            return None
        seconds = time.monotonic() - started
        self.metrics.send_cycle(report, seconds=seconds)
        self._log_send(report, seconds)
        self.exit_code = max(self.exit_code, report.exit_code)
        self._announce(at)
        return report

    def _log_send(self, report: CycleReport, seconds: float) -> None:
        outcomes = report.outcomes()
        for m in report.messages:
            status = m.get("status", "unknown")
            if report.fatal is not None and status == "deferred":
                continue  # the transport's fatal error is logged once below, not once per message
            getattr(self.log, MESSAGE_LEVELS.get(status, "warning"))(
                f"message.{status}",
                message_id=m.get("message_id"),
                customer=m.get("customer"),
                kind=m.get("kind"),
                status=status,
                detail=m.get("detail"),
            )
        fatal = str(report.fatal) if report.fatal is not None else None
        for problem in report.errors:
            if problem != fatal:
                self.log.warning("reminder.error", detail=problem)
        if fatal is not None:
            self.log.error("cycle.error", cycle="send", error=fatal, kind=getattr(report.fatal, "kind", "error"))
        self.log.info(
            "cycle.send",
            at=report.at.isoformat(),
            duration_s=round(seconds, 3),
            due=report.due,
            sent=report.sent,
            failed=report.failed,
            deferred=report.deferred,
            unknown=report.unconfirmed,
            interrupted=report.unknown,
            todos=report.todos,
            waiting=outcomes.get("wait", 0) + outcomes.get("skip", 0),
            errors=len(report.errors),
            confirmations=report.confirmations,
            pauses_ended=len(report.pauses_ended),
            ok=report.ok,
        )

    def _announce(self, at: datetime) -> None:
        """The alerts waiting for a channel (a recipient refused, a broken promise), as `run send` does."""
        from dunningops.alerts.channels import announce_recorded
        from dunningops.alerts.store import pending

        try:
            with self.app.session() as session:
                ids = pending(session)
            if not ids:
                return
            done = announce_recorded(self.app.store, ids, at=at, transport_factory=self.app.transport, env=self.app.env)
        except Exception as exc:
            self._failed("alerts", at, None, exc)
            return
        self.log.info("alerts.announced", alerts=len(ids), channels=dict(done.counts))
        for problem in done.problems:
            self.log.warning("alerts.problem", detail=problem)

    def import_cycle(self, at: datetime) -> ImportReport | None:
        """One import cycle at ``at``; None when it could not run."""
        from dunningops.inbox.importer import run_import

        started = time.monotonic()
        try:
            report = run_import(
                self.app.store,
                self.app.source,
                at=at,
                transport_factory=self.app.transport,
                env=self.app.env,
                lock_timeout_s=self.lock_timeout_s,
                stop=self.stopping,
            )
        except Exception as exc:
            self._failed("import", at, started, exc)
            return None
        seconds = time.monotonic() - started
        self.metrics.import_cycle(report, seconds=seconds)
        e = report.effects
        for problem in report.errors + report.warnings:
            self.log.warning("import.problem", detail=problem)
        if report.fatal is not None:
            self.log.error("cycle.error", cycle="import", error=str(report.fatal), kind=report.fatal.kind)
        self.log.info(
            "cycle.import",
            at=at.isoformat(),
            duration_s=round(seconds, 3),
            imported=report.imported,
            kinds=dict(e.by_kind),
            linked=e.linked,
            ignored=e.ignored,
            quarantined=e.quarantined,
            reply_todos=e.reply_todos,
            contacts_invalidated=e.invalidated,
            alerts=len(report.alert_ids),
            stopped=report.stopped,
            ok=report.ok,
        )
        self.exit_code = max(self.exit_code, report.exit_code)
        return report

    def _failed(self, cycle: str, at: datetime, started: float | None, exc: Exception) -> None:
        """A cycle that raised: logged (a bug with its traceback), counted, and the loop goes on."""
        seconds = time.monotonic() - started if started is not None else 0.0
        if isinstance(exc, LockError):
            # Another process runs this cycle on the store: not an error, the next interval tries again.
            self.log.info("cycle.busy", cycle=cycle, detail=str(exc))
            return
        message = self._message(exc)
        if isinstance(exc, DunningOpsError | DBAPIError):
            kind = exc.kind if isinstance(exc, DunningOpsError) else UnavailableError.kind
            self.log.error("cycle.error", cycle=cycle, error=message, kind=kind)
            code = exc.exit_code if isinstance(exc, DunningOpsError) else UnavailableError.exit_code
        else:
            self.log.error("cycle.error", cycle=cycle, error=message, kind="bug", exc_info=exc)
            code = 1
        if cycle in ("send", "import"):
            self.metrics.cycle_failed(cycle, at=at, seconds=seconds, error=message)
        self.exit_code = max(self.exit_code, code)

    def _message(self, exc: BaseException) -> str:
        if isinstance(exc, DunningOpsError):
            return str(exc)
        if isinstance(exc, DBAPIError):
            from dunningops.store.engine import store_error

            known = store_error(self.app.url, exc)
            if known is not None:
                return str(known)
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
            return f"the store failed: {reason}"
        return f"unexpected {type(exc).__name__}: {exc}"


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def _forget(batch: list) -> None:
    """A send cycle's decisions, once counted: the daemon logs and measures only the counts."""
