"""Apply: carry out a plan in one transaction, under the apply lock, with an audit row and an outbox.

The plan is rebuilt under the lock from the store as it is then, and must be
the plan that was shown (or saved): what was reviewed is exactly what runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import insert
from sqlalchemy.exc import OperationalError

from dunningops.errors import LockError, StalePlanError, UnsafePlanError
from dunningops.permissions import Actor, git, who_acts
from dunningops.reconcile.drift import applied_state, forget_older_states, record_baseline
from dunningops.reconcile.objects import desired_objects, split_address
from dunningops.reconcile.permissions import authorize
from dunningops.reconcile.plan import Change, Plan
from dunningops.reconcile.planner import build_plan
from dunningops.spec.state import DesiredState
from dunningops.store import config_objects as objects
from dunningops.store.codes import code_hash, new_code
from dunningops.store.config_objects import reassign_contacts
from dunningops.store.engine import Store
from dunningops.store.lock import acquire_apply_lock
from dunningops.store.schema import ApplyRow, OutboxRow


@dataclass
class ApplyResult:
    plan: Plan
    applied: bool
    apply_id: int | None = None
    outbox: list[dict] = field(default_factory=list)
    actor: Actor | None = None  # who applied it, as found among the applied members (T1)


def raise_if_unsafe(plan: Plan, allow_destroy: bool) -> None:
    """Refuse a plan that destroys or replaces more than the configured share (settings.safety)."""
    if allow_destroy:
        return
    share, limit = plan.destructive_share(), plan.safety.get("max_destroy_share", 0.3)
    if plan.objects_in_store >= plan.safety.get("min_objects", 10) and share > limit:
        s = plan.summary()
        raise UnsafePlanError(
            f"this plan destroys {s['destroy']} and replaces {s['replace']} of {plan.objects_in_store} objects "
            f"({share:.0%}, more than settings.safety.max_destroy_share {limit:.0%}); "
            "re-run with --allow-destroy if that is intended"
        )


def apply_config(
    store: Store,
    desired: DesiredState,
    *,
    now: datetime,
    expected: Plan | None = None,
    targets: tuple[str, ...] = (),
    excludes: tuple[str, ...] = (),
    allow_destroy: bool = False,
    confirm: Callable[[Plan], bool] | None = None,
    actor: str | None = None,
    git_commit: str | None = None,
    lock_timeout_s: float = 30.0,
) -> ApplyResult:
    """Apply ``desired`` to the store.

    Args:
        expected: the plan that was saved or shown; refused if the states moved on since.
        confirm: asked with the plan (under the lock) before anything is written.
        actor: who applies (a member's id or email; default: permissions.who_acts). T1: checked
            against the members of the store, not of ``desired``.

    Raises:
        PermissionDeniedError: the actor's role may not make some of the changes; nothing is written.
    """
    if expected is not None:
        targets, excludes = expected.targets, expected.excludes
    actor = actor or who_applies(desired.root)
    try:
        with store.session(write_lock=True) as session:
            acquire_apply_lock(session, actor, now, lock_timeout_s)
            actual = objects.read_actual(session)
            plan = build_plan(desired, actual, targets=targets, excludes=excludes)
            if expected is not None:
                _check_not_stale(expected, plan)
            if plan.empty:
                if not (targets or excludes):
                    record_baseline(session)  # the store matches the config: drift's first baseline
                return ApplyResult(plan, applied=False)
            who = authorize(plan, actual, actor)  # T1: the applied members decide, before anything is written
            raise_if_unsafe(plan, allow_destroy)
            if confirm is not None and not confirm(plan):
                return ApplyResult(plan, applied=False)
            outbox = _execute(session, desired, plan, now)
            state = applied_state(session, desired, plan)  # what `drift` compares the store with later
            apply_id = session.execute(
                insert(ApplyRow)
                .values(
                    applied_at=now,
                    actor=actor,
                    actor_member=who.member,
                    actor_role=who.role,
                    git_commit=git_commit or git_head(desired.root),
                    plan_digest=plan.digest,
                    desired_digest=plan.desired_digest,
                    summary=plan.summary(),
                    changes=[{"action": c.action, "address": c.address} for c in plan.changes],
                    state=state,
                )
                .returning(ApplyRow.id)
            ).scalar_one()
            forget_older_states(session, apply_id)
            for item in outbox:
                session.execute(insert(OutboxRow).values(**item, created_at=now, apply_id=apply_id))
    except OperationalError as exc:
        if "locked" in str(exc.orig).lower():
            raise LockError("another apply holds the store's write lock; try again when it has finished") from exc
        raise
    return ApplyResult(plan, applied=True, apply_id=apply_id, outbox=outbox, actor=who)


def _check_not_stale(expected: Plan, plan: Plan) -> None:
    if expected.desired_digest != plan.desired_digest:
        raise StalePlanError("the config changed since this plan was made; run `dunningops plan` again")
    if expected.actual_digest != plan.actual_digest:
        raise StalePlanError("the store changed since this plan was made (another apply?); run `dunningops plan` again")
    if expected.digest != plan.digest:
        raise StalePlanError("this plan no longer matches what apply would do; run `dunningops plan` again")


def _execute(session, desired: DesiredState, plan: Plan, now: datetime) -> list[dict]:
    """Write the plan's changes; return the outbox items to queue."""
    outbox: list[dict] = []
    want = desired_objects(desired)
    reassign_to = {r.from_.split(".", 1)[1]: r.reassign_to for r in desired.removed}
    for change in plan.changes:  # renames first, so that later writes find the new ids
        if change.moved_from:
            objects.rename(session, change.kind, split_address(change.moved_from)[1], change.id, now)
    for change in plan.changes:
        for follower in change.followers:
            if follower in want:
                kind, ident = split_address(follower)
                objects.update_fields(session, kind, ident, want[follower], now)
        outbox.extend(_write(session, change, now, reassign_to))
    return outbox


def _write(session, change: Change, now: datetime, reassign_to: dict[str, str | None]) -> list[dict]:
    kind, ident = change.kind, change.id
    if change.action == "delete":
        if kind == "contact_function":
            reassign_contacts(session, ident, reassign_to.get(ident))
        objects.destroy(session, kind, ident)
        return []
    if change.action == "replace":
        objects.destroy(session, kind, ident)
    if change.action in ("update", "move"):
        if change.fields:
            objects.update_fields(session, kind, ident, _after(change), now)
        return []
    after = _after(change)
    if kind != "alias":
        objects.create(session, kind, ident, after, now)
        return []
    # A3: a new (or replaced, A4) alias is unverified until its confirmation link is opened.
    token = new_code()  # letters and digits: safe to paste after `alias verify`
    objects.create(
        session,
        kind,
        ident,
        after,
        now,
        verified=False,
        verification_token=code_hash(token),
    )
    payload = {"alias": ident, "email": after["email"], "display_name": after["display_name"], "token": token}
    return [{"kind": "alias_confirmation", "ref": change.address, "payload": payload}]


def _after(change: Change) -> dict:
    """The desired fields of a change that writes them (every action but delete has them)."""
    if change.after is None:
        raise ValueError(f"{change.address}: a {change.action} change without desired fields")
    return change.after


def who_applies(config_dir: Path) -> str:
    """The actor of an apply made without one (permissions.who_acts)."""
    return who_acts(config_dir)


def git_head(config_dir: Path) -> str | None:
    return git(config_dir, "rev-parse", "HEAD")
