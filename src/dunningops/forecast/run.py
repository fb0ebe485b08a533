"""The forecast and the impact plan on a store: one read-only session, the configs built from it."""

from __future__ import annotations

import dataclasses
from datetime import datetime

from dunningops.dunning.runconfig import RunConfig
from dunningops.errors import ConflictError
from dunningops.forecast.impact import Impact, compare
from dunningops.forecast.model import Forecast
from dunningops.forecast.simulate import DEFAULT_DAYS, simulate
from dunningops.reconcile.objects import desired_objects
from dunningops.spec.state import DesiredState
from dunningops.store.engine import Store

__all__ = ["forecast", "impact"]


def forecast(store: Store, *, at: datetime, days: int = DEFAULT_DAYS) -> Forecast:
    """What the applied config will do over ``days`` days from ``at``."""
    with store.session() as session:
        return simulate(session, RunConfig.from_store(session), start=at, days=days)


def impact(store: Store, desired: DesiredState, *, at: datetime, days: int = DEFAULT_DAYS) -> Impact:
    """What applying ``desired`` changes for customers over ``days`` days from ``at``: the applied
    config's simulation against the desired one's, on the same ledger and history."""
    with store.session() as session:
        wanted = RunConfig.from_desired(desired_objects(desired), session)
        try:
            applied = RunConfig.from_store(session)
        except ConflictError:  # nothing applied yet: nothing runs today, everything the config does is new
            applied = dataclasses.replace(wanted, plans={})
        return compare(simulate(session, applied, start=at, days=days), simulate(session, wanted, start=at, days=days))
