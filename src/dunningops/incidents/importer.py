"""`dunningops incident import`: incidents from a CSV file (another ticketing tool's history).

The file streams through the ledger's reader (row numbers as a spreadsheet shows them). Every
bad cell is one problem with its file, row and column, and nothing is imported when any row is
bad. A reference already in the store is the same incident: unchanged when the row says the
same, else updated (its observations, dates, or its closing); importing a file twice changes
nothing. Imported incidents are history: no notification is sent for them (an open one that
is closed later, by hand, sends its closing notification as any other). An open dispute about
an open invoice holds its dunning, as when opened by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dunningops.clock import parse_instant
from dunningops.errors import InvalidInputError
from dunningops.incidents.incidents import (
    KINDS,
    MAX_OBSERVATIONS,
    REFERENCE,
    STATES,
    customers,
    hold,
    incidents,
    invoices,
    member_of,
    release,
)
from dunningops.ledger.columns import Column
from dunningops.ledger.issues import RowIssue
from dunningops.ledger.mapping import Mapping
from dunningops.ledger.reader import read_rows
from dunningops.store.engine import Store

__all__ = ["COLUMNS", "ImportResult", "IncidentImportError", "import_incidents"]

COLUMNS = (
    Column("reference", True, max_length=64),
    Column("customer_external_id", True, max_length=128),
    Column("invoice_external_id", max_length=128),
    Column("kind"),
    Column("observations", True, max_length=MAX_OBSERVATIONS),
    Column("state"),
    Column("opened_at", True),
    Column("closed_at"),
)
SHOWN = 50
CHUNK = 1000
# What an existing incident may take from a later file; the rest (customer, invoice, kind) is who it is.
_UPDATABLE = ("observations", "opened_at", "closed_at", "state")


class IncidentImportError(InvalidInputError):
    """Invalid rows: nothing was imported. Every problem is listed (the first SHOWN in the message)."""

    def __init__(self, issues: list[RowIssue], rows: int):
        self.issues = sorted(issues)
        n, bad = len(self.issues), len({i.row for i in issues})
        lines = [f"{n} error{'s' if n != 1 else ''} in {bad} of {rows} rows; nothing was imported:"]
        lines += [f"  {i}" for i in self.issues[:SHOWN]]
        if n > SHOWN:
            lines.append(f"  … and {n - SHOWN} more")
        super().__init__("\n".join(lines))


@dataclass
class ImportResult:
    file: str
    rows: int = 0
    added: int = 0
    changed: int = 0
    closed: int = 0  # of the changed: open incidents the file closes
    holding: int = 0  # new open disputes that hold their invoice's dunning
    dry_run: bool = False
    references: list[str] = field(default_factory=list)  # added or changed

    @property
    def unchanged(self) -> int:
        return self.rows - self.added - self.changed

    def line(self) -> str:
        verb = "would import" if self.dry_run else "imported"
        parts = [f"{self.added} added", f"{self.changed} changed", f"{self.unchanged} unchanged"]
        if self.closed:
            parts.append(f"{self.closed} closed")
        if self.holding:
            parts.append(f"{self.holding} open dispute{'s' if self.holding != 1 else ''} pausing an invoice")
        return f"incidents: {verb} {self.rows} rows from {self.file}: {', '.join(parts)}; no notification is sent."

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "rows": self.rows,
            "added": self.added,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "closed": self.closed,
            "holding": self.holding,
            "dry_run": self.dry_run,
        }


@dataclass
class _Row:
    number: int
    reference: str
    customer: str
    invoice: str | None
    kind: str
    observations: str
    state: str
    opened_at: datetime
    closed_at: datetime | None
    customer_id: int = 0
    invoice_id: int | None = None


def import_incidents(store: Store, path: Path, *, at: datetime, actor: str | None = None, dry_run: bool = False) -> ImportResult:
    """Import the incidents of a CSV file, in one transaction; nothing when any row is bad.

    Raises:
        IncidentImportError: the rows' problems, each with its file, row and column.
        LedgerFileError: the file cannot be read (missing, not UTF-8, a required column missing).
    """
    result = ImportResult(path.name, dry_run=dry_run)
    issues: list[RowIssue] = []
    rows: list[_Row] = []
    seen: dict[str, int] = {}
    for number, raw, problems in read_rows(path, "csv", COLUMNS, Mapping()):
        result.rows += 1
        issues += [RowIssue(path.name, number, column, message) for column, message in problems]
        if raw is None:
            continue
        row = _parse(path.name, number, raw, issues, at)
        if row is None:
            continue
        if row.reference in seen:
            issues.append(RowIssue(path.name, number, "reference", f"{row.reference} is on row {seen[row.reference]} too"))
            continue
        seen[row.reference] = number
        rows.append(row)
    with store.session(write_lock=True) as session:
        _resolve(session, path.name, rows, issues)
        existing = _existing(session, [r.reference for r in rows])
        plan = _compare(path.name, rows, existing, issues)
        if issues:
            raise IncidentImportError(issues, result.rows)
        new, changed = plan
        result.added, result.changed = len(new), len(changed)
        result.closed = sum(1 for r, before in changed if r.state == "closed" and before["state"] == "open")
        result.references = [r.reference for r in new] + [r.reference for r, _ in changed]
        if dry_run:
            result.holding = sum(1 for r in new if _holds(session, r))
            return result
        result.holding = _write(session, new, changed, actor, at)
    return result


def _parse(file: str, number: int, raw: dict[str, str], issues: list[RowIssue], at: datetime) -> _Row | None:
    bad = len(issues)

    def problem(column: str, message: str) -> None:
        issues.append(RowIssue(file, number, column, message))

    reference = raw.get("reference", "")
    if not REFERENCE.fullmatch(reference):
        problem("reference", f"{reference!r} is not a reference: 1 to 64 letters, digits and . _ / -")
    customer = raw.get("customer_external_id", "")
    if not customer:
        problem("customer_external_id", "is empty")
    invoice = raw.get("invoice_external_id") or None
    kind = raw.get("kind") or ("dispute" if invoice else "other")
    if kind not in KINDS:
        problem("kind", f"{kind!r}: one of {', '.join(KINDS)}")
    observations = raw.get("observations", "")
    if not observations:
        problem("observations", "is empty: describe what the incident is about")
    elif len(observations) > MAX_OBSERVATIONS:
        problem("observations", f"is {len(observations):,} characters long; at most {MAX_OBSERVATIONS:,}")
    opened_at = _instant(raw.get("opened_at", ""), "opened_at", problem, required=True)
    closed_at = _instant(raw.get("closed_at", ""), "closed_at", problem)
    state = raw.get("state") or ("closed" if closed_at else "open")
    if state not in STATES:
        problem("state", f"{state!r}: one of {', '.join(STATES)}")
    elif state == "closed" and raw.get("closed_at", "") == "":
        problem("closed_at", "is empty: a closed incident needs the instant it was closed")
    elif state == "open" and closed_at is not None:
        problem("closed_at", "is given, but the state is open")
    for column, value in (("opened_at", opened_at), ("closed_at", closed_at)):
        if value is not None and value > at:
            problem(column, f"{value:%Y-%m-%d %H:%M} UTC is in the future")
    if opened_at and closed_at and closed_at < opened_at and state == "closed":
        problem("closed_at", "is before opened_at")
    if len(issues) > bad or opened_at is None:
        return None
    return _Row(number, reference, customer, invoice, kind, observations, state, opened_at, closed_at)


def _instant(value: str, column: str, problem, *, required: bool = False) -> datetime | None:
    if not value:
        if required:
            problem(column, "is empty")
        return None
    try:
        return parse_instant(value, column)
    except InvalidInputError as exc:
        problem(column, str(exc).removeprefix(f"{column}: ") + " (or a date, YYYY-MM-DD)")
        return None


def _chunks(values: list[str]):
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


def _resolve(session: Session, file: str, rows: list[_Row], issues: list[RowIssue]) -> None:
    """Customer and invoice ids, in a few IN queries; the unknown ones and another customer's invoices are problems."""
    by_customer: dict[str, int] = {}
    for chunk in _chunks(sorted({r.customer for r in rows})):
        by_customer.update(
            session.execute(select(customers.c.external_id, customers.c.id).where(customers.c.external_id.in_(chunk))).all()
        )
    by_invoice: dict[str, Any] = {}
    for chunk in _chunks(sorted({r.invoice for r in rows if r.invoice})):
        for found in session.execute(
            select(invoices.c.external_id, invoices.c.id, invoices.c.customer_id).where(invoices.c.external_id.in_(chunk))
        ):
            by_invoice[found.external_id] = found
    owners = {v: k for k, v in by_customer.items()}
    for r in rows:
        cid = by_customer.get(r.customer)
        if cid is None:
            issues.append(RowIssue(file, r.number, "customer_external_id", f"no customer {r.customer!r}"))
            continue
        r.customer_id = cid
        if r.invoice:
            inv = by_invoice.get(r.invoice)
            if inv is None:
                issues.append(RowIssue(file, r.number, "invoice_external_id", f"no invoice {r.invoice!r}"))
            elif inv.customer_id != cid:
                owner: str | None = owners.get(inv.customer_id) or session.scalar(
                    select(customers.c.external_id).where(customers.c.id == inv.customer_id)
                )
                issues.append(
                    RowIssue(
                        file, r.number, "invoice_external_id", f"invoice {r.invoice} is customer {owner}'s, not {r.customer}'s"
                    )
                )
            else:
                r.invoice_id = inv.id


