"""Where the time of one `plan` goes: ``python -m benchmarks.phases [--n 1000] [--store applied|empty]``.

Not a benchmark (nothing here goes into the JSON): a diagnostic to read when
plan misses its goal. It generates a config, prepares a store, then runs the
same steps as `dunningops plan` in a fresh interpreter with a timer around
each, plus a few probes inside load_config, and an ``-X importtime`` breakdown
of start-up by top-level package.

The probes wrap functions by name; when a name moves in src/, that probe is
simply reported as missing rather than failing.
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.configgen import generate
from benchmarks.runner import bin_path, clean_env, run_once, use_pycache

# (module, attribute, label): functions timed inside the child, cumulatively.
PROBES = [
    ("dunningops.spec.loader", "load_marked", "load_config › YAML parse (C parser, Python constructors)"),
    ("dunningops.spec.loader", "ConfigFile.model_validate", "load_config › pydantic ConfigFile.model_validate"),
    ("dunningops.spec.loader", "read_template_bodies", "load_config › template bodies (read, Jinja parse, blocks)"),
    ("dunningops.spec.checks", "_check", "    › check_template (new or changed bodies and subjects)"),
    ("jinja2", "Environment.parse", "        › jinja2 Environment.parse"),
    ("dunningops.render.checks", "_unknown_variables", "        › undocumented-variable check (AST walk)"),
    ("dunningops.render.checks", "parse_blocks", "        › blocks bodies' YAML (parse_blocks)"),
    ("dunningops.spec.loader", "check_references", "load_config › check_references"),
    ("dunningops.reconcile.planner", "desired_objects", "build_plan › desired_objects (model_dump)"),
    ("dunningops.reconcile.planner", "digest", "build_plan › digests (canonical JSON + sha256)"),
]

CHILD = """
import importlib, json, sys, time
t0 = time.perf_counter()
from pathlib import Path
import click
from dunningops.spec import load_config
from dunningops.reconcile import build_plan
from dunningops.reconcile.render import RENDERERS
from dunningops.store.state import checked_sources, read_applied, read_applied_sqlite
imports = time.perf_counter() - t0
probes, timers = json.loads(sys.argv[3]), {}

def timed(func, label, bound):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            timers[label] = timers.get(label, 0.0) + time.perf_counter() - start
    return classmethod(lambda cls, *a, **k: wrapper(cls, *a, **k)) if bound == "class" else wrapper

for module, attr, label in probes:
    try:
        owner = importlib.import_module(module)
        *path, name = attr.split(".")
        for part in path:
            owner = getattr(owner, part)
        func = getattr(owner, name)
        if hasattr(func, "__self__") and isinstance(func.__self__, type):  # a classmethod
            setattr(owner, name, timed(func.__func__, label, "class"))
        else:
            setattr(owner, name, timed(func, label, None))
        timers[label] = 0.0
    except (ImportError, AttributeError):
        timers[label] = None

phases = {"imports (click, pydantic, yaml, dunningops; SQLAlchemy and Jinja when needed)": imports}
def phase(name, func):
    start = time.perf_counter()
    value = func()
    phases[name] = time.perf_counter() - start
    return value

# As `plan` does (cli/config.py load_against_store), though in another order: a SQLite store at
# the latest revision is read with sqlite3 (else SQLAlchemy is imported, the store opened and read
# as Core rows); the store's template sources are taken as checked, only new or changed ones parsed.
store = None
def read():
    global store
    fast = read_applied_sqlite(sys.argv[2])
    if fast is not None:
        return fast
    from dunningops.store import open_store
    store = open_store(sys.argv[2])
    return read_applied(store.engine)
actual = phase("read the store (sqlite3; else SQLAlchemy: import, open_store, Core rows)", read)
desired = phase("load_config", lambda: load_config(Path(sys.argv[1]), known_good=lambda: checked_sources(actual)))
plan = phase("build_plan (diff)", lambda: build_plan(desired, actual))
text = phase("render text", lambda: RENDERERS["text"](plan))
if store is not None:
    store.dispose()
print(json.dumps({"phases": phases, "probes": timers, "in_process": time.perf_counter() - t0, "output_chars": len(text)}))
"""


def import_breakdown(top: int = 12) -> list[tuple[str, float]]:
    """Self time of imports by top-level package, from ``python -X importtime``."""
    code = ("import dunningops.cli, dunningops.spec, dunningops.reconcile, dunningops.reconcile.render, "
            "dunningops.store.state")
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, env=clean_env())
    totals: collections.Counter[str] = collections.Counter()
    for line in out.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[0].strip().isdigit():
            totals[parts[2].strip().split(".")[0]] += int(parts[0])
    return [(name, us / 1e6) for name, us in totals.most_common(top)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.phases", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000, help="config objects (default: 1000)")
    parser.add_argument("--store", choices=["applied", "empty"], default="applied",
                        help="plan against a store holding the config (no changes) or an empty one")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dunningops-phases-") as tmp:
        use_pycache(Path(tmp) / "pycache")
        config = generate(Path(tmp) / "config", args.n).root
        url = f"sqlite:///{tmp}/store.db"
        command = ["apply", "--auto-approve"] if args.store == "applied" else ["db", "upgrade"]
        run_once([bin_path("dunningops"), *command, "--config", config, "--database-url", url])
        child = [sys.executable, "-c", CHILD, str(config), url, json.dumps(PROBES)]
        subprocess.run(child, capture_output=True, env=clean_env())  # warm-up: caches, page cache
        start = time.perf_counter()
        out = subprocess.run(child, capture_output=True, text=True, env=clean_env(), check=True)
        wall = time.perf_counter() - start
        imports = import_breakdown()  # inside the block: uses the bytecode cached above
    result = json.loads(out.stdout)
    print(f"plan of N={args.n:,} objects against an {args.store} store: {wall:.3f} s wall")
    print(f"  {'interpreter start-up and exit':<72} {wall - result['in_process']:7.3f} s")
    for name, seconds in result["phases"].items():
        print(f"  {name:<72} {seconds:7.3f} s")
    print("probes (cumulative time inside the phases above):")
    for label, seconds in result["probes"].items():
        print(f"  {label:<72} " + (f"{seconds:7.3f} s" if seconds is not None else "missing (renamed in src/?)"))
    print("import self time by top-level package (-X importtime):")
    for name, seconds in imports:
        print(f"  {name:<72} {seconds:7.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
