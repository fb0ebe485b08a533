"""The quoted-printable bodies of transport/message.py against the way it built them before.

``_quoted_printable`` now makes the line breaks CRLF in the UTF-8 bytes rather than in the text
(cheaper on the two-byte strings a "€" or a "–" makes): the bytes on the wire must not change.
"""

from __future__ import annotations

import binascii
import random

import pytest

from dunningops.transport.message import _quoted_printable


def _quoted_printable_before(text: str) -> bytes:
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    data = text.replace("\n", "\r\n").encode("utf-8")
    if data.endswith(b"\r\n"):
        return binascii.b2a_qp(data, istext=True)
    return binascii.b2a_qp(data + b"\r\n", istext=True)[:-2]


_PIECES = [
    "a",
    "mot ",
    "é",
    "€",
    "–",
    "\u202f",
    "\xa0",
    "=",
    "==",
    "=?utf-8?q?x?=",
    " ",
    "  ",
    "\t",
    "\n",
    "\r\n",
    "\r",
    "\n\n",
    ".",
    "\n.\n",
    "\x00",
    "\x0c",
    "\x7f",
    "😀",
    "x" * 75,
    "y" * 76,
    "z" * 77,
    "=" * 30,
    '<p style="a:b">',
]


@pytest.mark.parametrize("seed", range(40))
def test_quoted_printable_gives_the_bytes_it_gave_before(seed):
    rng = random.Random(seed)
    for size in (0, 1, 2, 5, 20, 100, 400):
        text = "".join(rng.choice(_PIECES) for _ in range(size))
        assert _quoted_printable(text) == _quoted_printable_before(text), repr(text)


@pytest.mark.parametrize(
    "text",
    ["", "\n", "\r", "\r\n", "a", "a \n", "a\t\r\n", "x" * 76 + "\n", "x" * 75 + " \n", ".\n", ". ", "fin sans saut  "],
)
def test_quoted_printable_edges(text):
    assert _quoted_printable(text) == _quoted_printable_before(text)
