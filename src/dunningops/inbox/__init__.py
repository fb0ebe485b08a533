"""The import cycle: read the inbox, parse and classify each message (reply, auto-reply, bounce, complaint), match it.

* ``parse``: raw bytes → ``ParsedMail`` (``parse_message``, ``UnparseableMessageError``, ``to_json``).
* ``classify``: the kind of a message and the evidence for it; ``bounces``: delivery failures,
  RFC 3464 and the text-only shapes; ``reply``: what the sender of a reply wrote, its quoted
  history removed; ``headers``: header fields and texts read without trusting them.

Imports nothing here, so that ``import dunningops.inbox`` stays cheap.
"""
