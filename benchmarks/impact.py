"""``python -m benchmarks.impact [--quick] [--customers N] [--keep] [--out DIR]``: the impact plan and the forecast.

performance.md: "impact plan (`plan --impact --days 30`) | 100k customers / 1M open invoices | anchor: one
`run send --dry-run` on the same store | ≤ 5×, memory flat (not thirty full decisions)".

Per size (10,000 and 100,000 customers; --quick: 1,000 and 10,000) one SQLite store, built once: the
example config applied, the ledger of `dunningops ledger generate --customers N --seed 1` imported, with
the data and clock of benchmarks/LEDGER_CYCLE.md. The desired config is a copy of the example with the
standard plan's phone call two days later, so the impact plan has real work (see CHANGE_FROM). Measured
on that store, each run its own process, the three commands alternated round by round (the first round a
warm-up whose output is kept to say what each did), median of the measured rounds:

- anchor: `dunningops run send --dry-run --at T --format json > /dev/null` (the example config);
- `impact_plan`: `dunningops plan --impact --days 30 --at T --format json > /dev/null` (the desired config);
- `forecast`: `dunningops forecast --days 30 --at T --format json > /dev/null` (the example config).

While `plan --impact` or `forecast` is not a CLI command yet, a small in-process driver calls
`dunningops.forecast.run` instead (``run.commands`` says which). At the goal size a cProfile of the
impact plan's CLI (`python -m cProfile -o`) and a phase breakdown of the in-process call are recorded.

Progress goes to stderr, the summary to stdout, the figures to ``<out>/impact-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.ledger_cycle import (
    AT,
    DATA_NOW,
    FLAT_RSS,
    KINDS,
    SEED,
    cli,
    entry,
    expect,
    generate,
    growth,
    memory_verdicts,
)
from benchmarks.ledger_cycle import run_cmd as setup_cmd
from benchmarks.reconcile import copy_store, log, sqlite_url
from benchmarks.report import git_info, machine_info, timestamp, write_json
from benchmarks.runner import WRAPPER, BenchmarkError, Run, Sample, bin_path, clean_env, rss_floor_mib, use_pycache

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "config"
DEFAULT_OUT = Path(__file__).resolve().parent / "results"
DEFAULT_CACHE = REPO / "build" / "bench-impact"
SCHEMA = "dunningops-benchmarks/impact/1"

FULL_CUSTOMERS, QUICK_CUSTOMERS = 100_000, 10_000
DAYS = 30
GOAL_RATIO = 5.0
IMPACT_GOAL = f"≤ {GOAL_RATIO:g}× one `run send --dry-run` on the same store (performance.md); memory flat"
FORECAST_GOAL = (
    f"≤ {GOAL_RATIO:g}× one `run send --dry-run` on the same store (the impact plan's goal, for one simulation); memory flat"
)
ANCHOR_NAME = "dunningops run send --dry-run --at T --format json > /dev/null"

# The desired change: the standard plan's phone call two days later. Not an email step: from 10,000
# customers on, the example's caps (300 a day, 1,000 a month, oldest due first) hold every email of the
# window whatever the steps' offsets, so moving the first reminder changes nothing there (an empty impact,
# checked at 10,000 customers); to-dos are not capped, so this change has work at every size.
CHANGED_FILE = "plans/standard.yaml"
CHANGE_FROM = "      - id: call\n        at: 20d\n"
CHANGE_TO = "      - id: call\n        at: 22d\n"
CHANGE = "plan.standard step call: at 20d → 22d"

# The in-process stand-in for the CLI (while a command is missing) and the phase breakdown of one
# impact plan, with the CLI's garbage collector settings (cli/main.py). Written to a file of the run,
# so that cProfile can run it too.
DRIVER = """\
import gc, json, resource, sys, time
from datetime import datetime

# As the CLI's main() does: without it the simulations run ~1.5x slower (the collector walks their objects).
gc.set_threshold(50_000, 20, 20)

def rss():
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)

what, config, url, at, days = sys.argv[1], sys.argv[2], sys.argv[3], datetime.fromisoformat(sys.argv[4]), int(sys.argv[5])
start = time.perf_counter()
from dunningops.app import App
from dunningops.forecast.run import forecast, impact
app = App(config, url)
if what == "forecast":
    out = {"forecast": forecast(app.store, at=at, days=days).to_dict()}
elif what == "impact":
    out = {"impact": impact(app.store, app.load_config(), at=at, days=days).to_dict()}
