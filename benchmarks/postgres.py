"""A throwaway PostgreSQL server for the benchmarks, reusing the test suite's tests/servers.py.

When no server can be started the benchmarks still run on SQLite, and the
reason is recorded in the JSON instead of failing the whole run.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"


@dataclass
class PostgresAvailability:
    """Either a way to make fresh databases, or why there is none."""

    make_database: Callable[[str], str] | None
    info: dict
    psql: Path | None = None  # the server's own psql, for anchors such as \\copy


@contextmanager
def postgres(enabled: bool = True) -> Iterator[PostgresAvailability]:
    """Start a server for the duration of the block (stopped and deleted afterwards)."""
    if not enabled:
        yield PostgresAvailability(None, {"skipped": "disabled with --no-postgres"})
        return
    try:
        sys.path.insert(0, str(TESTS))
        from servers import PostgresServer  # type: ignore[import-not-found]
    except ImportError as exc:
        yield PostgresAvailability(None, {"skipped": f"cannot import tests/servers.py: {exc}"})
        return
    server = PostgresServer()
    try:
        server.start()
    except Exception as exc:  # noqa: BLE001 - any failure to start means "skip", with its reason
        yield PostgresAvailability(None, {"skipped": f"PostgreSQL did not start: {str(exc).splitlines()[0]}"})
        return
    try:
        def make_database(name: str) -> str:
            server.create_database(name)
            return server.url(name)

        version = subprocess.run([str(server.bindir / "postgres"), "--version"], capture_output=True, text=True)
        info = {"server": version.stdout.strip(), "settings": "fsync=off, synchronous_commit=off (tests/servers.py)",
                "note": "peak RSS is the plan client's only; the server runs in its own processes"}
        yield PostgresAvailability(make_database, info, server.bindir / "psql")
    finally:
        server.stop()
