"""The plan and apply benchmarks for one config size, run through the real CLI as subprocesses.

For a size N: generate the config (and a copy with 1 % of objects changed),
check both with `dunningops validate`, measure the anchor, then
`plan` against an empty store, against a store where the config is applied,
with 1 % changed, and `apply` of the N creates into a fresh store each time.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.anchor import anchor_argv, anchor_expect
from benchmarks.configgen import GeneratedConfig, generate
from benchmarks.ledger import fill_ledger
from benchmarks.runner import BenchmarkError, Sample, bin_path, measure, run_once

CHANGE_EVERY = 100  # one object in a hundred: the "1 % changed" plan

PLAN_GOAL = "≤ 3× anchor and under 1 s (performance.md, at 1,000 objects)"
APPLY_GOAL = "≤ 2× plan of the same change (performance.md)"
# performance.md asks for "≈ 1"; 1.2 leaves room for this machine's run-to-run noise.
LEDGER_GOAL = "≈ 1× plan without a ledger: cost independent of the invoice count (met at ≤ 1.2)"


@dataclass(frozen=True)
class Settings:
    repeat: int
    warmup: int


def log(message: str) -> None:
    # Progress goes to stderr: stdout carries the summary only.
    print(message, file=sys.stderr, flush=True)


def cli(*args: str | Path) -> list[str | Path]:
    return [bin_path("dunningops"), *args]


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def copy_store(source: Path, target: Path) -> None:
    """Copy a SQLite store, with its WAL files if any, over ``target``."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
        if Path(f"{source}{suffix}").exists():
            shutil.copyfile(f"{source}{suffix}", f"{target}{suffix}")


def plan_entry(sample: Sample, anchor: Sample) -> dict:
    ratio = sample.median_s / anchor.median_s
    return {
        **sample.to_dict(),
        "anchor": "yaml_anchor",
        "anchor_s": round(anchor.median_s, 4),
        "ratio": round(ratio, 2),
        # Best run over best run: less sensitive to a neighbour's load on a shared machine.
        "ratio_of_min": round(sample.min_s / anchor.min_s, 2),
        "goal": PLAN_GOAL,
        "meets_goal": ratio <= 3.0 and sample.median_s < 1.0,
    }


def apply_entry(sample: Sample, plan: Sample) -> dict:
    ratio = sample.median_s / plan.median_s
    return {
        **sample.to_dict(),
        "anchor": "plan_empty_store",
        "anchor_s": round(plan.median_s, 4),
        "ratio": round(ratio, 2),
        "ratio_of_min": round(sample.min_s / plan.min_s, 2),
        "goal": APPLY_GOAL,
        "meets_goal": ratio <= 2.0,
    }


def ledger_entry(sample: Sample, without: Sample, ledger: dict) -> dict:
    ratio = sample.median_s / without.median_s
    return {
        **sample.to_dict(),
        "anchor": "plan_no_changes",
        "anchor_s": round(without.median_s, 4),
        "ratio": round(ratio, 2),
        "ratio_of_min": round(sample.min_s / without.min_s, 2),
        "goal": LEDGER_GOAL,
        "meets_goal": ratio <= 1.2,
        "ledger": ledger,
    }


def prepare_configs(n: int, work: Path) -> tuple[GeneratedConfig, GeneratedConfig]:
    base = generate(work / "config", n)
    changed = generate(work / "config-changed", n, change_every=CHANGE_EVERY)
    for config in (base, changed):
        run = run_once(cli("validate", "--config", config.root))
        if "is valid" not in run.stdout:
            raise BenchmarkError(f"generated config in {config.root} is not valid:\n{run.stdout}")
    return base, changed


def apply_once(config: Path, url: str, n: int) -> None:
    run = run_once(cli("apply", "--auto-approve", "--config", config, "--database-url", url))
    if f"Resources: {n} added" not in run.stdout:
        raise BenchmarkError(f"apply into {url} did not create {n} objects:\n{run.stdout[-2000:]}")


