"""Helpers for the console's tests: a store with work in it, served for real, and a member's browser-less client.

``make_world(url, v1, tmp)`` builds, through the engine (no row written by hand):

* the v1 config applied, three customers (C3's account manager is bob), the aliases confirmed;
* the courtesy reminders sent (to a maildir), then imported back: Paul's reply (a reply to-do for
  C1), a permanent bounce of Greta's address (C2: contact invalid, a bounce to-do, an alert);
* the manual "overdue" step due: prepared-email to-dos for C2 (preselected: the company's address,
  no account manager) and C3 (preselected: bob), while C1 waits for its reply to-do (R4);
* console passwords for alice and bob.

The app's clock (``world.clock``) can be moved; its transport (``world.transport``) swapped for a
real SMTP server's.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event, select, update

from cycle_helpers import paris, setup_store
from dunningops.app import App
from dunningops.dunning.cycle import run_send
from dunningops.inbox.importer import run_import
from dunningops.reconcile.apply import apply_config
from dunningops.spec import load_config
from dunningops.store.schema import ActivityRow, CustomerRow, MessageRow, OutboxRow, TodoRow
from dunningops.transport.maildir import MaildirTransport
from dunningops.transport.sources import open_source
from dunningops.web import create_app

LEDGER = dict(
    customers="C1,Boulangerie Martin SARL,FR,fr_FR,EUR,,\nC2,Müller GmbH,DE,de_DE,EUR,,\nC3,Café du Port,FR,fr_FR,EUR,bob,\n",
    contacts=(
        "C1,paul@martin.fr,Paul Martin,+33 1 23 45 67 89,,payer,true\nC2,hans@mueller.de,Hans Müller,,,payer,true\n"
        "C2,greta@mueller.de,Greta Wolf,,,payer,false\nC3,jean@cafeduport.fr,Jean Dupont,,,payer,true\n"
    ),
    invoices=(
        "I1,C1,FA-1,2026-11-01,2026-12-07,1200.00,,EUR,,\nI2,C2,FA-2,2026-11-01,2026-12-07,80.00,,EUR,,\n"
        "I3,C3,FA-3,2026-11-01,2026-12-07,50.00,,EUR,,\n"
    ),
)
SENT_AT = paris(2026, 12, 4)  # the courtesy reminders
IMPORTED_AT = SENT_AT + timedelta(hours=3)
OVERDUE = paris(2026, 12, 14)  # the manual overdue step: its to-dos
NOW = paris(2026, 12, 14, 10)  # when the members use the console
PASSWORDS = {"alice": "alice: a long passphrase", "bob": "bob's own long passphrase"}


class Clock:
    """The app's clock, moved by the test."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class World:
    app: App
    clock: Clock
    tmp: Path
    transport: Callable[[Any], Any]
    todo: dict[str, int] = field(default_factory=dict)  # "reply", "bounce", "C2", "C3" → to-do id

    def web(self):
        return create_app(self.app)

    def rows(self, table, *where) -> list[dict]:
        with self.app.session() as s:
            t = table.__table__
            query = select(t).where(*where).order_by(*t.primary_key.columns)
            return [dict(r) for r in s.execute(query).mappings()]

    def activity(self) -> list[dict]:
        return self.rows(ActivityRow)

    def apply(self, config_dir: Path, actor: str = "alice") -> None:
        """Apply a changed config, as v1's owner by default (T1)."""
        apply_config(self.app.store, load_config(config_dir), now=self.clock.now, actor=actor, git_commit=None)


