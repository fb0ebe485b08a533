"""``python -m benchmarks.import_cycle [--quick] [--out DIR]``: the import cycle against a bare imapclient fetch.

performance.md's import-cycle row: 10,000 messages (replies, auto-replies, bounces) in a local
Dovecot IMAP mailbox; anchor: a bare ``imapclient`` fetch (``BODY.PEEK[]``, batches of 500) of
the same messages, warm, measured in the same run; goal: ≥ 0.5× the anchor's messages/s, and a
re-run imports nothing (UIDs, Message-IDs). Peak RSS is printed.

Set-up (not timed): a throwaway Dovecot (tests/servers.py); a SQLite store with a copy of the
example config applied (``settings.inbox`` pointed at that Dovecot, sending caps raised so that
one send cycle sends to every customer due), a generated ledger (``generate_ledger``, 15,000
customers, seed 1) imported, and one send cycle (maildir transport), so that ``messages`` holds
real reminders with real Message-IDs and recipients. From those, N messages are written: ~60 %
replies (In-Reply-To a sent reminder, from its recipient, quoted history, French or English,
plain / quoted-printable / multipart/alternative, a few with a PDF), ~10 % replies without
In-Reply-To (matched by sender), ~15 % auto-replies, ~12 % RFC 3464 bounces (5.1.1, 5.2.2,
4.x delayed; the original Message-ID in text/rfc822-headers), ~3 % from unknown senders. They
go into a fresh Dovecot user's INBOX with ``import_fetch.fill_mailbox`` (maildir files).

Measured, each in a process of its own (the runner's ``python -S`` wrapper reads its own
``ru_maxrss`` with ``os.wait4``), the time taken inside the process around the call:

* anchor: ``import_fetch.bare_fetch`` (login, EXAMINE, UID SEARCH ALL, UID FETCH BODY.PEEK[] by
  500), one untimed warm-up pass, then ``--repeat`` passes: the median; it is measured again
  after the imports (``anchor_after``) to show drift on a busy machine;
* ``first_import``: ``run_import`` (connect + log in, list, fetch, parse, classify, match, act,
  commit, alerts announced by email through the config's maildir transport), into a fresh copy
  of the prepared store each run (the mailbox is read-only to it: ``after_import: keep``);
* ``rerun``: ``run_import`` again on the imported store: it must import nothing.

Then, not figures: one instrumented run (time per stage, and ``parse_message`` over the fetched
bytes on its own), and a cProfile of ``run_import`` when the goal is missed. The same is done
at a tenth of the size (growth). ``--postgres`` adds one first import and one re-run on a
throwaway PostgreSQL at the goal size. See benchmarks/README.md. Progress on stderr, the summary
on stdout, every figure in ``<out>/import-cycle-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import io
import json
import os
import pstats
import quopri
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.header import Header
from email.utils import format_datetime, formataddr
from pathlib import Path

from benchmarks.import_fetch import fill_mailbox
from benchmarks.ledger_cycle import run_cmd
from benchmarks.reconcile import copy_store, log, sqlite_url
from benchmarks.report import git_info, machine_info, timestamp, write_json
from benchmarks.runner import BenchmarkError, Run, Sample, rss_floor_mib, use_pycache

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"
EXAMPLE_CONFIG = REPO / "src" / "dunningops" / "example_config"
DEFAULT_OUT = Path(__file__).resolve().parent / "results"
SCHEMA = "dunningops-benchmarks/import-cycle/1"

FULL_MESSAGES, QUICK_MESSAGES = 10_000, 1_000
# ~1 customer in 3 gets an email from one send cycle (the others get to-dos or nothing): 15,000 customers give
# ~5,000 reminders, so that 10,000 messages answer distinct reminders a few times each, not one reminder 20 times.
FULL_CUSTOMERS, QUICK_CUSTOMERS = 15_000, 1_500
SEED = 1
USER_ENV, PASSWORD_ENV = "BENCH_IMAP_USER", "BENCH_IMAP_PASSWORD"
# The clock: the ledger's today and the apply (a Monday); the send cycle on the Thursday inside the
# example's window (as benchmarks/ledger_cycle.py); the mail arrives over the next hours.
DATA_NOW = datetime.fromisoformat("2026-11-16T09:00:00+00:00")
SENT_AT = datetime.fromisoformat("2026-11-19T08:30:00+01:00")
IMPORT_AT = SENT_AT + timedelta(hours=6)
RERUN_AT = IMPORT_AT + timedelta(minutes=10)
GOAL_RATIO = 0.5
GOAL = "≥ 0.5× the anchor's messages/s (performance.md); a re-run imports nothing"
# The mix (performance.md: replies, auto-replies, bounces; the brief's shares).
MIX = (("reply", 0.60), ("reply_by_sender", 0.10), ("auto_reply", 0.15), ("bounce", 0.12), ("unknown", 0.03))
BOUNCE_MIX = (("5.1.1", 0.70), ("5.2.2", 0.15), ("4.x", 0.15))


# --- set-up: the store --------------------------------------------------------------------------


def bench_config(port: int, target: Path) -> Path:
    """A copy of the example config: ``settings.inbox`` on the Dovecot account, caps that do not stop the send."""
    shutil.copytree(EXAMPLE_CONFIG, target)
    path = target / "dunningops.yaml"
    text = path.read_text(encoding="utf-8")
    inbox = (
        "  inbox:\n    kind: imap\n    host: 127.0.0.1\n"
        f"    port: {port}\n    security: none\n    username_env: {USER_ENV}\n    password_env: {PASSWORD_ENV}\n"
    )
    text, n1 = re.subn(r"(?m)^  inbox:\n    kind: maildir\n    path: .*\n", inbox, text)
    text, n2 = re.subn(r"(?m)^(      per_day:) \d+$", r"\1 1000000", text)
    text, n3 = re.subn(r"(?m)^(      per_month:) \d+$", r"\1 1000000", text)
    if (n1, n2, n3) != (1, 1, 1):
        raise BenchmarkError(f"could not adapt {path} (the example config changed shape: {n1, n2, n3})")
    path.write_text(text, encoding="utf-8")
    return target


def generate(folder: Path, config: Path, customers: int) -> dict:
    from dunningops.ledger.generate import generate_ledger
    from dunningops.spec import load_config

    desired = load_config(config)
    return generate_ledger(folder, customers=customers, seed=SEED, members=sorted(desired.members),
                           functions=sorted(desired.contact_functions), today=DATA_NOW.date(), plans=sorted(desired.plans))


def prepare_store(url: str, config: Path, ledger: Path, outbox: Path) -> dict:
    """Apply the config, import the ledger, verify the aliases (A3), run one send cycle: the store mail answers."""
    from sqlalchemy import func, select, update

    from dunningops.dunning.cycle import run_send
    from dunningops.ledger.importer import import_file
    from dunningops.reconcile.apply import apply_config
    from dunningops.spec import load_config
    from dunningops.store import open_store
    from dunningops.store.schema import AliasRow, MessageRow
    from dunningops.transport.maildir import MaildirTransport

    info: dict = {}
    store = open_store(url)
    try:
        start = time.perf_counter()
        apply_config(store, load_config(config), now=DATA_NOW, actor="bench", git_commit=None)
        with store.session() as s:
            s.execute(update(AliasRow).values(verified=True))  # A3: nobody here clicks the confirmation link
        for kind in ("customers", "contacts", "invoices", "payments"):
            info[f"import_{kind}"] = import_file(store, kind, ledger / f"{kind}.csv", now=DATA_NOW).line()
        report = run_send(store, at=SENT_AT, transport_factory=lambda c: MaildirTransport(outbox))
        with store.session() as s:
            query = select(MessageRow.kind, func.count()).where(MessageRow.status == "sent").group_by(MessageRow.kind)
            by = dict(s.execute(query).all())
        info.update(sent=report.sent, todos=report.todos, sent_messages_by_kind=by, seconds=round(time.perf_counter() - start, 1))
        if not by.get("reminder"):
            raise BenchmarkError(f"the send cycle sent no reminder: {info}")
    finally:
        store.dispose()
    return info


# --- set-up: the mail -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    message_id: str
    from_address: str
    from_name: str | None
    to: str
    to_name: str | None
    subject: str
    customer_id: int
    language: str
    target: tuple  # (customer_id, invoice_id or None): what a reply to-do is for (R9)


def load_sent(url: str) -> tuple[list[Sent], list[tuple[str, str, int]]]:
    """The sent reminders (oldest first), and (email, name, customer) of every contact of exactly one customer."""
    from sqlalchemy import select

    from dunningops.store import open_store
    from dunningops.store.schema import ContactRow, MessageRow, PlanRow

    m, p, c = MessageRow.__table__, PlanRow.__table__, ContactRow.__table__
    store = open_store(url)
    try:
        with store.session() as s:
            contacts = s.execute(select(c.c.email, c.c.name, c.c.customer_id)).all()
            rows = s.execute(
                select(m.c.message_id, m.c.from_address, m.c.from_name, m.c.to_addresses, m.c.subject, m.c.customer_id,
                       m.c.language, m.c.anchor_invoice_id, p.c.level)
                .outerjoin(p, p.c.id == m.c.plan_id)
                .where(m.c.kind == "reminder", m.c.status == "sent", m.c.customer_id.is_not(None))
                .order_by(m.c.id)
            ).all()
    finally:
        store.dispose()
    owners: dict[str, set[int]] = {}
    names: dict[str, str | None] = {}
    for email, name, customer in contacts:
        owners.setdefault(email, set()).add(customer)
        names[email] = name
    single = [(e, names[e] or "", next(iter(ids))) for e, ids in sorted(owners.items()) if len(ids) == 1 and "@" in e]
    sent = [
        Sent(r.message_id, r.from_address, r.from_name, r.to_addresses[0], names.get(r.to_addresses[0]), r.subject,
             r.customer_id, (r.language or "fr")[:2], (r.customer_id, r.anchor_invoice_id if r.level == "invoice" else None))
        for r in rows if r.to_addresses and len(owners.get(r.to_addresses[0], ())) == 1
    ]
    return sent, single


def _h(text: str) -> str:
    """A header value: RFC 2047-encoded when it is not ASCII."""
    return text if text.isascii() else Header(text, "utf-8").encode()


def _addr(name: str | None, email: str) -> str:
    return formataddr((name, email), charset="utf-8") if name else email


def _qp(text: str) -> str:
    return quopri.encodestring(text.encode("utf-8")).decode("ascii")


FR_REPLIES = (
    "Bonjour,\n\nNous avons bien reçu votre relance. Le virement a été fait hier, vous devriez le recevoir d'ici deux jours.\n",
    "Bonjour,\n\nCette facture est en cours de validation chez nous, le paiement partira avec le règlement de fin de mois.\n",
    "Bonjour,\n\nPourriez-vous nous renvoyer la facture en PDF ? Nous ne la trouvons pas dans notre système.\n\n"
    "Merci d'avance.\n",
    "Bonjour,\n\nNous contestons le montant : la livraison du 3 novembre était incomplète (2 tabourets manquants).\n"
    "Merci de nous faire parvenir un avoir.\n",
    "Bonjour,\n\nLe règlement a été envoyé par chèque le 12 novembre. Pouvez-vous vérifier de votre côté ?\n",
    "Bonjour Madame,\n\nJe ne suis plus en charge de la comptabilité, merci de vous adresser à ma collègue.\n",
    "Bonjour,\n\nNous payerons le 30 novembre, comme convenu avec votre commercial.\n\nBien cordialement,\n",
    "Bonjour,\n\nCi-joint l'avis de virement. Merci de mettre à jour votre relevé.\n",
)
EN_REPLIES = (
    "Hello,\n\nThanks for the reminder. The payment was sent yesterday and should reach you within two days.\n",
    "Hi,\n\nThis invoice is awaiting approval on our side; it will be paid in our end-of-month run.\n",
    "Hello,\n\nCould you send us a copy of the invoice as a PDF? We cannot find it in our system.\n\nThanks,\n",
    "Hi,\n\nWe dispute this amount: the delivery of 3 November was incomplete. Please issue a credit note.\n",
    "Hello,\n\nWe paid this by bank transfer on 12 November, please check again.\n",
    "Dear team,\n\nI no longer handle accounts payable, please contact my colleague instead.\n",
    "Hi,\n\nWe will pay on 30 November as agreed with your sales rep.\n\nBest regards,\n",
    "Hello,\n\nPlease find attached the remittance advice.\n",
)
FR_REMINDER = (
    "Bonjour,", "", "Sauf erreur de notre part, les factures ci-dessous restent impayées à ce jour :",
    "  FA-2026-{n:06d}   échue le 30/10/2026   1 240,00 EUR", "  FA-2026-{m:06d}   échue le 05/11/2026     318,40 EUR", "",
    "Si vous avez déjà procédé au règlement, merci de ne pas tenir compte de ce message.",
    "Vous pouvez consulter et payer vos factures en ligne : https://www.ateliers-durand.fr/factures", "",
    "Cordialement,", "Service recouvrement", "Ateliers Durand SAS",
)
EN_REMINDER = (
    "Hello,", "", "According to our records, the invoices below are still unpaid:",
    "  FA-2026-{n:06d}   due 10/30/2026   EUR 1,240.00", "  FA-2026-{m:06d}   due 11/05/2026   EUR 318.40", "",
    "If you have already paid, please disregard this message.",
    "You can view and pay your invoices online: https://www.ateliers-durand.fr/invoices", "",
    "Kind regards,", "Accounts receivable", "Ateliers Durand SAS",
)
OOO = (
    ("fr", "Réponse automatique : {s}", "Bonjour,\n\nJe suis absente du bureau jusqu'au lundi 30 novembre inclus, avec un accès "
     "limité à mes e-mails. Pour toute urgence, contactez compta@{d}.\n"),
    ("fr", "Absence du bureau : {s}", "Bonjour,\n\nJe suis en congés jusqu'au 27/11. Votre message ne sera pas transféré.\n"),
    ("en", "Automatic reply: {s}", "Hello,\n\nI am out of the office until Monday 30 November with limited access to email.\n"),
    ("en", "Out of Office: {s}", "Thank you for your email. I am currently away and will reply on my return.\n"),
)
FIRSTS = ("Camille", "Lucas", "Emma", "Hugo", "Chloé", "Louis", "Sarah", "Jules", "Anna", "Tom")
LASTS = ("Bernard", "Petit", "Robert", "Richard", "Durand", "Moreau", "Laurent", "Simon", "Michel", "Lefèvre")
UNKNOWN_DOMAINS = ("nouveau-client.fr", "prospect-mail.com", "gmail.com", "orange.fr", "outlook.com", "example.org")


class MailWriter:
    """The raw messages that come back after the send cycle, built from the real sent reminders."""

    def __init__(self, sent: list[Sent], contacts: list[tuple[str, str, int]], seed: int):
        self.rng = random.Random(seed)
        self.sent, self.contacts = sent, contacts
        self.pdf = base64.encodebytes(random.Random(seed).randbytes(6_000)).decode("ascii")
        self.serial = 0

    def _date(self) -> datetime:
        return SENT_AT + timedelta(seconds=self.rng.randrange(60, int((IMPORT_AT - SENT_AT).total_seconds()) - 60))

    def _mid(self, domain: str) -> str:
        self.serial += 1
        return f"<{self.serial:07d}.{self.rng.getrandbits(48):012x}@{domain}>"

    @staticmethod
    def _domain(email: str) -> str:
        return email.rpartition("@")[2] or "example.net"

    def _head(self, *, sender: tuple[str | None, str], to: str, to_email: str, subject: str, when: datetime, mid: str,
              extra: str = "", return_path: str | None = None) -> str:
        name, email = sender
        domain = self._domain(email)
        return (
            f"Return-Path: <{email if return_path is None else return_path}>\n"
            f"Received: from mail.{domain} (mail.{domain} [192.0.2.{self.rng.randrange(1, 254)}])\n"
            f"\tby mx.ateliers-durand.fr (Postfix) with ESMTPS id {self.rng.getrandbits(40):010X}\n"
            f"\tfor <{to_email}>; {format_datetime(when)}\n"
            f"From: {_addr(name, email)}\nTo: {to}\nSubject: {_h(subject)}\nDate: {format_datetime(when)}\nMessage-ID: {mid}\n"
            f"{extra}MIME-Version: 1.0\n"
        )

    def _quote(self, s: Sent, when: datetime, lang: str) -> tuple[str, str]:
        """The quoted history under a reply, as text and as HTML; one of three client styles."""
        n = self.rng.randrange(1, 999_999)
        lines = [line.format(n=n, m=n + 1) for line in (EN_REMINDER if lang == "en" else FR_REMINDER)]
        sender = _addr(s.from_name, s.from_address)
        style = self.rng.random()
        if style < 0.5:  # Gmail / Thunderbird: "Le …, X a écrit :" then "> " lines
            head = (f"On Thu, Nov 19, 2026 at 8:31 AM {sender} wrote:" if lang == "en"
                    else f"Le jeu. 19 nov. 2026 à 08:31, {sender} a écrit :")
            text = head + "\n" + "\n".join(f"> {line}" if line else ">" for line in lines) + "\n"
        else:  # Outlook: a header block, the original unquoted below it
            if lang == "en":
                block = (f"-----Original Message-----\nFrom: {sender}\nSent: Thursday, November 19, 2026 8:31 AM\n"
                         f"To: {s.to}\nSubject: {s.subject}\n")
            else:
                block = (f"De : {sender}\nEnvoyé : jeudi 19 novembre 2026 08:31\nÀ : {s.to}\n"
                         f"Objet : {s.subject}\n")
            text = block + "\n" + "\n".join(lines) + "\n"
        html = "<blockquote style=\"margin:0 0 0 .8ex;border-left:1px #ccc solid;padding-left:1ex\">" + "<br>\n".join(
            line.replace("&", "&amp;").replace("<", "&lt;") for line in text.splitlines()) + "</blockquote>"
        return text, html

    def _body(self, text: str, html: str | None, attach: bool) -> str:
        """Content-Type and body: plain 8-bit, plain quoted-printable, or multipart/alternative; a PDF maybe."""
        shape = self.rng.random()
        if html is None or shape < 0.45:
            part = "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n" + text
        elif shape < 0.70:
            part = "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n" + _qp(text)
        else:
            b = f"alt_{self.rng.getrandbits(64):016x}"
            part = (
                f'Content-Type: multipart/alternative; boundary="{b}"\n\n--{b}\n'
                "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n"
                f"{_qp(text)}\n--{b}\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n"
                f"{_qp(html)}\n--{b}--\n"
            )
        if not attach:
            return part
        b = f"mix_{self.rng.getrandbits(64):016x}"
        return (
            f'Content-Type: multipart/mixed; boundary="{b}"\n\n--{b}\n{part}\n--{b}\n'
            'Content-Type: application/pdf; name="avis-de-virement.pdf"\nContent-Transfer-Encoding: base64\n'
            f'Content-Disposition: attachment; filename="avis-de-virement.pdf"\n\n{self.pdf}--{b}--\n'
        )

    def _signature(self, name: str | None, email: str) -> str:
        who = name or f"{self.rng.choice(FIRSTS)} {self.rng.choice(LASTS)}"
        return f"\n{who}\nComptabilité fournisseurs\n{self._domain(email)}\nTél. +33 1 {self.rng.randrange(10**8):08d}\n"

    def reply(self, s: Sent, *, threaded: bool) -> bytes:
        when = self._date()
        lang = s.language if s.language in ("fr", "en") else "fr"
        words = self.rng.choice(EN_REPLIES if lang == "en" else FR_REPLIES)
        quoted, quoted_html = self._quote(s, when, lang)
        sig = self._signature(s.to_name, s.to)
        text = words + sig + "\n" + quoted
        html = "<html><body><div>" + (words + sig).replace("\n", "<br>\n") + "</div>\n" + quoted_html + "</body></html>\n"
        prefix = "RE: " if self.rng.random() < 0.6 else "Re: "
        extra = f"In-Reply-To: {s.message_id}\nReferences: {s.message_id}\n" if threaded else ""
        if self.rng.random() < 0.2:
            extra += "X-Mailer: Microsoft Outlook 16.0\nThread-Index: AdnT" + f"{self.rng.getrandbits(64):016x}\n"
        head = self._head(sender=(s.to_name, s.to), to=_addr(s.from_name, s.from_address), to_email=s.from_address,
                          subject=prefix + s.subject, when=when, mid=self._mid(self._domain(s.to)), extra=extra)
        return (head + self._body(text, html, attach=self.rng.random() < 0.05)).encode("utf-8")

    def reply_by_sender(self, contact: tuple[str, str, int], s: Sent) -> bytes:
        """A new message (no In-Reply-To) from a contact: matched by its sender (R5 b)."""
        email, name, _ = contact
        when = self._date()
        lang = s.language if s.language in ("fr", "en") else "fr"
        words = self.rng.choice(EN_REPLIES if lang == "en" else FR_REPLIES)
        subject = self.rng.choice(("Facture impayée", "Votre relance", "Question sur une facture", "Paiement", "Invoice query"))
        head = self._head(sender=(name or None, email), to=_addr(s.from_name, s.from_address), to_email=s.from_address,
                          subject=subject, when=when, mid=self._mid(self._domain(email)))
        return (head + self._body(words + self._signature(name or None, email), None, attach=False)).encode("utf-8")

    def auto_reply(self, s: Sent) -> bytes:
        when = self._date()
        _, subject, text = self.rng.choice([o for o in OOO if o[0] == s.language] or OOO)
        style = self.rng.random()
        extra = f"In-Reply-To: {s.message_id}\nReferences: {s.message_id}\n" if self.rng.random() < 0.7 else ""
        if style < 0.5:
            extra += "Auto-Submitted: auto-replied\n"
        elif style < 0.75:
            extra += ("X-MS-Exchange-Inbox-Rules-Loop: " + s.to + "\nX-Auto-Response-Suppress: All\n"
                      "X-MS-Exchange-Generated-Message-Source: Mailbox Rules Agent\n")
        elif style < 0.9:
            extra += "Precedence: auto_reply\n"
        # else: the subject alone says it
        head = self._head(sender=(s.to_name, s.to), to=_addr(s.from_name, s.from_address), to_email=s.from_address,
                          subject=subject.format(s=s.subject), when=when, mid=self._mid(self._domain(s.to)), extra=extra)
        return (head + self._body(text.format(d=self._domain(s.to)), None, attach=False)).encode("utf-8")

    def bounce(self, s: Sent, status: str) -> bytes:
        """A delivery status notification (RFC 3464) as Postfix or Exchange writes it."""
        when = SENT_AT + timedelta(seconds=self.rng.randrange(5, 3600))
        rcpt_domain = self._domain(s.to)
        mx = f"mx{self.rng.randrange(1, 4)}.{rcpt_domain}"
        if status == "4.x":
            code = self.rng.choice(("4.4.1", "4.2.2", "4.7.1"))
            action, diag = "delayed", f"smtp; 421 {code} {mx}: Connection timed out"
            subject, human = ("Delayed Mail (still being retried)",
                              "This is the mail system at host mx.ateliers-durand.fr.\n\n####################################\n"
                              "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\n"
                              "####################################\n\nYour message could not be delivered for 4 hours.\n"
                              "It will be retried until it is 5 days old.\n")
            extra_fields = "Will-Retry-Until: Tue, 24 Nov 2026 08:30:00 +0100 (CET)\n"
        else:
            code = status
            action = "failed"
            diag = (f"smtp; 550 5.1.1 <{s.to}>: Recipient address rejected: User unknown in virtual mailbox table"
                    if status == "5.1.1" else f"smtp; 552 5.2.2 <{s.to}>: Mailbox full (quota exceeded)")
            subject = "Undelivered Mail Returned to Sender"
            human = ("This is the mail system at host mx.ateliers-durand.fr.\n\nI'm sorry to have to inform you that your "
                     "message could not\nbe delivered to one or more recipients. It's attached below.\n\n"
                     f"<{s.to}>: host {mx} said: {diag[6:]}\n")
            extra_fields = ""
        exchange = self.rng.random() < 0.3
        if exchange:
            sender = ("Microsoft Outlook", f"postmaster@{rcpt_domain}")
            subject = ("Undeliverable: " if action == "failed" else "Delivery delayed: ") + s.subject
            extra = "Auto-Submitted: auto-replied\nX-MS-Exchange-Message-Is-Ndr: \n"
        else:
            sender = ("Mail Delivery System", "MAILER-DAEMON@mx.ateliers-durand.fr")
            extra = "Auto-Submitted: auto-replied\n"
        b = f"{self.rng.getrandbits(40):010X}.{int(when.timestamp())}/mx.ateliers-durand.fr"
        head = self._head(sender=sender, to=s.from_address, to_email=s.from_address, subject=subject, when=when,
                          mid=self._mid("mx.ateliers-durand.fr"), extra=extra, return_path="")
        body = (
            f'Content-Type: multipart/report; report-type=delivery-status;\n\tboundary="{b}"\n\n'
            "This is a MIME-encapsulated message.\n\n"
            f"--{b}\nContent-Description: Notification\nContent-Type: text/plain; charset=us-ascii\n\n{human}\n"
            f"--{b}\nContent-Description: Delivery report\nContent-Type: message/delivery-status\n\n"
            f"Reporting-MTA: dns; mx.ateliers-durand.fr\nX-Postfix-Queue-ID: {self.rng.getrandbits(40):010X}\n"
            f"Arrival-Date: {format_datetime(SENT_AT)}\n\n"
            f"Final-Recipient: rfc822; {s.to}\nOriginal-Recipient: rfc822;{s.to}\nAction: {action}\nStatus: {code}\n"
            f"Remote-MTA: dns; {mx}\nDiagnostic-Code: {diag}\n{extra_fields}\n"
            f"--{b}\nContent-Description: Undelivered Message Headers\nContent-Type: text/rfc822-headers\n\n"
            f"Return-Path: <bounces@ateliers-durand.fr>\nFrom: {_addr(s.from_name, s.from_address)}\nTo: {s.to}\n"
            f"Subject: {_h(s.subject)}\nDate: {format_datetime(SENT_AT)}\nMessage-ID: {s.message_id}\n"
            "Auto-Submitted: auto-generated\nMIME-Version: 1.0\n\n"
            f"--{b}--\n"
        )
        return (head + body).encode("utf-8")

    def unknown(self) -> bytes:
        first, last = self.rng.choice(FIRSTS), self.rng.choice(LASTS)
        local = f"{first.lower().replace('é', 'e')}.{last.lower().replace('è', 'e')}{self.rng.randrange(1000)}"
        email = f"{local}@{self.rng.choice(UNKNOWN_DOMAINS)}"
        s = self.rng.choice(self.sent)
        text = self.rng.choice((
            "Bonjour,\n\nPourriez-vous nous envoyer un devis pour 40 tabourets en chêne ?\n\nMerci.\n",
            "Hello,\n\nDo you ship to Belgium? We would like to order chairs for our restaurant.\n",
            "Bonjour,\n\nJe vous contacte au sujet d'une candidature spontanée.\n",
        ))
        head = self._head(sender=(f"{first} {last}", email), to=_addr(s.from_name, s.from_address), to_email=s.from_address,
                          subject=self.rng.choice(("Demande de devis", "Question", "Partenariat", "Order enquiry")),
                          when=self._date(), mid=self._mid(self._domain(email)))
        return (head + self._body(text, None, attach=False)).encode("utf-8")


@dataclass
class Mail:
    raw: list[bytes]
    plan: dict  # what each message is, and what the import must do with them


def write_mail(n: int, sent: list[Sent], contacts: list[tuple[str, str, int]], seed: int) -> Mail:
    """``n`` messages in the MIX, shuffled as they arrive; with the counts the import must report."""
    rng = random.Random(seed)
    writer = MailWriter(sent, contacts, seed)
    counts = {k: int(n * share) for k, share in MIX}
    counts["reply"] += n - sum(counts.values())
    # Bounces answer distinct reminders to distinct addresses (one failure per address, as a real
    # server sends it), and none of the reminders people answer: a dead mailbox writes no reply.
    by_address: dict[str, Sent] = {}
    for s in rng.sample(sent, len(sent)):
        by_address.setdefault(s.to, s)
    dead = list(by_address.values())[: counts["bounce"]]
    if len(dead) < counts["bounce"]:
        raise BenchmarkError(f"{len(by_address)} distinct recipients for {counts['bounce']} bounces: generate more customers")
    dead_set = {s.to for s in dead}
    alive = [s for s in sent if s.to not in dead_set] or sent
    alive_contacts = [c for c in contacts if c[0] not in dead_set]
    kinds = [k for k, share in BOUNCE_MIX for _ in range(int(counts["bounce"] * share))]
    kinds += ["5.1.1"] * (counts["bounce"] - len(kinds))
    items: list[tuple[str, bytes]] = []
    reply_targets: set[tuple] = set()
    for _ in range(counts["reply"]):
        s = rng.choice(alive)
        reply_targets.add(s.target)
        items.append(("reply", writer.reply(s, threaded=True)))
    for _ in range(counts["reply_by_sender"]):
        contact = rng.choice(alive_contacts)
        reply_targets.add((contact[2], None))
        items.append(("reply_by_sender", writer.reply_by_sender(contact, rng.choice(alive))))
    for _ in range(counts["auto_reply"]):
        items.append(("auto_reply", writer.auto_reply(rng.choice(alive))))
    for s, status in zip(dead, kinds, strict=True):
        items.append((f"bounce {status}", writer.bounce(s, status)))
    for _ in range(counts["unknown"]):
        items.append(("unknown", writer.unknown()))
    rng.shuffle(items)
    raw = [r.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") for _, r in items]
    permanent = kinds.count("5.1.1")
    what = Counter(k for k, _ in items)
    expected = {
        "imported": n,
        "linked": n - counts["unknown"],
        "ignored": counts["unknown"],
        "quarantined": 0,
        "by_kind": {"reply": counts["reply"] + counts["reply_by_sender"] + counts["unknown"],
                    "auto_reply": counts["auto_reply"], "bounce": counts["bounce"]},
        "reply_todos": len(reply_targets),
        "invalidated": permanent,
        "bounce_todos": permanent,
        "alerts": permanent,
    }
    sizes = [len(r) for r in raw]
    return Mail(raw, {"messages": n, "mix": dict(sorted(what.items())), "expected": expected,
                      "mean_bytes": sum(sizes) // max(1, n), "max_bytes": max(sizes, default=0),
                      "total_bytes": sum(sizes), "sent_reminders_referenced": len({s.message_id for s in sent})})


# --- the measured children -------------------------------------------------------------------------


def _source_factory(user: str, password: str):
    from dunningops.transport.sources import open_source

    env = {USER_ENV: user, PASSWORD_ENV: password}
    return lambda config: open_source(config.settings.inbox, Path("/"), env)  # the CLI's path (App.source)


def _transport_factory(base_dir: Path):
    from dunningops.transport.base import open_transport

    return lambda config: open_transport(config.settings.sending.transport, base_dir, {})  # the CLI's (App.transport)


def _report_dict(report) -> dict:
    e = report.effects
    return {
        "imported": report.imported, "read": sum(f.read for f in report.folders),
        "duplicates": sum(f.duplicates for f in report.folders), "linked": e.linked, "ignored": e.ignored,
        "quarantined": e.quarantined, "by_kind": dict(sorted(e.by_kind.items())), "reply_todos": e.reply_todos,
        "bounce_todos": e.bounce_todos, "invalidated": e.invalidated, "temporary_customers": e.temporary_customers,
        "alerts": len(report.alert_ids), "announced": report.announced, "handled": report.handled,
        "errors": report.errors, "warnings": report.warnings, "fatal": str(report.fatal) if report.fatal else None,
        "line": report.line(),
    }


def _store_counts(store) -> dict:
    from sqlalchemy import func, select

    from dunningops.store.schema import AlertRow, ContactRow, InboxMessageRow, TodoRow

    with store.session() as s:
        inbox = dict(s.execute(select(InboxMessageRow.status, func.count()).group_by(InboxMessageRow.status)).all())
        todos = dict(s.execute(select(TodoRow.kind, func.count()).group_by(TodoRow.kind)).all())
        invalid = s.execute(select(func.count()).select_from(ContactRow).where(ContactRow.valid.is_(False))).scalar_one()
        alerts = s.execute(select(func.count()).select_from(AlertRow)).scalar_one()
    return {"inbox_messages": inbox, "todos": todos, "invalid_contacts": invalid, "alerts": alerts}


class Stages:
    """Time per stage of one run_import, by wrapping the functions the importer calls (a diagnostic run).

    Only the outermost timed call counts (a commit inside the alerts' announce is the announce's),
    so the stages do not overlap and the rest of the run is what none of them covers.
    """

    def __init__(self) -> None:
        self.seconds: Counter = Counter()
        self.calls: Counter = Counter()
        self.raw: list[bytes] = []
        self.depth = 0
        self.statements: Counter = Counter()  # SQL statements sent, by the innermost dunningops function
        self.statement_rows: Counter = Counter()  # rows sent (an executemany counts each of its parameter sets)

    def add(self, name: str, seconds: float) -> None:
        if self.depth == 0:
            self.seconds[name] += seconds
            self.calls[name] += 1

    def wrap(self, name: str, fn):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            self.depth += 1
            try:
                return fn(*args, **kwargs)
            finally:
                self.depth -= 1
                self.add(name, time.perf_counter() - start)
        return timed

    def wrap_iter(self, name: str, fn):
        def timed(*args, **kwargs):
            it = iter(fn(*args, **kwargs))
            while True:
                start = time.perf_counter()
                self.depth += 1
                try:
                    item = next(it)
                except StopIteration:
                    return
                finally:
                    self.depth -= 1
                    self.add(name, time.perf_counter() - start)
                yield item
        return timed

    def install(self, store, source_factory):
        from dunningops.alerts import channels
        from dunningops.alerts import store as alert_store
        from dunningops.inbox import importer

        for name, label in (("parse_message", "parse_message"), ("dedupe_key", "dedupe_key (sha256 of the raw bytes)"),
                            ("known_dedupe_keys", "known_dedupe_keys (SELECT)"),
                            ("match_batch", "match_batch (2 SELECTs + Python)"),
                            ("act", "act (INSERT rows, to-dos, bounces)")):
            setattr(importer, name, self.wrap(label, getattr(importer, name)))
        alert_store.record = self.wrap("alerts: record", alert_store.record)
        channels.announce_recorded = self.wrap("alerts: announce (email via maildir)", channels.announce_recorded)
        importer.Importer._save_cursor = self.wrap("save cursor (UPDATE)", importer.Importer._save_cursor)
        importer.Importer.handle_pending = self.wrap("handle_pending", importer.Importer.handle_pending)
        original_session = store.session
        stages = self

        @contextmanager
        def session(**kwargs):
            manager = original_session(**kwargs)
            s = manager.__enter__()
            try:
                yield s
            except BaseException:
                if not manager.__exit__(*sys.exc_info()):
                    raise
            else:
                start = time.perf_counter()
                manager.__exit__(None, None, None)
                stages.add("commit (session exit)", time.perf_counter() - start)

        store.session = session

        from sqlalchemy import event

        def count(conn, cursor, statement, parameters, context, executemany) -> None:
            frame = sys._getframe(1)
            while frame is not None and ("/dunningops/" not in frame.f_code.co_filename
                                         or frame.f_code.co_filename.endswith("store/engine.py")):
                frame = frame.f_back
            where = (f"{frame.f_code.co_filename.rpartition('/dunningops/')[2]}:{frame.f_code.co_name}"
                     if frame is not None else "(outside dunningops)")
            self.statements[where] += 1
            many = (executemany and isinstance(parameters, (list, tuple)) and parameters
                    and isinstance(parameters[0], (list, tuple, dict)))
            self.statement_rows[where] += len(parameters) if many else 1

        event.listen(store.engine, "before_cursor_execute", count)

        def factory(config):
            start = time.perf_counter()
            source = source_factory(config)
            self.add("source: open_source (connect + login)", time.perf_counter() - start)
            fetch = self.wrap("source: UID FETCH BODY.PEEK[] (fetch)", source.fetch)

            def keep(refs):
                fetched = fetch(refs)
                self.raw += [f.raw for f in fetched]
                return fetched

            source.fetch = keep
            source.cursor = self.wrap("source: SELECT (cursor)", source.cursor)
            source.list_new = self.wrap_iter("source: list (SELECT + UID FETCH RFC822.SIZE)", source.list_new)
            source.close = self.wrap("source: logout", source.close)
            return source

        return factory


def _top(profiler: cProfile.Profile, sort: str, *restrictions) -> list[str]:
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats(sort).print_stats(*restrictions)
    lines = [line.rstrip() for line in out.getvalue().splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls")), 0)
    # Paths shortened to what names the code: the project's files, the standard library, site-packages.
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    strip = [f"{sys.prefix}/lib/{version}/site-packages/", f"{sys.base_prefix}/lib/{version}/", str(REPO / "src") + "/",
             str(REPO) + "/"]
    result = []
    for line in lines[start:]:
        for prefix in strip:
            line = line.replace(prefix, "")
        result.append(line)
    return result


# What run_import imports on first use (open_source, the alerts): imported before the clock starts, as
# in a daemon after its first cycle; the CLI's own start-up is not part of this figure.
LAZY_IMPORTS = ("imapclient", "dunningops.transport.imap_source", "dunningops.alerts.store", "dunningops.alerts.channels",
                "dunningops.dunning.context", "dunningops.transport.base", "dunningops.transport.maildir",
                "dunningops.outgoing.way_out")


def child(argv: list[str]) -> int:
    """``python -m benchmarks.import_cycle child {anchor,import,breakdown,profile} ...``: one measured process."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.import_cycle child")
    parser.add_argument("mode", choices=["anchor", "import", "breakdown", "profile"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--repeat", type=int, default=3, help="anchor: measured passes after one warm-up")
    parser.add_argument("--url", help="import: the store")
    parser.add_argument("--at", type=datetime.fromisoformat)
    parser.add_argument("--base-dir", type=Path, help="import: where the config's relative maildir transport path points")
    args = parser.parse_args(argv)
    import resource

    out: dict = {"mode": args.mode}
    if args.mode == "anchor":
        from benchmarks.import_fetch import bare_fetch

        bare_fetch(args.host, args.port, args.user, args.password)  # warm-up: Dovecot's cache, the page cache
        samples = [bare_fetch(args.host, args.port, args.user, args.password) for _ in range(args.repeat)]
        out.update(messages=samples[0][0], samples_s=[s for _, s in samples])
    else:
        import importlib

        from dunningops.inbox.importer import run_import
        from dunningops.store import open_store

        for name in LAZY_IMPORTS:  # imported inside run_import on first use: once per process, kept out of the figure
            importlib.import_module(name)
        start = time.perf_counter()
        store = open_store(args.url)
        out["open_store_s"] = time.perf_counter() - start
        sources = _source_factory(args.user, args.password)
        transports = _transport_factory(args.base_dir)
        stages = profiler = None
        if args.mode == "breakdown":
            stages = Stages()
            sources = stages.install(store, sources)
        if args.mode == "profile":
            profiler = cProfile.Profile()
            profiler.enable()
        start = time.perf_counter()
        report = run_import(store, sources, at=args.at, transport_factory=transports, env={})
        out["seconds"] = time.perf_counter() - start
        if profiler is not None:
            profiler.disable()
            out["top_cumulative"] = _top(profiler, "cumulative", 30)
            out["top_tottime"] = _top(profiler, "tottime", 30)
            out["top_cumulative_dunningops"] = _top(profiler, "cumulative", "dunningops/", 40)
        out["report"] = _report_dict(report)
        if stages is not None:
            from dunningops.inbox.parse import UnparseableMessageError, parse_message

            measured = dict(stages.seconds)
            known = sum(measured.values())
            out["stages_s"] = {k: round(v, 4) for k, v in sorted(measured.items(), key=lambda kv: -kv[1])}
            out["stage_calls"] = dict(stages.calls)
            out["stages_other_s"] = round(out["seconds"] - known, 4)
            out["sql_statements"] = {"total": sum(stages.statements.values()),
                                     "by_function": {k: {"statements": v, "rows": stages.statement_rows[k]}
                                                     for k, v in stages.statements.most_common(15)}}
            start = time.perf_counter()
            for raw in stages.raw:
                try:
                    parse_message(raw)
                except UnparseableMessageError:
                    pass
            out["parse_message_alone"] = {"messages": len(stages.raw), "seconds": round(time.perf_counter() - start, 4),
                                          "bytes": sum(map(len, stages.raw))}
        out["store"] = _store_counts(store)
        store.dispose()
    out["ru_maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    json.dump(out, sys.stdout)
    return 0


# --- the parent: running, judging, writing -----------------------------------------------------------


def child_argv(mode: str, server, user: str, *extra) -> list:
    return [sys.executable, "-m", "benchmarks.import_cycle", "child", mode, "--port", server.port, "--user", user,
            "--password", server.password, *extra]


def run_child(argv: list) -> tuple[Run, dict]:
    run = run_cmd(argv)
    try:
        return run, json.loads(run.stdout)
    except json.JSONDecodeError as exc:
        raise BenchmarkError(f"{' '.join(map(str, argv[:5]))}: no JSON on stdout: {run.stdout[-2000:]}") from exc


def anchor(server, user: str, repeat: int) -> dict:
    run, data = run_child(child_argv("anchor", server, user, "--repeat", repeat))
    seconds = data["samples_s"]
    median = statistics.median(seconds)
    return {
        "what": "imapclient (import_fetch.bare_fetch): login, EXAMINE, UID SEARCH ALL, UID FETCH BODY.PEEK[] in batches "
                "of 500, one warm-up pass then the measured ones, in one process",
        "messages": data["messages"], "absolute_s": round(median, 4), "min_s": round(min(seconds), 4),
        "max_s": round(max(seconds), 4), "samples_s": [round(s, 4) for s in seconds],
        "messages_per_s": round(data["messages"] / median), "peak_rss_mib": round(run.peak_rss_kib / 1024, 1),
    }


def import_runs(server, user: str, url_for, base_dir: Path, at: datetime, repeat: int, check) -> tuple[Sample, list[dict], dict]:
    """``repeat`` runs of run_import, each in its own process; ``url_for(i)`` prepares the store of run i."""
    runs, datas = [], []
    for i in range(repeat):
        url = url_for(i)
        run, data = run_child(child_argv("import", server, user, "--url", url, "--at", at.isoformat(), "--base-dir", base_dir))
        check(data)
        runs.append(Run(seconds=data["seconds"], peak_rss_kib=run.peak_rss_kib, stdout=""))
        datas.append({"seconds": round(data["seconds"], 4), "process_s": round(run.seconds, 3),
                      "open_store_s": round(data["open_store_s"], 4), "peak_rss_mib": round(run.peak_rss_kib / 1024, 1)})
    return Sample(tuple(runs)), datas, data


def compare(report: dict, store: dict, expected: dict) -> list[str]:
    """What the first import reported (and left in the store) that differs from what the mail calls for."""
    odd = []
    for key in ("imported", "linked", "ignored", "quarantined", "reply_todos", "invalidated", "bounce_todos", "alerts"):
        if report.get(key) != expected[key]:
            odd.append(f"{key}: reported {report.get(key)}, expected {expected[key]}")
    if report["by_kind"] != expected["by_kind"]:
        odd.append(f"by_kind: reported {report['by_kind']}, expected {expected['by_kind']}")
    total = sum(store["inbox_messages"].values())
    if total != expected["imported"]:
        odd.append(f"inbox_messages rows: {total}, expected {expected['imported']}")
    if store["todos"].get("reply", 0) != expected["reply_todos"]:
        odd.append(f"reply to-dos in the store: {store['todos'].get('reply', 0)}, expected {expected['reply_todos']}")
    if store["todos"].get("bounce", 0) != expected["bounce_todos"]:
        odd.append(f"bounce to-dos in the store: {store['todos'].get('bounce', 0)}, expected {expected['bounce_todos']}")
    if report["errors"] or report["fatal"]:
        odd.append(f"errors: {report['errors']} fatal: {report['fatal']}")
    if report["warnings"]:
        odd.append(f"warnings: {report['warnings'][:5]}")
    return odd


def bench_size(n: int, server, base: Path, sent: list[Sent], contacts, work: Path, repeat: int, profile: str) -> dict:
    user = f"import{n}"
    log(f"[{n:,} messages] writing the mail")
    mail = write_mail(n, sent, contacts, SEED + n)
    start = time.perf_counter()
    fill_mailbox(server, user, mail.raw, method="maildir")
    fill_s = time.perf_counter() - start
    del mail.raw
    log(f"[{n:,} messages] filled {user}'s INBOX in {fill_s:.2f} s; anchor (warm-up + {repeat})")
    a = anchor(server, user, repeat)
    expected = mail.plan["expected"]
    folder = work / f"n{n}"
    folder.mkdir()
    store = folder / "store.db"

    def fresh(i: int) -> str:
        copy_store(base, store)
        return sqlite_url(store)

    def first_check(data: dict) -> None:
        if data["report"]["imported"] == 0 or data["report"]["fatal"]:
            raise BenchmarkError(f"the first import imported nothing: {data['report']}")

    log(f"[{n:,} messages] first import ×{repeat} (a fresh copy of the store each)")
    first, first_runs, last = import_runs(server, user, fresh, folder, IMPORT_AT, repeat, first_check)
    rerun_ok: list[bool] = []

    def rerun_check(data: dict) -> None:
        r = data["report"]
        rows = sum(data["store"]["inbox_messages"].values())
        rerun_ok.append(r["imported"] == 0 and r["read"] == 0 and rows == expected["imported"] and not r["fatal"])

    log(f"[{n:,} messages] re-run ×{repeat} on the imported store")
    rerun, rerun_runs, rerun_last = import_runs(server, user, lambda i: sqlite_url(store), folder, RERUN_AT, repeat, rerun_check)
    log(f"[{n:,} messages] anchor again (drift)")
    a_after = anchor(server, user, repeat)
    rate = round(n / first.median_s)
    ratio = round(rate / a["messages_per_s"], 3)
    entry: dict = {
        "n": n, "mail": mail.plan, "fill": {"method": "maildir (import_fetch.fill_mailbox)", "seconds": round(fill_s, 3),
                                              "note": "set-up, not a figure"},
        "anchor": a, "anchor_after": a_after,
        "first_import": {
            **first.to_dict(), "what": "run_import(store, open_source(settings.inbox), at=…, transport_factory=config's "
                                       "maildir) timed around the call, one process per run, fresh store copy each",
            "messages_per_s": rate, "anchor_messages_per_s": a["messages_per_s"], "ratio": ratio,
            "ratio_of_min": round((n / first.min_s) / (n / a["min_s"]), 3),
            "ratio_vs_anchor_after": round(rate / a_after["messages_per_s"], 3),
            "ratio_note": "import messages/s ÷ anchor messages/s (higher is better; goal ≥ 0.5)",
            "goal": GOAL, "meets_goal": ratio >= GOAL_RATIO and all(rerun_ok), "runs": first_runs,
            "report": last["report"], "store_after": last["store"],
        },
        "rerun": {
            **rerun.to_dict(), "what": "run_import again on the imported store (same mailbox, nothing new)",
            "fraction_of_first": round(rerun.median_s / first.median_s, 4), "imports_nothing": all(rerun_ok),
            "runs": rerun_runs, "report": rerun_last["report"],
        },
    }
    entry["first_import"]["checks"] = compare(last["report"], last["store"], expected)
    log(f"[{n:,} messages] {rate:,} msg/s vs anchor {a['messages_per_s']:,} msg/s = {ratio}×; "
        f"re-run {rerun.median_s:.3f} s ({entry['rerun']['fraction_of_first']:.1%} of the first)")

    log(f"[{n:,} messages] breakdown (instrumented run, not a figure)")
    copy_store(base, store)
    _, data = run_child(child_argv("breakdown", server, user, "--url", sqlite_url(store), "--at", IMPORT_AT.isoformat(),
                                   "--base-dir", folder))
    entry["breakdown"] = {"note": "one instrumented run (timing wrappers around the importer's calls); not a figure",
                          "seconds": round(data["seconds"], 4), "stages_s": data["stages_s"], "stage_calls": data["stage_calls"],
                          "not_in_a_stage_s": data["stages_other_s"], "parse_message_alone": data["parse_message_alone"],
                          "sql_statements": data["sql_statements"]}
    p = data["parse_message_alone"]
    entry["breakdown"]["parse_message_alone"]["messages_per_s"] = round(p["messages"] / p["seconds"]) if p["seconds"] else None
    if profile == "always" or (profile == "missed" and not entry["first_import"]["meets_goal"]):
        log(f"[{n:,} messages] cProfile of run_import (not a figure)")
        copy_store(base, store)
        _, data = run_child(child_argv("profile", server, user, "--url", sqlite_url(store), "--at", IMPORT_AT.isoformat(),
                                       "--base-dir", folder))
        entry["profile"] = {"seconds_with_profiler": round(data["seconds"], 3), "top_cumulative": data["top_cumulative"],
                            "top_tottime": data["top_tottime"], "top_cumulative_dunningops": data["top_cumulative_dunningops"]}
    return entry


def bench_postgres(server, pg, config: Path, ledger: Path, work: Path, n: int, repeat: int) -> dict:
    """One first import and re-runs on PostgreSQL at the goal size (its own sent reminders, its own mailbox)."""
    url = pg.make_database("import_cycle")
    log("[PostgreSQL] preparing the store (apply, ledger, send cycle)")
    prepared = prepare_store(url, config, ledger, work / "pg-outbox")
    sent, contacts = load_sent(url)
    user = f"pg{n}"
    mail = write_mail(n, sent, contacts, SEED + n)
    fill_mailbox(server, user, mail.raw, method="maildir")
    del mail.raw
    a = anchor(server, user, repeat)
    folder = work / "pg"
    folder.mkdir()
    log("[PostgreSQL] first import (one run) and re-runs")
    first, first_runs, last = import_runs(server, user, lambda i: url, folder, IMPORT_AT, 1, lambda d: None)
    ok: list[bool] = []
    rerun, rerun_runs, rerun_last = import_runs(
        server, user, lambda i: url, folder, RERUN_AT, repeat, lambda d: ok.append(d["report"]["imported"] == 0))
    rate = round(n / first.median_s)
    return {
        "n": n, "prepared": prepared, "anchor": a,
        "first_import": {**first.to_dict(), "messages_per_s": rate, "ratio": round(rate / a["messages_per_s"], 3),
                         "goal": GOAL, "meets_goal": rate / a["messages_per_s"] >= GOAL_RATIO and all(ok), "runs": first_runs,
                         "report": last["report"], "checks": compare(last["report"], last["store"], mail.plan["expected"])},
        "rerun": {**rerun.to_dict(), "fraction_of_first": round(rerun.median_s / first.median_s, 4), "imports_nothing": all(ok),
                  "runs": rerun_runs, "report": rerun_last["report"]},
        "note": "peak RSS is the dunningops client's only; the server runs in its own processes",
    }


def summary(result: dict) -> str:
    lines = [f"dunningops import-cycle benchmark  {result['timestamp']}  commit {str(result['git']['commit'])[:10]}"
             f"{' (dirty)' if result['git']['dirty'] else ''}  {result['machine']['cpu_count']} CPUs  "
             f"load {result['machine']['loadavg_at_start']} → {result['machine'].get('loadavg_at_end')}",
             f"store: {result['store']['customers']:,} customers, "
             f"{result['store']['sent']['sent_messages_by_kind'].get('reminder', 0):,} "
             f"reminders sent (SQLite); Dovecot {result['dovecot']['version']}"]
    for size in result["sizes"]:
        a, f, r = size["anchor"], size["first_import"], size["rerun"]
        lines.append(f"\n{size['n']:,} messages (~{size['mail']['mean_bytes']:,} B each; {size['mail']['mix']})")
        lines.append(f"  anchor: bare imapclient fetch   {a['absolute_s']:8.3f} s  {a['messages_per_s']:7,} msg/s  "
                     f"{a['peak_rss_mib']:6.1f} MiB   (after the imports: {size['anchor_after']['messages_per_s']:,} msg/s)")
        lines.append(f"  first run_import               {f['absolute_s']:8.3f} s  {f['messages_per_s']:7,} msg/s  "
                     f"{f['peak_rss_mib']:6.1f} MiB   ratio {f['ratio']:.2f}× (goal ≥ {GOAL_RATIO}) "
                     f"{'ok' if f['meets_goal'] else 'MISSES GOAL'}")
        lines.append(f"  re-run (imports nothing: {r['imports_nothing']})  {r['absolute_s']:8.3f} s  "
                     f"= {r['fraction_of_first']:.1%} "
                     f"of the first   {r['peak_rss_mib']:6.1f} MiB")
        lines.append(f"  report: {f['report']['line']}")
        for check in f["checks"]:
            lines.append(f"  CHECK: {check}")
        b = size.get("breakdown")
        if b:
            top = ", ".join(f"{k} {v:.2f}s" for k, v in list(b["stages_s"].items())[:6])
            p = b["parse_message_alone"]
            lines.append(f"  where the time goes (instrumented run, {b['seconds']:.2f} s): {top}; "
                         f"outside these {b['not_in_a_stage_s']:.2f}s")
            lines.append(f"  parse_message alone over the fetched bytes: {p['seconds']:.2f} s = {p['messages_per_s']:,} msg/s")
            sql = b["sql_statements"]
            top = ", ".join(f"{k} {v['statements']:,}" for k, v in list(sql["by_function"].items())[:4])
            lines.append(f"  SQL statements: {sql['total']:,} ({sql['total'] / size['n']:.2f} a message); most from {top}")
        if size.get("profile"):
            lines.append("  cProfile (top by own time) in the JSON: sizes[].profile")
    if result.get("growth"):
        g = result["growth"]
        lines.append(f"\nGrowth {g['from_n']:,} → {g['to_n']:,} messages: first import {g['first_import_time_ratio']}× the time, "
                     f"anchor {g['anchor_time_ratio']}×, re-run {g['rerun_time_ratio']}×; "
                     f"peak RSS {g['first_import_peak_rss_mib']} MiB")
    pg = result.get("postgresql")
    if pg and "first_import" in pg:
        f = pg["first_import"]
        lines.append(f"\nPostgreSQL: first import {f['absolute_s']:.3f} s = {f['messages_per_s']:,} msg/s, "
                     f"{f['ratio']}× its anchor; re-run {pg['rerun']['absolute_s']:.3f} s "
                     f"({pg['rerun']['fraction_of_first']:.1%}); {f['peak_rss_mib']} MiB")
        for check in f["checks"]:
            lines.append(f"  CHECK: {check}")
    elif pg:
        lines.append(f"\nPostgreSQL: {pg.get('skipped')}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.import_cycle", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_MESSAGES:,} messages, {QUICK_CUSTOMERS:,} customers "
                             f"(instead of {FULL_MESSAGES:,}, {FULL_CUSTOMERS:,})")
    parser.add_argument("--messages", type=int, help="the goal size, overriding --quick (growth from a tenth)")
    parser.add_argument("--customers", type=int, help="customers in the generated ledger, overriding --quick")
    parser.add_argument("--repeat", type=int, default=3, help="measured runs per figure (default: %(default)s); the median")
    parser.add_argument("--no-growth", action="store_true", help="only the goal size")
    parser.add_argument("--postgres", action="store_true", help="also one first import + re-runs on a throwaway PostgreSQL")
    parser.add_argument("--profile", choices=["missed", "always", "never"], default="missed",
                        help="cProfile of run_import: when the goal is missed (default), always, never")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the JSON result (default: %(default)s)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (stores, config, ledger)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["child"]:
        return child(argv[1:])
    args = parse_args(argv)
    goal = args.messages or (QUICK_MESSAGES if args.quick else FULL_MESSAGES)
    customers = args.customers or (QUICK_CUSTOMERS if args.quick else FULL_CUSTOMERS)
    sizes = [goal] if args.no_growth or goal < 10 else [goal // 10, goal]
    sys.path.insert(0, str(TESTS))
    from benchmarks.postgres import postgres
    from servers import DovecotServer  # type: ignore[import-not-found]

    result: dict = {
        "schema": SCHEMA, "timestamp": timestamp(), "git": git_info(), "machine": machine_info(),
        "run": {"quick": args.quick, "messages": sizes, "goal_messages": goal, "customers": customers, "repeat": args.repeat,
                "seed": SEED, "data_now": DATA_NOW.isoformat(), "sent_at": SENT_AT.isoformat(),
                "import_at": IMPORT_AT.isoformat(),
                "statistic": "median of the measured runs; time taken inside each process around the call (the anchor's "
                             "the same way); process wall time per run in runs[]",
                "peak_rss": "ru_maxrss of each measured process (os.wait4 in the runner's python -S wrapper), max over its runs",
                "store": "SQLite (a copy of the prepared store per first import)", "batch_size": 500,
                "warm": "the modules run_import imports on first use are imported before the clock (LAZY_IMPORTS); "
                        "bytecode cached in the run's folder; Dovecot warm (the anchor's passes run first)",
                "inbox": "settings.inbox: kind imap, security none, 127.0.0.1, after_import keep (the example's default)"},
        "goal": GOAL,
    }
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="dunningops-import-cycle-"))
    code = 0
    try:
        with DovecotServer() as server, postgres(args.postgres) as pg:
            use_pycache(work / "pycache")
            version = subprocess.run([str(server.binary), "--version"], capture_output=True, text=True).stdout.strip()
            result["dovecot"] = {"version": version,
                                 "settings": "tests/servers.py: maildir, mail_fsync=never, plain IMAP on 127.0.0.1"}
            log(f"working in {work}; Dovecot {version} on 127.0.0.1:{server.port}")
            config = bench_config(server.port, work / "config")
            log(f"[set-up] generating a ledger of {customers:,} customers")
            counts = generate(work / "ledger", config, customers)
            base = work / "base.db"
            log("[set-up] apply, ledger import, aliases verified, send cycle (maildir)")
            prepared = prepare_store(sqlite_url(base), config, work / "ledger", work / "outbox")
            sent, contacts = load_sent(sqlite_url(base))
            result["store"] = {"customers": customers, "ledger_rows": counts, "sent": prepared,
                               "reminders_answerable": len(sent), "contacts_of_one_customer": len(contacts),
                               "config": "example_config with settings.inbox → the Dovecot account, "
                                         "caps per_day/per_month 1,000,000"}
            log(f"[set-up] {prepared['sent']:,} emails sent ({prepared['seconds']} s); {len(sent):,} reminders to answer")
            result["sizes"] = []
            for n in sizes:
                result["sizes"].append(bench_size(n, server, base, sent, contacts, work, args.repeat,
                                                  args.profile if n == goal else "never"))
            if len(result["sizes"]) == 2:
                small, large = result["sizes"]
                result["growth"] = {
                    "from_n": small["n"], "to_n": large["n"],
                    "first_import_time_ratio": round(
                        large["first_import"]["absolute_s"] / small["first_import"]["absolute_s"], 2),
                    "anchor_time_ratio": round(large["anchor"]["absolute_s"] / small["anchor"]["absolute_s"], 2),
                    "rerun_time_ratio": round(large["rerun"]["absolute_s"] / small["rerun"]["absolute_s"], 2),
                    "first_import_peak_rss_mib": [small["first_import"]["peak_rss_mib"], large["first_import"]["peak_rss_mib"]],
                }
            if args.postgres:
                result["postgresql"] = (bench_postgres(server, pg, config, work / "ledger", work, goal, args.repeat)
                                        if pg.make_database else pg.info)
        result["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        result["run"]["peak_rss_floor_mib"] = round(rss_floor_mib(), 1)
        result["run"]["wall_s"] = round(time.monotonic() - started, 1)
        result["git_at_end"] = git_info()
        goal_entry = result["sizes"][-1]
        result["meets_goal"] = goal_entry["first_import"]["meets_goal"]
        if not all(s["rerun"]["imports_nothing"] for s in result["sizes"]):
            code = 3
    except BenchmarkError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    path = write_json(result, args.out, "import-cycle")
    print(summary(result))
    print(f"\nWrote {path}")
    return code


if __name__ == "__main__":
    sys.exit(main())
