"""One exception hierarchy: every error a user can cause derives from DunningOpsError.

Each error knows its *kind*: what went wrong in terms a caller can act on. The kind
gives the CLI its exit code and a web page its HTTP status, from one root:

| kind               | class                   | exit | HTTP |
|--------------------|-------------------------|------|------|
| invalid input      | InvalidInputError       | 1    | 400  |
| not found          | NotFoundError           | 1    | 404  |
| conflict           | ConflictError           | 1    | 409  |
| permission denied  | PermissionDeniedError   | 1    | 403  |
| server unavailable | UnavailableError        | 3    | 503  |

The CLI prints ``str(error)`` as one clear message (no traceback unless
``--debug``); everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


class DunningOpsError(Exception):
    """Base of every user-facing error."""

    exit_code = 1
    http_status = 400
    kind = "error"


class InvalidInputError(DunningOpsError):
    """What the user gave (a file, an option, a value) is wrong; the message names where."""

    kind = "invalid input"


class NotFoundError(DunningOpsError):
    """The thing asked for (a customer, a to-do, an alias, a template) does not exist."""

    http_status = 404
    kind = "not found"


class ConflictError(DunningOpsError):
    """The request clashes with the state: already done, changed since, held by someone else."""

    http_status = 409
    kind = "conflict"


class PermissionDeniedError(DunningOpsError):
    """The member (or the process) may not do this."""

    http_status = 403
    kind = "permission denied"


class UnavailableError(DunningOpsError):
    """A server the work needs (the store, SMTP, IMAP) cannot be used now, or is set up wrongly."""

    exit_code = 3
    http_status = 503
    kind = "server unavailable"


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


class ConfigError(InvalidInputError):
    """The config has one or more problems; all of them are listed at once."""

    def __init__(self, issues: list[ConfigIssue]):
        self.issues = sorted(issues, key=lambda i: (i.file, i.line or 0, i.key))
        n = len(self.issues)
        head = f"{n} error{'s' if n != 1 else ''} in the config:"
        super().__init__("\n".join([head, *(f"  {i}" for i in self.issues)]))


class StoreError(UnavailableError):
    """The store cannot be opened, is read-only, or is at an unexpected schema version."""


class PlanError(ConflictError):
    """A plan cannot be built or applied as asked."""


class UnsafePlanError(PlanError):
    """The plan deletes or replaces too much, or breaks a guard (A5, C8)."""


class StalePlanError(PlanError):
    """A saved plan no longer matches the desired or the actual state."""


class LockError(ConflictError):
    """Another apply or run holds the lock."""
