"""Rendering + sending N reminders to a sink, in a process of its own (run by ``benchmarks.ledger_cycle``).

``python -m benchmarks.ledger_cycle_send MODE --ledger DIR --port PORT [--count N] [--batch B] [--profile]``
prints one JSON object on stdout: the timed seconds, what was sent, and (``--profile``) the
top of a cProfile of the timed part. The harness starts it under the runner's tiny wrapper,
so its peak RSS is this process's own.

Modes, all on the same messages (same customers, templates, languages, recipients):

* ``ours``: what the send cycle does per batch: build the ``EmailContext``, render with
  ``dunningops.render.Renderer`` (the example config's templates, compiled once per run),
  build the ``OutgoingMessage``, ``SmtpTransport(pool_size=10).send(batch)``, batch N+1
  rendered on the main thread while batch N is sent (``dunningops.outgoing.overlap.overlapped``,
  as the cycle does). Timed from the Renderer's construction to ``close()``; the data
  (customers, open invoices, primary contacts from the generated CSVs) is loaded before the
  clock starts. ``render_and_build_s`` is the main thread's time in rendering,
  ``transport_send_s`` the sending thread's time in ``send()``: they overlap, so their sum
  is more than ``seconds``; ``waited_s`` is what rendering did not hide. ``cpu_s`` (all threads)
  and ``render_and_build_cpu_s`` (the main thread's, rendering) are CPU seconds of the timed
  part: steadier than wall time on a machine shared with other work.
* ``ours-sequential``: the same, rendering and sending taking turns (the loop before the overlap).
* ``smtplib``: anchor (1). The same messages rendered and turned into bytes (``to_bytes``)
  before the clock starts; timed: 10 threads, each with one ``smtplib.SMTP`` connection,
  ``sendmail()`` of the prebuilt bytes, then QUIT.

Messages cycle over the templates of the example plans' automatic steps (courtesy and
first-reminder: text design, second-reminder: html, final-notice: blocks) so that every
design is rendered; the language is the customer's when the template has it.
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import io
import json
import pstats
import queue
import smtplib
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from dunningops.dunning.compose import pick_language
from dunningops.dunning.render_worker import RenderWorker
from dunningops.dunning.runconfig import RunConfig
from dunningops.outgoing.overlap import overlapped
from dunningops.reconcile.objects import desired_objects
from dunningops.render import Renderer
from dunningops.render.context import EmailContext, InvoiceData
from dunningops.spec import load_config
from dunningops.transport.message import (
    Address,
    OutgoingMessage,
    envelope_sender,
    new_message_id,
    recipients,
    to_bytes,
)
from dunningops.transport.smtp import SmtpTransport

CONFIG = Path(__file__).resolve().parent.parent / "config"
TEMPLATES = ("courtesy", "first-reminder", "second-reminder", "final-notice")
SENDER_ALIAS = "billing"  # the standard plan's automatic steps send from alias.billing
REPLY_TO = "ar@ateliers-durand.fr"  # the standard plan's reply_to
CONNECTIONS = 10
EHLO_NAME = "localhost"  # the same EHLO name for ours and the anchor (no name lookup in either)


@dataclass(frozen=True)
class Item:
    """The raw data of one reminder, as the cycle has it after its batch queries."""

    template: str
    customer: dict
    contact_name: str | None
    contact_email: str
    locale: str
    invoices: tuple[tuple, ...]  # (number, due, amount, outstanding, currency, issue, url)


def _cents(text: str) -> int:
    whole, _, frac = text.partition(".")
    return int(whole) * 100 + int((frac + "00")[:2])


def load_items(ledger: Path, count: int, today: date) -> list[Item]:
    """``count`` reminders from the generated CSVs: customers with a primary contact and open invoices."""
    open_invoices: dict[str, list[tuple]] = defaultdict(list)
    with (ledger / "invoices.csv").open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["status"] == "open":
                open_invoices[row["customer_external_id"]].append((
                    row["number"], date.fromisoformat(row["due_date"]), _cents(row["amount"]), _cents(row["outstanding"]),
                    row["currency"], date.fromisoformat(row["issue_date"]), row["document_url"] or None,
                ))
    primary: dict[str, tuple[str, str]] = {}
    with (ledger / "contacts.csv").open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["primary"] == "true" and "@" in row["email"]:
                primary[row["customer_external_id"]] = (row["name"], row["email"])
    customers = []
    with (ledger / "customers.csv").open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["external_id"] in primary and open_invoices.get(row["external_id"]):
                customers.append(row)
    if not customers:
        raise SystemExit(f"no customer with a primary contact and an open invoice in {ledger}")
    items = []
    for i in range(count):
        c = customers[i % len(customers)]
        name, email = primary[c["external_id"]]
        rows = sorted(open_invoices[c["external_id"]], key=lambda r: r[1])
        items.append(Item(TEMPLATES[i % len(TEMPLATES)], {"name": c["name"], "external_id": c["external_id"]},
                          name or None, email, c["locale"] or "fr_FR", tuple(rows)))
    return items


class Cycle:
    """Render and build messages the way dunning/compose.py and dunning/cycle.py do."""

    def __init__(self, today: date):
        objects = desired_objects(load_config(CONFIG))
        self.config = RunConfig.from_objects(objects, {f"alias.{SENDER_ALIAS}": {"verified": True}}, {})
        self.today = today
        s = self.config.settings
        self.domain = s.deliverability.domain or s.deliverability.fallback_sender.split("@")[1]
        alias = self.config.aliases[SENDER_ALIAS]
        self.sender = Address(alias["email"], alias["display_name"])
        self.signature = alias.get("signature") or ""
        c = s.company
        self.company = {"name": c.name, "logo_url": c.logo_url, "brand_color": c.brand_color, "country": c.country,
                        "currency": c.currency}
        self.renderer: Renderer | None = None

    def start(self, *, worker: bool = False) -> None:
        # Part of the timed work: the cycle builds one renderer per run (templates compiled on first use),
        # a RenderWorker (its batches rendered in a process of its own once that is ready).
        company = self.config.settings.company.model_dump()
        self.renderer = (RenderWorker(self.config.templates, company) if worker
                         else Renderer(self.config.templates, company=company))

    def close(self) -> None:
        if isinstance(self.renderer, RenderWorker):
            self.renderer.close()

    def request(self, item: Item) -> tuple[str, str, EmailContext]:
        language, locale = pick_language(self.config, item.template, item.locale)
        return item.template, language, EmailContext(
            company=self.company, customer=item.customer,
            contact={"name": item.contact_name, "email": item.contact_email},
            invoices=[InvoiceData(number=n, due_date=due, amount_cents=a, outstanding_cents=o, currency=cur,
                                  issue_date=iss, document_url=url, days_overdue=max(0, (self.today - due).days))
                      for n, due, a, o, cur, iss, url in item.invoices],
            sender={"name": self.sender.name, "email": self.sender.email}, signature=self.signature,
            today=self.today, locale=locale,
        )

    def messages(self, items: list[Item]) -> list[OutgoingMessage]:
        """A batch as dunning/prepare.py and dunning/sending.py make it: rendered together, then built."""
        assert self.renderer is not None
        emails = self.renderer.render_many([self.request(item) for item in items])
        return [self._message(item, email) for item, email in zip(items, emails, strict=True)]

    def message(self, item: Item) -> OutgoingMessage:
        assert self.renderer is not None
        return self._message(item, self.renderer.render(*self.request(item)))

    def _message(self, item: Item, email) -> OutgoingMessage:
        if isinstance(email, Exception):
            raise email
        return OutgoingMessage(
            message_id=new_message_id(self.domain), from_=self.sender, to=[Address(item.contact_email, item.contact_name)],
            reply_to=Address(REPLY_TO), subject=email.subject, text=email.text, html=email.html,
            headers={"Auto-Submitted": "auto-generated", "X-Dunningops-Customer": item.customer["external_id"]},
        )


def run_ours(items: list[Item], cycle: Cycle, port: int, batch: int, *, overlap: bool = True, worker: bool = True) -> dict:
    render_s = send_s = render_cpu_s = 0.0
    sent = 0
    start, cpu = time.perf_counter(), time.process_time()
    cycle.start(worker=worker)
    transport = SmtpTransport("127.0.0.1", port, security="none", pool_size=CONNECTIONS, local_hostname=EHLO_NAME)

    def prepare(first: int) -> list[OutgoingMessage]:
        nonlocal render_s
        nonlocal render_cpu_s
        t0, c0 = time.perf_counter(), time.thread_time()
        messages = cycle.messages(items[first:first + batch])
        render_s += time.perf_counter() - t0
        render_cpu_s += time.thread_time() - c0
        return messages

    def send(messages: list[OutgoingMessage]) -> None:
        nonlocal send_s, sent
        t0 = time.perf_counter()
        results = transport.send(messages)
        send_s += time.perf_counter() - t0
        sent += sum(r.status == "sent" for r in results)

    try:
        if overlap:
            overlapped(range(0, len(items), batch), prepare, send)
        else:
            for first in range(0, len(items), batch):
                send(prepare(first))
    finally:
        transport.close()
        cycle.close()
    seconds, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    return {"seconds": seconds, "sent": sent, "render_and_build_s": round(render_s, 3), "transport_send_s": round(send_s, 3),
            "waited_s": round(max(0.0, seconds - render_s), 3), "overlapped": overlap, "cpu_s": round(cpu_s, 3),
            "render_and_build_cpu_s": round(render_cpu_s, 3),
            "batches_rendered_apart": cycle.renderer.used if isinstance(cycle.renderer, RenderWorker) else 0}


def run_smtplib(items: list[Item], cycle: Cycle, port: int) -> dict:
    cycle.start()
    jobs: queue.SimpleQueue = queue.SimpleQueue()
    size = 0
    for item in items:  # prebuilt, before the clock starts
        msg = cycle.message(item)
        payload = to_bytes(msg)
        size += len(payload)
        jobs.put((envelope_sender(msg), recipients(msg), payload))
    for _ in range(CONNECTIONS):
        jobs.put(None)
    sent = [0] * CONNECTIONS
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            smtp = smtplib.SMTP("127.0.0.1", port, local_hostname=EHLO_NAME)
            while (job := jobs.get()) is not None:
                smtp.sendmail(*job)
                sent[n] += 1
            smtp.quit()
        except BaseException as exc:  # noqa: BLE001 - reported, the benchmark fails
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(CONNECTIONS)]
    start, cpu = time.perf_counter(), time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    if errors:
        raise errors[0]
    return {"seconds": seconds, "sent": sum(sent), "mean_message_bytes": size // max(1, len(items)), "cpu_s": round(cpu_s, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ledger_cycle_send", description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["ours", "ours-one-process", "ours-sequential", "smtplib"])
    parser.add_argument("--ledger", type=Path, required=True, help="folder with the generated CSVs")
    parser.add_argument("--port", type=int, required=True, help="the sink's port on 127.0.0.1")
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=200, help="ours: messages per transport.send() (the cycle's BATCH)")
    parser.add_argument("--today", type=date.fromisoformat, required=True, help="the sending date (company time)")
    parser.add_argument("--profile", action="store_true", help="cProfile the timed part; top 15 cumulative in the JSON")
    args = parser.parse_args(argv)
    items = load_items(args.ledger, args.count, args.today)
    cycle = Cycle(args.today)
    profiler = cProfile.Profile() if args.profile else None
    if profiler:
        profiler.enable()
    if args.mode.startswith("ours"):
        result = run_ours(items, cycle, args.port, args.batch, overlap=args.mode != "ours-sequential", worker=args.mode == "ours")
    else:
        result = run_smtplib(items, cycle, args.port)
    if profiler:
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(15)
        result["profile_top15_cumulative"] = out.getvalue()
    result.update({"mode": args.mode, "messages": len(items), "batch": args.batch if args.mode != "smtplib" else None,
                   "connections": CONNECTIONS})
    json.dump(result, sys.stdout)
    return 0 if result["sent"] == len(items) else 3


if __name__ == "__main__":
    sys.exit(main())
