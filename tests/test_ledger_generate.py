"""The demo ledger generator: deterministic, well-formed CSV the ledger import can rely on."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import date
from pathlib import Path

import pytest

from dunningops.ledger import generate
from dunningops.ledger.generate import generate_ledger

TODAY = date(2026, 3, 15)
MEMBERS = ("alice", "bob", "chloe")
FUNCTIONS = ("accountant", "payer", "purchaser", "sales")
PLANS = ("standard", "gentle")
FILES = ("customers", "contacts", "invoices", "payments")
EMAIL = re.compile(r"^[a-z0-9.]+@[a-z0-9-]+(\.[a-z0-9-]+)+$")
MONEY = re.compile(r"^\d+\.\d\d$")
ISO_DATE = re.compile(r"^\d{4}-\d\d-\d\d$")


def _generate(directory: Path, customers: int = 200, seed: int = 42, **kwargs: object) -> dict[str, int]:
    args: dict[str, object] = dict(members=MEMBERS, functions=FUNCTIONS, today=TODAY, plans=PLANS)
    args.update(kwargs)
    return generate_ledger(directory, customers=customers, seed=seed, **args)  # type: ignore[arg-type]


def _rows(directory: Path, name: str) -> list[dict[str, str]]:
    with (directory / f"{name}.csv").open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    directory = tmp_path_factory.mktemp("ledger")
    return directory, _generate(directory)


def test_same_seed_gives_same_bytes_and_another_seed_differs(tmp_path: Path) -> None:
    _generate(tmp_path / "a", customers=80, seed=1)
    _generate(tmp_path / "b", customers=80, seed=1)
    _generate(tmp_path / "c", customers=80, seed=2)
    for name in FILES:
        first = (tmp_path / "a" / f"{name}.csv").read_bytes()
        assert first == (tmp_path / "b" / f"{name}.csv").read_bytes(), name
    assert (tmp_path / "a" / "invoices.csv").read_bytes() != (tmp_path / "c" / "invoices.csv").read_bytes()
    assert (tmp_path / "a" / "customers.csv").read_bytes() != (tmp_path / "c" / "customers.csv").read_bytes()


def test_headers_are_exactly_the_import_columns(ledger: tuple[Path, dict[str, int]]) -> None:
    directory, _ = ledger
    expected = {
        "customers": "external_id,name,country,locale,currency,account_manager,plan,address_line1,address_line2,postal_code,city",
        "contacts": "customer_external_id,email,name,phone,job,functions,primary",
        "invoices": "external_id,customer_external_id,number,issue_date,due_date,amount,"
        "outstanding,currency,document_url,status",
        "payments": "external_id,invoice_external_id,date,amount,kind",
    }
    for name, header in expected.items():
        data = (directory / f"{name}.csv").read_bytes()
        assert data.split(b"\n", 1)[0].decode("utf-8") == header
        assert b"\r" not in data  # LF line endings


def test_returned_counts_match_the_rows_in_each_file(ledger: tuple[Path, dict[str, int]]) -> None:
    directory, counts = ledger
    assert counts["customers"] == 200
    assert counts["invalid_emails"] == 0
    for name in FILES:
        assert counts[name] == len(_rows(directory, name)), name
    assert 1.5 <= counts["contacts"] / 200 <= 2.6  # ~2 contacts a customer
    assert 7 <= counts["invoices"] / 200 <= 13  # ~10 invoices a customer
    assert counts["payments"] > 0


def test_every_row_refers_to_an_existing_parent(ledger: tuple[Path, dict[str, int]]) -> None:
    directory, _ = ledger
    customers = [row["external_id"] for row in _rows(directory, "customers")]
    assert len(set(customers)) == len(customers)
    assert all(re.fullmatch(r"C\d{6}", c) for c in customers)
    known = set(customers)
    assert {row["customer_external_id"] for row in _rows(directory, "contacts")} <= known
    invoices = _rows(directory, "invoices")
    assert {row["customer_external_id"] for row in invoices} <= known
    invoice_ids = [row["external_id"] for row in invoices]
    assert len(set(invoice_ids)) == len(invoice_ids)
    assert len({row["number"] for row in invoices}) == len(invoices)
    assert {row["invoice_external_id"] for row in _rows(directory, "payments")} <= set(invoice_ids)


def test_c3_exactly_one_primary_per_customer_with_contacts(ledger: tuple[Path, dict[str, int]]) -> None:
    directory, _ = ledger
    primaries: Counter[str] = Counter()
    for row in _rows(directory, "contacts"):
        assert row["primary"] in ("true", "false")
        primaries[row["customer_external_id"]] += row["primary"] == "true"
    assert primaries and all(count == 1 for count in primaries.values())
    without = len(_rows(directory, "customers")) - len(primaries)
    assert 0 < without < 20  # ~3 % of customers have no contact


def test_c2_emails_are_valid_and_unique_within_a_customer(ledger: tuple[Path, dict[str, int]]) -> None:
    directory, _ = ledger
    by_customer: dict[str, list[str]] = defaultdict(list)
    for row in _rows(directory, "contacts"):
        assert EMAIL.match(row["email"]), row["email"]
        by_customer[row["customer_external_id"]].append(row["email"])
    assert all(len(set(emails)) == len(emails) for emails in by_customer.values())


def test_c5_c6_functions_come_from_the_list_and_some_are_missing(ledger: tuple[Path, dict[str, int]]) -> None:
    directory, _ = ledger
    held: dict[str, set[str]] = defaultdict(set)
    empty = 0
    for row in _rows(directory, "contacts"):
        functions = row["functions"].split(";") if row["functions"] else []
        assert set(functions) <= set(FUNCTIONS), row["functions"]
        assert len(set(functions)) == len(functions)
        empty += not functions
        held[row["customer_external_id"]] |= set(functions)
    assert empty > 0  # some contacts have no function
    # C6 matters: customers with contacts but nobody holding some function.
    assert sum(1 for functions in held.values() if functions != set(FUNCTIONS)) > len(held) / 2


def test_no_functions_given_leaves_the_column_empty(tmp_path: Path) -> None:
    _generate(tmp_path, customers=30, functions=(), members=(), plans=())
    assert all(row["functions"] == "" for row in _rows(tmp_path, "contacts"))
    assert all(row["account_manager"] == "" and row["plan"] == "" for row in _rows(tmp_path, "customers"))


def test_customers_use_given_members_and_plans_and_ch_is_in_chf(ledger: tuple[Path, dict[str, int]]) -> None:
    directory, _ = ledger
    customers = _rows(directory, "customers")
    assert {row["account_manager"] for row in customers} <= {*MEMBERS, ""}
    assert {row["plan"] for row in customers} <= {*PLANS, ""}
    assert sum(row["plan"] == "" for row in customers) > 0.85 * len(customers)
    countries = Counter(row["country"] for row in customers)
    assert countries.most_common(1)[0][0] == "FR"
    assert "CH" in countries
    currency = {row["external_id"]: row["currency"] for row in customers}
    for row in customers:
        assert row["currency"] == ("CHF" if row["country"] == "CH" else "EUR")
        assert row["locale"].endswith("_" + row["country"])
    for row in _rows(directory, "invoices"):
        assert row["currency"] == currency[row["customer_external_id"]]


def test_invoices_spread_before_and_after_their_due_date(ledger: tuple[Path, dict[str, int]]) -> None:
    directory, _ = ledger
    invoices = _rows(directory, "invoices")
    overdue = not_due = 0
    for row in invoices:
        assert ISO_DATE.match(row["issue_date"]) and ISO_DATE.match(row["due_date"])
        issue, due = date.fromisoformat(row["issue_date"]), date.fromisoformat(row["due_date"])
        assert 0 <= (TODAY - issue).days < 200
        assert (due - issue).days in (30, 45, 60)
        assert MONEY.match(row["amount"]) and MONEY.match(row["outstanding"])
        amount, outstanding = float(row["amount"]), float(row["outstanding"])
        assert 50 <= amount <= 50_000
        assert row["status"] in ("open", "paid", "void")
        if row["status"] == "open":
            assert 0 < outstanding <= amount
            overdue += due < TODAY
            not_due += due >= TODAY
        else:
            assert row["outstanding"] == "0.00"
        assert row["document_url"] == f"https://factures.example/{row['number']}.pdf"
        assert re.fullmatch(r"FA-\d{4}-\d{6,}", row["number"])
    assert overdue > 0 and not_due > 0
    statuses = Counter(row["status"] for row in invoices)
    assert statuses["paid"] > 0.15 * len(invoices)


def test_payments_never_exceed_outstanding_and_fall_between_issue_and_today(
    ledger: tuple[Path, dict[str, int]],
) -> None:
    directory, _ = ledger
    invoices = {row["external_id"]: row for row in _rows(directory, "invoices")}
    payments = _rows(directory, "payments")
    assert len({row["external_id"] for row in payments}) == len(payments)
    for row in payments:
        invoice = invoices[row["invoice_external_id"]]
        assert invoice["status"] == "open"
        assert MONEY.match(row["amount"])
        assert 0 < float(row["amount"]) <= float(invoice["outstanding"])
        assert invoice["issue_date"] <= row["date"] <= TODAY.isoformat()
        assert row["kind"] in ("payment", "credit_note", "failed")
    # One payment per invoice at most, so per-invoice totals are bounded too.
    assert len({row["invoice_external_id"] for row in payments}) == len(payments)


def test_invalid_emails_flag_writes_malformed_addresses_and_counts_them(tmp_path: Path) -> None:
    counts = _generate(tmp_path, customers=1500, invalid_emails=True)
    malformed = [row["email"] for row in _rows(tmp_path, "contacts") if not EMAIL.match(row["email"])]
    assert counts["invalid_emails"] == len(malformed) > 0
    assert len(malformed) < 0.02 * counts["contacts"]


def test_zero_customers_writes_headers_only_and_negative_is_refused(tmp_path: Path) -> None:
    counts = _generate(tmp_path / "out", customers=0)
    assert counts == {"customers": 0, "contacts": 0, "invoices": 0, "payments": 0, "invalid_emails": 0}
    assert all(len((tmp_path / "out" / f"{n}.csv").read_text().splitlines()) == 1 for n in FILES)
    with pytest.raises(ValueError):
        _generate(tmp_path, customers=-1)


_CHILD = """
import json, resource, sys
from datetime import date
from pathlib import Path
from dunningops.ledger.generate import generate_ledger

