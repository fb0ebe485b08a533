"""Reading an incoming email's header fields and texts without trusting them.

Values are taken raw from the parsed message (``Message.raw_items``) and decoded here: 8-bit bytes
(UTF-8, else Windows-1252), RFC 2047 encoded words (adjacent words joined before decoding, so a
character split across two words survives), wrong or unknown charsets (never an exception).
``email.policy.default``'s header objects would do the same through ``_header_value_parser`` at
~75 µs a header: the import cycle reads 10,000 messages at a time, so it uses the plain functions.
"""

from __future__ import annotations

import binascii
import codecs
import functools
import re
from collections.abc import Iterable
from email.message import Message
from email.utils import getaddresses
from typing import Any

_FOLD = re.compile(r"\r?\n")
_SURROGATES = re.compile("[\udc80-\udcff]")
_ENCODED_WORD = re.compile(r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([bBqQ])\?([^?\s]*)\?=")
_ANGLED_ID = re.compile(r"<\s*([^<>\s]+?)\s*>")
_BARE_ID = re.compile(r"[^<>\s@]+@[^<>\s@]+")
_SPACES = re.compile(r"\s+")

# Tried in this order when the declared charset is wrong: UTF-8 is strict enough to fail on
# anything else; Windows-1252 is what mislabelled Western text nearly always is; Latin-1 never fails.
_FALLBACKS = ("utf-8", "windows-1252", "latin-1")
_LATIN1_LABELS = frozenset({"iso-8859-1", "iso8859-1", "iso_8859-1", "latin-1", "latin1", "l1", "cp819", "ibm819"})


@functools.lru_cache(maxsize=256)
def _is_text_encoding(name: str) -> bool:
    # bytes.decode refuses codecs that are not text encodings before decoding anything (a charset
    # named "zlib" must not decompress a bomb); the bytes probed are ignored.
    try:
        b"\0\0\0\0".decode(name)
    except LookupError:
        return False
    except (UnicodeError, ValueError):
        pass
    return True


def decode_bytes(data: bytes, charset: str | None, final: bool = True) -> tuple[str, str | None]:
    """``data`` as text, and the charset it was read with when that is not the declared one.

    ``final=False`` is for a prefix cut at an arbitrary byte: a character cut in half at the end is
    dropped instead of making the declared charset look wrong.
    """
    declared = (charset or "us-ascii").strip().lower()
    if declared in _LATIN1_LABELS:
        # As browsers do (WHATWG Encoding): text labelled Latin-1 is Windows-1252, whose 0x80-0x9F
        # are the dashes and curly quotes Windows clients write (Latin-1 makes them control codes).
        try:
            return data.decode("windows-1252"), None
        except UnicodeDecodeError:
            return data.decode("latin-1"), None  # a byte Windows-1252 leaves undefined: Latin-1 it was
    for name in (declared, *_FALLBACKS):
        if not _is_text_encoding(name):
            continue  # unknown charset (unknown-8bit, x-user-defined...), or base64, zlib...
        try:
            text = codecs.getincrementaldecoder(name)("strict").decode(data, final)
        except (UnicodeError, ValueError, TypeError):
            continue
        return text, (None if name == declared else name)
    return data.decode("latin-1"), "latin-1"  # unreachable: latin-1 decodes any byte


def _word_bytes(encoding: str, payload: str) -> bytes:
    raw = payload.encode("ascii", "replace")
    if encoding in "bB":
        try:
            return binascii.a2b_base64(raw + b"=" * (-len(raw) % 4))
        except binascii.Error:
            return raw
    return binascii.a2b_qp(raw, header=True)


def _decode_words(value: str) -> str:
    out: list[str] = []
    run = bytearray()
    run_charset = ""
    pos = 0
    after_word = False
    for match in _ENCODED_WORD.finditer(value):
        gap = value[pos : match.start()]
        charset = match.group(1).lower()
        # RFC 2047: the white space between two encoded words is not part of the text.
        adjacent = after_word and (not gap or gap.isspace())
        if run and not (adjacent and charset == run_charset):
            out.append(decode_bytes(bytes(run), run_charset)[0])
            run.clear()
        if not adjacent:
            out.append(gap)
        run += _word_bytes(match.group(2), match.group(3))
        run_charset = charset
        pos = match.end()
        after_word = True
    if run:
        out.append(decode_bytes(bytes(run), run_charset)[0])
    out.append(value[pos:])
    return "".join(out)


def unfold(value: str) -> str:
    """A raw header value on one line."""
    return _FOLD.sub("", value).strip() if "\n" in value else value.strip()


def has_8bit(value: str) -> bool:
    """Whether a raw value holds bytes the parser could not read as ASCII (kept as surrogates)."""
    return not value.isascii() and _SURROGATES.search(value) is not None


def decode_header_text(value: str) -> str:
    """A raw (unfolded) header value as the text a person would read."""
    if has_8bit(value):
        value = decode_bytes(value.encode("ascii", "surrogateescape"), "utf-8")[0]
    if "=?" in value:
        value = _decode_words(value)
    return value


def payload_of(part: Message) -> Any:
    """``part.get_payload()``, which never raises: the sub-parts of a multipart, else the raw text.

    Unless asked to decode, ``email`` re-reads 8-bit text with the part's charset parameter and
    raises on some (one with a NUL in it); the bytes, as Latin-1, are then the raw text.
    """
    try:
        return part.get_payload()
    except (ValueError, LookupError, TypeError):
        data = part.get_payload(decode=True)
        return data.decode("latin-1") if isinstance(data, bytes) else ""


def header_map(msg: Message) -> dict[str, list[str]]:
    """Lower-cased field name → the unfolded raw values, in the message's order."""
    fields: dict[str, list[str]] = {}
    for name, value in msg.raw_items():
        if not isinstance(value, str):
            value = str(value)
        fields.setdefault(name.strip().lower(), []).append(unfold(value))
    return fields


def first(fields: dict[str, list[str]], name: str) -> str | None:
    values = fields.get(name)
    return values[0] if values else None


def normalise_message_id(value: str) -> str | None:
    """``value`` as ``<id@domain>``: the first angle-bracketed id, else a bare ``id@domain``; None if neither."""
    if not value:
        return None
    match = _ANGLED_ID.search(value)
    if match:
        return f"<{match.group(1)}>"
    match = _BARE_ID.search(value)
    return f"<{match.group(0)}>" if match else None


def message_ids(value: str | None) -> tuple[str, ...]:
    """Every id of an In-Reply-To or References value, in order, each once."""
    if not value:
        return ()
    found = [f"<{m}>" for m in _ANGLED_ID.findall(value)]
    if not found:  # some clients write ids without brackets
        found = [f"<{m}>" for m in _BARE_ID.findall(value)]
    return tuple(dict.fromkeys(found))


# The usual shapes of one address: "Name <a@b>", "<a@b>", "a@b", "a@b (Name)" (how MTAs sign their
# bounces). Anything else (quotes, nested comments, groups, escapes) goes to email.utils, ten times slower.
_ATOM = r"[\w!#$%&'*+/=?^`{|}~-]+"
_ADDR_SPEC = rf"{_ATOM}(?:\.{_ATOM})*@[\w-]+(?:\.[\w-]+)*"  # dot-atom@dot-atom, nothing obsolete
_PHRASE = r"[^<>\"(),;:\\\[\]@]"
_SIMPLE_ADDRESS = re.compile(rf"\s*(?:({_PHRASE}*?)\s*<({_ADDR_SPEC})>|({_ADDR_SPEC})(?:\s*\(({_PHRASE}*)\))?)\s*")


def _simple_addresses(text: str) -> list[tuple[str, str]] | None:
    pairs: list[tuple[str, str]] = []
    for item in text.split(","):
        match = _SIMPLE_ADDRESS.fullmatch(item)
        if match is None:
            return None
        name, angled, bare, comment = match.groups()
        pairs.append((name or comment or "", angled or bare))
    return pairs


def addresses(values: Iterable[str]) -> list[tuple[str, str]]:
    """``(display name, lower-cased addr-spec)`` pairs of address header values; empty ones dropped."""
    pairs = []
    for text in values:
        if has_8bit(text):
            text = decode_bytes(text.encode("ascii", "surrogateescape"), "utf-8")[0]
        simple = _simple_addresses(text) if text.strip() else []
        if simple is None:
            try:
                simple = getaddresses([text])
            except Exception:  # the address parser has had bugs on hostile input; a bad header reads as empty
                simple = []
        pairs += simple
    out: list[tuple[str, str]] = []
    for name, addr in pairs:
        addr = addr.strip().strip("<>").strip().lower()
        if addr:
            # Names are decoded once parsed: a decoded name may hold the commas and quotes that separate addresses.
            name = decode_header_text(name) if "=?" in name else name
            out.append((_SPACES.sub(" ", name).strip(), addr))
    return out


def one_line(text: str, limit: int) -> str:
    """``text`` on one line, white space collapsed, cut to ``limit`` characters with an ellipsis."""
    text = _SPACES.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
