"""``python -m benchmarks [--quick] [--out DIR]``: run every benchmark, write one JSON file, print a summary."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from benchmarks.postgres import postgres
from benchmarks.reconcile import Settings, bench_size, log
from benchmarks.report import SCHEMA, TODO, git_info, growth, machine_info, summary, timestamp, write_json
from benchmarks.runner import BenchmarkError, rss_floor_mib, use_pycache

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
FULL_SIZES = [1_000, 10_000]
QUICK_SIZES = [100, 1_000]
GOAL_SIZE = 1_000  # performance.md states the goals at 1,000 config objects
# performance.md: a store holding 100k customers / 1M invoices (the generator makes ~10 invoices a customer).
FULL_LEDGER, QUICK_LEDGER = 100_000, 10_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="sizes 100 and 1,000 instead of 1,000 and 10,000")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the JSON result (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=5, help="measured runs per figure; the median is reported (default: 5)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured runs first (default: 1)")
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")],
                        help="comma-separated config sizes, overriding --quick (e.g. 1000,10000)")
    parser.add_argument("--ledger-customers", type=int,
                        help=f"customers in the ledger benchmark, at {GOAL_SIZE:,} objects (default: {FULL_LEDGER:,}; "
                             f"--quick: {QUICK_LEDGER:,}; 0: skip)")
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL benchmark")
    parser.add_argument("--keep", action="store_true", help="keep the generated configs and stores (for profiling)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES)
    settings = Settings(repeat=args.repeat, warmup=args.warmup)
    customers = args.ledger_customers if args.ledger_customers is not None else (QUICK_LEDGER if args.quick else FULL_LEDGER)
    ledger_size = GOAL_SIZE if GOAL_SIZE in sizes else sizes[0]
    result: dict = {
        "schema": SCHEMA,
        "timestamp": timestamp(),
        "git": git_info(),
        "machine": machine_info(),
        "run": {"quick": args.quick, "sizes": sizes, "ledger_customers": customers, "ledger_at_size": ledger_size, "repeat": args.repeat, "warmup": args.warmup,
                "statistic": "median of the measured runs; wall time of the whole subprocess",
                "peak_rss": "ru_maxrss of each measured subprocess (os.wait4 in a tiny wrapper), max over its runs",
                "bytecode": "cached in the run's folder (PYTHONPYCACHEPREFIX) after the warm-up, as in a regular install"},
        "goal_size": GOAL_SIZE,
    }
    work = Path(tempfile.mkdtemp(prefix="dunningops-bench-")) if args.keep else None
    with tempfile.TemporaryDirectory(prefix="dunningops-bench-") as tmp, postgres(not args.no_postgres) as pg:
        root = work or Path(tmp)
        use_pycache(root / "pycache")
        log(f"working in {root}; PostgreSQL: {pg.info.get('server') or pg.info.get('skipped')}")
        result["sizes"] = []
        for n in sizes:
            size: dict = {}
            result["sizes"].append(size)
            try:
                bench_size(n, root / f"n{n}", settings, pg.make_database, customers if n == ledger_size else 0, size)
            except BenchmarkError as exc:
                # Keep what was measured: write it, marked incomplete, and fail.
                print(f"benchmark failed: {exc}", file=sys.stderr)
                result["error"] = {"n": n, "message": str(exc)[:4000]}
                break
        result["run"]["peak_rss_floor_mib"] = round(rss_floor_mib(), 1)
        # Shared machines: the load during the run says how far to trust the figures.
        result["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        result["postgresql"] = pg.info
    result["git_at_end"] = git_info()  # others commit while a long run goes on
    result["complete"] = "error" not in result
    result["growth"] = growth([s for s in result["sizes"] if "anchor" in s])
    result["todo"] = TODO
    path = write_json(result, args.out)
    print(summary(result))
    print(f"\nWrote {path}" + ("" if result["complete"] else " (incomplete: see 'error')"))
    return 0 if result["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
