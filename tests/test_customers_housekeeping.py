"""R6/R8 housekeeping of temporary customers (made from incoming mail that matched nobody): merged into
the right customer, or deleted one by one or in bulk; on SQLite and PostgreSQL, and from the command line.
"""

from __future__ import annotations

import json
from datetime import date

import pytest
from sqlalchemy import func, insert, select

from cycle_helpers import paris, setup_store
from dunningops.dunning.pauses import pause_customer
from dunningops.dunning.runconfig import RunConfig
from dunningops.dunning.schedule import decide
from dunningops.errors import ConflictError, InvalidInputError, NotFoundError
from dunningops.ledger.customers import count_temporary, delete_temporary, merge_customer
from dunningops.store import open_store
from dunningops.store.schema import ContactRow, CustomerRow, InboxMessageRow, InvoiceRow, MessageRow, PauseRow, TodoRow

LEDGER = dict(
    customers="C1,Boulangerie Martin SARL,FR,fr_FR,EUR,bob,\n",
    contacts="C1,paul@martin.fr,Paul Martin,,,payer,true\n",
    invoices="I1,C1,FA-1,2026-11-01,2026-12-07,1200.00,,EUR,,\n",
)
NOW = paris(2026, 12, 1)


def temporary(session, address: str, *, extra_contacts: tuple[str, ...] = (), reply_todo: bool = False) -> int:
    """A temporary customer as the import cycle makes one (R6): named after the address, with that contact,
    the message received from it, and (``reply_todo``) the reply to-do it raised (R3)."""
    cid = session.execute(
        insert(CustomerRow.__table__)
        .values(external_id=f"mail:{address}", name=address, origin="incoming_message", created_at=NOW, updated_at=NOW)
        .returning(CustomerRow.id)
    ).scalar_one()
    for n, email in enumerate((address, *extra_contacts)):
        session.execute(
            insert(ContactRow.__table__).values(
                customer_id=cid, email=email, is_primary=n == 0, valid=True, created_at=NOW, updated_at=NOW
            )
        )
    todo = None
    if reply_todo:
        todo = session.execute(
            insert(TodoRow.__table__)
            .values(kind="reply", status="open", customer_id=cid, payload={}, created_at=NOW)
            .returning(TodoRow.id)
        ).scalar_one()
    session.execute(
        insert(InboxMessageRow.__table__).values(
            dedupe_key=f"k-{address}", source="maildir", folder="INBOX", source_key=address, status="linked", kind="reply",
            from_address=address, to_addresses=["ar@acme.fr"], subject="Re: Facture FA-1", received_at=NOW, imported_at=NOW,
            referenced_ids=[], attachments=[], details={}, customer_id=cid, todo_id=todo,
        )
    )  # fmt: skip
    return cid


@pytest.fixture
def store(database_url: str, v1, tmp_path):
    s = open_store(database_url)
    setup_store(s, v1, tmp_path, **LEDGER)
    yield s
    s.dispose()


def _customers(session) -> list[str]:
    return list(session.scalars(select(CustomerRow.external_id).order_by(CustomerRow.external_id)))


def test_r6_r8_merge_moves_mail_todos_pauses_and_new_addresses(store):
    with store.session() as s:
        temp = temporary(s, "compta@martin.fr", extra_contacts=("paul@martin.fr",), reply_todo=True)
        s.execute(
            insert(MessageRow.__table__).values(
                message_id="<on-demand@acme.fr>",
                kind="on_demand",
                automatic=False,
                customer_id=temp,
                from_address="billing@acme.fr",
                to_addresses=["compta@martin.fr"],
                cc_addresses=[],
                bcc_addresses=[],
                subject="Relevé",
                invoice_ids=[],
                status="sent",
                created_at=NOW,
            )
        )
        pause_customer(s, "mail:compta@martin.fr", until=date(2026, 12, 20), reason="other", now=NOW)
    with store.session() as s:
        result = merge_customer(s, "mail:compta@martin.fr", "C1", now=NOW)
    assert result["moved"] == {"received": 1, "sent": 1, "todos": 1, "alerts": 0, "pauses": 1}
    assert (result["contacts_added"], result["contacts_already_there"], result["pauses_ended"]) == (1, 1, 1)
    with store.session() as s:
        c1 = s.scalar(select(CustomerRow.id).filter_by(external_id="C1"))
        assert _customers(s) == ["C1"]
        # C3: C1 keeps its one primary contact; the new address joins it, the one it had is not doubled.
        contacts = s.execute(
            select(ContactRow.email, ContactRow.is_primary).where(ContactRow.customer_id == c1).order_by(ContactRow.email)
        ).all()
        assert [tuple(c) for c in contacts] == [("compta@martin.fr", False), ("paul@martin.fr", True)]
        assert s.scalar(select(InboxMessageRow.customer_id)) == c1 and s.scalar(select(MessageRow.customer_id)) == c1
        # The merge never pauses C1: the temporary customer's pause ended and its history moved.
        assert s.execute(select(PauseRow.customer_id, PauseRow.ended_how)).one() == (c1, "resumed")
        assert s.execute(select(CustomerRow.paused_until).where(CustomerRow.id == c1)).scalar() is None
        # R4: the reply is C1's now, and its pending to-do holds C1's plan until it is handled.
        todo = s.scalar(select(TodoRow.id).where(TodoRow.customer_id == c1, TodoRow.kind == "reply"))
        decisions = {d.customer: d for d in decide(s, RunConfig.from_store(s), paris(2026, 12, 4))}
    assert (decisions["C1"].outcome, decisions["C1"].reason) == ("skip", f"waiting for the reply to-do #{todo}")


