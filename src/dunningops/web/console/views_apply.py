"""Applying the config from the console: the plan of the daemon's config directory against the store,
then, on a click, the apply, made as the signed-in member (T1: their role in the applied config
decides what they may change). The form carries the plan's digest: a plan that changed since it
was shown is refused, never applied unseen.
"""

from __future__ import annotations

import re

from starlette.responses import Response

from dunningops.errors import ConflictError, InvalidInputError, PermissionDeniedError, UnsafePlanError
from dunningops.reconcile.apply import apply_config, raise_if_unsafe
from dunningops.reconcile.permissions import authorize
from dunningops.reconcile.plan import Plan
from dunningops.reconcile.planner import build_plan
from dunningops.reconcile.render import render_text
from dunningops.spec.state import DesiredState
from dunningops.store.config_objects import read_actual
from dunningops.web.console.handler import Ask

DIGEST = re.compile(r"[0-9a-f]{64}")
LOCK_TIMEOUT_S = 5.0  # a page waits a little for another apply, not as long as the command line


def _plan(ask: Ask) -> tuple[DesiredState, Plan, str | None, str | None]:
    """The config, its plan now, why the member may not apply it (or None), why it is unsafe (or None)."""
    desired = ask.app.load_config()
    with ask.app.session() as session:
        actual = read_actual(session)
    plan = build_plan(desired, actual)
    refused = unsafe = None
    if not plan.empty:
        try:
            authorize(plan, actual, ask.member_id)
        except PermissionDeniedError as exc:
            refused = str(exc)
        try:
            raise_if_unsafe(plan, allow_destroy=False)
        except UnsafePlanError as exc:
            unsafe = str(exc).split("; re-run with", 1)[0]
    return desired, plan, refused, unsafe


def apply_new(ask: Ask) -> Response:
    _, plan, refused, unsafe = _plan(ask)
    return ask.render(
        "apply_new.html",
        nav="applies",
        plan=plan,
        text=render_text(plan),
        refused=refused,
        unsafe=unsafe,
        config_dir=str(ask.app.config_dir),
    )


def apply_post(ask: Ask) -> Response:
    shown = ask.field("plan", max_length=64) or ""
    if not DIGEST.fullmatch(shown):
        raise InvalidInputError("the form's plan is not a plan digest")
    desired, plan, _, _ = _plan(ask)
    if plan.empty:
        raise ConflictError("there is nothing left to apply: the store already matches the configuration")
    if plan.digest != shown:
        raise ConflictError("the plan changed since it was shown: look at it again before applying")
    result = apply_config(
        ask.app.store,
        desired,
        now=ask.now,
        expected=plan,  # rebuilt under the lock and compared: what was shown is what runs
        allow_destroy=ask.form.get("allow_destroy") == "yes",
        actor=ask.member_id,  # T1: the signed-in member, checked against the applied members
        lock_timeout_s=LOCK_TIMEOUT_S,
    )
    if not result.applied:
        raise ConflictError("there is nothing left to apply: the store already matches the configuration")
    return ask.redirect(f"/applies/{result.apply_id}")
