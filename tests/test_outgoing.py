"""The one way out (outgoing/): every email recorded before the SMTP transaction and its outcome
after, against real SMTP servers (aiosmtpd, and the fault-injecting one) on SQLite and PostgreSQL.

Two runs at once (two real processes), deferred then sent with the same Message-ID, a reply that
never came (unknown, never re-sent), a transport that cannot work (the run stops with one line),
alias confirmation codes, the send lock, the lookup by Message-ID.
"""

from __future__ import annotations

import email
import email.policy
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, update

import smtp_fixtures
from cycle_helpers import paris
from dunningops.dunning.aliases import verify
from dunningops.dunning.cycle import run_send
from dunningops.dunning.manual import send_todo
from dunningops.errors import ConflictError, LockError, NotFoundError, UnavailableError
from dunningops.outgoing import COUNTED_KINDS, find_by_message_id, list_messages
from dunningops.store import open_store
from dunningops.store.codes import code_hash, new_code
from dunningops.outgoing.history import mark_interrupted, record, settled
from dunningops.outgoing.letter import Letter
from dunningops.store.lock import send_cycle_holder, send_cycle_lock
from dunningops.store.runners import register
from dunningops.store.schema import ActionRow, AliasRow, MessageRow, OutboxRow, TodoRow
from dunningops.transport.smtp import SmtpTransport
from outgoing_helpers import COURTESY, accepted, finished, prepare_store, release_together, smtp_factory, start

make_faulty_smtp_server = smtp_fixtures.make_faulty_smtp_server


@pytest.fixture
def store(database_url: str, v1: Path, tmp_path: Path):
    s = open_store(database_url)
    prepare_store(s, v1, tmp_path, "reminder")
    yield s
    s.dispose()


def _reminders(store) -> dict[str, MessageRow]:
    with store.session() as s:
        return {m.to_addresses[0]: m for m in s.scalars(select(MessageRow).where(MessageRow.kind == "reminder"))}


# --- two runs at once -----------------------------------------------------------------------


@pytest.mark.parametrize("lock_timeout", ["0.3", "60"])
def test_two_send_cycles_at_once_never_send_twice(database_url: str, v1: Path, tmp_path: Path, make_faulty_smtp_server,
                                                  lock_timeout: str):
    """Overlapping cron jobs: the loser stops with one line (short wait) or goes on once the first
    has finished (long wait); either way no reminder and no confirmation reaches the server twice."""
    s = open_store(database_url)
    prepare_store(s, v1, tmp_path, "reminder", confirmations_sent=False)
    s.dispose()
    server = make_faulty_smtp_server("late_reply", times=1, delay=2)  # the first run lasts a few seconds
    go = tmp_path / "go"
    runs = [start("reminder", database_url, server, "--lock-timeout", lock_timeout, "--go", str(go)) for _ in range(2)]
    release_together(go, 2)
    results = [finished(p) for p in runs]
    for _, _, err in results:
        assert "Traceback" not in err and "IntegrityError" not in err and "database is locked" not in err, err
    wins = [r for r in results if r[0] == 0]
    counted = Counter((tuple(d.rcpt_tos), d.message_id) for d in accepted(server))
    by_rcpt = Counter(rcpt for rcpt, _ in counted)
    # 2 reminders and 3 alias confirmations, each once.
    assert len(counted) == 5 and set(by_rcpt.values()) == {1} and set(counted.values()) == {1}, counted
    if database_url.startswith("postgresql"):
        # Side by side on PostgreSQL: both run and share the work (claims), whatever the wait.
        assert len(wins) == 2
        sent = [tuple(int(w) for w in out.split()[1:4:2]) for _, out, _ in results]
        assert sum(r for r, _ in sent) == 2 and sum(c for _, c in sent) == 3, results
    elif lock_timeout == "0.3":
        assert len(wins) == 1
        [(code, _, err)] = [r for r in results if r[0] != 0]
        assert code == 1 and err.startswith("Error: another send cycle is running on this store (since ")
        assert err.rstrip().endswith("; nothing was sent") and err.count("\n") == 1
    else:
        assert len(wins) == 2
        assert sorted(out.strip() for _, out, _ in results) == ["sent 0 confirmations 0 exit 0", "sent 2 confirmations 3 exit 0"]


