"""A store holding a ledger (customers, contacts, invoices, payments), for plan's "independent of invoice count" goal.

The ledger is generated and imported with the project's own commands
(`dunningops ledger generate`, `dunningops ledger import`); that set-up is not
timed as a benchmark (the ledger import benchmark, anchored on `sqlite3 .import`,
is a separate, future one), only recorded for orientation.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from benchmarks.runner import BenchmarkError, bin_path, run_once

KINDS = ("customers", "contacts", "invoices", "payments")  # import order: invoices need customers


def fill_ledger(config: Path, url: str, customers: int, folder: Path) -> dict:
    """Generate a ledger of ``customers`` customers and import it into the store at ``url``."""
    cli = bin_path("dunningops")
    start = time.perf_counter()
    out = run_once([cli, "ledger", "generate", "--config", config, "--customers", str(customers), folder]).stdout
    counts = {kind: int(number) for number, kind in re.findall(r"(\d+) (\w+)", out) if kind in KINDS}
    if counts.get("customers") != customers:
        raise BenchmarkError(f"`ledger generate` did not report {customers} customers:\n{out}")
    generated_s = time.perf_counter() - start
    imports = {}
    for kind in KINDS:
        run = run_once([cli, "ledger", "import", "--config", config, "--database-url", url, kind, folder / f"{kind}.csv"])
        if f"{counts[kind]} added" not in run.stdout:
            raise BenchmarkError(f"`ledger import {kind}` did not add {counts[kind]} rows:\n{run.stdout[-2000:]}")
        imports[kind] = round(run.seconds, 2)
    return {"rows": counts, "generate_s": round(generated_s, 2), "import_s": imports}
