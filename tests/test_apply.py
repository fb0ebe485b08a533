"""Apply on SQLite and on a real PostgreSQL: one transaction, a lock, an audit row, an outbox."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from dunningops.errors import LockError, StalePlanError, UnsafePlanError
from dunningops.reconcile import build_plan
from dunningops.reconcile.apply import apply_config
from dunningops.spec import load_config
from dunningops.store import config_objects, open_store
from dunningops.store.config_objects import read_actual
from dunningops.store.lock import APPLY_LOCK_KEY
from dunningops.store.schema import AliasRow, ApplyRow, OutboxRow, PlanStepRow

NOW = datetime(2026, 11, 23, 8, 30, tzinfo=UTC)
LATER = datetime(2026, 11, 24, 8, 30, tzinfo=UTC)


@pytest.fixture
def store(database_url: str):
    s = open_store(database_url)
    yield s
    s.dispose()


def _apply(store, config: Path, now=NOW, **kw):
    return apply_config(store, load_config(config), now=now, actor="alice@acme.fr", git_commit="abc123", **kw)


def _plan(store, config: Path, **kw):
    with store.session() as session:
        return build_plan(load_config(config), read_actual(session), **kw)


def _snapshot_rows(store) -> dict:
    with store.session() as session:
        actual = read_actual(session)
        return {
            "objects": {a: o.fields for a, o in actual.items()},
            "applies": session.scalar(select(func.count()).select_from(ApplyRow)),
            "outbox": session.scalar(select(func.count()).select_from(OutboxRow)),
        }


def test_apply_then_plan_is_empty(store, v1: Path):
    result = _apply(store, v1)
    assert result.applied and result.apply_id == 1
    assert _plan(store, v1).empty
    # The audit row: who, when, which commit, which plan.
    with store.session() as session:
        row = session.scalars(select(ApplyRow)).one()
        assert (row.actor, row.git_commit, row.plan_digest) == ("alice@acme.fr", "abc123", result.plan.digest)
        assert row.summary == {"add": 13, "change": 0, "replace": 0, "destroy": 0}
        # Steps are rows of their own, in order, with their offset in days for SQL.
        steps = session.execute(select(PlanStepRow.id, PlanStepRow.at_days).order_by(PlanStepRow.position)).all()
        assert [tuple(s) for s in steps] == [("courtesy", -3), ("overdue", 7), ("call", 14)]


def test_a3_new_alias_unverified_with_confirmation_in_outbox(store, v1: Path):
    result = _apply(store, v1)
    assert sorted(i["ref"] for i in result.outbox) == ["alias.agency", "alias.billing", "alias.credit"]
    with store.session() as session:
        aliases = session.scalars(select(AliasRow)).all()
        assert all(not a.verified and a.verification_token for a in aliases)
        outbox = session.scalars(select(OutboxRow).order_by(OutboxRow.id)).all()
        assert {o.kind for o in outbox} == {"alias_confirmation"}
        assert all(o.delivered_at is None and o.apply_id == 1 for o in outbox)
        # The token is stored hashed on the alias, in clear only in the email to send.
        assert all(o.payload["token"] not in {a.verification_token for a in aliases} for o in outbox)


def test_apply_v2_moves_replaces_and_keeps_history(store, v1: Path, v2: Path):
    _apply(store, v1)
    with store.session() as session:
        session.execute(AliasRow.__table__.update().where(AliasRow.id == "billing").values(verified=True))
    result = _apply(store, v2, now=LATER)
    assert result.plan.summary() == {"add": 1, "change": 4, "replace": 1, "destroy": 2}
    assert _plan(store, v2).empty
    with store.session() as session:
        actual = read_actual(session)
    # moved: the template keeps its creation time; the plan's step follows the new name.
    assert "template.overdue" not in actual
    assert actual["template.late"].meta["created_at"].replace(tzinfo=UTC) == NOW
    assert actual["plan.standard"].fields["steps"][1]["template"] == "late"
    # A4: an update keeps the verification; a replacement starts unverified again.
    assert actual["alias.billing"].meta["verified"] is True
    assert actual["alias.credit"].meta["verified"] is False
    assert actual["alias.credit"].meta["created_at"].replace(tzinfo=UTC) == LATER
    assert sorted(i["ref"] for i in result.outbox) == ["alias.credit", "alias.support"]
    assert "member.chloe" not in actual and "contact_function.purchasing" not in actual


def test_saved_plan_refused_when_config_changed(store, v1: Path):
    plan = _plan(store, v1)
    path = v1 / "dunningops.yaml"
    path.write_text(path.read_text().replace("Acme Billing", "Acme Facturation"))
    with pytest.raises(StalePlanError, match="the config changed since this plan was made"):
        _apply(store, v1, expected=plan)
    assert _snapshot_rows(store)["applies"] == 0


def test_saved_plan_refused_when_store_changed(store, v1: Path, v2: Path):
    _apply(store, v1)
    plan = _plan(store, v2)
    _apply(store, v2, targets=("alias.support",))  # someone else applied in between
    with pytest.raises(StalePlanError, match="the store changed since this plan was made"):
        _apply(store, v2, expected=plan)


def test_saved_plan_applies_when_nothing_changed(store, v1: Path):
    plan = _plan(store, v1)
    result = _apply(store, v1, expected=plan)
    assert result.applied and result.plan.digest == plan.digest


def test_failure_mid_apply_changes_nothing(store, v1: Path, v2: Path, monkeypatch):
    _apply(store, v1)
    before = _snapshot_rows(store)
    calls = {"n": 0}
    real = config_objects.update_fields

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(config_objects, "update_fields", flaky)
    with pytest.raises(RuntimeError, match="disk full"):
        _apply(store, v2)
    assert calls["n"] == 2
    assert _snapshot_rows(store) == before


def test_destroy_guard_needs_allow_destroy(store, v1: Path):
    _apply(store, v1)
    for name in ("plans.yaml",):
        (v1 / name).write_text("plans: []\ntemplates: []\n")
    (v1 / "dunningops.yaml").write_text(
        (v1 / "dunningops.yaml").read_text().split("aliases:")[0].replace("portal: {notifications_alias: billing}", "portal: {}")
    )
    (v1 / "removed.yaml").write_text(
        "removed:\n" + "".join(f"  - {{from: contact_function.{f}, reassign_to: null}}\n" for f in ("accountant", "payer", "purchasing"))
    )
    before = _snapshot_rows(store)
    with pytest.raises(UnsafePlanError, match=r"destroys 9 and replaces 0 of 13 objects \(69%"):
        _apply(store, v1)
    assert _snapshot_rows(store) == before
    result = _apply(store, v1, allow_destroy=True)
    assert result.plan.summary()["destroy"] == 9


def test_confirm_declined_writes_nothing(store, v1: Path):
    result = _apply(store, v1, confirm=lambda plan: False)
    assert not result.applied
    assert _snapshot_rows(store) == {"objects": {}, "applies": 0, "outbox": 0}


def test_concurrent_apply_fails_cleanly(store, v1: Path, database_url: str):
    """While one apply holds the lock, a second waits, then fails with LockError and writes nothing."""
    holder = open_store(database_url)
    try:
        with holder.session(write_lock=True) as session:
            if holder.dialect == "postgresql":
                session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": APPLY_LOCK_KEY})
            else:
                session.execute(text("UPDATE locks SET holder = 'other' WHERE name = 'apply'"))
            other = open_store(database_url, busy_timeout_s=0.5)
            try:
                started = time.monotonic()
                with pytest.raises(LockError, match="another apply"):
                    apply_config(other, load_config(v1), now=NOW, actor="b", git_commit=None, lock_timeout_s=0.5)
                assert time.monotonic() - started >= 0.4  # it waited before giving up
            finally:
                other.dispose()
    finally:
        holder.dispose()
    assert _snapshot_rows(store)["applies"] == 0


def test_concurrent_applies_serialise(store, v1: Path, database_url: str):
    """Two applies at once: the second waits for the first, then finds nothing left to do."""
    results, errors = [], []

    def worker():
        s = open_store(database_url)
        try:
            results.append(apply_config(s, load_config(v1), now=NOW, actor="t", git_commit=None, lock_timeout_s=30))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            s.dispose()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sorted(r.applied for r in results) == [False, True]
    assert _snapshot_rows(store)["applies"] == 1


def test_c8_deleted_function_moves_its_contacts(store, v1: Path, tmp_path: Path):
    from dunningops.ledger.importer import import_file
    from dunningops.store.schema import ContactFunctionLinkRow, ContactRow

    _apply(store, v1)
    (tmp_path / "customers.csv").write_text("external_id,name\nC1,Acme Client\n")
    (tmp_path / "contacts.csv").write_text(
        "customer_external_id,email,functions,primary\nC1,a@c.fr,purchasing,true\nC1,b@c.fr,purchasing;payer,false\nC1,c@c.fr,accountant,false\n"
    )
    for kind in ("customers", "contacts"):
        import_file(store, kind, tmp_path / f"{kind}.csv", now=NOW)
    config = v1 / "dunningops.yaml"
    config.write_text(config.read_text().replace("  - {id: purchasing, label: Purchasing, labels: {fr: Achats}}\n", ""))
    (v1 / "plans.yaml").write_text((v1 / "plans.yaml").read_text().replace("[payer, purchasing]", "[payer]"))
    (v1 / "removed.yaml").write_text("removed:\n  - {from: contact_function.purchasing, reassign_to: payer}\n")
    _apply(store, v1, now=LATER)
    with store.session() as session:
        links = session.execute(
            select(ContactRow.email, ContactFunctionLinkRow.function_id).join(ContactFunctionLinkRow).order_by(ContactRow.email, ContactFunctionLinkRow.function_id)
        ).all()
    assert [tuple(r) for r in links] == [("a@c.fr", "payer"), ("b@c.fr", "payer"), ("c@c.fr", "accountant")]
