"""A3 confirmation codes: issued, and kept only as a hash (aliases.verification_token).

A code is typed or pasted after ``dunningops alias verify``, so it must survive a shell and an
option parser: letters and digits only, starting with a letter (``secrets.token_urlsafe`` codes
began with ``-`` about one time in 64 and were read as an option). Base32 (A–Z, 2–7): no 0/O or
1/I/l to confuse; 24 characters, 120 bits. Matching ignores case, spaces and hyphens, and a code
issued before (any URL-safe string, perhaps starting with ``-``) still matches exactly.
"""

from __future__ import annotations

import hashlib
import secrets
import string

ALPHABET = string.ascii_uppercase + "234567"
LENGTH = 24


def new_code() -> str:
    """A fresh confirmation code, e.g. ``KQ7MXD4PZ2AB…``: a letter, then letters and digits."""
    return secrets.choice(string.ascii_uppercase) + "".join(secrets.choice(ALPHABET) for _ in range(LENGTH - 1))


def code_hash(code: str) -> str:
    """What the store keeps of a code."""
    return hashlib.sha256(code.encode()).hexdigest()


def candidate_hashes(typed: str) -> list[str]:
    """The hashes ``typed`` may match: as given (codes of any age), and normalised (new codes)."""
    exact = typed.strip()
    normal = "".join(exact.split()).replace("-", "").upper()
    return list(dict.fromkeys([code_hash(exact), code_hash(normal)]))