def peak():
    # Linux: VmHWM, this process's own peak in KiB. ru_maxrss keeps the parent's peak across fork and
    # exec, so next to a big pytest process before and after would both be the parent's (growth 0).
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

before = peak()
counts = generate_ledger(Path(sys.argv[1]), customers=20_000, seed=3, members=["a"],
                         functions=["accountant", "payer"], today=date(2026, 3, 15))
after = peak()
print(json.dumps({"before": before, "after": after, "invoices": counts["invoices"]}))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="resource is POSIX-only")
def test_rows_stream_to_disk_so_memory_stays_flat(tmp_path: Path) -> None:
    """~200,000 invoices held in memory would add well over 100 MiB; streaming adds a few.

    A fresh interpreter, so the peak is this generation's and not an earlier test's.
    A couple of seconds; no timing assertion (shared machines are noisy).
    """
    src = str(Path(generate.__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (src, os.environ.get("PYTHONPATH"))))}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tmp_path)], env=env, capture_output=True, text=True, check=True
    )
    result = json.loads(done.stdout)
    unit = 1 if sys.platform == "darwin" else 1024  # KiB on Linux (VmHWM); ru_maxrss is bytes on macOS
    growth_mib = (result["after"] - result["before"]) * unit / 2**20
    assert result["invoices"] > 150_000
    assert growth_mib < 40, f"peak RSS grew by {growth_mib:.1f} MiB"
