"""Send cycles side by side: claims, runners, a stop that lets the messages in flight finish.

On SQLite and PostgreSQL, with real SMTP (aiosmtpd). Two stores opened on one database are two
runners, as two processes would be.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from daemons_helpers import AT, fill, write_config
from dunningops.dunning import claims
from dunningops.dunning.cycle import run_send
from dunningops.dunning.sending import SEND_CHUNK
from dunningops.outgoing.way_out import STOP_CHUNK, STOPPED
from dunningops.store import open_store
from dunningops.store.runners import live_runners, register
from dunningops.store.schema import ActionRow, MessageRow
from dunningops.transport.smtp import SmtpTransport

N = 100
WHEN = datetime.fromisoformat(AT)


@pytest.fixture
def filled(database_url: str, tmp_path: Path, smtp_server):
    config = write_config(tmp_path / "config", smtp_server.port)
    store = open_store(database_url)
    fill(store, config, N, tmp_path)
    yield store
    store.dispose()


def _smtp(server):
    return lambda config: SmtpTransport(server.host, server.port, security="none", timeout=30)


def test_a_step_claimed_by_a_live_runner_is_its_own_and_a_dead_ones_claims_go_back(filled, database_url: str):
    other = open_store(database_url)
    try:
        mine, theirs = register(filled, "run"), register(other, "run")
        keys = {("standard", "courtesy", 1, 1), ("standard", "courtesy", 2, 2)}
        with other.session() as s:
            assert claims.claim(s, keys, runner_id=theirs.id, at=WHEN) == keys
        with filled.session() as s:
            assert claims.claim(s, keys, runner_id=mine.id, at=WHEN) == set()  # taken
            assert claims.release_dead(s) == 0  # its runner lives
            assert live_runners(s, [mine.id, theirs.id]) == {mine.id, theirs.id}
        theirs.close()  # its lock goes, as when a process dies
        with filled.session() as s:
            assert live_runners(s, [mine.id, theirs.id]) == {mine.id}
            assert claims.release_dead(s) == 2
        with filled.session() as s:
            assert claims.claim(s, keys, runner_id=mine.id, at=WHEN) == keys
    finally:
        other.dispose()


def test_two_cycles_side_by_side_on_postgresql_share_the_steps(postgres_url: str, tmp_path: Path, smtp_server):
    config = write_config(tmp_path / "config", smtp_server.port)
    first = open_store(postgres_url)
    fill(first, config, N, tmp_path)
    second = open_store(postgres_url)
    try:
        reports = []

        def cycle(store) -> None:
            reports.append(run_send(store, at=WHEN, transport_factory=_smtp(smtp_server), batch_size=10))

        threads = [threading.Thread(target=cycle, args=(s,)) for s in (first, second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert sum(r.sent for r in reports) == N and all(r.ok for r in reports)
        assert len(smtp_server.received) == N
        assert max(Counter(tuple(r.rcpt_tos) for r in smtp_server.received).values()) == 1
        with first.session() as s:
            assert Counter(s.scalars(select(ActionRow.outcome))) == Counter({"sent": N})
    finally:
        second.dispose()
        first.dispose()


def test_a_stop_lets_the_messages_in_flight_finish_and_gives_the_rest_back(filled, smtp_server):
    stop = threading.Event()

    class StopAfterFirstChunk(SmtpTransport):
        def send(self, messages):
            results = super().send(messages)
            stop.set()  # SIGTERM arrives while the first chunk is on its way
            return results

    factory = lambda config: StopAfterFirstChunk(smtp_server.host, smtp_server.port, security="none", timeout=30)
    report = run_send(filled, at=WHEN, transport_factory=factory, stop=stop)
    # The first chunk recorded: what was on its way went, the rest of it is deferred (same Message-IDs
    # next time); the chunks not recorded yet are given back (no row at all).
    assert report.sent == STOP_CHUNK and report.deferred == SEND_CHUNK - STOP_CHUNK and report.unconfirmed == 0
    with filled.session() as s:
        rows = s.execute(select(MessageRow.message_id, MessageRow.status, MessageRow.error)).all()
        claimed = s.scalar(select(ActionRow.id).where(ActionRow.outcome == "claimed"))
        performed = s.scalar(select(func.count()).select_from(ActionRow))
    assert Counter(r.status for r in rows) == Counter(
        {"sent": STOP_CHUNK, "deferred": SEND_CHUNK - STOP_CHUNK}
    )  # nothing unknown
    assert all(r.error == STOPPED for r in rows if r.status == "deferred")
    assert claimed is None and performed == STOP_CHUNK  # no claim left behind; only what was sent counts as done
    assert len(smtp_server.received) == STOP_CHUNK
    deferred = {r.message_id for r in rows if r.status == "deferred"}

    again = run_send(filled, at=WHEN, transport_factory=_smtp(smtp_server))
    assert again.sent == N - STOP_CHUNK
    received = Counter(r.message()["Message-ID"] for r in smtp_server.received)
    assert len(received) == N and set(received.values()) == {1}
    assert deferred <= set(received)  # the same Message-IDs: nothing of them had been handed over
