"""``python -m benchmarks.notify [--quick] [--customers N] [--keep] [--out DIR]``: the unpaid-invoice notification.

`dunningops notify debtors` (T7) selects every customer with an overdue invoice, addresses and renders each
one's email, and shows the summary before anything is sent: the same work per customer as the send cycle's
dry run, which prepares every due reminder. performance.md names no goal for it; the figure says how it
compares with that anchor on the same store, and whether its memory stays flat.

Per size (10,000 and 100,000 customers; --quick: 1,000 and 10,000) the store of benchmarks/impact.py
(the example config applied, `ledger generate --customers N --seed 1` imported; reused with --keep),
measured on a copy, each command its own process, alternated round by round after a warm-up round:

- anchor: `dunningops run send --dry-run --at T --format json > /dev/null`;
- `notify_debtors_dry_run`: `dunningops notify debtors --dry-run --format json > /dev/null` at the same
  instant (every customer with an invoice at least a day overdue: far more than the caps allow, so the
  command ends with the caps' refusal, exit 1, after the summary is built).

Progress goes to stderr, the summary to stdout, the figures to ``<out>/notify-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.impact import ANCHOR_NAME, CONFIG, DEFAULT_CACHE, DEFAULT_OUT, build_store, did_anchor, run_cmd
from benchmarks.ledger_cycle import AT, DATA_NOW, FLAT_RSS, SEED, cli, entry, growth, memory_verdicts
from benchmarks.reconcile import copy_store, log, sqlite_url
from benchmarks.report import git_info, machine_info, timestamp, write_json
from benchmarks.runner import BenchmarkError, Run, Sample, rss_floor_mib, use_pycache

SCHEMA = "dunningops-benchmarks/notify/1"
QUICK_CUSTOMERS, FULL_CUSTOMERS = 10_000, 100_000
NAME = "dunningops notify debtors --dry-run --format json > /dev/null"
GOAL = "none in performance.md; reported against one `run send --dry-run` of the same store, with its memory"


def did_notify(run: Run) -> dict:
    data = json.loads(run.stdout)
    return {k: data[k] for k in ("customers", "invoices", "recipients")} | {"skipped": len(data["skipped"])}


def commands(url: str) -> dict[str, list]:
    common = ("--config", CONFIG, "--database-url", url)
    return {
        "run_send_dry_run": cli("run", "send", "--dry-run", "--at", AT, "--format", "json", *common),
        "notify_debtors_dry_run": cli("notify", "debtors", "--dry-run", "--format", "json", *common),
    }


def bench_size(n: int, argv: dict[str, list], repeat: int) -> tuple[dict, dict]:
    did = {
        "run_send_dry_run": did_anchor(run_cmd(argv["run_send_dry_run"])),
        "notify_debtors_dry_run": did_notify(run_cmd(argv["notify_debtors_dry_run"], ok=(0, 1))),
    }
    runs: dict[str, list[Run]] = {name: [] for name in argv}
    for rnd in range(repeat):
        for name, args in argv.items():
            log(f"[{n:,} customers] round {rnd + 1} of {repeat}: {name}")
            runs[name].append(run_cmd(args, discard=True, ok=(0, 1)))
    anchor = Sample(tuple(runs["run_send_dry_run"]))
    s = Sample(tuple(runs["notify_debtors_dry_run"]))
    benchmarks = {
        "notify_debtors_dry_run": entry(
            s, anchor, ANCHOR_NAME, GOAL, None, peak_rss_vs_anchor=round(s.peak_rss_mib / anchor.peak_rss_mib, 2),
            did=did["notify_debtors_dry_run"],
        )
    }  # fmt: skip
    return benchmarks, {"run_send_dry_run": {"what": ANCHOR_NAME, **anchor.to_dict(), "did": did["run_send_dry_run"]}}


def summary(result: dict) -> str:
    lines = ["notify debtors --dry-run against run send --dry-run (same store, same instant)"]
    for size in result["sizes"]:
        b, a = size["benchmarks"]["notify_debtors_dry_run"], size["anchors"]["run_send_dry_run"]
        lines.append(
            f"  {size['customers']:>7,} customers: {b['absolute_s']:.2f}s vs {a['absolute_s']:.2f}s = {b['ratio']:.2f}×, "
            f"peak RSS {b['peak_rss_mib']:.0f} MiB ({b['peak_rss_vs_anchor']:.2f}× the anchor's); "
            f"{b['did']['customers']:,} customers, {b['did']['invoices']:,} invoices, {b['did']['recipients']:,} recipients"
        )
    for name, steps in result["growth"].items():
        g = steps[-1]
        lines.append(f"  growth at 10×, {name}: time {g['time_ratio']}×, peak RSS {g['peak_rss_ratio']}×")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.notify", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_CUSTOMERS:,} customers instead of {FULL_CUSTOMERS:,}")
    parser.add_argument("--customers", type=int, help="the goal size in customers (growth from a tenth)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the JSON result (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="measured rounds (default: 3)")
    parser.add_argument("--keep", action="store_true", help="keep and reuse the built stores (benchmarks/impact.py's cache)")
    args = parser.parse_args(argv)
    goal = args.customers or (QUICK_CUSTOMERS if args.quick else FULL_CUSTOMERS)
    sizes = [max(1, goal // 10), goal]
    result: dict = {
        "schema": SCHEMA,
        "timestamp": timestamp(),
        "git": git_info(),
        "machine": machine_info(),
        "run": {
            "customers": sizes, "repeat": args.repeat, "seed": SEED, "data_now": DATA_NOW, "at": AT,
            "statistic": "median of the measured rounds; wall time of the whole subprocess",
            "flat_memory_threshold": f"peak RSS at 10× the data ≤ {FLAT_RSS}× counts as flat",
        },
    }  # fmt: skip
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="dunningops-bench-notify-"))
    cache = DEFAULT_CACHE if args.keep else work / "stores"
    try:
        use_pycache(work / "pycache")
        result["sizes"] = []
        for n in sizes:
            store = build_store(n, cache)
            db = work / "store.db"
            copy_store(cache / f"c{n}" / "store.db", db)
            load = [round(x, 2) for x in os.getloadavg()]
            benchmarks, anchors = bench_size(n, commands(sqlite_url(db)), args.repeat)
            result["sizes"].append(
                {
                    "customers": n,
                    "rows": store["rows"],
                    "benchmarks": benchmarks,
                    "anchors": anchors,
                    "loadavg": {"before": load, "after": [round(x, 2) for x in os.getloadavg()]},
                }
            )
        memory_verdicts(result["sizes"])
        result["growth"] = growth(result["sizes"])
        result["run"]["peak_rss_floor_mib"] = round(rss_floor_mib(), 1)
        result["run"]["wall_s"] = round(time.monotonic() - started, 1)
    except BenchmarkError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    path = write_json(result, args.out, "notify")
    print(summary(result))
    print(f"\nWrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
