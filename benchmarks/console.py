"""``python -m benchmarks.console [--quick] [--repeat N] [--out DIR]``: console pages served for real vs one SELECT.

performance.md's console row: the customer timeline and the to-do list (and here the customers
list and the inbox too) on a store holding 100k customers, 1M invoices, 1M messages; anchor: one
indexed SELECT of the same rows, straight on the store, measured in the same run; goal: p95 under
100 ms served locally, and no query per row.

Size (goal): 100,000 customers with 10 open invoices each (1M invoices), 1,000,000 reminders sent
(10 a customer), 10,000 open to-dos (one for each of the first tenth of the customers) and
100,000 replies received (one a customer), on top of tests/console_helpers.py's small world (its
three customers, their mail, to-dos, bounce and alert). ``--quick``: 10,000 customers, 100,000
reminders, the rest in proportion. Growth: the same at a tenth of the size, in the same run.

Set-up (not timed): ``make_world`` (the v1 test config applied, a send and an import cycle run
through the engine, console passwords), then ``fill_big`` (INSERT … SELECT), on SQLite (a file)
and on PostgreSQL (a throwaway server from benchmarks/postgres.py: fsync off). The console,
``dunningops.web.create_app(app)``, is served by real uvicorn on loopback (tests/web_fixtures.py
``serve``: a thread of this process); a member signs in with httpx (keep-alive).

Measured, per page, after 5 unmeasured requests: ``--repeat`` GET requests (default 50), each
timed from the request to the last byte of the answer (status 200 checked), interleaved with the
page's anchor, timed the same way and the same number of times on its own connection:

* customer timeline ``/customers/K…`` (12 events): the customer's sent mail by ``customer_id``;
* to-do list ``/todos``: the first 50 open to-dos joined to their customers;
* customers list ``/customers``: the first 50 customers by external id;
* inbox ``/inbox?status=all``: the latest 50 received messages joined to their customers;
* and, not main pages: home ``/`` (a count of open to-dos), the customers' last page (OFFSET)
  and a search by name (``LIKE``: the anchor is the same scan, not an indexed one).

Each figure: p50, p95, max in ms, the ratio of the page's p95 to its anchor's p95, and the goal
verdict (p95 < 100 ms); ``statements``: the SQL statements one request of the page ran (counted
with a ``before_cursor_execute`` listener), the same at both sizes when no query runs per row.
Client and server share this process (and its GIL): the client's own time is in every figure.
Progress on stderr, the summary on stdout, every figure in ``<out>/console-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import text

from benchmarks.reconcile import log
from benchmarks.report import git_info, machine_info, timestamp, write_json
from benchmarks.runner import BenchmarkError

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"
DEFAULT_OUT = Path(__file__).resolve().parent / "results"
SCHEMA = "dunningops-benchmarks/console/1"
GOAL_MS = 100.0
GOAL = "p95 < 100 ms served locally; no query per row (performance.md)"
WARMUP = 5
SMALL_WORLD_CUSTOMERS = 3  # make_world's C1, C2, C3


@dataclass(frozen=True)
class Size:
    customers: int
    messages: int
    invoices_per_customer: int = 10
    todos_share: int = 10  # one customer in ten has an open to-do
    received_share: int = 10  # one reminder in ten was answered

    @property
    def todos(self) -> int:
        return self.customers // self.todos_share

    @property
    def received(self) -> int:
        return self.messages // self.received_share

    def tenth(self) -> Size:
        return Size(self.customers // 10, self.messages // 10, self.invoices_per_customer, self.todos_share, self.received_share)

    def label(self) -> str:
        return f"{self.customers:,} customers"


FULL, QUICK = Size(100_000, 1_000_000), Size(10_000, 100_000)


@dataclass(frozen=True)
class Page:
    name: str
    path: str
    anchor: str  # SQL: the same rows, one SELECT
    params: dict
    expect: str  # a text the page must show (it served what we think it served)
    main: bool = True


def pages(size: Size, customer_row: int) -> list[Page]:
    """The pages measured at ``size``; ``customer_row``: the row id of the customer whose timeline is read."""
    total = size.customers + SMALL_WORLD_CUSTOMERS
    customer = f"K{size.todos // 2:06d}"  # one with reminders, a to-do and a reply
    customers_sql = "SELECT id, external_id, name, country, currency, origin FROM customers "
    events = size.messages // size.customers + 2
    return [
        Page(
            "customer timeline",
            f"/customers/{customer}",
            "SELECT id, kind, subject, status, sent_at, opened_at FROM messages WHERE customer_id = :c "
            "ORDER BY sent_at DESC, id DESC LIMIT 50",
            {"c": customer_row},
            f"1–{events} of {events} events",
        ),
        Page(
            "to-do list",
            "/todos",
            "SELECT t.id, t.kind, t.status, t.assignee, t.reason, t.created_at, c.external_id, c.name FROM todos t "
            "JOIN customers c ON c.id = t.customer_id WHERE t.status = 'open' ORDER BY t.id LIMIT 50",
            {},
            f"of {size.todos + 4:,} to-dos",
        ),
        Page("customers list", "/customers", customers_sql + "ORDER BY external_id LIMIT 50", {}, f"of {total:,} customers"),
        Page(
            "inbox",
            "/inbox?status=all",
            "SELECT i.id, i.imported_at, i.status, i.kind, i.from_address, i.subject, c.external_id FROM inbox_messages i "
            "LEFT JOIN customers c ON c.id = i.customer_id WHERE i.status <> 'deleted' ORDER BY i.id DESC LIMIT 50",
            {},
            f"of {size.received + 2:,} messages",
        ),
        Page("home", "/", "SELECT count(*) FROM todos WHERE status = 'open'", {}, "to-do", main=False),
        Page(
            "customers, last page",
            f"/customers?offset={total - 50}",
            customers_sql + "ORDER BY external_id LIMIT 50 OFFSET :o",
            {"o": total - 50},
            f"of {total:,} customers",
            main=False,
        ),
        Page(
            "customers, a search",
            f"/customers?q=customer%20{size.customers - 1}",
            customers_sql + "WHERE lower(name) LIKE :q ORDER BY external_id LIMIT 50",
            {"q": f"%customer {size.customers - 1}%"},
            "1–1 of 1 customers",
            main=False,
        ),
    ]


def stats_ms(samples: list[float]) -> dict:
    ms = sorted(s * 1000 for s in samples)
    p95 = statistics.quantiles(ms, n=100, method="inclusive")[94] if len(ms) > 1 else ms[0]
    return {
        "p50": round(statistics.median(ms), 2),
        "p95": round(p95, 2),
        "max": round(ms[-1], 2),
        "min": round(ms[0], 2),
        "n": len(ms),
    }


def measure_page(http, engine, counter, page: Page, repeat: int) -> dict:
    """``repeat`` requests of the page, interleaved with as many runs of its anchor; its statement count."""
    for _ in range(WARMUP):
        answer = http.get(page.path)
        if answer.status_code != 200 or page.expect not in answer.text:
            raise BenchmarkError(f"{page.path}: status {answer.status_code}, {page.expect!r} not in the page")
    counter.take()
    http.get(page.path)
    statements = len(counter.take())
    served, anchored = [], []
    with engine.connect() as conn:
        query = text(page.anchor)
        conn.execute(query, page.params).all()
        conn.rollback()
        for _ in range(repeat):
            started = time.perf_counter()
            answer = http.get(page.path)
            served.append(time.perf_counter() - started)
            if answer.status_code != 200:
                raise BenchmarkError(f"{page.path}: status {answer.status_code}")
            started = time.perf_counter()
            rows = conn.execute(query, page.params).all()
            anchored.append(time.perf_counter() - started)
            conn.rollback()  # each SELECT in a transaction of its own, as each page's are
    page_ms, anchor_ms = stats_ms(served), stats_ms(anchored)
    return {
        "path": page.path,
        "main": page.main,
        "statements": statements,
        "page_ms": page_ms,
        "anchor": page.anchor,
        "anchor_rows": len(rows),
        "anchor_ms": anchor_ms,
        "ratio_p95": round(page_ms["p95"] / anchor_ms["p95"], 1),
        "meets_goal": page_ms["p95"] < GOAL_MS,
    }


def bench_store(backend: str, url: str, size: Size, repeat: int, work: Path) -> dict:
    """One store at one size: built, served, every page measured."""
    from console_helpers import StatementCounter, fill_big, make_world, signed_in
    from web_fixtures import serve

    config = Path(shutil.copytree(TESTS / "fixtures" / "v1", work / "v1"))
    started = time.perf_counter()
    world = make_world(url, config, work)
    made = time.perf_counter()
    fill_big(
        world,
        size.customers,
        size.messages,
        invoices_per_customer=size.invoices_per_customer,
        todos=size.todos,
        received=size.received,
    )
    filled = time.perf_counter()
    log(f"[{backend}, {size.label()}] built in {filled - started:.0f} s (fill {filled - made:.0f} s)")
    engine = world.app.store.engine
    try:
        with engine.connect() as conn:
            rows = {
                t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
                for t in ("customers", "invoices", "messages", "todos", "inbox_messages")
            }
            customer_row = conn.execute(
                text("SELECT id FROM customers WHERE external_id = :e"), {"e": f"K{size.todos // 2:06d}"}
            ).scalar_one()
        out: dict = {
            "backend": backend,
            "size": {**asdict(size), "todos": size.todos, "received": size.received},
            "rows": rows,
            "build_s": round(filled - started, 1),
            "pages": {},
        }
        with serve(world.web()) as base, StatementCounter(engine) as counter:
            http = signed_in(base)
            for page in pages(size, customer_row):
                result = measure_page(http, engine, counter, page, repeat)
                out["pages"][page.name] = result
                log(
                    f"[{backend}, {size.label()}] {page.name}: p95 {result['page_ms']['p95']} ms "
                    f"(anchor {result['anchor_ms']['p95']} ms), {result['statements']} statements"
                )
            http.close()
        out["peak_rss_mib_so_far"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        return out
    finally:
        world.app.close()


def growth(small: dict, large: dict) -> dict:
    """Per page: p95 at 10× over p95 at 1×, and the statements at both (equal: no query per row)."""
    out = {}
    for name, big in large["pages"].items():
        little = small["pages"][name]
        out[name] = {
            "p95_ratio": round(big["page_ms"]["p95"] / little["page_ms"]["p95"], 2),
            "anchor_p95_ratio": round(big["anchor_ms"]["p95"] / little["anchor_ms"]["p95"], 2),
            "statements": [little["statements"], big["statements"]],
            "no_query_per_row": big["statements"] == little["statements"],
        }
    return out


def run_backend(backend: str, make_url: Callable[[str], str], size: Size, repeat: int, work: Path) -> dict:
    runs = {}
    for step in (size.tenth(), size):
        folder = work / f"{backend}-{step.customers}"
        folder.mkdir(parents=True)
        runs[step.customers] = bench_store(backend, make_url(f"console_{step.customers}"), step, repeat, folder)
    tenth, goal = runs[size.tenth().customers], runs[size.customers]
    return {"goal_size": goal, "tenth": tenth, "growth": growth(tenth, goal)}


def summary(result: dict) -> str:
    lines = [
        f"console pages  {result['timestamp']}  commit {str(result['git']['commit'])[:10]}"
        f"{' (dirty)' if result['git']['dirty'] else ''}  {result['machine']['cpu_count']} CPUs  "
        f"{result['repeat']} requests a page  goal: {GOAL}"
    ]
    for backend, r in result["backends"].items():
        if "skipped" in r:
            lines.append(f"\n{backend}: skipped ({r['skipped']})")
            continue
        goal, grow = r["goal_size"], r["growth"]
        rows = goal["rows"]
        lines.append(
            f"\n{backend}: {rows['customers']:,} customers, {rows['invoices']:,} invoices, {rows['messages']:,} "
            f"messages, {rows['todos']:,} to-dos, {rows['inbox_messages']:,} received (built in {goal['build_s']} s)"
        )
        lines.append(
            f"  {'page':<22} {'p50':>7} {'p95':>7} {'max':>7}  {'anchor p95':>10} {'ratio':>7}  "
            f"{'SQL':>4}  {'p95 at 1/10':>11}  verdict"
        )
        for name, p in goal["pages"].items():
            g = grow[name]
            verdict = ("ok" if p["meets_goal"] else "MISSES GOAL") + ("" if g["no_query_per_row"] else ", STATEMENTS GREW")
            lines.append(
                f"  {name + ('' if p['main'] else ' *'):<22} {p['page_ms']['p50']:7.1f} {p['page_ms']['p95']:7.1f} "
                f"{p['page_ms']['max']:7.1f}  {p['anchor_ms']['p95']:10.2f} {p['ratio_p95']:6.0f}×  {p['statements']:>4}  "
                f"{r['tenth']['pages'][name]['page_ms']['p95']:8.1f} ms  {verdict}"
            )
    lines.append("\nms; ratio = page p95 / anchor p95; SQL = statements per request (the same at 1/10 size); * not a main page")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.console", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 customers / 100,000 messages instead of 100k / 1M")
    parser.add_argument("--repeat", type=int, default=50, help="measured requests a page (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the JSON result (default: %(default)s)")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args(argv)
    size = QUICK if args.quick else FULL
    sys.path.insert(0, str(TESTS))
    from benchmarks.postgres import postgres

    result: dict = {
        "schema": SCHEMA,
        "timestamp": timestamp(),
        "git": git_info(),
        "machine": machine_info(),
        "goal": GOAL,
        "quick": args.quick,
        "repeat": args.repeat,
        "warmup": WARMUP,
        "statistic": "per request, from sending it to the answer's last byte (httpx keep-alive); "
        "the anchor: one SELECT of the same rows on its own connection, fetched",
        "server": "uvicorn in a thread of this process (tests/web_fixtures.py serve), loopback",
        "backends": {},
    }
    work = Path(tempfile.mkdtemp(prefix="dunningops-console-"))
    try:
        result["backends"]["sqlite"] = run_backend("sqlite", lambda name: f"sqlite:///{work / name}.db", size, args.repeat, work)
        with postgres(not args.no_postgres) as pg:
            result["postgresql_server"] = pg.info
            if pg.make_database is None:
                result["backends"]["postgresql"] = {"skipped": pg.info.get("skipped")}
            else:
                result["backends"]["postgresql"] = run_backend("postgresql", pg.make_database, size, args.repeat, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    path = write_json(result, args.out, "console")
    print(summary(result))
    print(f"\npeak RSS {result['peak_rss_mib']} MiB (client, server and store set-up in one process)\nWrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
