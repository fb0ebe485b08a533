"""Plain aligned tables: what the CLI and the demo print (neither imports the other for it)."""

from __future__ import annotations

from typing import Any

# The columns of a send cycle's decisions (`run send`, the demo).
DECISION_COLUMNS = [
    ("customer", "CUSTOMER"),
    ("plan", "PLAN"),
    ("step", "STEP"),
    ("action", "ACTION"),
    ("due_since", "DUE SINCE"),
    ("outcome", "OUTCOME"),
    ("reason", "WHY"),
]

# The columns of incoming mail (`inbox list`, the demo), and how a row reads in them.
INBOX_COLUMNS = [
    ("id", "#"),
    ("received", "RECEIVED"),
    ("kind", "KIND"),
    ("status", "STATUS"),
    ("customer", "CUSTOMER"),
    ("from_address", "FROM"),
    ("subject", "SUBJECT"),
    ("why", "MATCH"),
]


def inbox_row(row: dict[str, Any]) -> dict[str, Any]:
    when = row.get("received_at") or row.get("imported_at")
    why = (row.get("match_by") or "") if row["status"] == "linked" else (row.get("reason") or row.get("match_by") or "")
    return {**row, "received": f"{when:%Y-%m-%d %H:%M}" if when else "", "why": why, "subject": (row.get("subject") or "")[:60]}


def render_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    """Plain aligned columns: readable in a terminal, stable in logs and snapshots."""
    if not rows:
        return "(none)\n"
    cells = [[title for _, title in columns]] + [["" if r.get(k) is None else str(r[k]) for k, _ in columns] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells) + "\n"


def money(cents: int, currency: str | None = None) -> str:
    """An amount as a French ledger shows it: ``1 500.00 EUR`` (a space between thousands)."""
    text = f"{cents / 100:,.2f}".replace(",", " ")
    return f"{text} {currency}" if currency else text


def contacts_table(rows: list[dict[str, Any]]) -> str:
    """Contacts with their functions and flags (primary, INVALID): `contacts list`, `customers show`."""
    for r in rows:
        r["flags"] = " ".join(f for f, on in (("primary", r["is_primary"]), ("INVALID", not r["valid"])) if on)
        r["fns"] = ", ".join(r["functions"])
    return render_table(
        rows,
        [("id", "#"), ("customer", "CUSTOMER"), ("email", "EMAIL"), ("name", "NAME"), ("fns", "FUNCTIONS"), ("flags", "FLAGS")],
    )
