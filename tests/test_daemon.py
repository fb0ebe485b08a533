"""`dunningops daemon`: when the cycles are due (pure), the loop on simulated days against a real
store and a real SMTP server (both backends), config picked up without a restart, failures that do
not kill it, secrets kept out of its logs, /healthz and /metrics over real HTTP, and the real
process: JSON logs, a counter after a cycle, SIGTERM mid-send, a second daemon refused."""

from __future__ import annotations

import json
import signal
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

import smtp_fixtures
from cycle_helpers import APPLIED, PARIS, paris, setup_store
from daemon_helpers import (
    FakeClock,
    LogLines,
    json_lines,
    ledger,
    make_app,
    run_until,
    set_caps,
    set_settings,
    smtp_factory,
    start_daemon,
    wait_for,
)
from dunningops.daemon import logs
from dunningops.daemon.loop import Daemon
from dunningops.daemon.metrics import Metrics, waiting_reason
from dunningops.daemon.schedule import MAX_NAP, next_due, next_import, next_send, sleep_seconds, window_opens
from dunningops.dunning.calendar import SendingCalendar
from dunningops.reconcile.apply import apply_config
from dunningops.spec import load_config
from dunningops.store.schema import MessageRow
from dunningops.web import create_app
from web_fixtures import free_port

make_faulty_smtp_server = smtp_fixtures.make_faulty_smtp_server

# Courtesy reminders (-3d) due on Monday 7 December 2026: invoices due Thursday the 10th.
LEDGER = dict(
    customers="C1,Boulangerie Martin SARL,FR,fr_FR,EUR,bob,\nC2,Müller GmbH,DE,de_DE,EUR,,\n",
    contacts="C1,paul@martin.fr,Paul Martin,,,payer,true\nC2,hans@mueller.de,Hans Müller,,,,true\n",
    invoices="I1,C1,FA-1,2026-11-01,2026-12-10,1200.00,,EUR,,\nI3,C2,FA-3,2026-11-01,2026-12-10,80.00,,EUR,,\n",
)
EVERY = dict(daemon="{send_every_minutes: 15, import_every_minutes: 60}")


@pytest.fixture
def log_lines():
    lines = LogLines()
    yield lines
    logs.reset()


def _calendar(v1: Path) -> SendingCalendar:
    settings = load_config(v1).settings
    assert settings is not None
    return SendingCalendar(settings)


def _local(at: datetime) -> str:
    return f"{at.astimezone(PARIS):%a %H:%M}"


def _reminders(store) -> list[MessageRow]:
    with store.session() as s:
        return list(s.scalars(select(MessageRow).where(MessageRow.kind == "reminder").order_by(MessageRow.id)))


# --- when the cycles are due (pure) ---------------------------------------------------------


def test_e3_window_opens_at_the_next_working_morning(v1: Path):
    cal = _calendar(v1)  # Europe/Paris, Monday to Friday 08:00-09:00, French public holidays
    assert window_opens(cal, paris(2026, 12, 8, 8, 30)) == paris(2026, 12, 8, 8, 30)  # open: now
    assert window_opens(cal, paris(2026, 12, 8, 6, 0)) == paris(2026, 12, 8, 8, 0)  # before: this morning
    assert window_opens(cal, paris(2026, 12, 8, 9, 0)) == paris(2026, 12, 9, 8, 0)  # the end is outside
    assert window_opens(cal, paris(2026, 12, 11, 17, 0)) == paris(2026, 12, 14, 8, 0)  # Friday evening: Monday
    assert window_opens(cal, paris(2026, 12, 24, 10, 0)) == paris(2026, 12, 28, 8, 0)  # Christmas Friday skipped


