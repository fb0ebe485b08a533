"""At most once, proven with a real kill: a process sending through a real SMTP server is killed
(SIGKILL) while the server holds the message's final reply, for every kind of email; then the
same thing runs again. Counting what the server received: each Message-ID, and each recipient
with each subject, arrived at most once; the killed message shows as possibly sent at once
(`status`, the history), before any other run.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

import smtp_fixtures
from dunningops.dunning.status import collect_status, message_history
from dunningops.outgoing import find_by_message_id
from dunningops.store import open_store
from dunningops.store.schema import OutboxRow, TodoRow
from outgoing_helpers import PROOF_TO, accepted, finished, kill_while_held, prepare_store, start

make_faulty_smtp_server = smtp_fixtures.make_faulty_smtp_server


@pytest.fixture
def store(database_url: str):
    s = open_store(database_url)
    yield s
    s.dispose()


def _status_soon(store) -> dict:
    """`status` right after the kill. PostgreSQL ends the killed process's backend (and its locks)
    when it reads the closed socket: allow it a moment, then `status` must already tell."""
    deadline = time.monotonic() + 5
    while True:
        with store.session() as s:
            status = collect_status(s)
        if not status["messages"].get("sending") or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def _by_recipient_and_subject(server) -> Counter:
    def subject(data: bytes) -> bytes:
        return data.split(b"\r\nSubject: ", 1)[1].split(b"\r\n", 1)[0]

    return Counter((tuple(sorted(d.rcpt_tos)), subject(d.data)) for d in accepted(server))


# What the second try of each kind does: nothing again (the step, the to-do, the confirmation
# was taken before the kill), or, for a proof, a new proof (a new Message-ID; harmless to a colleague).
AGAIN = {
    "reminder": (0, "sent 0 confirmations 0 exit 0"),
    "confirmation": (0, "sent 0 confirmations 2 exit 0"),  # the two the kill stopped before; never the third
    "manual": (1, "is already sent"),
    "on_demand": (1, "may or may not have left; nothing was sent"),
    "proof": (0, f"C1: sent to {PROOF_TO}"),
}


@pytest.mark.parametrize("kind", list(AGAIN))
def test_at_most_once_process_killed_during_the_smtp_transaction(kind, store, database_url: str, v1: Path, tmp_path: Path,
                                                                 make_faulty_smtp_server):
    prepare_store(store, v1, tmp_path, kind)
    # The first message's final "." is taken and its reply held for a minute: the sender waits, and is killed.
    server = make_faulty_smtp_server("late_reply", times=1, delay=60)
    held = kill_while_held(start(kind, database_url, server), server)

    # Right after the kill, before anything else runs: the message may or may not have left.
    status = _status_soon(store)
    assert held in {m["message_id"] for m in status["unknown"]}
    assert "sending" not in status["messages"] and status["running"] is None
    with store.session() as s:
        assert {r["message_id"]: r["status"] for r in message_history(s)}[held] == "unknown"

    code, out, err = finished(start(kind, database_url, server))
    expected_code, expected_text = AGAIN[kind]
    assert "Traceback" not in err
    assert code == expected_code and expected_text in (out + err), (out, err)
    if expected_code:
        assert err.count("\n") == 1  # one clear line

    # Counting at the server: the killed message arrived once, and nothing arrived twice.
    assert server.received(held) == 1
    ids = Counter(d.message_id for d in server.deliveries if d.complete)
    assert max(ids.values()) == 1, ids
    repeats = {k: n for k, n in _by_recipient_and_subject(server).items() if n > 1}
    if kind == "proof":  # the second proof is a new email to the colleague (a new Message-ID), not the killed one again
        assert [rcpt for rcpt, _ in repeats] in ([], [(PROOF_TO,)]) and set(repeats.values()) <= {2}
    else:
        assert repeats == {}
    with store.session() as s:
        row = find_by_message_id(s, held)
        shown = {r["message_id"]: r["status"] for r in message_history(s)}
        assert row is not None and row["status"] in ("sending", "unknown")  # as recorded; shown as unknown
        assert shown[held] == "unknown"
        if kind == "manual":  # the to-do was taken before the SMTP transaction: closed, never sent twice
            assert s.scalar(select(TodoRow.status).where(TodoRow.id == row["todo_id"])) == "sent"
        if kind == "confirmation":  # each outbox row carries exactly one message
            claimed = s.execute(select(OutboxRow.message_id)).scalars().all()
            assert len(claimed) == 3 and len(set(claimed)) == 3 and None not in claimed
