"""Generate a realistic demo ledger as four CSV files: customers, contacts, invoices, payments.

The files are the ledger import's input format (C4, C7). Rows are written while they are
made, one customer at a time, so memory stays flat whatever the size; the same seed and
arguments always give the same bytes (one ``random.Random``, no clock, no set iteration).
"""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from dunningops.ledger.names import ACCOUNTANT, MARKETS, PAYER, Market, fold

__all__ = ["COLUMNS", "generate_ledger"]

# The importer is written against these names, in this order.
COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": (
        "external_id",
        "name",
        "country",
        "locale",
        "currency",
        "account_manager",
        "plan",
        "address_line1",
        "address_line2",
        "postal_code",
        "city",
    ),
    "contacts": ("customer_external_id", "email", "name", "phone", "job", "functions", "primary"),
    "invoices": (
        "external_id",
        "customer_external_id",
        "number",
        "issue_date",
        "due_date",
        "amount",
        "outstanding",
        "currency",
        "document_url",
        "status",
    ),
    "payments": ("external_id", "invoice_external_id", "date", "amount", "kind"),
}

HISTORY_DAYS = 200  # invoices are issued within this many days before `today`
# Payments are dated at least this many days before `today` (a receipt's default window is 7 days),
# but the first RECENT_PAYMENTS (the last of them failed), dated in the last 3 days.
RECENT_DAYS = 14
RECENT_PAYMENTS = 6
TERMS = (30, 30, 45, 60)  # payment terms in days; 30 is the most common in B2B
URL = "https://factures.example/"
_MARKET_WEIGHTS = tuple(m.weight for m in MARKETS)
# 0-4 contacts a customer: ~3 % none, ~2 on average.
_CONTACT_COUNTS = (0, 1, 2, 3, 4)
_CONTACT_WEIGHTS = (3, 30, 35, 20, 12)
# Amounts: log-normal around a ~900 median, clipped to 50-50,000 (in cents).
_AMOUNT_MU, _AMOUNT_SIGMA = math.log(90_000), 1.1
_MIN_CENTS, _MAX_CENTS = 5_000, 5_000_000


# Postal addresses by market: street patterns ({n}: a number), second lines, (postcode, town).
# fmt: off
_FR_EXTRAS = ("Bâtiment {letter}", "ZA des Forges", "BP {n}", "Parc d'activités du Moulin")
_ADDRESSES: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[tuple[str, str], ...]]] = {
    "fr_FR": (
        ("{n} rue de la République", "{n} avenue Jean Jaurès", "{n} boulevard Pasteur", "{n} rue des Lilas",
         "{n} place du Marché", "{n} rue de la Gare", "{n} chemin des Vignes", "{n} allée des Tilleuls"),
        _FR_EXTRAS,
        (("75011", "Paris"), ("69003", "Lyon"), ("13006", "Marseille"), ("31000", "Toulouse"), ("33000", "Bordeaux"),
         ("44000", "Nantes"), ("59000", "Lille"), ("67000", "Strasbourg"), ("35000", "Rennes"), ("21000", "Dijon")),
    ),
    "fr_BE": (
        ("{n} rue de la Station", "{n} avenue Louise", "{n} rue du Marché", "{n} chaussée de Namur"),
        _FR_EXTRAS, (("1000", "Bruxelles"), ("4000", "Liège"), ("5000", "Namur"), ("6000", "Charleroi")),
    ),
    "nl_BE": (
        ("Kerkstraat {n}", "Stationsstraat {n}", "Molenstraat {n}", "Nieuwstraat {n}"),
        ("Bus {n}", "Unit {n}"), (("2000", "Antwerpen"), ("9000", "Gent"), ("8000", "Brugge"), ("3000", "Leuven")),
    ),
    "de_DE": (
        ("Hauptstraße {n}", "Bahnhofstraße {n}", "Gartenstraße {n}", "Industriestraße {n}", "Schillerstraße {n}"),
        ("Gebäude {letter}", "Postfach {n}"),
        (("10115", "Berlin"), ("80331", "München"), ("20095", "Hamburg"), ("50667", "Köln"), ("70173", "Stuttgart")),
    ),
    "nl_NL": (
        ("Kerkstraat {n}", "Dorpsstraat {n}", "Industrieweg {n}", "Molenweg {n}"),
        ("Unit {n}", "Postbus {n}"),
        (("1012 AB", "Amsterdam"), ("3011 AD", "Rotterdam"), ("3511 LX", "Utrecht"), ("5611 AZ", "Eindhoven")),
    ),
    "de_CH": (
        ("Bahnhofstrasse {n}", "Hauptstrasse {n}", "Dorfstrasse {n}", "Industriestrasse {n}"),
        ("Postfach {n}", "Gebäude {letter}"), (("8001", "Zürich"), ("3011", "Bern"), ("4051", "Basel"), ("6003", "Luzern")),
    ),
    "fr_CH": (
        ("Rue du Rhône {n}", "Avenue de la Gare {n}", "Chemin des Vignes {n}", "Route de Lausanne {n}"),
        ("Case postale {n}", "Bâtiment {letter}"), (("1204", "Genève"), ("1003", "Lausanne"), ("2000", "Neuchâtel")),
    ),
    "es_ES": (
        ("Calle Mayor {n}", "Avenida de la Constitución {n}", "Calle Real {n}", "Paseo de la Castellana {n}"),
        ("Nave {n}", "Polígono Industrial Sur"),
        (("28013", "Madrid"), ("08002", "Barcelona"), ("46002", "Valencia"), ("41004", "Sevilla")),
    ),
    "it_IT": (
        ("Via Roma {n}", "Corso Italia {n}", "Via Garibaldi {n}", "Viale dell'Industria {n}"),
        ("Scala {letter}", "Zona Industriale"),
        (("20121", "Milano"), ("00184", "Roma"), ("10121", "Torino"), ("40121", "Bologna")),
    ),
    "fr_LU": (
        ("{n} rue de la Gare", "{n} boulevard Royal", "{n} route d'Arlon", "{n} rue du Marché"),
        _FR_EXTRAS, (("1611", "Luxembourg"), ("4001", "Esch-sur-Alzette"), ("9001", "Ettelbruck")),
    ),
}
# fmt: on


