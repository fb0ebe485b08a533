"""The render worker: a large send cycle's batches rendered in a child process (dunning/render_worker.py).

Against a real child process: the same emails (and the same RenderErrors) as rendering here; a
child that dies or hangs costs nothing but the child (the batch renders here); small batches and
one-core machines never start one. And a send cycle over real SMTP whose batches render in the
child sends every reminder exactly once, with the bodies a run without the child sends.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select, update

import smtp_fixtures
from cycle_helpers import paris, setup_store
from dunningops.dunning import render_worker
from dunningops.dunning.cycle import run_send
from dunningops.dunning.render_worker import RenderWorker
from dunningops.dunning.runconfig import RunConfig
from dunningops.dunning.sending import SEND_CHUNK
from dunningops.reconcile.objects import desired_objects
from dunningops.render import RenderedEmail, Renderer, RenderError
from dunningops.render.context import EmailContext, InvoiceData
from dunningops.spec import load_config
from dunningops.store import open_store
from dunningops.store.schema import MessageRow, OutboxRow
from dunningops.transport.smtp import SmtpTransport
from outgoing_helpers import finished, kill_while_held

make_faulty_smtp_server = smtp_fixtures.make_faulty_smtp_server

CONFIG = Path(__file__).resolve().parent.parent / "config"
TODAY = date(2026, 11, 19)
# Every design of the example config: text, html (with its plain-text alternative), blocks.
TEMPLATES = ("courtesy", "first-reminder", "second-reminder", "final-notice")


@pytest.fixture(scope="module")
def example() -> tuple[dict, dict]:
    config = RunConfig.from_objects(desired_objects(load_config(CONFIG)), {"alias.billing": {"verified": True}}, {})
    return config.templates, config.settings.company.model_dump()


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> None:
    # A batch waits for the child to be ready, so that the child surely renders the next one.
    monkeypatch.setattr(render_worker, "WAIT_READY_S", 60.0)


def _requests(n: int, *, broken_every: int = 0) -> list[tuple[str, str, EmailContext]]:
    out = []
    for i in range(n):
        invoices = [
            InvoiceData(f"FA-{i}-{k}", date(2026, 10, 1 + k), 120_000 + i, 60_000 + k, "EUR", date(2026, 9, 1), None, 40 + k)
            for k in range(1 + i % 3)
        ]
        ctx = EmailContext(
            company={"name": "Ateliers Durand", "logo_url": None, "brand_color": "#0b5394", "country": "FR", "currency": "EUR"},
            customer={"name": f"Client <{i}> & fils", "external_id": f"C{i}"},
            contact={"name": "Anne Dupré" if i % 2 else None, "email": f"anne{i}@example.fr"},
            invoices=invoices,
            sender={"name": "Service comptable", "email": "compta@ateliers-durand.fr"},
            signature="Cordialement,\nLe service comptable",
            today=TODAY,
            locale="fr_FR" if i % 4 else "de_DE",
        )
        template = "no-such-template" if broken_every and i % broken_every == 0 else TEMPLATES[i % len(TEMPLATES)]
        out.append((template, "fr", ctx))
    return out


def _same(got: list, expected: list) -> None:
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        if isinstance(b, RenderError):
            assert isinstance(a, RenderError)
            assert (str(a), a.template, a.language, a.part, a.line, a.variable) == (
                str(b), b.template, b.language, b.part, b.line, b.variable
            )
        else:
            assert isinstance(a, RenderedEmail) and (a.subject, a.html, a.text) == (b.subject, b.html, b.text)


def test_batches_render_in_the_child_byte_for_byte_as_here(example, waits):
    templates, company = example
    requests = _requests(120, broken_every=37)
    expected = Renderer(templates, company=company).render_many(requests)
    assert sum(isinstance(e, RenderError) for e in expected) == 4
    worker = RenderWorker(templates, company, processes=True)
    try:
        first = worker.render_many(requests)  # rendered here while the child starts
        assert worker.used == 0 and worker._child is not None
        second, third = worker.render_many(requests), worker.render_many(requests[::-1])
        assert worker.used == 2
    finally:
        worker.close()
    _same(first, expected)
    _same(second, expected)
    _same(third, expected[::-1])


def test_a_render_error_crosses_processes_with_its_fields():
    error = RenderError("x is undefined", template="t", language="fr", part="body", line=3, variable="x")
    back = pickle.loads(pickle.dumps(error))
    assert (str(back), back.template, back.language, back.part, back.line, back.variable) == (
        str(error), "t", "fr", "body", 3, "x"
    )


def test_what_crosses_to_the_child_comes_back_whole():
    ((_, _, ctx),) = _requests(3)[2:]
    assert len(ctx.invoices) == 3
    email = RenderedEmail("Objet", "<p>Bonjour</p>", "Bonjour\n")
    for value in (ctx, ctx.invoices[0], email):
        assert pickle.loads(pickle.dumps(value)) == value


def test_close_ends_the_child(example, waits):
    worker = RenderWorker(*example, processes=True)
    worker.render_many(_requests(60))
    child = worker._child
    assert child is not None and child.poll() is None
    worker.close()
    assert child.poll() == 0  # it saw the end of its input and left
    assert worker._child is None
    worker.close()  # twice is harmless


@pytest.fixture
def busy(example, waits):
    """A worker whose child has rendered a batch; the requests, and what rendering here makes of them."""
    templates, company = example
    requests = _requests(60)
    expected = Renderer(templates, company=company).render_many(requests)
    worker = RenderWorker(templates, company, processes=True)
    try:
        worker.render_many(requests)  # here, while the child starts
        _same(worker.render_many(requests), expected)
        assert worker.used == 1 and worker._child is not None
        yield worker, requests, expected
    finally:
        worker.close()


def test_a_child_that_dies_costs_only_the_child(busy, caplog):
    worker, requests, expected = busy
    child = worker._child
    child.kill()
    child.wait()
    _same(worker.render_many(requests), expected)  # rendered here
    assert worker._child is None and worker.used == 1
    assert "the render worker failed" in caplog.text
    _same(worker.render_many(requests), expected)  # and here from now on: no new child
    assert worker._child is None


def test_a_child_that_hangs_is_stopped_and_the_batch_renders_here(busy, monkeypatch):
    worker, requests, expected = busy
    child = worker._child
    monkeypatch.setattr(render_worker, "BATCH_TIMEOUT_S", 0.5)
    os.kill(child.pid, signal.SIGSTOP)
    _same(worker.render_many(requests), expected)
    assert worker._child is None and child.wait(timeout=10) == -signal.SIGKILL


def test_small_batches_and_one_core_never_start_a_child(example, monkeypatch):
    worker = RenderWorker(*example, processes=True)
    worker.render_many(_requests(render_worker.MIN_REQUESTS - 1))
    assert worker._child is None
    monkeypatch.setattr(render_worker, "_cores", lambda: 1)
    one_core = RenderWorker(*example)
    for _ in range(3):
        one_core.render_many(_requests(render_worker.MIN_REQUESTS))
    assert one_core._child is None and one_core.used == 0


# --- the send cycle ---------------------------------------------------------------------------

CUSTOMERS = 130


def _ledger() -> dict[str, str]:
    customers = "".join(f"C{i},Client {i} SARL,FR,fr_FR,EUR,,\n" for i in range(CUSTOMERS))
    contacts = "".join(f"C{i},compta{i}@client{i}.fr,Compta {i},,,payer,true\n" for i in range(CUSTOMERS))
    invoices = "".join(f"I{i},C{i},FA-{i},2026-11-01,2026-12-07,{100 + i}.00,,EUR,,\n" for i in range(CUSTOMERS))
    return dict(customers=customers, contacts=contacts, invoices=invoices)


def _statuses(store) -> dict[str, str]:
    with store.session() as s:
        rows = s.scalars(select(MessageRow).where(MessageRow.kind == "reminder")).all()
    return {m.to_addresses[0]: m.status for m in rows}


def _reminders(server) -> list:
    return [m for m in server.messages() if m["X-Dunningops-Customer"]]  # not the aliases' confirmations


def _received(server) -> dict[str, tuple]:
    """What arrived, by recipient: the subject and both bodies (the Message-IDs differ from run to run)."""
    out = {}
    for m in _reminders(server):
        html = m.get_body(("html",))
        out[str(m["To"])] = (str(m["Subject"]), m.get_body(("plain",)).get_content(), html and html.get_content())
    return out


def test_a_send_cycle_whose_batches_render_in_the_child_sends_each_reminder_once(
    database_url, v1, tmp_path, smtp_server, waits, monkeypatch
):
    monkeypatch.setattr(render_worker, "MIN_REQUESTS", 10)
    used: list[int] = []
    close = RenderWorker.close

    def spy(self):
        used.append(self.used)
        close(self)

    monkeypatch.setattr(RenderWorker, "close", spy)
    factory = lambda config: SmtpTransport(smtp_server.host, smtp_server.port, security="none", pool_size=3)
    store = open_store(database_url)
    try:
        (tmp_path / "a").mkdir()
        setup_store(store, v1, tmp_path / "a", **_ledger())
        report = run_send(store, at=paris(2026, 12, 4), transport_factory=factory, batch_size=40)
        assert report.sent == CUSTOMERS and report.unknown == 0 and not report.errors
        assert used and used[-1] >= 2  # four batches: the first here, the others in the child
        # At most once: each reminder reached the server once, under the Message-ID recorded.
        received = [m["Message-ID"] for m in _reminders(smtp_server)]
        assert len(received) == len(set(received)) == CUSTOMERS
        assert set(_statuses(store).values()) == {"sent"}
        with_child = _received(smtp_server)
        assert len(with_child) == CUSTOMERS
        assert run_send(store, at=paris(2026, 12, 4, 9, 0), transport_factory=factory, batch_size=40).sent == 0
    finally:
        store.dispose()
    # The same run without the child: the same emails, byte for byte.
    monkeypatch.setattr(render_worker, "MIN_REQUESTS", 10**9)
    other = open_store(f"sqlite:///{tmp_path / 'other.db'}")
    smtp_server.received.clear()
    try:
        (tmp_path / "b").mkdir()
        setup_store(other, v1, tmp_path / "b", **_ledger())
        assert run_send(other, at=paris(2026, 12, 4), transport_factory=factory, batch_size=40).sent == CUSTOMERS
        assert used[-1] == 0
        assert _received(smtp_server) == with_child
    finally:
        other.dispose()


def test_the_child_imports_nothing_from_the_working_directory(example, waits, tmp_path, monkeypatch):
    # The send cycle may run in a checkout of the config repository: a `dunningops` package there
    # must not stand in for ours in the child (it would run whatever it holds).
    marker = tmp_path / "ran"
    fake = tmp_path / "repo" / "dunningops" / "dunning"
    fake.mkdir(parents=True)
    for init in (fake.parent / "__init__.py", fake / "__init__.py", fake / "render_child.py"):
        init.write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.chdir(tmp_path / "repo")
    worker = RenderWorker(*example, processes=True)
    try:
        worker.render_many(_requests(60))
        worker.render_many(_requests(60))
        assert worker.used == 1
    finally:
        worker.close()
    assert not marker.exists()


# --- a kill while the child is there ------------------------------------------------------------

RUN = """
import sys
from dunningops.dunning import render_worker
render_worker.MIN_REQUESTS, render_worker.WAIT_READY_S = 10, 60.0
start = render_worker.RenderWorker._start