else:  # phases: where one impact plan's time and memory go, without a profiler's overhead
    from dunningops.dunning.runconfig import RunConfig
    from dunningops.forecast.impact import compare
    from dunningops.forecast.simulate import simulate
    from dunningops.reconcile.objects import desired_objects
    phases = [("imports", time.perf_counter() - start, rss())]
    def mark(name, since):
        phases.append((name, time.perf_counter() - since, rss()))
        return time.perf_counter()
    t = time.perf_counter()
    desired = app.load_config()
    t = mark("load_config", t)
    with app.store.session() as session:
        wanted = RunConfig.from_desired(desired_objects(desired), session)
        applied = RunConfig.from_store(session)
        t = mark("run_configs", t)
        before = simulate(session, applied, start=at, days=days)
        t = mark("simulate_applied", t)
        after = simulate(session, wanted, start=at, days=days)
        t = mark("simulate_desired", t)
    result = compare(before, after)
    t = mark("compare", t)
    text = json.dumps(result.to_dict(), default=str)
    t = mark("to_json", t)
    out = {"phases": [{"phase": n, "seconds": round(s, 3), "peak_rss_mib_after": r} for n, s, r in phases],
           "targets": {"applied": before.targets, "desired": after.targets},
           "events": {"applied": len(before.events), "desired": len(after.events)},
           "lines": len(result.lines), "json_bytes": len(text)}