def test_a3_two_processes_delivering_confirmations_at_once_send_each_once(database_url: str, v1: Path, tmp_path: Path,
                                                                          make_faulty_smtp_server):
    """Without the run lock (two processes delivering the outbox directly): the claims alone keep them apart."""
    s = open_store(database_url)
    prepare_store(s, v1, tmp_path, "outbox")
    s.dispose()
    server = make_faulty_smtp_server("late_reply", times=1, delay=1)
    go = tmp_path / "go"
    runs = [start("outbox", database_url, server, "--go", str(go)) for _ in range(2)]
    release_together(go, 2)
    results = [finished(p) for p in runs]
    assert all(code == 0 and "Traceback" not in err for code, _, err in results), results
    subjects = Counter(email.message_from_bytes(d.data, policy=email.policy.default)["Subject"] for d in accepted(server))
    assert len(subjects) == 3 and set(subjects.values()) == {1}, subjects
    assert sorted(int(out.split()[-1]) for _, out, _ in results) in ([0, 3], [1, 2])
    s = open_store(database_url)
    with s.session() as session:
        rows = session.execute(select(OutboxRow.message_id, OutboxRow.delivered_at)).all()
        kinds = session.execute(select(MessageRow.kind, MessageRow.status)).all()
    s.dispose()
    assert all(r.message_id is not None and r.delivered_at is not None for r in rows)
    assert Counter(kinds) == Counter({("alias_confirmation", "sent"): 3})  # the loser's rows went with its rollback


def test_run_lock_on_postgresql_lets_cycles_run_side_by_side(postgres_url: str, v1: Path, tmp_path: Path):
    s = open_store(postgres_url)
    prepare_store(s, v1, tmp_path, "reminder")
    try:
        with send_cycle_lock(s, timeout_s=0), send_cycle_lock(s, timeout_s=0):
            assert send_cycle_holder(s.engine) is not None  # `status` still says a cycle runs
        assert send_cycle_holder(s.engine) is None
    finally:
        s.dispose()


def test_run_lock_second_holder_waits_then_stops_with_one_line(sqlite_url: str, v1: Path, tmp_path: Path):
    """SQLite: one send cycle at a time (on PostgreSQL they share the work: the test above)."""
    store = open_store(sqlite_url)
    prepare_store(store, v1, tmp_path, "reminder")
    started = threading.Event()
    release = threading.Event()

    def first() -> None:
        with send_cycle_lock(store, timeout_s=1):
            started.set()
            release.wait(10)

    holder = threading.Thread(target=first)
    holder.start()
    try:
        assert started.wait(10)
        assert send_cycle_holder(store.engine).startswith("since ")
        t0 = time.monotonic()
        busy = r"^another send cycle is running on this store \(since .* UTC, pid \d+ on .*\); nothing was sent$"
        with pytest.raises(LockError, match=busy):
            run_send(store, at=COURTESY, transport_factory=lambda c: pytest.fail("nothing may be sent"), lock_timeout_s=0.3)
        assert time.monotonic() - t0 >= 0.3
    finally:
        release.set()
        holder.join()
    assert send_cycle_holder(store.engine) is None
    assert _reminders(store) == {}
    store.dispose()


