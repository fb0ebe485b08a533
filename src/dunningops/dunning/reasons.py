"""decide()'s reasons for waiting or skipping, in a few stable categories (for metrics, the
forecast's day-by-day counts and the impact plan)."""

from __future__ import annotations

import re

__all__ = ["WAITING_REASONS", "waiting_reason"]

# decide()'s reasons (dunning/schedule.py, dunning/calendar.py why_not) are sentences for people;
# a metric needs a few stable values. First match wins; anything new counts as "other".
_REASONS = (
    ("paused", re.compile(r"^(customer|invoice) paused")),
    ("reply", re.compile(r"^waiting for the reply to-do")),
    ("min_delay", re.compile(r"minimum delay")),
    ("caps", re.compile(r"^sending cap reached")),
    ("new_step", re.compile(r"^new automatic step")),
    ("holiday", re.compile(r"^public holiday")),
    ("window", re.compile(r"^(outside the sending window|not a sending day)")),
)
WAITING_REASONS = (*(name for name, _ in _REASONS), "other")


def waiting_reason(reason: str) -> str:
    """The stable category of a decision's reason for waiting (or being skipped)."""
    for name, pattern in _REASONS:
        if pattern.search(reason):
            return name
    return "other"
