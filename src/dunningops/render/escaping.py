"""HTML escaping as markupsafe's ``escape`` does it, cheaper for the values that need none.

``escape`` builds a ``Markup`` for every value, which costs several times the escaping itself;
the values an email writes (amounts, dates, names, references) mostly have nothing to escape.
"""

from __future__ import annotations

import re
from typing import Any

from markupsafe import Markup, escape

_SPECIAL = re.compile(r"[&<>\"']")  # what markupsafe replaces


def escape_text(value: Any) -> str | Markup:
    """``escape(value)``, as the same text: a plain ``str`` without those characters comes back as it is."""
    if value.__class__ is str and _SPECIAL.search(value) is None:
        return value
    return escape(value)
