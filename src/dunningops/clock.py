"""The injected clock: everything that needs "now" takes it from here or from its caller.

``DUNNINGOPS_NOW`` (an ISO timestamp) pins the CLI's clock, for tests,
reproducible demos and previewing a future instant.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime


def now() -> datetime:
    pinned = os.environ.get("DUNNINGOPS_NOW")
    if pinned:
        value = datetime.fromisoformat(pinned)
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.now(UTC)
