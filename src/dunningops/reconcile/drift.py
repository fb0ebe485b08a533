"""Drift: what changed in the store outside ``apply`` (a row edited by hand, a migration).

Each apply records the config objects it left in ``applies.state``, as
``{"format": 1, "digest": sha256 of the objects, "objects": {address: fields}}``:
the same canonical shape ``plan`` diffs (``read_actual`` → fields; actual-only
fields such as an alias's verification or a last send are not in it, so the
console's and the cycles' own writes are never drift). It is written once per
apply, in the apply's transaction, and only the last apply keeps it (older
states are set to null: drift needs only the last one, so the store holds the
config's size once more, not once per apply); the digest lets ``drift`` say
"none" without diffing. ``find_drift`` compares that recorded state (before) with the store as
it is (after), with the planner's field diff, and returns a Plan-shaped value
the renderers here word as drift.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Text, cast, null, or_, select, update
from sqlalchemy.orm import Session

from dunningops.errors import NotFoundError
from dunningops.reconcile.diff import field_changes
from dunningops.reconcile.objects import KIND_ORDER, desired_objects, digest, split_address
from dunningops.reconcile.plan import Change, Plan

# The plan renderers' own pieces, so that a drift reads exactly like a plan.
from dunningops.reconcile.render import MARKDOWN_LIMIT, _body_lines, details_block
from dunningops.reconcile.render import render_json as _plan_json
from dunningops.spec.state import DesiredState
from dunningops.store.config_objects import read_actual
from dunningops.store.schema import ApplyRow

STATE_FORMAT = 1
NO_STATE = "no apply has recorded the state yet: run `dunningops apply` once"
# Drift has three kinds of change: an object that appeared, changed or disappeared outside apply.
HEADLINES = {"create": "was created by hand", "update": "was changed outside apply", "delete": "was deleted by hand"}
WORDS = {"create": "created", "update": "changed", "delete": "deleted"}


def current_objects(session: Session) -> dict[str, dict]:
    """The store's config objects as canonical JSON values ({address: fields}).

    A JSON round trip, so that what is recorded and what it is later compared
    with have exactly the same types (a date, a tuple) whatever the backend.
    """
    # Rows read earlier in this transaction (apply's plan) were since written with plain
    # UPDATEs: forget them so that the ORM reads the rows as they are now (apply holds none).
    session.flush()
    session.expunge_all()
    fields = {addr: obj.fields for addr, obj in read_actual(session).items()}
    # Not sorted: the fields keep the store's column order, so they read in plan's order.
    return json.loads(json.dumps(fields, ensure_ascii=False, default=str))


def recorded_state(session: Session) -> dict[str, Any]:
    """What an apply records in ``applies.state``: the objects it left and their digest."""
    objects = current_objects(session)
    return {"format": STATE_FORMAT, "digest": digest(objects), "objects": objects}


def applied_state(session: Session, desired: DesiredState, plan: Plan) -> dict[str, Any]:
    """The state an apply of ``plan`` leaves, to record with it (after its writes).

    A full plan leaves the store equal to the desired objects (that is what makes
    the next plan empty), so they are recorded as they are, with the digest the
    plan already has: no second read of the store. A partial one (--target,
    --exclude) leaves a mix, read back from the store.
    """
    if plan.targets or plan.excludes:
        return recorded_state(session)
    return {"format": STATE_FORMAT, "digest": plan.desired_digest, "objects": desired_objects(desired)}


def record_baseline(session: Session) -> bool:
    """Give the last apply a state when it has none (it predates the column); True when done.

    Called by an apply whose full plan is empty: the store then matches the
    config, so the state now is what that apply left, and drift has a baseline
    without an apply that changes something.
    """
    last = session.execute(
        # SQL NULL (older applies) or JSON null; tested in SQL so that a big state is not loaded.
        select(ApplyRow.id, or_(ApplyRow.state.is_(None), cast(ApplyRow.state, Text) == "null").label("missing"))
        .order_by(ApplyRow.id.desc())
        .limit(1)
    ).first()
    if last is None or not last.missing:
        return False
    session.execute(update(ApplyRow).where(ApplyRow.id == last.id).values(state=recorded_state(session)))
    return True


def forget_older_states(session: Session, apply_id: int) -> None:
    """Only the last apply keeps its state: drift needs no other, and the audit trail stays small."""
    session.execute(update(ApplyRow).where(ApplyRow.id < apply_id, ApplyRow.state.is_not(None)).values(state=null()))


@dataclass(frozen=True)
class Drift:
    """The changes made outside apply since apply ``apply_id``: before = recorded, after = the store."""

    plan: Plan
    apply_id: int
    applied_at: datetime

    @property
    def empty(self) -> bool:
        return self.plan.empty

    def summary(self) -> dict[str, int]:
        count = dict.fromkeys(WORDS.values(), 0)
        for change in self.plan.changes:
            count[WORDS[change.action]] += 1
        return count

    def since(self) -> str:
        return f"apply #{self.apply_id} ({self.applied_at:%Y-%m-%d %H:%M} UTC)"

    def summary_line(self) -> str:
        if self.empty:
            return f"No drift. The store holds what {self.since()} left."
        s = self.summary()
        return (
            f"Drift: {s['created']} created, {s['changed']} changed, {s['deleted']} deleted outside apply since {self.since()}."
        )


def find_drift(session: Session) -> Drift:
    """Compare the last apply's recorded state with the store; NotFoundError when none was recorded."""
    last = session.execute(select(ApplyRow.id, ApplyRow.applied_at, ApplyRow.state).order_by(ApplyRow.id.desc()).limit(1)).first()
    if last is None or not last.state or last.state.get("format") != STATE_FORMAT:
        raise NotFoundError(NO_STATE)
    actual = current_objects(session)
    recorded = last.state["objects"]
    now_digest = digest(actual)
    changes = () if now_digest == last.state["digest"] else diff_states(recorded, actual)
    plan = Plan(
        changes=changes,
        desired_digest=last.state["digest"],
        actual_digest=now_digest,
        objects_in_store=len(actual),
    )
    return Drift(plan, last.id, last.applied_at)