def test_a_sending_row_is_its_runners_until_that_runner_dies(store, database_url: str):
    """Another process's `sending` row is in flight while its runner lives; unknown once it is dead."""
    other = open_store(database_url)  # another process, as far as the store can tell
    try:
        runner = register(other, "command")
        letter = Letter(message=_a_message(), kind="proof")
        with other.session() as s:
            [recorded] = record(s, [letter], at=COURTESY, domain="acme.test", runner_id=runner.id)
        with store.session() as s:
            assert mark_interrupted(s) == 0  # alive: left to it
            with settled(s) as shown:
                assert s.scalar(select(shown).where(MessageRow.id == recorded.id)) == "sending"
        runner.close()  # its lock goes, as when a process dies
        with store.session() as s:
            with settled(s) as shown:
                assert s.scalar(select(shown).where(MessageRow.id == recorded.id)) == "unknown"
            assert mark_interrupted(s) == 1
        with store.session() as s:
            assert s.scalar(select(MessageRow.status).where(MessageRow.id == recorded.id)) == "unknown"
    finally:
        other.dispose()


def _a_message():
    from dunningops.transport.message import Address, OutgoingMessage

    return OutgoingMessage(
        message_id="", from_=Address("billing@acme.test"), to=[Address("colleague@acme.test")], subject="proof", text="x"
    )


# --- statuses: deferred, unknown, fatal -------------------------------------------------------


def test_deferred_at_the_final_dot_is_sent_next_run_with_the_same_message_id(store, make_faulty_smtp_server):
    server = make_faulty_smtp_server("tempfail_at_dot", times=1)
    first = run_send(store, at=COURTESY, transport_factory=smtp_factory(server.host, server.port))
    assert (first.sent, first.deferred) == (1, 1)
    deferred = next(m for m in _reminders(store).values() if m.status == "deferred")
    assert deferred.error.startswith("451")
    again = run_send(store, at=paris(2026, 12, 4, 8, 40), transport_factory=smtp_factory(server.host, server.port))
    assert (again.sent, again.deferred) == (1, 0)
    rows = _reminders(store)
    retried = rows[deferred.to_addresses[0]]
    assert (retried.id, retried.message_id, retried.status) == (deferred.id, deferred.message_id, "sent")
    assert [d.reply for d in server.payloads(deferred.message_id)] == [451, 250]  # the same message, refused then taken
    with store.session() as s:
        assert s.scalar(select(ActionRow.message_id).where(ActionRow.customer_id == retried.customer_id)) == retried.id


def test_unknown_when_the_server_drops_after_data_is_never_resent(store, make_faulty_smtp_server):
    server = make_faulty_smtp_server("drop_after_data", times=1)
    first = run_send(store, at=COURTESY, transport_factory=smtp_factory(server.host, server.port))
    assert (first.sent, first.unconfirmed, first.ok) == (1, 1, True)
    unknown = next(m for m in _reminders(store).values() if m.status == "unknown")
    assert server.received(unknown.message_id) == 1
    for minutes in (40, 50):  # the step stays performed: later runs send nothing again
        later = run_send(store, at=paris(2026, 12, 4, 8, minutes), transport_factory=smtp_factory(server.host, server.port))
        assert later.sent == later.unconfirmed == 0
    assert server.received(unknown.message_id) == 1
    assert len(accepted(server)) == 2


def test_fatal_transport_stops_the_run_with_one_clear_line(store, make_faulty_smtp_server, monkeypatch):
    """AUTH refused: nothing is tried message by message; the run stops, its steps stay due."""
    server = make_faulty_smtp_server("refuse_auth")

    def factory(config):
        return SmtpTransport(server.host, server.port, security="none", username="relay", password="wrong",
                             pool_size=1, max_attempts=3, backoff_base=0.01, timeout=10)

    report = run_send(store, at=COURTESY, transport_factory=factory)
    assert report.fatal is not None and isinstance(report.fatal, UnavailableError)
    assert report.exit_code == 3 and not report.ok
    assert report.errors == [str(report.fatal)] and "\n" not in str(report.fatal) and "wrong" not in str(report.fatal)
    assert report.sent == 0 and accepted(server) == []
    assert {m.status for m in _reminders(store).values()} == {"deferred"}
    with store.session() as s:  # nothing was delivered: the steps are due again
        assert s.scalar(select(ActionRow.id).where(ActionRow.outcome == "sent")) is None
    assert server.logins <= 3  # one refused login stops the run, not one per message


# --- manual emails ------------------------------------------------------------------------------


