"""Several senders on one PostgreSQL store share the work, and a kill never makes one send twice.

Two real daemons (`dunningops daemon --once`, separate processes) on a real PostgreSQL server
send 10,000 due reminders to a real SMTP server (aiosmtpd, recording every message); one is
killed with SIGKILL mid-run. A third run then finishes the dead one's business. The kill lands
wherever the senders are (claiming, rendering or in the SMTP transaction);
tests/test_at_most_once_kill.py kills one while the server holds a message. Counting what the
server received: every reminder arrived once, or is reported ``unknown`` (it may have left;
then it arrived at most once); none twice; none forgotten.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from daemons_helpers import AT, fill, write_config
from dunningops.store import open_store
from dunningops.store.schema import ActionRow, CustomerRow, MessageRow, RunnerRow

N = 10_000
DUNNINGOPS = str(Path(sys.executable).with_name("dunningops"))
KILL_AFTER = 2_500  # messages received by the server, all senders together


def _sender(config: Path, url: str, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "DUNNINGOPS_NOW": AT, "PYTHONUNBUFFERED": "1"}
    argv = [DUNNINGOPS, "daemon", "--once", "--config", str(config), "--database-url", url, *extra]
    # Its log (a JSON line per message) goes to a file: a pipe nobody reads would stop it.
    log = (config.parent / f"daemon-{time.monotonic_ns()}.log").open("w+")
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, text=True, env=env)
    process.log = log  # type: ignore[attr-defined]
    return process


def _wait(process: subprocess.Popen, timeout: float = 600) -> tuple[int, str, str]:
    process.wait(timeout=timeout)
    log = process.log  # type: ignore[attr-defined]
    log.seek(0)
    text = log.read()
    log.close()
    return process.returncode, text, text


def _senders(store) -> Counter:
    with store.session() as s:
        return Counter(s.scalars(select(MessageRow.runner_id)))


def _holds_work(store, pid: int) -> bool:
    """Whether the sender with this pid holds claimed steps or messages `sending`."""
    with store.session() as s:
        runner = s.scalar(select(RunnerRow.id).where(RunnerRow.pid == pid).order_by(RunnerRow.started_at.desc()).limit(1))
        if runner is None:
            return False
        claimed = select(ActionRow.id).where(ActionRow.runner_id == runner, ActionRow.outcome == "claimed").limit(1)
        sending = select(MessageRow.id).where(MessageRow.runner_id == runner, MessageRow.status == "sending").limit(1)
        return s.scalar(claimed) is not None or s.scalar(sending) is not None


@pytest.fixture
def filled(postgres_url: str, tmp_path: Path, smtp_server):
    config = write_config(tmp_path / "config", smtp_server.port)
    store = open_store(postgres_url)
    fill(store, config, N, tmp_path)
    yield config, store
    store.dispose()


def test_two_senders_one_killed_mid_run_every_reminder_once_or_unknown(filled, postgres_url: str, smtp_server):
    config, store = filled
    first, second = _sender(config, postgres_url), _sender(config, postgres_url)
    deadline = time.monotonic() + 300
    # Kill the first once both are at work (a loaded machine may start one late), mail has flowed, and
    # the first still holds work (a claim, or a message on its way): a kill after it finished its share
    # (the second still sending) would leave nothing to the third run, and test nothing.
    while len(smtp_server.received) < KILL_AFTER or len(_senders(store)) < 2 or not _holds_work(store, first.pid):
        assert time.monotonic() < deadline, "the senders sent too little in 5 minutes"
        assert first.poll() is None, _wait(first)
        time.sleep(0.02)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(30)
    code, out, err = _wait(second)
    assert code == 0 and "Traceback" not in err, (out, err)
    with store.session() as s:
        middle = Counter(s.scalars(select(MessageRow.status)))
        senders = Counter(s.scalars(select(MessageRow.runner_id)))
    # Both shared the work: two runners recorded messages, and the kill left work for a third run.
    assert len(senders) == 2, senders
    assert 0 < middle["sent"] < N, middle
    # The dead one's business: its `sending` rows become unknown, its claims go back, the rest is sent.
    code, out, err = _wait(_sender(config, postgres_url))
    assert code == 0 and "Traceback" not in err, (out, err)

    received = Counter(r.message()["Message-ID"] for r in smtp_server.received)
    assert max(received.values()) == 1, "a message reached the server twice"
    by_customer = Counter(tuple(r.rcpt_tos) for r in smtp_server.received)
    assert max(by_customer.values()) == 1, "a customer received the reminder twice"
    with store.session() as s:
        rows = s.execute(select(MessageRow.message_id, MessageRow.status, MessageRow.customer_id)).all()
        customers = s.scalar(select(func.count()).select_from(CustomerRow))
        actions = Counter(s.scalars(select(ActionRow.outcome)))
    status = Counter(r.status for r in rows)
    assert set(status) <= {"sent", "unknown"}, status
    assert len({r.customer_id for r in rows}) == customers == N  # nobody forgotten
    assert len(rows) == N  # one message per customer, never a second try
    for r in rows:
        if r.status == "sent":
            assert received[r.message_id] == 1
        else:
            assert received[r.message_id] <= 1  # unknown: it may have arrived, once at most
    assert actions == Counter({"sent": N})  # every claim settled; none left claimed
    assert len(received) == status["sent"] + sum(1 for r in rows if r.status == "unknown" and received[r.message_id])
    print(f"\nkilled mid-run: {senders}; at the end {status}")
