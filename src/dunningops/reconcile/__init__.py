"""Reconcile: desired state vs actual state → Plan (data) → rendered, saved, applied.

Imports ``spec`` and ``store``; never the cycles. Computing a plan never writes.
"""

from dunningops.reconcile.plan import Change, FieldChange, Plan
from dunningops.reconcile.planner import build_plan

__all__ = ["Change", "FieldChange", "Plan", "build_plan"]