def test_send_cycle_interval_inside_the_window_only(v1: Path):
    cal, every = _calendar(v1), timedelta(minutes=15)
    tue = paris(2026, 12, 8, 8, 0)
    assert next_send(cal, every, None, tue) == tue  # never ran: at once, inside the window
    assert next_send(cal, every, tue, tue) == paris(2026, 12, 8, 8, 15)
    assert next_send(cal, every, paris(2026, 12, 8, 8, 50), paris(2026, 12, 8, 8, 51)) == paris(2026, 12, 9, 8, 0)
    # Down since Monday 08:55 (a suspended machine), woken on Wednesday at 10:00: not now, outside the window.
    assert next_send(cal, every, paris(2026, 12, 7, 8, 55), paris(2026, 12, 9, 10, 0)) == paris(2026, 12, 10, 8, 0)
    # Woken inside the window long after the interval: at once.
    assert next_send(cal, every, paris(2026, 12, 7, 8, 55), paris(2026, 12, 9, 8, 40)) == paris(2026, 12, 9, 8, 40)


def test_import_cycle_interval_day_and_night(v1: Path):
    night = datetime(2026, 12, 6, 2, 0, tzinfo=UTC)  # a Sunday night
    every = timedelta(minutes=5)
    assert next_import(every, None, night) == night
    assert next_import(every, night, night) == night + every
    due = next_due(
        _calendar(v1), send_every=timedelta(minutes=15), import_every=every, last_send=None, last_import=night, now=night
    )
    assert due.import_ == night + every and due.send == paris(2026, 12, 7, 8, 0) and due.first == night + every
    assert sleep_seconds(due, night) == 60  # a nap at most: a newly applied interval is seen within a minute
    assert sleep_seconds(due, night + timedelta(minutes=4, seconds=30)) == 30
    assert sleep_seconds(due, night + timedelta(hours=1)) == 0
    assert MAX_NAP == timedelta(minutes=1)


@pytest.mark.parametrize(
    "reason, category",
    [
        ("customer paused until 2026-12-20 (promise to pay)", "paused"),
        ("invoice paused until 2026-12-20 (dispute)", "paused"),
        ("waiting for the reply to-do #4", "reply"),
        ("last contact 2026-12-07, minimum delay 3d", "min_delay"),
        ("another email to this customer goes out in this run, minimum delay 3d", "min_delay"),
        ("sending cap reached (300/day, 1000/month)", "caps"),
        ("new automatic step: first sends from 2026-12-08 08:00", "new_step"),
        ("public holiday (Noël)", "holiday"),
        ("outside the sending window 08:00-09:00 Europe/Paris", "window"),
        ("not a sending day (mon, tue, wed, thu, fri)", "window"),
        ("sending cap reached (1/day, 1000/month); 2 invoices in one email", "caps"),
        ("something new", "other"),
    ],
)
def test_waiting_reasons_fall_into_stable_categories(reason, category):
    assert waiting_reason(reason) == category


# --- the loop on simulated days -------------------------------------------------------------


def test_e3_t6_down_on_monday_catches_up_on_tuesday_morning_once_inside_the_caps(
    database_url, v1: Path, tmp_path: Path, smtp_server, log_lines
):
    set_settings(v1, **EVERY)
    set_caps(v1, per_day=1)
    clock = FakeClock(paris(2026, 12, 8, 7, 0))  # the daemon was down all Monday; it starts Tuesday at 07:00
    app = make_app(database_url, v1, tmp_path, clock, transport_factory=smtp_factory(smtp_server))
    setup_store(app.store, v1, tmp_path, **LEDGER)
    daemon = Daemon(app)
    try:
        run_until(daemon, clock, paris(2026, 12, 9, 10, 0))
        rows = _reminders(app.store)
    finally:
        app.close()
    # Send cycles only inside the window, every 15 minutes; imports every hour, day and night.
    sends = [_local(datetime.fromisoformat(e["at"])) for e in log_lines.events("cycle.send")]
    assert sends == [f"{day} 08:{m:02d}" for day in ("Tue", "Wed") for m in (0, 15, 30, 45)]
    imports = log_lines.events("cycle.import")
    assert len(imports) == 27 and all(e["ok"] for e in imports)  # hourly from 07:00 Tuesday to 09:00 Wednesday
    # Monday's two reminders: one on Tuesday at 08:00, the other on Wednesday (the cap is one a day); each once.
    assert [(_local(r.created_at), r.status) for r in rows] == [("Tue 08:00", "sent"), ("Wed 08:00", "sent")]
    customers = Counter(m["X-Dunningops-Customer"] for m in smtp_server.messages() if m["X-Dunningops-Customer"])
    assert customers == {"C1": 1, "C2": 1}
    sent = log_lines.events("message.sent")
    assert sorted(e["customer"] for e in sent) == ["C1", "C2"]
    assert {e["message_id"] for e in sent} == {r.message_id for r in rows}
    waiting = [e["waiting"] for e in log_lines.events("cycle.send")]
    assert waiting[0] == 1  # Tuesday 08:00: the other reminder waits for the cap
    assert [e["event"] for e in log_lines.events()][:2] == ["daemon.start", "config.loaded"]
    assert log_lines.events()[-1]["event"] == "daemon.stop"