def _money(cents: int) -> str:
    """Cents as ``1234.50``: integers all the way, so no float rounding reaches the file."""
    return f"{cents // 100}.{cents % 100:02d}"


class _Ledger:
    """The generator's state: the random stream, the counters and the open CSV writers."""

    def __init__(
        self,
        rng: random.Random,
        writers: dict[str, Any],
        members: Sequence[str],
        functions: Sequence[str],
        plans: Sequence[str],
        today: date,
        invalid_emails: bool,
        address_seed: str = "",
    ) -> None:
        self.rng = rng
        # Postal addresses from a stream of their own: the other columns stay what they were before addresses.
        self.address_rng = random.Random(address_seed)
        self.writers = writers
        self.members = tuple(members)
        self.functions = tuple(dict.fromkeys(functions))  # de-duplicated, order kept
        self.plans = tuple(plans)
        self.invalid_emails = invalid_emails
        self.counts = dict.fromkeys((*COLUMNS, "invalid_emails"), 0)
        # Date strings and years by day index, computed once: index HISTORY_DAYS is `today`,
        # the last index is the latest possible due date. Formatting dates per row is the
        # generator's largest avoidable cost.
        first = today - timedelta(days=HISTORY_DAYS)
        days = [first + timedelta(days=i) for i in range(HISTORY_DAYS + max(TERMS) + 1)]
        self.iso = tuple(d.isoformat() for d in days)
        self.years = tuple(d.year for d in days)
        self.hinted: dict[tuple[str, ...], str | None] = {}
        self.phone_formats: dict[str, tuple[str, int]] = {}

    # --- customers -------------------------------------------------------------------

    def customer(self, index: int) -> None:
        """Write customer number ``index`` with its contacts, invoices and payments."""
        rng = self.rng
        market = rng.choices(MARKETS, _MARKET_WEIGHTS)[0]
        core = rng.choice(market.patterns).format(a=rng.choice(market.activities), n=rng.choice(market.last_names))
        name = f"{core} {rng.choice(market.legal_forms)}"
        domain = f"{fold(core)}.{rng.choice(market.tlds)}"
        manager = rng.choice(self.members) if self.members and rng.random() >= 0.10 else ""
        # Most customers get their plan from the plans' assignment rules; a few are pinned.
        plan = rng.choice(self.plans) if self.plans and rng.random() < 0.05 else ""
        external_id = f"C{index:06d}"
        self.writers["customers"].writerow(
            (external_id, name, market.country, market.locale, market.currency, manager, plan, *self._address(market))
        )
        self.counts["customers"] += 1
        self._contacts(external_id, market, domain)
        self._invoices(external_id, market.currency)

    def _address(self, market: Market) -> tuple[str, str, str, str]:
        """Street, a second line for ~15 %, postcode and town; ~5 % of customers have no address."""
        rng = self.address_rng
        if rng.random() < 0.05:
            return "", "", "", ""
        streets, extras, towns = _ADDRESSES[market.locale]
        street = rng.choice(streets).format(n=1 + int(rng.triangular(0, 150, 8)))
        extra = rng.choice(extras).format(n=rng.randrange(1, 400), letter="ABCDE"[rng.randrange(5)])
        postal, town = rng.choice(towns)
        return street, extra if rng.random() < 0.15 else "", postal, town

    # --- contacts (C1-C3, C5-C7) -----------------------------------------------------

    def _contacts(self, customer_id: str, market: Market, domain: str) -> None:
        rng = self.rng
        count = rng.choices(_CONTACT_COUNTS, _CONTACT_WEIGHTS)[0]
        primary = rng.randrange(count) if count else -1  # C3: exactly one primary
        seen: set[str] = set()  # membership only, never iterated: order stays seeded
        rows = []
        for j in range(count):
            if rng.random() < 0.10:
                # A shared accounting mailbox (compta@…): C2 makes name and job optional.
                local, person, job = rng.choice(market.mailboxes), "", ""
                hint = rng.choice((ACCOUNTANT, PAYER))
            else:
                first, last = rng.choice(market.first_names), rng.choice(market.last_names)
                person = f"{first} {last}"
                job, hint = rng.choice(market.jobs)
                if rng.random() < 0.10:
                    job = ""
                f, last_part = fold(first).replace("-", ""), fold(last).replace("-", "")
                style = rng.random()  # jean.martin@, j.martin@ or jeanmartin@
                if style < 0.65:
                    local = f"{f}.{last_part}"
                else:
                    local = f"{f[0]}.{last_part}" if style < 0.9 else f"{f}{last_part}"
            email = self._unique(f"{local}@{domain}", seen)
            if self.invalid_emails and rng.random() < 0.005:
                email = self._unique(self._malformed(email), seen)
                self.counts["invalid_emails"] += 1
            phone = "" if rng.random() < 0.20 else self._phone(rng.choice(market.phones))
            primary_flag = "true" if j == primary else "false"
            rows.append((customer_id, email, person, phone, job, self._functions_for(hint), primary_flag))
        self.writers["contacts"].writerows(rows)
        self.counts["contacts"] += count

    @staticmethod
    def _unique(email: str, seen: set[str]) -> str:
        """``email``, or ``name2@…``, ``name3@…`` when a colleague already has it."""
        candidate, n = email, 1
        while candidate in seen:
            n += 1
            local, at, rest = email.partition("@")
            candidate = f"{local}{n}{at}{rest}"
        seen.add(candidate)
        return candidate

    def _malformed(self, email: str) -> str:
        """A broken address of the kinds found in real exports: no @, a space, a double dot."""
        kind = self.rng.randrange(3)
        if kind == 0:
            return email.replace("@", "", 1)
        if kind == 1:
            return email.replace(".", " ", 1)
        local, _, domain = email.partition("@")
        return f"{local}@{domain.replace('.', '..', 1)}"

    def _phone(self, pattern: str) -> str:
        """Fill the ``#`` of a national format with random digits."""
        if pattern not in self.phone_formats:
            self.phone_formats[pattern] = (pattern.replace("#", "{}"), pattern.count("#"))
        template, n = self.phone_formats[pattern]
        return template.format(*f"{self.rng.randrange(10**n):0{n}d}")

    def _functions_for(self, hint: tuple[str, ...]) -> str:
        """C5: zero or more functions; the job's own function when the config has one.

        A quarter of contacts get none, so many customers lack a contact for some function
        and the primary-contact fallback (C6) is exercised.
        """
        rng, functions = self.rng, self.functions
        if not functions or rng.random() < 0.25:
            return ""
        if hint not in self.hinted:
            matches = (f for f in functions if any(k in f.lower() for k in hint))
            self.hinted[hint] = next(matches, None)
        chosen = {self.hinted[hint]} - {None}
        if not chosen or rng.random() < 0.25:
            chosen.add(rng.choice(functions))
        return ";".join(f for f in functions if f in chosen)  # in the config's order

    # --- invoices and payments -------------------------------------------------------

    def _invoices(self, customer_id: str, currency: str) -> None:
        """1-25 invoices (~10 on average) and a few partial payments; the hot loop."""
        rng, iso, years, counts = self.rng, self.iso, self.years, self.counts
        # int(random() * n) rather than randrange/choice: a third of the loop's cost otherwise.
        random_, gauss, n_terms = rng.random, rng.gauss, len(TERMS)
        invoices: list[tuple[str, ...]] = []
        payments: list[tuple[str, ...]] = []
        number_no = counts["invoices"]
        for _ in range(1 + int(rng.triangular(0, 25, 4))):
            number_no += 1
            age = int(random_() * HISTORY_DAYS)  # days since issue: 0 = issued today
            issue = HISTORY_DAYS - age
            cents = min(_MAX_CENTS, max(_MIN_CENTS, int(math.exp(gauss(_AMOUNT_MU, _AMOUNT_SIGMA)))))
            if random_() < 0.3:
                cents -= cents % 100  # many B2B invoices are whole amounts
            # Older invoices are more often paid: ~40 % of those past 60 days.
            paid_share = 0.45 if age >= 60 else 0.25 if age >= 30 else 0.08
            r = random_()
            if r < 0.01:
                status, outstanding = "void", 0
            elif r < 0.01 + paid_share:
                status, outstanding = "paid", 0
            else:
                status = "open"
                outstanding = max(1, int(cents * (0.2 + 0.7 * random_()))) if random_() < 0.10 else cents
            external_id = f"I{number_no:07d}"
            number = f"FA-{years[issue]}-{number_no:06d}"
            invoices.append(
                (
                    external_id,
                    customer_id,
                    number,
                    iso[issue],
                    iso[issue + TERMS[int(random_() * n_terms)]],
                    _money(cents),
                    _money(outstanding),
                    currency,
                    f"{URL}{number}.pdf",
                    status,
                )
            )
            # `outstanding` is the balance before payments.csv, so a payment of at most
            # 60 % of it never overpays; dated between issue and today.
            if outstanding and random_() < 0.05:
                paid = max(1, int(outstanding * (0.10 + 0.50 * random_())))
                kind = "credit_note" if random_() < 0.10 else "payment"
                days_ago = int(random_() * (age + 1))
                index = counts["payments"] + len(payments)
                kind, days_ago = _dated(index, kind, days_ago, age)
                payments.append(
                    (
                        f"P{index + 1:07d}",
                        external_id,
                        iso[HISTORY_DAYS - days_ago],
                        _money(paid),
                        kind,
                    )
                )
        self.writers["invoices"].writerows(invoices)
        self.writers["payments"].writerows(payments)
        counts["invoices"] = number_no
        counts["payments"] += len(payments)