def test_r6_only_temporary_customers_are_merged_or_deleted(store):
    with store.session() as s:
        temporary(s, "x@example.com")
        temporary(s, "y@example.com")
    with pytest.raises(
        ConflictError,
        match=r"customer C1 is not a temporary customer \(origin import\): only one made from incoming mail can be merged",
    ):
        with store.session() as s:
            merge_customer(s, "C1", "mail:x@example.com", now=NOW)
    with pytest.raises(NotFoundError, match="no customer 'C9'"):
        with store.session() as s:
            merge_customer(s, "mail:x@example.com", "C9", now=NOW)
    with pytest.raises(InvalidInputError, match="cannot be merged into itself"):
        with store.session() as s:
            merge_customer(s, "mail:x@example.com", "mail:x@example.com", now=NOW)
    with pytest.raises(ConflictError, match="only one made from incoming mail can be deleted"):
        with store.session() as s:
            delete_temporary(s, "C1")
    # Merging a temporary customer into another temporary one is allowed: it is a customer like any.
    with store.session() as s:
        merge_customer(s, "mail:x@example.com", "mail:y@example.com", now=NOW)
        assert _customers(s) == ["C1", "mail:y@example.com"]


def test_r6_bulk_delete_counts_first_keeps_mail_unlinked_and_customers_with_invoices(store):
    with store.session() as s:
        for address in ("a@example.com", "b@example.com", "c@example.com"):
            temporary(s, address, reply_todo=True)
        c = s.scalar(select(CustomerRow.id).filter_by(external_id="mail:c@example.com"))
        s.execute(
            insert(InvoiceRow.__table__).values(
                external_id="I9", customer_id=c, number="FA-9", due_date=date(2026, 12, 1), amount_cents=100,
                reported_outstanding_cents=100, outstanding_cents=100, currency="EUR", reported_status="open", status="open",
                paused=False, created_at=NOW, updated_at=NOW,
            )
        )  # fmt: skip
        assert count_temporary(s) == 2
    with store.session() as s:
        assert delete_temporary(s) == {"deleted": 2, "kept": 1, "customer": None}
    with store.session() as s:
        assert _customers(s) == ["C1", "mail:c@example.com"]
        mail = s.execute(
            select(InboxMessageRow.status, InboxMessageRow.customer_id, InboxMessageRow.reason).order_by(InboxMessageRow.id)
        ).all()
        assert [tuple(m) for m in mail[:2]] == [("ignored", None, "its temporary customer was deleted")] * 2
        assert s.scalar(select(func.count()).select_from(TodoRow)) == 1  # c's
        with pytest.raises(
            ConflictError, match=r"customer mail:c@example\.com has 1 invoice: it is not deleted as a temporary one"
        ):
            delete_temporary(s, "mail:c@example.com")


# --- the command line -----------------------------------------------------------------------------


def _seed(url: str, *addresses: str) -> None:
    s = open_store(url)
    try:
        with s.session() as session:
            for address in addresses:
                temporary(session, address, extra_contacts=("paul@martin.fr",) if address.startswith("p") else ())
    finally:
        s.dispose()


def test_cli_merge_and_delete(run, repo, snapshot):
    config, url = repo
    db = ("--config", config, "--database-url", url)
    _seed(url, "paul.compta@martin.fr", "spam@example.com", "other@example.com", "more@example.com")
    merged = run("customers", "merge", "mail:paul.compta@martin.fr", "C1", *db)
    assert merged.exit_code == 0, merged.output
    one = run("customers", "delete", "mail:spam@example.com", *db)
    declined = run("customers", "delete", "--origin", "incoming_message", *db, input="n\n")
    assert declined.exit_code == 1 and declined.stderr == "Aborted.\n"
    bulk = run("customers", "delete", "--origin", "incoming_message", *db, input="y\n")
    assert bulk.exit_code == 0, bulk.output
    assert (merged.stdout + one.stdout + bulk.stdout) == snapshot(name="merge-delete")
    nothing = run("customers", "delete", "--origin", "incoming_message", "--yes", "--format", "json", *db)
    assert json.loads(nothing.stdout) == {"deleted": 0, "kept": 0, "customer": None}
    listed = run("customers", "list", "--origin", "incoming_message", *db)
    assert listed.stdout == "(none)\n"


def test_cli_delete_refuses_other_origins_and_needs_a_target(run, repo):
    config, url = repo
    db = ("--config", config, "--database-url", url)
    imported = run("customers", "delete", "--origin", "import", "--yes", *db)
    assert imported.exit_code == 1
    assert (
        imported.stderr == "Error: only temporary customers (origin incoming_message) can be deleted in bulk, not origin import\n"
    )
    one = run("customers", "delete", "C1", *db)
    assert one.exit_code == 1 and one.stderr == (
        "Error: customer C1 is not a temporary customer (origin import): only one made from incoming mail can be deleted\n"
    )
    neither = run("customers", "delete", *db)
    assert neither.exit_code == 1 and "give one customer's EXTERNAL_ID, or --origin incoming_message" in neither.stderr
    merged = run("customers", "merge", "C2", "C1", *db)
    assert merged.exit_code == 1 and merged.stderr.startswith("Error: customer C2 is not a temporary customer (origin import)")