def test_applied_config_is_used_by_the_next_cycle_without_a_restart(
    database_url, v1: Path, tmp_path: Path, smtp_server, log_lines
):
    set_settings(v1, **EVERY)
    clock = FakeClock(paris(2026, 12, 8, 8, 0))
    app = make_app(database_url, v1, tmp_path, clock, transport_factory=smtp_factory(smtp_server))
    setup_store(app.store, v1, tmp_path, **LEDGER)
    applied = []

    def during(now: datetime) -> None:
        if now >= paris(2026, 12, 8, 8, 16) and not applied:
            # Meanwhile someone applies a shorter interval and a longer window.
            set_settings(
                v1,
                daemon="{send_every_minutes: 5, import_every_minutes: 60}",
                sending="{caps: {per_day: 300, per_month: 1000}, window: {start: '08:00', end: '09:30'}}",
            )
            apply_config(app.store, load_config(v1), now=now, actor="t", git_commit=None)
            applied.append(now)

    daemon = Daemon(app)
    try:
        run_until(daemon, clock, paris(2026, 12, 8, 10, 0), during=during)
    finally:
        app.close()
    sends = [_local(datetime.fromisoformat(e["at"])) for e in log_lines.events("cycle.send")]
    after = [paris(2026, 12, 8, 8, 20) + timedelta(minutes=5 * i) for i in range(14)]  # 08:20 to 09:25
    assert sends == ["Tue 08:00", "Tue 08:15", *(_local(at) for at in after)]
    (changed,) = log_lines.events("config.changed")
    assert changed["send_every_minutes"] == 5 and changed["apply"] > log_lines.events("config.loaded")[0]["apply"]


def test_a_failing_cycle_is_logged_and_the_daemon_goes_on(database_url, v1: Path, tmp_path: Path, smtp_server, log_lines):
    set_settings(v1, **EVERY)
    clock = FakeClock(paris(2026, 12, 8, 7, 30))
    calls = []

    def broken_source(config):
        calls.append(clock.now)
        raise RuntimeError("the mailbox library fell over")

    app = make_app(database_url, v1, tmp_path, clock, transport_factory=smtp_factory(smtp_server), source_factory=broken_source)
    setup_store(app.store, v1, tmp_path, **LEDGER)
    daemon = Daemon(app)
    try:
        run_until(daemon, clock, paris(2026, 12, 8, 9, 45))
    finally:
        app.close()
    errors = log_lines.events("cycle.error")
    # Every import failed (a bug: logged with its traceback), each at its interval; the send cycles still ran.
    assert len(calls) == 3 and len(errors) == 3
    assert all(e["cycle"] == "import" and e["kind"] == "bug" and "fell over" in e["error"] for e in errors)
    assert "Traceback" in errors[0]["exception"] and "RuntimeError" in errors[0]["exception"]
    assert len(log_lines.events("cycle.send")) == 4 and len(_reminders_sent(smtp_server)) == 2
    assert daemon.metrics.last_cycles()["import"]["ok"] is False


def _reminders_sent(server) -> list:
    return [m for m in server.messages() if m["X-Dunningops-Customer"]]