def reply_email(sent: dict, sender: str, body: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = sent["from_address"]
    msg["Subject"] = f"RE: {sent['subject']}"
    msg["Date"] = format_datetime(SENT_AT + timedelta(hours=1))
    msg["Message-ID"] = "<reply-1.paul@martin.fr>"
    msg["In-Reply-To"] = msg["References"] = sent["message_id"]
    msg.set_content(body)
    return bytes(msg)


def bounce_email(sent: dict, recipient: str) -> bytes:
    b = "BOUNDARY42"
    text = (
        f"From: MAILER-DAEMON@mx.mueller.de (Mail Delivery System)\nTo: {sent['from_address']}\n"
        f"Subject: Undelivered Mail Returned to Sender\nDate: {format_datetime(SENT_AT + timedelta(minutes=3))}\n"
        f"Message-ID: <dsn-{recipient}>\nMIME-Version: 1.0\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{b}"\n\n'
        f"--{b}\nContent-Type: text/plain\n\nYour message could not be delivered.\n\n"
        f"--{b}\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.mueller.de\n\n"
        f"Final-Recipient: rfc822; {recipient}\nAction: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1 User unknown\n\n"
        f"--{b}\nContent-Type: text/rfc822-headers\n\nFrom: {sent['from_address']}\nTo: {recipient}\n"
        f"Subject: {sent['subject']}\nMessage-ID: {sent['message_id']}\n\n--{b}--\n"
    )
    return text.replace("\n", "\r\n").encode()


def make_world(url: str, config_dir: Path, tmp: Path) -> World:
    from dunningops.web.console.credentials import set_password

    clock = Clock(SENT_AT)
    holder: dict[str, Callable] = {}
    app = App(config_dir=config_dir, database_url=url, env={}, clock=clock, transport_factory=lambda c: holder["t"](c))
    world = World(app, clock, tmp, lambda c: MaildirTransport(tmp / "outbox"))
    holder["t"] = lambda c: world.transport(c)
    setup_store(app.store, config_dir, tmp, **LEDGER)
    with app.store.session() as s:  # the aliases' confirmations went out long ago
        s.execute(update(OutboxRow).values(delivered_at=paris(2026, 11, 21)))
    run_send(app.store, at=SENT_AT, transport_factory=app.transport)
    sent = {m["to_addresses"][0]: m for m in world.rows(MessageRow, MessageRow.kind == "reminder")}
    inbox = tmp / "inbox"

    def source(config):
        return open_source(config.settings.inbox.model_copy(update={"kind": "maildir", "path": str(inbox)}), tmp, {})

    src = source(_config(app))
    try:
        src.deliver(reply_email(sent["paul@martin.fr"], "Paul Martin <paul@martin.fr>", "Bonjour,\n\nJe paierai vendredi.\n"))
        c2 = next(m for to, m in sent.items() if "mueller.de" in to)
        src.deliver(bounce_email(c2, "greta@mueller.de"))
    finally:
        src.close()
    report = run_import(app.store, source, at=IMPORTED_AT)
    assert report.ok and report.effects.reply_todos == 1 and report.effects.invalidated == 1, report
    run_send(app.store, at=OVERDUE, transport_factory=app.transport)
    with app.session() as s:
        for todo_id, kind, customer in s.execute(
            select(TodoRow.id, TodoRow.kind, CustomerRow.external_id).join(CustomerRow, CustomerRow.id == TodoRow.customer_id)
        ).all():
            world.todo[kind if kind in ("reply", "bounce") else customer] = todo_id
    assert {"reply", "bounce", "C2", "C3"} <= set(world.todo), world.todo
    clock.now = NOW
    with app.store.session() as s:
        config = _config(app)
        for member, password in PASSWORDS.items():
            set_password(s, config, member, password, now=NOW)
    return world


def _config(app: App):
    from dunningops.dunning.runconfig import RunConfig

    with app.session() as s:
        return RunConfig.from_store(s)


# --- a big ledger -------------------------------------------------------------------------------


def fill_big(
    world: World,
    customers: int = 100_000,
    messages: int = 1_000_000,
    *,
    invoices_per_customer: int = 1,
    todos: int = 0,
    received: int = 0,
) -> None:
    """Customers K000001… (``invoices_per_customer`` open invoices each), ``messages`` reminders spread
    over them (message i to customer i mod n: with n | m, each gets m / n), and, if asked, ``todos``
    open to-dos and ``received`` linked replies for the first customers (K000001…, one each in turn),
    in a few INSERT … SELECT statements (generate_series / a recursive CTE): seconds, not minutes."""
    from sqlalchemy import text

    postgres = world.app.store.dialect == "postgresql"
    with world.app.store.session() as s:
        first = s.scalar(text("SELECT coalesce(max(id), 0) + 1 FROM customers"))
        if postgres:
            seq, pad, false, true, when = "SELECT generate_series(1, :n) AS i", "lpad(i::text, 6, '0')", "false", "true", "now()"
            due = "DATE '2026-11-01'"
        else:
            seq = "WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < :n) SELECT i FROM seq"
            pad, false, true, when, due = "printf('%06d', i)", "0", "1", "'2026-11-02 00:00:00'", "'2026-11-01'"

        def series(name: str) -> str:
            return seq.replace(":n", f":{name}")

        s.execute(
            text(
                "INSERT INTO customers (external_id, name, country, locale, currency, origin, created_at, updated_at) "
                f"SELECT 'K' || {pad}, 'Customer ' || i, 'FR', 'fr_FR', 'EUR', 'import', {when}, {when} FROM ({seq}) AS g"
            ),
            {"n": customers},
        )
        # Invoice j of customer c: 'INV<c>-<j>' (j from 1); the first keeps the old 'INV<c>'.
        s.execute(
            text(
                "INSERT INTO invoices (external_id, customer_id, number, due_date, amount_cents, reported_outstanding_cents, "
                "outstanding_cents, currency, reported_status, status, paused, created_at, updated_at) "
                "SELECT 'INV' || c.id || CASE WHEN j.i = 1 THEN '' ELSE '-' || j.i END, c.id, 'F' || c.id || '-' || j.i, "
                f"{due}, 10000, 10000, 10000, 'EUR', 'open', 'open', {false}, {when}, {when} "
                f"FROM customers AS c CROSS JOIN ({series('per')}) AS j WHERE c.id >= :first"
            ),
            {"first": first, "per": invoices_per_customer},
        )
        s.execute(
            text(
                "INSERT INTO messages (message_id, kind, automatic, customer_id, from_address, to_addresses, cc_addresses, "
                "bcc_addresses, subject, invoice_ids, status, created_at, sent_at) "
                f"SELECT '<big' || i || '@x>', 'reminder', {true}, :first + (i % :n), 'billing@acme.fr', "
                f"'[\"x@y.z\"]', '[]', '[]', 'Rappel', '[]', 'sent', {when}, {when} FROM ({series('m')}) AS g"
            ),
            {"first": first, "n": customers, "m": messages},
        )
        if todos:
            s.execute(
                text(
                    "INSERT INTO todos (kind, status, customer_id, reason, payload, created_at) "
                    f"SELECT 'call', 'open', :first + ((i - 1) % :n), 'Call about ' || i, '{{}}', {when} "
                    f"FROM ({series('t')}) AS g"
                ),
                {"first": first, "n": customers, "t": todos},
            )
        if received:
            s.execute(
                text(
                    "INSERT INTO inbox_messages (dedupe_key, source, folder, source_key, message_id, status, kind, "
                    "from_address, to_addresses, subject, received_at, imported_at, referenced_ids, attachments, details, "
                    "customer_id, match_by) "
                    "SELECT 'big-in-' || i, 'maildir', 'INBOX', 'k' || i, '<in' || i || '@y.z>', 'linked', 'reply', "
                    f"'x@y.z', '[]', 'RE: Rappel', {when}, {when}, '[]', '[]', '{{}}', :first + ((i - 1) % :n), 'sender' "
                    f"FROM ({series('r')}) AS g"
                ),
                {"first": first, "n": customers, "r": received},
            )
    if postgres:
        with world.app.store.engine.connect() as c:  # fresh statistics, as autovacuum would soon give
            c.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")


# --- counting what a page asks the store -------------------------------------------------------------


class StatementCounter:
    """Every SQL statement run on an engine, from any thread (the live server's workers run the pages).

    ``with StatementCounter(engine) as counted: ...`` listens for the block; ``counted.take()`` returns
    the statements seen since the last ``take()`` and starts again from none.
    """

    def __init__(self, engine):
        self.engine = engine
        self._lock = threading.Lock()
        self._seen: list[str] = []

    def _listen(self, conn, cursor, statement, parameters, context, executemany) -> None:
        with self._lock:  # uvicorn's worker threads append while the test thread takes
            self._seen.append(" ".join(statement.split())[:200])

    def take(self) -> list[str]:
        with self._lock:
            seen, self._seen = self._seen, []
        return seen

    def __enter__(self) -> StatementCounter:
        event.listen(self.engine, "before_cursor_execute", self._listen)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._listen)


# --- a member's client ----------------------------------------------------------------------

CSRF = re.compile(r'name="csrf" value="([^"]*)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, html[:2000]
    return found.group(1)


def client(base: str, **kwargs) -> httpx.Client:
    return httpx.Client(base_url=base, follow_redirects=False, timeout=30, **kwargs)


def sign_in(http: httpx.Client, member: str, password: str | None = None, *, next_: str = "/") -> httpx.Response:
    form = http.get("/signin", params={"next": next_})
    assert form.status_code == 200, form.text
    return http.post(
        "/signin",
        data={"member": member, "password": password or PASSWORDS[member], "csrf": csrf_of(form.text), "next": next_},
    )


def signed_in(base: str, member: str = "alice") -> httpx.Client:
    http = client(base)
    answer = sign_in(http, member)
    assert answer.status_code == 303, answer.text
    return http


def post_form(http: httpx.Client, page: str, action: str, data: dict | None = None) -> httpx.Response:
    """Open ``page``, take its CSRF token, post ``data`` to ``action`` as its form does."""
    opened = http.get(page)
    assert opened.status_code == 200, opened.text
    return http.post(action, data={"csrf": csrf_of(opened.text), **(data or {})})
