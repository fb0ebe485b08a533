"""``python -m benchmarks.daemons [--quick] [--repeat N] [--out DIR]``: two senders on one PostgreSQL vs one.

performance.md's daemon row: 2 daemons on one PostgreSQL, 10,000 due reminders; anchor: one
daemon on the same work, measured in the same run; goal: ~2× the throughput, zero duplicates.

Set-up (not timed): a throwaway PostgreSQL server (tests/servers.py: fsync off), Postfix
``smtp-sink`` on loopback, and a database holding tests/daemons_helpers.py's config (one
automatic email per customer, every day, caps out of the way) and N customers each with one due
reminder. Each measured run gets a fresh copy of that database (``CREATE DATABASE … TEMPLATE``).

Measured: the wall time from starting the sender process(es) to the last one's exit, for
``dunningops daemon --once`` (each due cycle once, then exit): one process (the anchor), then
two at once on a fresh copy. Throughput = reminders sent / wall time; the figure is the ratio
two / one. After each run the store is checked: N messages, all ``sent``, one per customer,
every step performed once (zero duplicates), and both processes sent a share.

Where the ratio stays well under 2×, the JSON says what was saturated: this machine has 2 cores,
which the senders share with PostgreSQL and the sink; ``cpu`` records the senders' user+system
seconds (from ``os.wait4``) to show it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psycopg
from psycopg import sql

from benchmarks.ledger_cycle import smtp_sink
from benchmarks.reconcile import log
from benchmarks.report import git_info, machine_info, timestamp, write_json

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
DUNNINGOPS = str(Path(sys.executable).with_name("dunningops"))
SCHEMA = "dunningops-bench-daemons/1"
GOAL = "~2× the throughput of one daemon, zero duplicates (performance.md)"


def sender(config: Path, url: str, at: str, log_file) -> subprocess.Popen:
    env = {**os.environ, "DUNNINGOPS_NOW": at, "PYTHONUNBUFFERED": "1"}
    argv = [DUNNINGOPS, "daemon", "--once", "--config", str(config), "--database-url", url]
    # Its JSON log lines (one per message) go to a file: a pipe nobody reads would stop it.
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log_file, env=env)


def _cpu_ticks() -> tuple[int, int]:
    """The whole machine's (busy, total) CPU ticks since boot (/proc/stat): is it saturated?"""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def run_senders(count: int, config: Path, url: str, at: str, work: Path) -> dict:
    logs = [(work / f"sender-{i}.log").open("w+b") for i in range(count)]
    busy_before, total_before = _cpu_ticks()
    started = time.monotonic()
    processes = [sender(config, url, at, f) for f in logs]
    cpu = 0.0
    for p, f in zip(processes, logs, strict=True):
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        cpu += usage.ru_utime + usage.ru_stime
        f.seek(0)
        err = f.read().decode(errors="replace")
        f.close()
        if p.returncode != 0:
            raise RuntimeError(f"a sender exited {p.returncode}: {err[-2000:]}")
    seconds = time.monotonic() - started
    busy_after, total_after = _cpu_ticks()
    machine = (busy_after - busy_before) / max(1, total_after - total_before)
    # cpu_s: the senders' own user+system seconds; machine_busy: the share of all cores busy
    # (senders, PostgreSQL, the sink, anything else) during the run.
    return {"seconds": seconds, "cpu_s": round(cpu, 2), "machine_busy": round(machine, 2)}


def check(url: str, n: int) -> dict:
    """Zero duplicates: N messages, all sent, one per customer, each step performed once."""
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        status = Counter(dict(conn.execute("SELECT status, count(*) FROM messages GROUP BY status").fetchall()))
        per_customer = conn.execute("SELECT max(c) FROM (SELECT count(*) c FROM messages GROUP BY customer_id) t").fetchone()[0]
        actions = Counter(dict(conn.execute("SELECT outcome, count(*) FROM actions GROUP BY outcome").fetchall()))
        shares = [r[0] for r in conn.execute("SELECT count(*) FROM messages GROUP BY runner_id ORDER BY 1").fetchall()]
    ok = status == Counter({"sent": n}) and per_customer == 1 and actions == Counter({"sent": n})
    if not ok:
        raise RuntimeError(
            f"duplicates or gaps: messages {dict(status)}, max per customer {per_customer}, actions {dict(actions)}"
        )
    return {"messages": dict(status), "max_per_customer": per_customer, "shares": shares}