def test_a6_manual_email_deferred_keeps_the_todo_open_and_its_message_id(database_url: str, v1: Path, tmp_path: Path,
                                                                         make_faulty_smtp_server):
    s = open_store(database_url)
    prepare_store(s, v1, tmp_path, "manual")
    from outgoing_helpers import manual_todo_id

    todo_id = manual_todo_id(s)
    server = make_faulty_smtp_server("tempfail_at_dot", times=1)
    at = paris(2026, 12, 14, 10)
    with pytest.raises(UnavailableError, match="stays open"):
        send_todo(s, todo_id, at=at, sender=None, member="alice", transport_factory=smtp_factory(server.host, server.port))
    with s.session() as session:
        assert session.scalar(select(TodoRow.status).where(TodoRow.id == todo_id)) == "open"
        first = session.scalars(select(MessageRow).where(MessageRow.kind == "manual")).one()
    assert first.status == "deferred" and first.todo_id == todo_id
    assert send_todo(s, todo_id, at=at, sender=None, member="alice",
                     transport_factory=smtp_factory(server.host, server.port)).startswith("sent from ")
    with s.session() as session:
        again = session.scalars(select(MessageRow).where(MessageRow.kind == "manual")).one()
    assert (again.id, again.message_id, again.status, again.performed_by) == (first.id, first.message_id, "sent", "alice")
    with pytest.raises(ConflictError, match="already sent"):
        send_todo(s, todo_id, at=at, sender=None, member="alice", transport_factory=smtp_factory(server.host, server.port))
    s.dispose()


# --- alias confirmation codes (A3) ------------------------------------------------------------


def test_a3_codes_are_safe_to_paste_in_a_shell():
    codes = [new_code() for _ in range(2000)]
    assert all(c.isalnum() and c.isascii() and c[0].isalpha() and len(c) == 24 for c in codes)
    assert len(set(codes)) == len(codes)


def test_a3_verify_accepts_every_code_ever_issued(store):
    now = paris(2026, 12, 1)
    old = "-NKNiYq3d_8Xb2Lw-pQ0zvA7mC4tYh1E"  # a token_urlsafe code of before, starting with '-'
    new = new_code()
    with store.session() as s:
        s.execute(update(AliasRow).where(AliasRow.id == "credit").values(verified=False, verification_token=code_hash(old)))
        s.execute(update(AliasRow).where(AliasRow.id == "agency").values(verified=False, verification_token=code_hash(new)))
        assert verify(s, old, now) == "credit"
        # Typed by hand: lower case, in groups, with spaces around.
        typed = " " + "-".join(new[i:i + 4] for i in range(0, len(new), 4)).lower() + "\n"
        assert verify(s, typed, now) == "agency"
        with pytest.raises(NotFoundError, match="matches no alias"):
            verify(s, old, now)


def test_a3_confirmation_emails_carry_new_codes(database_url: str, v1: Path, tmp_path: Path, smtp_server):
    s = open_store(database_url)
    prepare_store(s, v1, tmp_path, "confirmation")
    report = run_send(s, at=paris(2026, 11, 24), transport_factory=smtp_factory(smtp_server.host, smtp_server.port))
    assert report.confirmations == 3
    for mail in smtp_server.messages():
        code = next(line.split()[-1] for line in mail.get_body(("plain",)).get_content().splitlines() if "alias verify" in line)
        assert code.isalnum() and code[0].isalpha()
        # The Date header is the run's instant, not the machine's clock.
        assert mail["Date"].datetime == datetime(2026, 11, 24, 7, 30, tzinfo=UTC)
    with s.session() as session:
        assert session.execute(select(MessageRow.kind, MessageRow.status)).all() == [("alias_confirmation", "sent")] * 3
    s.dispose()


# --- the history ------------------------------------------------------------------------------