def started(self):  # the child's pid, for the test to watch
    start(self)
    with open(sys.argv[4], "a") as out:
        print(self._child.pid, file=out)


render_worker.RenderWorker._start = started
from cycle_helpers import paris
from dunningops.dunning.cycle import run_send
from dunningops.store import open_store
from dunningops.transport.smtp import SmtpTransport
url, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
factory = lambda config: SmtpTransport(host, port, security="none", pool_size=3, max_attempts=1, timeout=120)
report = run_send(open_store(url), at=paris(2026, 12, 4), transport_factory=factory, batch_size=40)
print(f"sent {report.sent} unknown {report.unknown}")
"""


def _running(pid: int) -> bool:
    """Whether ``pid`` still runs the render child (not ended, nor a zombie nobody reaped)."""
    try:
        return b"dunningops.dunning.render_child" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _send_in_a_process(url: str, server, pids: Path) -> subprocess.Popen:
    tests = str(Path(__file__).parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (tests, os.environ.get("PYTHONPATH"))))}
    return subprocess.Popen([sys.executable, "-c", RUN, url, server.host, str(server.port), str(pids)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_a_run_killed_while_its_child_renders_sends_nothing_twice_and_leaves_no_child(
    database_url, v1, tmp_path, make_faulty_smtp_server
):
    store = open_store(database_url)
    try:
        setup_store(store, v1, tmp_path, **_ledger())
        with store.session() as s:  # the aliases' confirmations went out earlier: the first email is a reminder
            s.execute(update(OutboxRow).values(delivered_at=paris(2026, 11, 21)))
    finally:
        store.dispose()
    pids = tmp_path / "children"
    # The first message's final "." is taken and its answer held: the run is killed there, while the
    # next batch is being rendered in the child (or waits for it).
    server = make_faulty_smtp_server("late_reply", times=1, delay=60, pipelining=True)
    held = kill_while_held(_send_in_a_process(database_url, server, pids), server)
    # The killed run had started its child; the child saw its input end and left with it.
    (child,) = map(int, pids.read_text().split())
    deadline = time.monotonic() + 10
    while _running(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(child)
    code, out, err = finished(_send_in_a_process(database_url, server, pids))
    assert code == 0 and "Traceback" not in err, (out, err)
    # The killed run's chunk recorded `sending` (the held one among them) shows as possibly sent and
    # is never sent again; the second run sends all the others.
    sent, unknown = (int(n) for n in out.split()[1::2])
    assert 1 <= unknown <= SEND_CHUNK and sent + unknown == CUSTOMERS
    # At most once, counted at the server: no Message-ID and no recipient twice, the held one once.
    reminders = [d for d in server.deliveries if d.complete and b"X-Dunningops-Customer" in d.data]
    assert server.received(held) == 1
    assert max(Counter(d.message_id for d in reminders).values()) == 1
    recipients = Counter(tuple(d.rcpt_tos) for d in reminders)
    assert max(recipients.values()) == 1 and len(recipients) >= sent
