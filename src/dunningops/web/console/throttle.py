"""The sign-in throttle: a few failed sign-ins per minute for one member, and for one address.

Kept in memory, per process: it slows a password-guesser down, it is not an account lock (a
restart clears it, and each daemon of one store counts its own). Timed with the app's clock, so
tests move time instead of sleeping.
"""

from __future__ import annotations

import threading
from collections import deque
from datetime import datetime, timedelta

WINDOW = timedelta(minutes=1)
MAX_FAILURES = 5
MAX_KEYS = 10_000  # a flood of made-up names must not grow memory without bound


class SignInThrottle:
    """Counts failures per key (``member:alice``, ``address:10.0.0.7``) within the last minute."""

    def __init__(self, *, window: timedelta = WINDOW, max_failures: int = MAX_FAILURES):
        self.window, self.max_failures = window, max_failures
        self._failures: dict[str, deque[datetime]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: datetime) -> deque[datetime]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and now - times[0] >= self.window:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def blocked(self, keys: list[str], now: datetime) -> bool:
        """Whether any of ``keys`` has had its few failures this minute (the next try is refused unchecked)."""
        with self._lock:
            return any(len(self._recent(k, now)) >= self.max_failures for k in keys)

    def failed(self, keys: list[str], now: datetime) -> None:
        with self._lock:
            if len(self._failures) > MAX_KEYS:
                for key in list(self._failures):
                    self._recent(key, now)
            for key in keys:
                self._failures.setdefault(key, deque()).append(now)

    def succeeded(self, key: str) -> None:
        """A member signed in: their count starts again (an address's does not: one good account must not
        let its holder guess the others' passwords faster)."""
        with self._lock:
            self._failures.pop(key, None)