def test_r5_lookup_by_message_id_and_listing(store, smtp_server):
    run_send(store, at=COURTESY, transport_factory=smtp_factory(smtp_server.host, smtp_server.port))
    paul = _reminders(store)["paul@martin.fr"]
    with store.session() as s:
        found = find_by_message_id(s, paul.message_id)
        bare = find_by_message_id(s, paul.message_id.strip("<>"))
        listed = list_messages(s, customer="C1")
        assert find_by_message_id(s, "<nobody@acme.fr>") is None
    assert found["customer"] == "C1" and found["plan_id"] == "standard" and found["step_id"] == "courtesy"
    assert found["anchor_invoice_id"] is not None and bare == found
    assert [(m["message_id"], m["status"], m["kind"]) for m in listed] == [(paul.message_id, "sent", "reminder")]
    # T6: what the caps count.
    assert set(COUNTED_KINDS) == {"reminder", "manual", "on_demand", "notification"}


def test_report_exit_code_contract_when_nothing_is_due(store):
    ok = run_send(store, at=paris(2026, 11, 24), transport_factory=lambda c: pytest.fail("nothing is due"))
    assert (ok.ok, ok.exit_code, ok.fatal, ok.errors) == (True, 0, None, [])



def test_a_store_locked_by_another_writer_ends_the_run_with_one_line(sqlite_url: str, v1: Path, tmp_path: Path):
    """SQLite: another process holds the write lock past the busy timeout; no `database is locked` traceback."""
    import sqlite3

    from dunningops.errors import StoreError

    setup = open_store(sqlite_url)
    prepare_store(setup, v1, tmp_path, "reminder")
    setup.dispose()
    store = open_store(sqlite_url, busy_timeout_s=0.2)
    other = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError, match=r"^the send cycle stopped: the store could not be written \(database is locked\)"):
            run_send(store, at=COURTESY, transport_factory=lambda c: pytest.fail("nothing may be sent"))
    finally:
        other.rollback()
        other.close()
    assert send_cycle_holder(store.engine) is None  # the run lock went with the run
    store.dispose()


def test_a3_deferred_confirmation_is_sent_next_run_with_the_same_message_id(database_url: str, v1: Path, tmp_path: Path,
                                                                            make_faulty_smtp_server):
    s = open_store(database_url)
    prepare_store(s, v1, tmp_path, "confirmation")
    server = make_faulty_smtp_server("tempfail_at_dot", times=1)
    first = run_send(s, at=paris(2026, 11, 24), transport_factory=smtp_factory(server.host, server.port))
    assert first.confirmations == 2
    with s.session() as session:
        deferred = session.scalars(select(MessageRow).where(MessageRow.status == "deferred")).one()
        assert session.scalar(select(OutboxRow.message_id).where(OutboxRow.delivered_at.is_(None))) == deferred.id
    again = run_send(s, at=paris(2026, 11, 24, 8, 45), transport_factory=smtp_factory(server.host, server.port))
    assert again.confirmations == 1
    assert [d.reply for d in server.payloads(deferred.message_id)] == [451, 250]
    with s.session() as session:
        assert session.execute(select(MessageRow.kind, MessageRow.status)).all() == [("alias_confirmation", "sent")] * 3
        assert session.scalar(select(OutboxRow.id).where(OutboxRow.delivered_at.is_(None))) is None
    third = run_send(s, at=paris(2026, 11, 24, 8, 50), transport_factory=smtp_factory(server.host, server.port))
    assert third.confirmations == 0 and len(accepted(server)) == 3
    s.dispose()


def test_server_down_defers_everything_and_the_run_says_so(store):
    """Connection refused is safe to retry: every email deferred, the steps due again, and a non-zero exit for cron."""
    import socket

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    def factory(config):
        return SmtpTransport("127.0.0.1", port, security="none", pool_size=1, max_attempts=2, backoff_base=0.01,
                             backoff_max=0.05, timeout=2)

    report = run_send(store, at=COURTESY, transport_factory=factory)
    assert report.sent == 0 and report.deferred > 0 and report.fatal is None
    assert report.nothing_delivered and report.exit_code == 3
    assert {m.status for m in _reminders(store).values()} == {"deferred"}
