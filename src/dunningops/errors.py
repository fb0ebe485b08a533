"""One exception hierarchy: every error a user can cause derives from DunningOpsError.

The CLI prints ``str(error)`` as one clear message (no traceback unless
``--debug``); everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


class DunningOpsError(Exception):
    """Base of every user-facing error."""

    exit_code = 1


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in the config, with its place: ``file:line: key: message``."""

    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        place = f"{self.file}:{self.line}" if self.line else self.file
        return f"{place}: {self.key}: {self.message}" if self.key else f"{place}: {self.message}"


class ConfigError(DunningOpsError):
    """The config has one or more problems; all of them are listed at once."""

    def __init__(self, issues: list[ConfigIssue]):
        self.issues = sorted(issues, key=lambda i: (i.file, i.line or 0, i.key))
        n = len(self.issues)
        head = f"{n} error{'s' if n != 1 else ''} in the config:"
        super().__init__("\n".join([head, *(f"  {i}" for i in self.issues)]))


class StoreError(DunningOpsError):
    """The store cannot be opened or is at an unexpected schema version."""


class PlanError(DunningOpsError):
    """A plan cannot be built or applied as asked."""


class UnsafePlanError(PlanError):
    """The plan deletes or replaces too much, or breaks a guard (A5, C8)."""


class StalePlanError(PlanError):
    """A saved plan no longer matches the desired or the actual state."""


class LockError(DunningOpsError):
    """Another apply holds the lock."""