def _dated(index: int, kind: str, days_ago: int, age: int) -> tuple[str, int]:
    """A9: a ledger's payments are history (older than RECENT_DAYS, so importing it owes no receipts),
    but the first RECENT_PAYMENTS: a few payments of the last days, the last of them failed, so that
    a demo's import sends a handful of receipts and one failed-payment email."""
    if index < RECENT_PAYMENTS:
        return ("failed" if index == RECENT_PAYMENTS - 1 else "payment"), min(age, index % 3)
    if days_ago < RECENT_DAYS:
        if age >= RECENT_DAYS:
            return kind, RECENT_DAYS + days_ago % (age - RECENT_DAYS + 1)
        return "credit_note", days_ago  # an invoice of the last days: corrected, not paid
    return kind, days_ago


def generate_ledger(
    directory: Path,
    *,
    customers: int,
    seed: int,
    members: Sequence[str],
    functions: Sequence[str],
    today: date,
    plans: Sequence[str] = (),
    invalid_emails: bool = False,
) -> dict[str, int]:
    """Write ``customers.csv``, ``contacts.csv``, ``invoices.csv`` and ``payments.csv``.

    Args:
        directory: where the files go (created if missing; existing files are replaced).
        customers: how many customers; ~2 contacts and ~10 invoices each.
        seed: the same seed and arguments give byte-identical files.
        members: member ids used as account managers (~10 % of customers have none).
        functions: contact-function ids given to contacts (C5).
        today: invoices are issued in the 200 days before it; payments are dated up to it (all but
            the first six at least two weeks before it; the sixth is a failed payment).
        plans: plan ids pinned on ~5 % of customers; the others are left empty.
        invalid_emails: make ~0.5 % of contact emails malformed, to exercise import errors.

    Returns:
        Rows written per file (``customers``, ``contacts``, ``invoices``, ``payments``,
        headers not counted) and ``invalid_emails``, the malformed addresses written.
    """
    if customers < 0:
        raise ValueError(f"customers must be >= 0, got {customers}")
    directory.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        writers = {}
        for name, header in COLUMNS.items():
            handle = stack.enter_context((directory / f"{name}.csv").open("w", encoding="utf-8", newline="", buffering=1 << 20))
            writers[name] = csv.writer(handle, lineterminator="\n")
            writers[name].writerow(header)
        ledger = _Ledger(
            random.Random(seed), writers, members, functions, plans, today, invalid_emails, address_seed=f"{seed}:addresses"
        )
        for index in range(1, customers + 1):
            ledger.customer(index)
    return ledger.counts
