"""The send cycle, once: decide what is due, prepare each due step, turn manual steps (and
emails nobody can receive) into to-dos, send automatic emails through the one way out.

On SQLite, one cycle at a time per store (the run lock, store/lock.py): a second run waits, then
stops with one line, or goes on once the first has finished, sending nothing twice. On
PostgreSQL, cycles run side by side (several daemons) and share the due steps by claiming them
in short transactions before preparing them (dunning/claims.py); each finishes only its own.

Sending is at most once (outgoing/way_out.py): messages and their action rows (unique per plan,
step, customer and anchor) are committed ``sending`` before the SMTP transaction, outcomes
after. A crash in between leaves ``sending`` rows of a dead runner, shown as ``unknown`` by
`status` at once and marked so by the next run; never re-sent, since their action rows say the
step was performed. A stop (``stop`` set: the daemon's SIGTERM) lets the messages in flight
finish and gives the rest back: nothing is left ``unknown`` by a clean stop.
A ``deferred`` reminder's step is due again, and its next send reuses the Message-ID.

The dry run prepares each due step exactly as the real run does (recipients chosen, email
rendered: dunning/prepare.py), so what it says (send, to-do and why, error) is what the real run then does.

First thing, the real run ends the pauses past their date (dunning/pause_ends.py): broken promises
to pay become to-dos, and alert events on the report. The dry run only lists what would end:
decide() already counts a pause as over after its date, ended or not.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from dunningops.alerts import store as alert_store
from dunningops.dunning import claims, pause_ends, todos
from dunningops.dunning.context import BATCH, RunContext
from dunningops.dunning.prepare import PreparedStep, prepare, with_reason
from dunningops.dunning.report import CycleReport
from dunningops.dunning.runconfig import RunConfig
from dunningops.dunning.schedule import Decision, decide
from dunningops.dunning.sending import WayOut, letter_of, stopped, targets
from dunningops.errors import ConflictError, StoreError
from dunningops.notify import portal
from dunningops.outgoing.history import mark_interrupted
from dunningops.outgoing.letter import Letter
from dunningops.outgoing.overlap import overlapped
from dunningops.store.engine import Store
from dunningops.store.lock import pause_ends_lock, send_cycle_lock
from dunningops.store.runners import Runner, runner_of
from dunningops.transport.base import Transport, TransportError

__all__ = ["BATCH", "CycleReport", "mark_interrupted", "run_send"]

LOCK_TIMEOUT_S = 30.0


def run_send(
    store: Store,
    *,
    at: datetime,
    transport_factory: Callable[[RunConfig], Transport] | None = None,
    dry_run: bool = False,
    decide_only: bool = False,
    batch_size: int = BATCH,
    config: RunConfig | None = None,
    lock_timeout_s: float = LOCK_TIMEOUT_S,
    runner: Runner | None = None,
    stop: threading.Event | None = None,
    on_decisions: Callable[[list[Decision]], None] | None = None,
    keep_messages: bool = True,
) -> CycleReport:
    """One send cycle at ``at``. ``dry_run`` decides, prepares and reports, and writes and sends nothing.

    Args:
        decide_only: with ``dry_run``, the decisions alone: no recipients chosen, nothing rendered
            (so no step becomes a to-do for want of a recipient, nor an ``error``): what is due and
            why the rest waits, at the cost of the due query, on a ledger where preparing every
            due step (rendering tens of thousands of to-dos) takes several times longer.
        lock_timeout_s: SQLite: how long to wait for another send cycle on the same store to finish.
        runner: this process on the store (store/runners.py); default: the store's own.
        stop: once set, no more steps are claimed, the messages in flight finish and the rest are
            given back (due again).
        on_decisions: given, each batch of decisions once final (prepared, claimed), in the due
            query's order, instead of keeping every one in ``report.decisions``: memory stays flat
            (the report's counts are kept either way).
        keep_messages: False leaves ``report.messages`` (each reminder's fate, for a log) empty:
            memory flat for a caller that logs none (the counts are kept either way).

    Raises:
        LockError: another send cycle still ran after ``lock_timeout_s``; nothing was sent.
        ConflictError, StoreError: the store could not take this run's writes (one clear line;
            what was sent before is recorded).

    A transport that cannot work as configured stops the run: ``report.fatal`` (and a line in
    ``report.errors``); ``report.exit_code`` is then the error's.
    """
    report = CycleReport(at=at, dry_run=dry_run, keep_messages=keep_messages)

    def done(batch: list[Decision]) -> None:
        report.add(batch, keep=on_decisions is None)
        if on_decisions is not None:
            on_decisions(batch)

    try:
        if dry_run:
            _dry_run(store, config, report, batch_size, done, prepared=not decide_only)
        else:
            with send_cycle_lock(store, timeout_s=lock_timeout_s):
                _run(store, config, report, batch_size, transport_factory, runner or runner_of(store, "run"), stop, done)
    except IntegrityError as exc:
        raise ConflictError(
            "the send cycle stopped: another process recorded the same step at the same moment; what was sent "
            "before is recorded, and the next run goes on from there"
        ) from exc
    except OperationalError as exc:
        raise StoreError(
            f"the send cycle stopped: the store could not be written ({str(exc.orig).strip().splitlines()[0]}); what was sent "
            "before is recorded, and the next run goes on from there"
        ) from exc
    return report


Done = Callable[[list[Decision]], None]
# Decisions handed on at most at a time (most of them waits, which cost nothing more): bounds the
# memory of a run whose due steps mostly wait.
HAND_ON = 5000


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _batches(decided: Iterable[Decision], size: int) -> Iterator[list[Decision]]:
    """The decisions in the due query's order, cut so that a batch holds at most ``size`` steps that
    act (to claim, prepare and send together) and ``HAND_ON`` decisions in all."""
    batch: list[Decision] = []
    acting = 0
    for d in decided:
        batch.append(d)
        if d.outcome in ("send", "todo"):
            acting += 1
        if acting >= size or len(batch) >= HAND_ON:
            yield batch
            batch, acting = [], 0
    if batch:
        yield batch


def _decided(session: Session, ctx: RunContext) -> Iterator[Decision]:
    return decide(session, ctx.config, ctx.at, calendar=ctx.calendar, today=ctx.today)


def _dry_run(store: Store, config: RunConfig | None, report: CycleReport, batch_size: int, done: Done, *, prepared: bool) -> None:
    with store.session() as session:
        # No render worker: with nothing sent meanwhile, rendering elsewhere would only be waited for.
        ctx = RunContext.build(config or RunConfig.from_store(session), report.at, report, batch_size)
        report.pauses_ended = pause_ends.expiring(session, today=ctx.today)
        for batch in _batches(_decided(session, ctx), batch_size):
            acting = [d for d in batch if d.outcome in ("send", "todo")]
            if acting and prepared:
                prepare(session, ctx, acting)
            done(batch)


def _run(
    store: Store,
    config: RunConfig | None,
    report: CycleReport,
    batch_size: int,
    transport_factory: Callable[[RunConfig], Transport] | None,
    runner: Runner,
    stop: threading.Event | None,
    done: Done,
) -> None:
    with store.session(write_lock=True) as session:
        report.unknown = mark_interrupted(session)
        portal.settle_interrupted(session)  # A9: their notifications follow (never sent again)
        claims.release_dead(session)
    with store.session() as session:
        ctx = RunContext.build(config or RunConfig.from_store(session), report.at, report, batch_size, render_worker=True)
    ctx = ctx.with_runner(runner, stop)
    with store.session(write_lock=True) as session:
        # One cycle at a time ends pauses (PostgreSQL: the others skip it this time).
        if pause_ends_lock(session):
            report.pauses_ended = pause_ends.expiring(session, today=ctx.today)
            report.alerts = pause_ends.end(session, report.pauses_ended, today=ctx.today, now=report.at)
            # Recorded with the to-dos they explain: a crash cannot leave one without the other.
            report.alert_ids = alert_store.record(session, report.alerts, at=report.at) if report.alerts else []
    way = WayOut(store, ctx, transport_factory)
    try:
        # The due query is read as the run goes (its session only reads: a snapshot of when it began).
        # While one batch is on the wire (a worker thread, one send at a time: at most once, and at
        # most one chunk `unknown` after a crash), the next is claimed, rendered and its to-dos made.
        with store.session() as session:
            batches = _batches(_decided(session, ctx), batch_size)
            try:
                overlapped(
                    batches,
                    lambda batch: _prepare_batch(way, batch, done),
                    way.send,
                    stopped=lambda: stopped(ctx) or way.failed,
                    discard=way.give_back,
                )
            except TransportError:
                _drain(batches, done)
                raise
            _drain(batches, done)
        way.finish()
    except TransportError as exc:
        # The transport cannot work as configured: the results are recorded (deferred), the run stops here.
        report.fatal = exc
        report.errors.append(str(exc))
    finally:
        way.close()
        ctx.close()


def _drain(batches: Iterator[list[Decision]], done: Done) -> None:
    """What a stop or the transport's fatal error left unclaimed still counts as decided (as it stands)."""
    for rest in batches:
        done(rest)


def _prepare_batch(way: WayOut, batch: list[Decision], done: Done) -> list[Letter] | None:
    """A batch's to-dos made and its emails claimed and rendered (on the caller's thread); the
    letters to send, None when there are none."""
    ctx, store = way.ctx, way.store
    try:
        due = [d for d in batch if d.outcome == "todo"]
        if due:
            mine = _claim(store, ctx, due)
            with store.session() as session:
                prepared = prepare(session, ctx, mine)
            with store.session(write_lock=True) as session:
                _make_todos(session, ctx, prepared)
                _release_errors(session, ctx, prepared)
        auto = [d for d in batch if d.outcome == "send"]
        if not auto:
            return None
        way.open()
        mine = _claim(store, ctx, auto)
        if not mine:
            return None
        with store.session() as session:
            prepared = prepare(session, ctx, mine)
        if any(p.outcome in ("error", "todo") for p in prepared):
            with store.session(write_lock=True) as session:
                _release_errors(session, ctx, prepared)
                _make_todos(session, ctx, prepared)
        letters = [letter_of(ctx, p.draft) for p in prepared if p.outcome == "send" and p.draft is not None]
        return letters or None
    finally:
        done(batch)


def _claim(store: Store, ctx: RunContext, batch: list[Decision]) -> list[Decision]:
    """This runner's share of ``batch`` (claimed in a short transaction); the rest another cycle took."""
    assert ctx.runner is not None
    with store.session(write_lock=True) as session:
        got = claims.claim(session, (claims.key_of(t) for d in batch for t in targets(d)), runner_id=ctx.runner.id, at=ctx.at)
    mine = []
    for d in batch:
        if claims.key_of(d) in got:
            # A merged invoice another cycle took is its business (both group alike: this is rare).
            d.merged = tuple(m for m in d.merged if claims.key_of(m) in got)
            mine.append(d)
        else:
            d.outcome, d.reason = "wait", with_reason("taken by another send cycle running at the same time", d.reason)
    return mine


def _release_errors(session: Session, ctx: RunContext, prepared: list[PreparedStep]) -> None:
    """Steps that could not be rendered stay due until the template is fixed: their claims go."""
    assert ctx.runner is not None
    keys = [claims.key_of(t) for p in prepared if p.outcome == "error" for t in targets(p.decision)]
    claims.release(session, keys, runner_id=ctx.runner.id)


def _make_todos(session: Session, ctx: RunContext, prepared: list[PreparedStep]) -> None:
    """The batch's to-dos in one statement, and their steps' claims settled in another (not a
    statement per to-do: a run can make tens of thousands)."""
    made = [p for p in prepared if p.outcome == "todo"]
    if not made:
        return
    rows = [
        todos.new(
            p.todo_kind or p.decision.step.action,
            p.decision.customer_id,
            ctx.at,
            todos.assignee_for(ctx.config, p.decision),
            p.payload,
            reason=p.payload.get("problem"),
            plan_id=p.decision.plan.id,
            step_id=p.decision.step.id,
            invoice_id=p.decision.anchor_invoice_id if p.decision.plan.level == "invoice" else None,
        )
        for p in made
    ]
    ids = todos.add_many(session, rows)
    assert ctx.runner is not None
    links = [(claims.key_of(t), todo_id) for p, todo_id in zip(made, ids, strict=True) for t in targets(p.decision)]
    claims.settle(session, "todo", links, runner_id=ctx.runner.id, at=ctx.at)
    ctx.report.todos += len(made)


# --- sending ------------------------------------------------------------------------------
