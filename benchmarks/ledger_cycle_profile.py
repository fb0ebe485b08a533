"""Where the time of one in-process call goes: cProfile, top 15 by cumulative time (for missed goals).

``python -m benchmarks.ledger_cycle_profile import --url URL --kind KIND --file CSV --now TS``
``python -m benchmarks.ledger_cycle_profile decide --url URL --at TS``
``python -m benchmarks.ledger_cycle_profile run_send --url URL --at TS --config DIR`` (sends, to the store's transport)

Prints one JSON object: the profiled call's wall time (profiler overhead included) and the
pstats text. Run by ``benchmarks.ledger_cycle`` on a copy of a store it prepared; a
diagnostic, not a figure (cProfile slows Python-heavy code down).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import time
from datetime import datetime
from pathlib import Path


def _stats(profiler: cProfile.Profile) -> str:
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(15)
    # The header lines ("ncalls tottime ...") and the 15 rows are what matters; drop blank noise.
    return "\n".join(line.rstrip() for line in out.getvalue().strip().splitlines() if line.strip())


def _cli(name: str):
    """A helper of the CLI's output (cli/output.py)."""
    from dunningops.cli import output

    return getattr(output, name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ledger_cycle_profile")
    parser.add_argument("what", choices=["import", "decide", "run_send"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--kind")
    parser.add_argument("--file", type=Path)
    parser.add_argument("--now", type=datetime.fromisoformat)
    parser.add_argument("--at", type=datetime.fromisoformat)
    parser.add_argument("--config", type=Path, help="run_send: the config folder (its transport is the applied one)")
    args = parser.parse_args(argv)

    from dunningops.store import open_store

    store = open_store(args.url)
    profiler = cProfile.Profile()
    result: dict = {"what": args.what}
    try:
        if args.what == "import":
            from dunningops.ledger.importer import import_file

            start = time.perf_counter()
            profiler.enable()
            summary = import_file(store, args.kind, args.file, now=args.now)
            profiler.disable()
            result.update(call=f"import_file(store, {args.kind!r}, {args.file.name})", line=summary.line())
        elif args.what == "run_send":
            from dunningops.dunning.cycle import run_send

            from dunningops.app import App

            transport_factory = App(args.config, args.url).transport_factory

            start = time.perf_counter()
            profiler.enable()
            report = run_send(store, at=args.at, transport_factory=transport_factory)
            profiler.disable()
            result.update(call="run_send(store, at=..., transport_factory=...) (not dry-run)", sent=report.sent,
                          todos=report.todos, decisions=len(report.decisions))
        else:
            from dunningops.dunning.cycle import run_send

            _json = _cli("to_json")

            start = time.perf_counter()
            profiler.enable()
            report = run_send(store, at=args.at, dry_run=True)
            # What the CLI does next with --format json (part of the measured command).
            text = _json({"decisions": [d.row() for d in report.decisions]})
            profiler.disable()
            result.update(call="run_send(store, at=..., dry_run=True) + the CLI's JSON output",
                          decisions=len(report.decisions), json_bytes=len(text))
        result["seconds_with_profiler"] = round(time.perf_counter() - start, 3)
    finally:
        store.dispose()
    result["top15_cumulative"] = _stats(profiler)
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
