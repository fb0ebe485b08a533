"""The job summary: the plan appended to ``$GITHUB_STEP_SUMMARY``, cut to its 1 MiB."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from dunningops.errors import InvalidInputError
from dunningops.github.body import summary_text


def append_summary(content: str, env: Mapping[str, str] = os.environ) -> Path:
    """Append ``content`` to this step's summary file; returns the file."""
    name = env.get("GITHUB_STEP_SUMMARY")
    if not name:
        raise InvalidInputError("GITHUB_STEP_SUMMARY is not set: run this in a GitHub Actions job")
    path = Path(name)
    already = path.stat().st_size if path.exists() else 0
    try:
        with path.open("a", encoding="utf-8") as out:
            out.write(summary_text(content, already))
    except OSError as exc:
        raise InvalidInputError(f"{path}: cannot write the job summary: {exc.strerror}") from None
    return path