out["driver_s"] = round(time.perf_counter() - start, 3)
print(json.dumps(out, default=str))
"""


# --- running commands -------------------------------------------------------------------------


def run_cmd(argv: Sequence[str | Path], *, discard: bool = False, ok: tuple[int, ...] = (0, 2)) -> Run:
    """``argv`` under the runner's wrapper (wall time, own ru_maxrss), the clock pinned to T.

    DUNNINGOPS_NOW=T for every measured command, so a command without ``--at`` yet runs at the same
    instant as the others; ``discard`` sends stdout to /dev/null (the figures' `> /dev/null`).
    """
    args = [str(a) for a in argv]
    env = {**clean_env(), "DUNNINGOPS_NOW": AT}
    with tempfile.TemporaryDirectory(prefix="dunningops-impact-") as tmp:
        report, out, err = Path(tmp, "report.json"), Path(tmp, "stdout"), Path(tmp, "stderr")
        with open(os.devnull, "wb") if discard else out.open("wb") as stdout, err.open("wb") as stderr:
            code = subprocess.call(
                [sys.executable, "-S", "-c", WRAPPER, str(report), *args],
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                env=env,
            )
        text = "" if discard else out.read_text(errors="replace")
        # 2: "there are changes", should plan --impact follow plan's --detailed-exitcode contract by default.
        if code not in ok or not report.exists():
            raise BenchmarkError(f"{' '.join(args)} exited {code}:\n{err.read_text(errors='replace')[-2000:]}{text[-2000:]}")
        measured = json.loads(report.read_text())
    return Run(seconds=measured["seconds"], peak_rss_kib=measured["maxrss_kib"], stdout=text)


def help_text(*args: str) -> str | None:
    """`dunningops ARGS --help`, or None when the command does not exist (yet)."""
    done = subprocess.run([str(bin_path("dunningops")), *args, "--help"], capture_output=True, text=True, env=clean_env())
    return done.stdout if done.returncode == 0 else None


def cli_support() -> dict[str, bool]:
    """What the CLI offers now (asked once a run, so that every size is measured the same way)."""
    plan_help, forecast_help = help_text("plan") or "", help_text("forecast")
    return {
        "impact": "--impact" in plan_help,
        "impact_at": "--at" in plan_help,
        "forecast": forecast_help is not None,
        "forecast_at": "--at" in (forecast_help or ""),
        "forecast_json": "--format" in (forecast_help or ""),
    }


def commands(support: dict[str, bool], desired: Path, url: str, driver: Path) -> tuple[dict[str, list], dict[str, str]]:
    """The three measured commands on the store at ``url``, and how each is run (CLI or in-process driver)."""
    how: dict[str, str] = {"run_send_dry_run": "cli"}
    argv: dict[str, list] = {
        "run_send_dry_run": cli(
            "run", "send", "--dry-run", "--at", AT, "--format", "json", "--config", CONFIG, "--database-url", url
        )
    }
    if support["impact"]:
        at = ["--at", AT] if support["impact_at"] else []  # else DUNNINGOPS_NOW (run_cmd) is the clock
        argv["impact_plan"] = cli(
            "plan", "--impact", "--days", str(DAYS), *at, "--format", "json", "--config", desired, "--database-url", url
        )
        how["impact_plan"] = "cli" + ("" if at else " (clock: DUNNINGOPS_NOW)")
    else:
        argv["impact_plan"] = [sys.executable, driver, "impact", desired, url, AT, str(DAYS)]
        how["impact_plan"] = "in-process driver (`plan --impact` not in the CLI yet)"
    if support["forecast"]:
        at = ["--at", AT] if support["forecast_at"] else []
        fmt = ["--format", "json"] if support["forecast_json"] else []
        argv["forecast"] = cli("forecast", "--days", str(DAYS), *at, *fmt, "--config", CONFIG, "--database-url", url)
        how["forecast"] = "cli" + ("" if at else " (clock: DUNNINGOPS_NOW)") + ("" if fmt else " (no --format json)")
    else:
        argv["forecast"] = [sys.executable, driver, "forecast", CONFIG, url, AT, str(DAYS)]
        how["forecast"] = "in-process driver (`forecast` not in the CLI yet)"
    return argv, how


# --- the store (built once per size; kept and reused with --keep) -----------------------------


def digest(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def store_key(n: int) -> dict:
    """What the built store depends on: a kept store is reused only while all of it is unchanged."""
    src = REPO / "src" / "dunningops"
    code = [
        *(src / "ledger").glob("*.py"),
        *(src / "store" / "migrations" / "versions").glob("*.py"),
        *(src / "store").glob("schema*.py"),
    ]
    return {
        "customers": n,
        "seed": SEED,
        "data_now": DATA_NOW,
        "config": digest([p for p in CONFIG.rglob("*") if p.is_file()]),
        "code": digest(code),
    }


def build_store(n: int, cache: Path) -> dict:
    """The store of ``n`` customers in ``cache/c<n>/store.db`` (built, or reused if its key matches)."""
    folder, key = cache / f"c{n}", store_key(n)
    built = folder / "built.json"
    if built.exists():
        info = json.loads(built.read_text())
        if info.get("key") == key and (folder / "store.db").exists():
            log(f"[{n:,} customers] reusing the store built {info['built_at']} in {folder}")
            return {**info, "reused": True}
        log(f"[{n:,} customers] the kept store in {folder} is stale (config, ledger or schema code changed): rebuilding")
    shutil.rmtree(folder, ignore_errors=True)
    tmp = cache / f"c{n}.building"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    started = time.perf_counter()
    log(f"[{n:,} customers] generating the ledger")
    counts, gen = generate(n, tmp / "ledger")
    db = tmp / "store.db"
    apply = setup_cmd(cli("apply", "--auto-approve", "--config", CONFIG, "--database-url", sqlite_url(db)), now=True)
    expect("Apply complete!")(apply)
    imports = {}
    for kind in KINDS:
        log(f"[{n:,} customers] ledger import {kind} ({counts[kind]:,} rows)")
        run = setup_cmd(
            cli("ledger", "import", "--config", CONFIG, "--database-url", sqlite_url(db), kind, tmp / "ledger" / f"{kind}.csv"),
            now=True,
        )
        expect(f"{counts[kind]} added")(run)
        imports[kind] = round(run.seconds, 1)
    shutil.rmtree(tmp / "ledger")  # ~130 MB at 100k customers; the store is what is kept
    info = {
        "key": key,
        "rows": counts,
        "built_at": timestamp(),
        "set_up_s": {"generate": gen["generate_s"], "import": imports, "total": round(time.perf_counter() - started, 1)},
        "store_mib": round(db.stat().st_size / 2**20, 1),
    }
    (tmp / "built.json").write_text(json.dumps(info, indent=2) + "\n")
    tmp.rename(folder)
    return {**info, "reused": False}


def desired_config(target: Path) -> Path:
    """A copy of the example config with CHANGE: what `plan --impact` is asked about."""
    shutil.copytree(CONFIG, target, symlinks=True)
    path = target / CHANGED_FILE
    text = path.read_text(encoding="utf-8")
    if text.count(CHANGE_FROM) != 1:
        raise BenchmarkError(f"cannot make the desired change in {path}: the example config changed shape")
    path.write_text(text.replace(CHANGE_FROM, CHANGE_TO), encoding="utf-8")
    return target


# --- what each command did (from the warm-up round's output) ----------------------------------


def find(data, keys: set[str]) -> dict | None:
    """The first mapping in ``data`` (depth first) holding ``keys``: the CLI may wrap the engine's dict."""
    if isinstance(data, dict):
        if keys <= data.keys():
            return data
        children: list = list(data.values())
    elif isinstance(data, list):
        children = data
    else:
        return None
    return next((found for child in children if (found := find(child, keys)) is not None), None)


def did_anchor(run: Run) -> dict:
    decisions = json.loads(run.stdout)["decisions"]
    return {
        "decisions": len(decisions),
        "outcomes": dict(Counter(d["outcome"] for d in decisions)),
        "json_bytes": len(run.stdout),
    }


def did_impact(run: Run) -> dict:
    data = find(json.loads(run.stdout), {"summary", "lines", "before", "after"})
    if data is None:
        raise BenchmarkError(f"no impact (summary, lines) in the output of plan --impact:\n{run.stdout[:2000]}")
    if not data["lines"]:
        raise BenchmarkError(f"the impact of {CHANGE!r} is empty: the benchmark would measure a plan with nothing to do")
    return {
        "change": CHANGE,
        "window": [data.get("start"), data.get("end")],
        "summary": data["summary"],
        "before": data["before"],
        "after": data["after"],
        "lines": len(data["lines"]),
        "by_line": [
            {k: line[k] for k in ("change", "outcome", "plan", "step", "count", "customers", "shift_days")}
            for line in data["lines"]
        ],
        "json_bytes": len(run.stdout),
    }


def did_forecast(run: Run) -> dict:
    data = find(json.loads(run.stdout), {"totals", "days", "targets"})
    if data is None:
        raise BenchmarkError(f"no forecast (totals, days, targets) in the output of forecast:\n{run.stdout[:2000]}")
    cycles = [d for d in data["days"] if d.get("cycle_at")]
    return {
        "targets": data["targets"],
        "totals": data["totals"],
        "days": len(data["days"]),
        "send_cycles": len(cycles),
        "held_by_caps": sum(d.get("held_by_caps", 0) for d in cycles),
        "json_bytes": len(run.stdout),
    }


DID: dict[str, Callable[[Run], dict]] = {"run_send_dry_run": did_anchor, "impact_plan": did_impact, "forecast": did_forecast}


# --- one size ---------------------------------------------------------------------------------


def bench_size(n: int, argv: dict[str, list], repeat: int) -> tuple[dict, dict]:
    """The three commands, alternated: a warm-up round (output kept), then ``repeat`` measured rounds."""
    did = {}
    for name, args in argv.items():
        log(f"[{n:,} customers] warm-up: {name}")
        did[name] = DID[name](run_cmd(args))
    runs: dict[str, list[Run]] = {name: [] for name in argv}
    for rnd in range(repeat):
        for name, args in argv.items():
            log(f"[{n:,} customers] round {rnd + 1} of {repeat}: {name}")
            runs[name].append(run_cmd(args, discard=True))
    anchor = Sample(tuple(runs["run_send_dry_run"]))
    benchmarks = {}
    for name, goal in (("impact_plan", IMPACT_GOAL), ("forecast", FORECAST_GOAL)):
        s = Sample(tuple(runs[name]))
        benchmarks[name] = entry(
            s,
            anchor,
            ANCHOR_NAME,
            goal,
            s.median_s / anchor.median_s <= GOAL_RATIO,  # memory: judged across sizes (memory_verdicts)
            peak_rss_vs_anchor=round(s.peak_rss_mib / anchor.peak_rss_mib, 2),
            did=did[name],
        )
    anchors = {"run_send_dry_run": {"what": ANCHOR_NAME, **anchor.to_dict(), "did": did["run_send_dry_run"]}}
    return benchmarks, anchors


# --- where the time goes (goal size) ----------------------------------------------------------


def profile(argv: list, work: Path) -> dict:
    """cProfile of one impact plan as run (the CLI, or the driver): top entries by cumulative and own time."""
    out = work / "impact.prof"
    script = str(argv[0]) if str(argv[0]) != sys.executable else str(argv[1])
    rest = argv[1:] if str(argv[0]) != sys.executable else argv[2:]
    try:
        run = run_cmd([sys.executable, "-m", "cProfile", "-o", out, script, *rest], discard=True)
    except BenchmarkError as exc:
        log(f"[profile] failed: {str(exc).splitlines()[0]}")
        return {"error": str(exc)[-2000:]}

    def top(order: str, count: int) -> str:
        text = io.StringIO()
        pstats.Stats(str(out), stream=text).strip_dirs().sort_stats(order).print_stats(count)
        lines = text.getvalue().strip().splitlines()
        # Keep the column header and the rows: the preamble (file name, totals) is said once below.
        start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls")), 0)
        return "\n".join(line.rstrip() for line in lines[start:] if line.strip())

    stats = pstats.Stats(str(out))
    return {
        "command": " ".join(map(str, [sys.executable, "-m", "cProfile", "-o", out.name, script, *rest])),
        "seconds_with_profiler": round(run.seconds, 2),
        "total_tt_s": round(stats.total_tt, 2),  # type: ignore[attr-defined]
        "top25_cumulative": top("cumulative", 25),
        "top15_tottime": top("tottime", 15),
    }


def phases(driver: Path, desired: Path, url: str) -> dict:
    """The in-process impact plan phase by phase (load, configs, each simulation, compare, JSON)."""
    try:
        return json.loads(run_cmd([sys.executable, driver, "phases", desired, url, AT, str(DAYS)]).stdout)
    except BenchmarkError as exc:
        log(f"[phases] failed: {str(exc).splitlines()[0]}")
        return {"error": str(exc)[-2000:]}


# --- summary ----------------------------------------------------------------------------------


def summary(result: dict) -> str:
    m = result["machine"]
    lines = [
        f"dunningops impact plan + forecast benchmarks  {result['timestamp']}  commit {str(result['git']['commit'])[:10]}"
        f"{' (dirty)' if result['git']['dirty'] else ''}  {m['cpu_count']} CPUs"
        f"  load {m['loadavg_at_start']} → {m.get('loadavg_at_end')}",
        f"Window {DAYS} days from {AT}; desired change: {CHANGE}",
        "Commands: " + ", ".join(f"{k}: {v}" for k, v in result["run"]["commands"].items()),
    ]

    def verdict(b: dict) -> str:
        text = {True: "ok", False: "MISSES GOAL", None: "-"}[b.get("meets_goal")]
        return text + (" (memory not flat)" if b.get("memory_flat") is False else "")

    for size in result["sizes"]:
        r = size["rows"]
        a = size["anchors"]["run_send_dry_run"]
        lines.append(
            f"\n{size['customers']:,} customers: {r['invoices']:,} invoices, {r['contacts']:,} contacts,"
            f" {r['payments']:,} payments  (load {size['loadavg']['before'][0]} → {size['loadavg']['after'][0]})"
        )
        lines.append(f"  {'figure':<18} {'ours':>9} {'anchor':>9} {'ratio':>7} {'peak RSS':>10} {'RSS/anchor':>10}")
        lines.append(
            f"  {'run_send_dry_run':<18} {a['absolute_s']:8.3f}s {'':>9} {'':>7} {a['peak_rss_mib']:6.1f} MiB {'':>10}"
            f"  ({a['did']['decisions']:,} decisions)"
        )
        for name, b in size["benchmarks"].items():
            lines.append(
                f"  {name:<18} {b['absolute_s']:8.3f}s {b['anchor_s']:8.3f}s {b['ratio']:6.2f}× {b['peak_rss_mib']:6.1f} MiB"
                f" {b['peak_rss_vs_anchor']:9.2f}×  {verdict(b)}"
            )
        imp, fc = size["benchmarks"]["impact_plan"]["did"], size["benchmarks"]["forecast"]["did"]
        rem, tod = imp["summary"].get("reminders", {}), imp["summary"].get("todos", {})
        lines.append(f"  impact: {imp['lines']} lines; reminders {rem}; to-dos {tod}")
        lines.append(f"          before {imp['before']}, after {imp['after']}")
        lines.append(
            f"  forecast: {fc['targets']:,} targets, {fc['send_cycles']} send cycles in {fc['days']} days, totals {fc['totals']}"
        )
    if result["growth"]:
        lines.append("\nGrowth at 10× the customers (time ratio; peak RSS ratio, flat at ≤ 1.3×):")
        for name, steps in result["growth"].items():
            s = steps[-1]
            lines.append(
                f"  {name:<28} {s['time_ratio']:6.2f}×  RSS {s['peak_rss_ratio']:.2f}× {s['peak_rss_mib']}"
                f"{'' if s['memory_flat'] else '  (not flat)'}"
            )
    ph = result.get("phases") or {}
    if "phases" in ph:
        lines.append(
            f"\nWhere the impact plan's time goes (in-process, {result['sizes'][-1]['customers']:,} customers, "
            f"targets {ph['targets']}, events {ph['events']}):"
        )
        for p in ph["phases"]:
            lines.append(f"  {p['phase']:<18} {p['seconds']:8.3f}s   peak RSS after {p['peak_rss_mib_after']:6.1f} MiB")
    if "top25_cumulative" in (result.get("profile") or {}):
        lines.append("\ncProfile of the impact plan (top 25 cumulative) in the JSON: profile.top25_cumulative")
    return "\n".join(lines)


# --- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.impact", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_CUSTOMERS:,} customers (growth from {QUICK_CUSTOMERS // 10:,}) "
        f"instead of {FULL_CUSTOMERS:,} (from {FULL_CUSTOMERS // 10:,})",
    )
    parser.add_argument("--customers", type=int, help="the goal size in customers, overriding --quick (growth from a tenth)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the JSON result (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="measured rounds up to 10,000 customers (default: 3)")
    parser.add_argument("--repeat-large", type=int, default=2, help="measured rounds above 10,000 customers (default: 2)")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the built stores in --cache and reuse them while config, ledger and schema code are unchanged",
    )
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where --keep keeps the stores (default: %(default)s)")
    parser.add_argument("--no-profile", action="store_true", help="no cProfile and phase breakdown at the goal size")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    goal = args.customers or (QUICK_CUSTOMERS if args.quick else FULL_CUSTOMERS)
    sizes = [max(1, goal // 10), goal]
    result: dict = {
        "schema": SCHEMA,
        "timestamp": timestamp(),
        "git": git_info(),
        "machine": machine_info(),
        "run": {
            "quick": args.quick,
            "customers": sizes,
            "goal_customers": goal,
            "repeat": args.repeat,
            "repeat_large": args.repeat_large,
            "seed": SEED,
            "data_now": DATA_NOW,
            "at": AT,
            "days": DAYS,
            "desired_change": CHANGE,
            "order": "each round runs the anchor, impact_plan, forecast in turn; one warm-up round",
            "statistic": "median of the measured rounds; wall time of the whole subprocess",
            "peak_rss": "ru_maxrss of each measured subprocess (os.wait4 in the runner's wrapper), max over its runs",
            "flat_memory_threshold": f"peak RSS at 10× the data ≤ {FLAT_RSS}× counts as flat",
        },
    }
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="dunningops-bench-impact-"))
    cache = args.cache if args.keep else work / "stores"
    try:
        use_pycache(work / "pycache")
        log(f"working in {work}; stores in {cache}")
        desired = desired_config(work / "config-desired")
        driver = work / "driver.py"
        driver.write_text(DRIVER, encoding="utf-8")
        support = cli_support()
        result["sizes"] = []
        for n in sizes:
            store = build_store(n, cache)
            db = work / "store.db"
            copy_store(cache / f"c{n}" / "store.db", db)  # measured on a copy: the kept store stays as built
            cmds, how = commands(support, desired, sqlite_url(db), driver)
            load = [round(x, 2) for x in os.getloadavg()]  # the machine is shared: say how busy it was
            result["run"]["commands"] = how
            benchmarks, anchors = bench_size(n, cmds, args.repeat if n <= 10_000 else args.repeat_large)
            result["sizes"].append(
                {
                    "customers": n,
                    "rows": store["rows"],
                    "store": {k: v for k, v in store.items() if k != "rows"},
                    "benchmarks": benchmarks,
                    "anchors": anchors,
                    "loadavg": {"before": load, "after": [round(x, 2) for x in os.getloadavg()]},
                }
            )
            if n == goal and not args.no_profile:
                log(f"[{n:,} customers] phases of the in-process impact plan")
                result["phases"] = phases(driver, desired, sqlite_url(db))
                log(f"[{n:,} customers] cProfile of the impact plan")
                result["profile"] = profile(cmds["impact_plan"], work)
        memory_verdicts(result["sizes"])
        result["growth"] = growth(result["sizes"])
        result["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        result["run"]["peak_rss_floor_mib"] = round(rss_floor_mib(), 1)
        result["run"]["wall_s"] = round(time.monotonic() - started, 1)
    except BenchmarkError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if args.keep:
            log(f"kept the stores in {cache}")
    path = write_json(result, args.out, "impact")
    print(summary(result))
    print(f"\nWrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