def _existing(session: Session, references: list[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for chunk in _chunks(sorted(references)):
        for row in session.execute(select(incidents).where(incidents.c.reference.in_(chunk))).mappings():
            found[row["reference"]] = dict(row)
    return found


def _compare(file: str, rows: list[_Row], existing: dict[str, dict[str, Any]], issues: list[RowIssue]):
    """The new rows and the changed ones (with what the store had); a change to who an incident is, a problem."""
    new: list[_Row] = []
    changed: list[tuple[_Row, dict[str, Any]]] = []
    for r in rows:
        before = existing.get(r.reference)
        if before is None:
            new.append(r)
            continue
        for column, mine, theirs in (
            ("customer_external_id", r.customer_id, before["customer_id"]),
            ("invoice_external_id", r.invoice_id, before["invoice_id"]),
            ("kind", r.kind, before["kind"]),
        ):
            if r.customer_id and mine != theirs:
                issues.append(RowIssue(file, r.number, column, f"incident {r.reference} exists with another {column}"))
        if before["state"] == "closed" and r.state == "open":
            issues.append(RowIssue(file, r.number, "state", f"incident {r.reference} is closed: it cannot be reopened"))
        if any(getattr(r, c) != before[c] for c in _UPDATABLE):
            changed.append((r, before))
    return new, changed


def _holds(session: Session, r: _Row) -> bool:
    if r.kind != "dispute" or r.state != "open" or r.invoice_id is None:
        return False
    return session.scalar(select(invoices.c.status).where(invoices.c.id == r.invoice_id)) == "open"


def _write(session: Session, new: list[_Row], changed: list[tuple[_Row, dict[str, Any]]], actor: str | None, at: datetime) -> int:
    """Insert the new incidents, update the changed ones, hold and release the disputes; the new holds."""
    if new:
        session.execute(
            incidents.insert(),
            [
                {
                    "reference": r.reference,
                    "customer_id": r.customer_id,
                    "invoice_id": r.invoice_id,
                    "kind": r.kind,
                    "observations": r.observations,
                    "state": r.state,
                    # History: never notified for what already happened (a later closing by hand is).
                    "notify_opened": False,
                    "notify_closed": False if r.state == "closed" else None,
                    "origin": "import",
                    "opened_at": r.opened_at,
                    "closed_at": r.closed_at,
                }
                for r in new
            ],
        )
    by = member_of(session, actor)
    holding = 0
    ids = _ids(session, [r.reference for r in new])
    for r in new:
        if _holds(session, r):
            hold(session, ids[r.reference], r.invoice_id or 0, by=by, now=at)
            holding += 1
    for r, before in changed:
        values: dict[str, Any] = {c: getattr(r, c) for c in _UPDATABLE}
        if before["state"] == "open" and r.state == "closed":
            values["notify_closed"] = False  # closed in the other tool: history too
        session.execute(update(incidents).where(incidents.c.id == before["id"]).values(**values))
        if before["state"] == "open" and r.state == "closed":
            release(session, before["id"], before["invoice_id"], before["pause_id"], now=at)
    return holding


def _ids(session: Session, references: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for chunk in _chunks(sorted(references)):
        out.update(session.execute(select(incidents.c.reference, incidents.c.id).where(incidents.c.reference.in_(chunk))).all())
    return out