def bench_size(n: int, admin_dsn: str, make_url, work: Path, port: int, repeat: int) -> dict:
    sys.path.insert(0, str(TESTS))
    from daemons_helpers import AT, fill, write_config  # type: ignore[import-not-found]
    from dunningops.store import open_store

    config = write_config(work / f"config-{n}", port)
    template = f"daemons_base_{n}"
    url = make_url(template)
    log(f"[{n:,}] set-up: config applied, {n:,} customers with a due reminder")
    store = open_store(url)
    fill(store, config, n, work)
    store.dispose()
    runs: dict[str, list[dict]] = {"one": [], "two": []}
    for rep in range(repeat):
        for label, count in (("one", 1), ("two", 2)):
            name = f"daemons_{n}_{label}_{rep}"
            with psycopg.connect(admin_dsn, autocommit=True) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))
            target = url.rsplit("/", 1)[0] + f"/{name}"
            log(f"[{n:,}] {label} sender(s), run {rep + 1} of {repeat}")
            timing = run_senders(count, config, target, AT, work)
            runs[label].append({**timing, **check(target, n), "per_s": round(n / timing["seconds"], 1)})
            with psycopg.connect(admin_dsn, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
    one = statistics.median(r["seconds"] for r in runs["one"])
    two = statistics.median(r["seconds"] for r in runs["two"])
    return {
        "reminders": n,
        "one_s": round(one, 2),
        "two_s": round(two, 2),
        "one_per_s": round(n / one, 1),
        "two_per_s": round(n / two, 1),
        "ratio": round(one / two, 2),
        "machine_busy": {k: statistics.median(r["machine_busy"] for r in runs[k]) for k in runs},
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.daemons")
    parser.add_argument("--quick", action="store_true", help="1,000 and 2,000 reminders instead of 1,000 and 10,000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    sizes = [1_000, 2_000] if args.quick else [1_000, 10_000]
    sys.path.insert(0, str(TESTS))
    from benchmarks.postgres import postgres

    result: dict = {
        "schema": SCHEMA,
        "timestamp": timestamp(),
        "git": git_info(),
        "machine": machine_info(),
        "goal": GOAL,
        "anchor": "one `dunningops daemon --once` on the same work, same run",
        "sink": "Postfix smtp-sink on 127.0.0.1",
        "statistic": f"median of {args.repeat} runs per figure; wall time from start to the last exit",
    }
    work = Path(tempfile.mkdtemp(prefix="dunningops-daemons-"))
    with postgres(True) as pg, smtp_sink() as port:
        if pg.make_database is None:
            raise SystemExit(f"PostgreSQL is needed: {pg.info}")
        result["postgres"] = pg.info
        admin = pg.make_database("daemons_admin").replace("postgresql+psycopg://", "postgresql://")
        result["sizes"] = [bench_size(n, admin, pg.make_database, work, port, args.repeat) for n in sizes]
    small, large = result["sizes"][0], result["sizes"][-1]
    result["growth"] = {
        "reminders": [small["reminders"], large["reminders"]],
        "one_time_ratio": round(large["one_s"] / small["one_s"], 2),
    }
    path = write_json(result, args.out, "daemons")
    for size in result["sizes"]:
        print(
            f"{size['reminders']:,} reminders: one daemon {size['one_s']} s ({size['one_per_s']}/s), "
            f"two {size['two_s']} s ({size['two_per_s']}/s): {size['ratio']}× (goal ~2×), zero duplicates; "
            f"machine busy {size['machine_busy']['one']:.0%} / {size['machine_busy']['two']:.0%} of {os.cpu_count()} cores"
        )
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
