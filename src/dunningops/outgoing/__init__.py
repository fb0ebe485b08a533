"""The one way out: every email the product sends leaves through ``send`` (way_out.py).

It assigns the Message-ID, records the message ``sending`` and commits before the SMTP
transaction, records its outcome after (sent, failed, deferred, unknown), applies C9 to the
recipients the server refused, and keeps the history (history.py) that the caps (T6), the
minimum delay between contacts and the import cycle's reply matching (R5) read. Nobody else
writes the ``messages`` table.

Imports errors, store and transport only: the cycles (dunning/, next inbox/ and alerts/) call it.
"""

from dunningops.outgoing.history import COUNTED_KINDS, KINDS, find_by_message_id, list_messages, mark_interrupted
from dunningops.outgoing.letter import Letter, Outcome, Recorded
from dunningops.outgoing.way_out import NotClaimed, send

__all__ = [
    "COUNTED_KINDS",
    "KINDS",
    "Letter",
    "NotClaimed",
    "Outcome",
    "Recorded",
    "find_by_message_id",
    "list_messages",
    "mark_interrupted",
    "send",
]