def diff_states(recorded: dict[str, dict], actual: dict[str, dict]) -> tuple[Change, ...]:
    """Changes from ``recorded`` to ``actual``, with plan's field diff and plan's order."""
    changes: list[Change] = []
    for addr, after in actual.items():
        kind, ident = split_address(addr)
        before = recorded.get(addr)
        if before is None:
            changes.append(Change("create", kind, ident, None, after))
        elif fields := field_changes(before, after):
            changes.append(Change("update", kind, ident, before, after, fields))
    for addr, before in recorded.items():
        if addr not in actual:
            kind, ident = split_address(addr)
            changes.append(Change("delete", kind, ident, before, None))
    return tuple(sorted(changes, key=_order))


def _order(change: Change) -> tuple:
    # As plan orders them: what is referenced first, deletions last and in reverse.
    rank = KIND_ORDER.index(change.kind) if change.kind in KIND_ORDER else len(KIND_ORDER)
    return (1, -rank, change.id) if change.action == "delete" else (0, rank, change.id)


def _headline(change: Change) -> str:
    return f"# {change.address} {HEADLINES[change.action]}"


def render_text(drift: Drift) -> str:
    """Plan's text, worded as drift."""
    if drift.empty:
        return drift.summary_line() + "\n"
    out = [f"The store changed outside apply since {drift.since()}:", ""]
    for change in drift.plan.changes:
        out.append(f"  {_headline(change)}")
        out.append(f'{change.symbol.rjust(3)} {change.kind} "{change.id}" {{')
        out.extend(f"      {line}" for line in _body_lines(change))
        out.append("    }")
        out.append("")
    out.append(drift.summary_line())
    out.append("`dunningops plan` shows what apply would do about it.")
    return "\n".join(out) + "\n"


def render_markdown(drift: Drift, limit: int = MARKDOWN_LIMIT) -> str:
    """A comment or an issue: a table of the objects, then each change folded, under ``limit`` characters."""
    head = ["### dunningops drift", "", f"**{drift.summary_line()}**", ""]
    if drift.empty:
        return "\n".join(head) + "\n"
    footer_room = 400
    rows = [f"| `{c.symbol}` | `{c.address}` | {HEADLINES[c.action].removeprefix('was ')} |" for c in drift.plan.changes]
    table = ["| | object | drift |", "|---|---|---|"]
    size = len("\n".join(head + table))
    for row in rows:
        if size + len(row) + footer_room > limit:
            break
        table.append(row)
        size += len(row) + 1
    text = "\n".join(head + table) + "\n"
    shown_rows = len(table) - 2
    if shown_rows < len(rows):
        return text + f"\n_…and {len(rows) - shown_rows} more changes. Run `dunningops drift` for all of them._\n"
    details: list[str] = []
    for change in drift.plan.changes:
        block = details_block(change, HEADLINES[change.action], _headline(change))
        if len(text) + sum(map(len, details)) + len(block) + footer_room > limit:
            break
        details.append(block)
    text += "".join(details) + "\n"
    if len(details) < len(rows):
        text += (
            f"\n_Details of {len(rows) - len(details)} more changes are left out to fit a comment. "
            "Run `dunningops drift` for all of them._\n"
        )
    return text


def render_json(drift: Drift) -> str:
    """The changes as plan's JSON has them (masked alike), with the apply they are measured from."""
    plan = json.loads(_plan_json(drift.plan))
    data = {
        "drift": not drift.empty,
        "since_apply": {"id": drift.apply_id, "applied_at": drift.applied_at.isoformat()},
        "summary": drift.summary(),
        "recorded_digest": drift.plan.desired_digest,
        "actual_digest": drift.plan.actual_digest,
        "changes": plan["changes"],
    }
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


RENDERERS = {"text": render_text, "markdown": render_markdown, "json": render_json}