def test_transport_fatal_error_logged_once_per_cycle_and_no_secret_in_the_logs(
    database_url, v1: Path, tmp_path: Path, make_faulty_smtp_server, log_lines
):
    password = "s3cret-Pa55word"
    server = make_faulty_smtp_server("refuse_auth")
    set_settings(
        v1,
        daemon="{send_every_minutes: 15, import_every_minutes: 60}",
        sending=(
            "{caps: {per_day: 300, per_month: 1000}, transport: {kind: smtp, host: 127.0.0.1, "
            f"port: {server.port}, security: none, username_env: SMTP_USER, password_env: SMTP_PASSWORD}}}}"
        ),
    )
    env = {"SMTP_USER": "dunning-user", "SMTP_PASSWORD": password}
    clock = FakeClock(paris(2026, 12, 8, 8, 0))
    app = make_app(database_url, v1, tmp_path, clock, env=env)
    setup_store(app.store, v1, tmp_path, **LEDGER)
    daemon = Daemon(app)
    try:
        run_until(daemon, clock, paris(2026, 12, 8, 8, 20))
        logs.get_logger().info("test.probe", detail=f"login with {password}", password="anything")
    finally:
        app.close()
    assert server.logins >= 1  # the password was really offered to the server
    errors = log_lines.events("cycle.error")
    assert [e["cycle"] for e in errors] == ["send", "send"]  # one per cycle (08:00, 08:15), none per message
    assert not log_lines.events("message.deferred")
    assert password not in log_lines.text and "dunning-user" not in log_lines.text
    (probe,) = log_lines.events("test.probe")
    assert probe["detail"] == "login with ***" and probe["password"] == "***"


def test_metrics_and_healthz_over_http(database_url, v1: Path, tmp_path: Path, smtp_server, live_server, log_lines):
    clock = FakeClock(paris(2026, 12, 7, 8, 0))
    app = make_app(database_url, v1, tmp_path, clock, transport_factory=smtp_factory(smtp_server))
    setup_store(app.store, v1, tmp_path, **LEDGER)
    metrics = Metrics()
    base = live_server(create_app(app, metrics=metrics))
    daemon = Daemon(app, metrics=metrics)
    try:
        before = httpx.get(f"{base}/healthz")
        assert before.status_code == 200 and before.json() == {"status": "ok", "store": "ok", "cycles": {}}
        daemon.tick()
        health = httpx.get(f"{base}/healthz").json()
        scraped = httpx.get(f"{base}/metrics")
    finally:
        app.close()
    assert health["status"] == "ok"
    assert (
        health["cycles"]["send"]["ok"] is True
        and health["cycles"]["send"]["last_success"] == paris(2026, 12, 7, 8, 0).isoformat()
    )
    assert health["cycles"]["import"]["ok"] is True
    assert scraped.headers["content-type"].startswith("text/plain; version=")
    values = _samples(scraped.text)
    assert values['dunningops_messages_total{status="sent"}'] == 2
    assert values['dunningops_messages_total{status="failed"}'] == 0
    assert values["dunningops_due"] == 2
    assert values['dunningops_waiting{reason="caps"}'] == 0
    assert values['dunningops_cycle_seconds_count{cycle="send"}'] == 1
    assert values['dunningops_last_success_timestamp_seconds{cycle="send"}'] == paris(2026, 12, 7, 8, 0).timestamp()
    assert values['dunningops_imported_total{kind="reply"}'] == 0


def _samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_healthz_503_when_the_store_does_not_answer(postgres_url, postgres_server, v1: Path, tmp_path: Path, live_server):
    app = make_app(postgres_url, v1, tmp_path, FakeClock(APPLIED))
    assert app.store.dialect == "postgresql"  # opened and migrated
    base = live_server(create_app(app, metrics=Metrics()))
    try:
        assert httpx.get(f"{base}/healthz").status_code == 200
        postgres_server.drop_database(make_url(postgres_url).database)  # the store is gone under the daemon
        down = httpx.get(f"{base}/healthz")
    finally:
        app.close()
    assert down.status_code == 503
    assert down.json() == {"status": "unavailable", "store": "not answering", "cycles": {}}


# --- `dunningops daemon` -------------------------------------------------------------------


def test_daemon_help_snapshot(run, snapshot):
    result = run("daemon", "--help")
    assert result.exit_code == 0
    assert result.output == snapshot