def bench_size(
    n: int, work: Path, settings: Settings, postgres_url: Callable[[str], str] | None,
    ledger_customers: int = 0, out: dict | None = None,
) -> dict:
    """All benchmarks at size ``n``.

    Args:
        postgres_url: makes a fresh PostgreSQL database by name (None: no PostgreSQL).
        ledger_customers: also plan against a store holding a ledger of this many customers (0: not at this size).
        out: filled as figures come in, so that a failure (src/ changes under a long run) keeps what was measured.
    """
    result = out if out is not None else {}
    result["n"] = n
    work.mkdir(parents=True, exist_ok=True)
    log(f"[N={n}] generating the config")
    base, changed = prepare_configs(n, work)
    result["config"] = {
        "objects": base.objects,
        "yaml_files": base.yaml_files,
        "body_files": base.body_files,
        "bytes": base.total_bytes,
        "changed_objects": changed.changed,
    }
    benchmarks: dict[str, dict] = {}
    result["benchmarks"] = benchmarks
    reps = {"repeat": settings.repeat, "warmup": settings.warmup}

    def plan(config: Path, url: str, expect: str) -> Sample:
        return measure(cli("plan", "--config", config, "--database-url", url), expect=expect, **reps)

    log(f"[N={n}] anchor: python -c 'import yaml' + CSafeLoader over {base.yaml_files} files")
    anchor = measure(anchor_argv(base.root), expect=anchor_expect(base.yaml_files), **reps)
    result["anchor"] = {"name": "yaml_anchor", "what": "python -c: import yaml, CSafeLoader over the config's *.yaml",
                        **anchor.to_dict()}

    # The migrated, empty store every SQLite benchmark starts from: migrations are a
    # one-time cost of a new store, not part of planning.
    empty = work / "empty.db"
    run_once(cli("db", "upgrade", "--config", base.root, "--database-url", sqlite_url(empty)))
    planned, applied = work / "plan-empty.db", work / "applied.db"
    copy_store(empty, planned)
    copy_store(empty, applied)
    apply_once(base.root, sqlite_url(applied), n)

    log(f"[N={n}] plan: empty store ({n} creates)")
    creates = f"Plan: {n} to add, 0 to change, 0 to replace, 0 to destroy."
    plan_empty = plan(base.root, sqlite_url(planned), creates)
    benchmarks["plan_empty_store"] = plan_entry(plan_empty, anchor)
    log(f"[N={n}] plan: config already applied (no changes)")
    no_changes = "No changes. The store matches the configuration."
    plan_unchanged = plan(base.root, sqlite_url(applied), no_changes)
    benchmarks["plan_no_changes"] = plan_entry(plan_unchanged, anchor)
    log(f"[N={n}] plan: {changed.changed} objects changed")
    updates = f"Plan: 0 to add, {changed.changed} to change, 0 to replace, 0 to destroy."
    benchmarks["plan_1pct_changed"] = plan_entry(plan(changed.root, sqlite_url(applied), updates), anchor)

    log(f"[N={n}] apply: {n} creates, fresh store each run")
    target = work / "apply.db"
    apply_sample = measure(
        cli("apply", "--auto-approve", "--config", base.root, "--database-url", sqlite_url(target)),
        expect=f"Resources: {n} added", setup=lambda: copy_store(empty, target), **reps,
    )
    benchmarks["apply_creates"] = apply_entry(apply_sample, plan_empty)

    if ledger_customers:
        log(f"[N={n}] plan with a ledger of {ledger_customers:,} customers (generating and importing it first)")
        with_ledger = work / "ledger.db"
        copy_store(applied, with_ledger)
        ledger = fill_ledger(base.root, sqlite_url(with_ledger), ledger_customers, work / "ledger")
        plan_ledger = plan(base.root, sqlite_url(with_ledger), no_changes)
        benchmarks["plan_no_changes_with_ledger"] = plan_entry(plan_ledger, anchor)
        benchmarks["ledger_independence"] = ledger_entry(plan_ledger, plan_unchanged, ledger)

    if postgres_url is not None:
        log(f"[N={n}] plan on PostgreSQL: config already applied (no changes)")
        url = postgres_url(f"bench_n{n}")
        apply_once(base.root, url, n)  # also migrates the new database
        benchmarks["plan_no_changes_postgresql"] = plan_entry(plan(base.root, url, no_changes), anchor)

    return result
