"""POST /api/v1/{customers,contacts,invoices,payments}: the ledger's upserts, item by item as
``ledger import`` does them row by row (ledger/items.py), and what changed in the activity record."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from dunningops.errors import DunningOpsError
from dunningops.ledger.importer import ImportSummary
from dunningops.ledger.items import import_items
from dunningops.store.activity import record_activity
from dunningops.web.api.http import Call
from dunningops.web.api.models import UpsertResult, shape
from dunningops.web.context import WebContext


def result(summary: ImportSummary) -> dict[str, Any]:
    """The answer: counts as the CLI's import summary gives them, and a line saying them."""
    parts = [f"{summary.added} created", f"{summary.changed} updated", f"{summary.unchanged} unchanged"]
    if summary.kind == "contacts":
        parts.append(f"{summary.links_changed} function links changed")
    n = summary.rows
    changed = summary.added or summary.changed or summary.links_changed
    line = f"{summary.kind}: {n} item{'s' if n != 1 else ''}: {', '.join(parts)}" + ("." if changed else "; nothing changed.")
    return shape(
        UpsertResult,
        {
            "kind": summary.kind,
            "items": n,
            "created": summary.added,
            "updated": summary.changed,
            "unchanged": summary.unchanged,
            "links_changed": summary.links_changed if summary.kind == "contacts" else None,
            "message": line,
        },
    )


def upsert(kind: str) -> Callable[[WebContext, Call], dict[str, Any]]:
    """The handler upserting ``kind``'s items: all of them, or (one invalid) none."""

    def handle(ctx: WebContext, call: Call) -> dict[str, Any]:
        now = ctx.app.now()
        # BEGIN IMMEDIATE on SQLite: a second writer waits its turn instead of failing mid-way.
        with ctx.app.store.session(write_lock=True) as session:
            summary = import_items(session, kind, call.body, now=now)
            if summary.added or summary.changed or summary.links_changed:
                # Only what changed is recorded: the same body posted again leaves the store as it was.
                record_activity(
                    session,
                    member=call.principal.member,
                    via="api",
                    action=f"{kind}.upsert",
                    at=now,
                    details={
                        "token": call.principal.token_id,
                        "items": summary.rows,
                        "created": summary.added,
                        "updated": summary.changed,
                        "links_changed": summary.links_changed,
                    },
                )
        if summary.notices:
            _send_notifications(ctx, now)
        return result(summary)

    return handle


def _send_notifications(ctx: WebContext, now: datetime) -> None:
    """A9: the receipts the new payments owe, sent once the upsert committed; what cannot go now
    (caps, a transport down) stays pending for the next send cycle, and the upsert stands."""
    from dunningops.notify.portal import send_pending

    try:
        send_pending(ctx.app.store, ctx.config(), at=now, transport_factory=ctx.app.transport)
    except DunningOpsError:
        pass  # what became of each is in the history and the pending rows; the daemon's send cycle goes on