def _smtp_settings(v1: Path, server, *, auth: bool) -> dict[str, str]:
    credentials = ", username_env: SMTP_USER, password_env: SMTP_PASSWORD" if auth else ""
    set_settings(
        v1,
        sending=(
            "{caps: {per_day: 300, per_month: 1000}, transport: {kind: smtp, host: 127.0.0.1, "
            f"port: {server.port}, security: none{credentials}}}}}"
        ),
    )
    return {"SMTP_USER": "dunning-user", "SMTP_PASSWORD": "pr0cess-Secret"} if auth else {}


def _prepared_store(url: str, v1: Path, tmp_path: Path, ledger_: dict) -> None:
    from sqlalchemy import update

    from dunningops.store import open_store
    from dunningops.store.schema import OutboxRow

    store = open_store(url)
    try:
        setup_store(store, v1, tmp_path, **ledger_)
        with store.session() as s:  # the aliases' confirmations went out earlier: only reminders are sent
            s.execute(update(OutboxRow).values(delivered_at=APPLIED))
    finally:
        store.dispose()


def test_the_daemon_process_serves_logs_json_stops_on_sigterm_and_refuses_a_second_one(
    sqlite_url, v1: Path, tmp_path: Path, make_smtp_server
):
    server = make_smtp_server(auth={"dunning-user": "pr0cess-Secret"})
    env = _smtp_settings(v1, server, auth=True)
    _prepared_store(sqlite_url, v1, tmp_path, LEDGER)
    port, log = free_port(), tmp_path / "daemon.log"
    env["DUNNINGOPS_NOW"] = paris(2026, 12, 7, 8, 30).isoformat()  # Monday, in the window: the reminders are due
    daemon = start_daemon(v1, sqlite_url, log, "--port", str(port), env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        health = wait_for(
            lambda: (r := httpx.get(f"{base}/healthz")).status_code == 200 and "send" in r.json()["cycles"] and r.json(),
            process=daemon,
            what="a send cycle shown by /healthz",
        )
        assert health["status"] == "ok" and health["cycles"]["send"]["ok"] is True
        values = _samples(httpx.get(f"{base}/metrics").text)
        assert values['dunningops_messages_total{status="sent"}'] == 2
        assert values['dunningops_cycle_seconds_count{cycle="import"}'] == 1

        second = start_daemon(v1, sqlite_url, tmp_path / "second.log", "--port", str(free_port()), env=env)
        out, _ = second.communicate(timeout=60)
        refused = (tmp_path / "second.log").read_text()
        assert second.returncode == 1 and out == ""
        assert (
            refused == "Error: another daemon is already running on this store; on SQLite one daemon runs at a time "
            "(several daemons share the work on PostgreSQL)\n"
        )
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=60)
    assert daemon.returncode == 0
    lines = json_lines(log)  # every line is JSON, uvicorn's included
    events = [e["event"] for e in lines]
    for expected in (
        "daemon.start",
        "config.loaded",
        "cycle.import",
        "message.sent",
        "cycle.send",
        "daemon.stopping",
        "daemon.stop",
    ):
        assert expected in events, (expected, events)
    ours = [e["event"] for e in lines if e["logger"].startswith("dunningops")]
    assert events.count("message.sent") == 2 and ours[-1] == "daemon.stop"
    assert "Started server process" in events[0] and "Finished server process" in events[-1]  # uvicorn, as JSON
    start = next(e for e in lines if e["event"] == "daemon.start")
    assert start["http"] == f"127.0.0.1:{port}" and start["store"] == "sqlite"
    assert all(e["timestamp"].endswith("Z") and "level" in e for e in lines)
    assert "pr0cess-Secret" not in log.read_text() and "dunning-user" not in log.read_text()
    assert len(_reminders_sent(server)) == 2


def test_sigterm_mid_send_finishes_what_is_in_flight_and_leaves_nothing_unknown(
    sqlite_url, v1: Path, tmp_path: Path, make_faulty_smtp_server
):
    from dunningops.store import open_store

    # Each message's final reply comes half a second late: the cycle is still sending when SIGTERM arrives.
    server = make_faulty_smtp_server("late_reply", delay=0.5)
    env = _smtp_settings(v1, server, auth=False)
    _prepared_store(sqlite_url, v1, tmp_path, ledger(40))
    env["DUNNINGOPS_NOW"] = paris(2026, 12, 7, 8, 30).isoformat()
    log = tmp_path / "daemon.log"
    daemon = start_daemon(v1, sqlite_url, log, "--port", str(free_port()), env=env)
    wait_for(lambda: server.deliveries, process=daemon, what="a message in flight")
    daemon.send_signal(signal.SIGTERM)
    daemon.communicate(timeout=60)
    assert daemon.returncode == 0
    store = open_store(sqlite_url)
    try:
        statuses = Counter(r.status for r in _reminders(store))
        # What was handed to the server finished; the rest was given back, due again; nothing may-or-may-not.
        assert set(statuses) == {"sent", "deferred"} and 1 <= statuses["sent"] < 40
        assert statuses["sent"] + statuses["deferred"] == 40
        assert len([d for d in server.deliveries if d.complete]) == statuses["sent"]
        events = Counter(e["event"] for e in json_lines(log))
        assert events["message.sent"] == statuses["sent"] and events["message.deferred"] == statuses["deferred"]
        assert events["message.unknown"] == 0 and events["daemon.stop"] == 1

        # Started again, the daemon sends the rest: every customer got exactly one reminder.
        again = start_daemon(v1, sqlite_url, tmp_path / "again.log", "--once", env=env)
        again.communicate(timeout=120)
        assert again.returncode == 0, (tmp_path / "again.log").read_text()
        assert Counter(r.status for r in _reminders(store)) == {"sent": 40}
        received = Counter(d.message_id for d in server.deliveries if d.complete)
        assert len(received) == 40 and set(received.values()) == {1}
    finally:
        store.dispose()


def test_a_stop_ends_the_import_after_the_batch_in_hand(database_url, v1: Path, tmp_path: Path):
    import threading
    from email.message import EmailMessage

    from dunningops.inbox.importer import run_import
    from dunningops.transport.maildir_source import MaildirSource

    app = make_app(database_url, v1, tmp_path, FakeClock(paris(2026, 12, 8, 10, 0)))
    setup_store(app.store, v1, tmp_path, **LEDGER)
    inbox = MaildirSource(tmp_path / "inbox")
    for n in range(3):
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "Paul Martin <paul@martin.fr>", "billing@acme.fr", f"Facture {n}"
        msg["Message-ID"] = f"<question-{n}@martin.fr>"
        msg.set_content("Bonjour, une question sur la facture.\n")
        inbox.deliver(bytes(msg))
    stop = threading.Event()
    stop.set()  # SIGTERM arrived while the first batch was read
    try:
        first = run_import(app.store, app.source, at=app.now(), batch_size=1, stop=stop)
        rest = run_import(app.store, app.source, at=app.now(), batch_size=1)
    finally:
        app.close()
    assert first.stopped and first.imported == 1 and first.ok
    assert not rest.stopped and rest.imported == 2  # the next run goes on from the committed batch
    metrics = Metrics()
    metrics.import_cycle(first, seconds=0.1)
    metrics.import_cycle(rest, seconds=0.1)
    values = _samples(metrics.exposition()[0].decode())
    assert values['dunningops_imported_total{kind="reply"}'] == 3 and values["dunningops_bounces_total"] == 0


def test_once_without_an_applied_config_says_so_and_fails(run, v1: Path, sqlite_url, log_lines):
    result = run("daemon", "--config", v1, "--database-url", sqlite_url, "--once")
    assert result.exit_code == 1
    events = [json.loads(line) for line in result.stderr.splitlines()]
    waiting = next(e for e in events if e["event"] == "daemon.waiting")
    assert waiting["reason"] == "no config applied yet: run `dunningops apply` first"
    assert [e["event"] for e in events][-1] == "daemon.stop"


def test_a_port_in_use_is_one_line(run, v1: Path, sqlite_url, log_lines):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("daemon", "--config", v1, "--database-url", sqlite_url, "--port", port)
    assert result.exit_code == 3
    assert result.stderr == f"Error: cannot listen on 127.0.0.1:{port}: Address already in use\n"
