"""``python -m benchmarks.ledger_cycle [--quick] [--out DIR]``: the ledger import and the send cycle.

Three benchmarks of performance.md, each figure a ratio to an anchor measured in the same run,
with the absolute figure beside it, at a stated size and at 1/10 of it (growth), with the
measured process's own peak RSS:

1. ledger import: each `dunningops ledger import` (customers, contacts, invoices, payments)
   into a fresh SQLite store with the example config applied, and a re-import of the unchanged
   invoices; anchor: `sqlite3 DB ".import --csv FILE t"` of the same file into a bare table.
2. deciding what is due: `dunningops run send --dry-run --format json` on the imported store;
   anchor: one `SELECT count(*), sum(outstanding_cents) FROM invoices WHERE status='open'`.
   Repeated on PostgreSQL at 10,000 customers when a throwaway server starts.
3. rendering + sending 10,000 reminders to Postfix smtp-sink (see ledger_cycle_send.py);
   anchors: bare smtplib over 10 connections, smtp-source. Plus the whole
   `dunningops run send` (not dry-run) of each store, pointed at the same sink.

See benchmarks/LEDGER_CYCLE.md. Progress goes to stderr, the summary to stdout, the figures
to ``<out>/ledger-cycle-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path

from benchmarks.postgres import postgres
from benchmarks.reconcile import copy_store, log, sqlite_url
from benchmarks.report import git_info, machine_info, timestamp, write_json
from benchmarks.runner import (
    WRAPPER,
    BenchmarkError,
    Run,
    Sample,
    bin_path,
    clean_env,
    rss_floor_mib,
    use_pycache,
)

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "config"
DEFAULT_OUT = Path(__file__).resolve().parent / "results"
SCHEMA = "dunningops-benchmarks/ledger-cycle/1"

KINDS = ("customers", "contacts", "invoices", "payments")  # import order: each needs the ones before
FULL_CUSTOMERS, QUICK_CUSTOMERS = 100_000, 10_000  # performance.md: 100k customers / ~1M invoices / ~200k contacts
PG_CUSTOMERS = SEND_LEDGER_CUSTOMERS = PROFILE_CUSTOMERS = 10_000
SEED = 1
# The clock of every set-up command (DUNNINGOPS_NOW): the ledger's "today" and the apply.
DATA_NOW = "2026-11-16T09:00:00+00:00"  # a Monday
# A Thursday, 08:30 Europe/Paris: inside the example's window (Mon–Fri 08:00–09:00), three
# days after the data's today and more than one working day after the apply (E3).
AT = "2026-11-19T08:30:00+01:00"
SEND_TODAY = "2026-11-19"
SEND_MESSAGES = 10_000
SINK = "/usr/sbin/smtp-sink"
SOURCE = "/usr/sbin/smtp-source"
SQLITE3 = shutil.which("sqlite3") or "/usr/bin/sqlite3"
FLAT_RSS = 1.3  # peak RSS at 10× the data within this factor counts as "flat" (streams in batches)

IMPORT_GOAL = "≤ 3× sqlite3 .import of the same CSV (performance.md); memory flat"
REIMPORT_GOAL = "≤ 3× sqlite3 .import, and cheaper than the first import (nothing changes)"
DECIDE_GOAL = "≤ 5× one SELECT over the invoices at 100k customers / 1M invoices, set-based (performance.md); memory flat"
DRY_RUN_GOAL = "≤ 10 s on SQLite at 100k customers / 1M invoices (the whole dry run: deciding + preparing every due step)"
SEND_GOAL = "≥ 0.5× anchor (1) in messages/s (performance.md)"
RUN_SEND_GOAL = "end to end (decide + render + record + send): compared with the same ≥ 0.5× anchor (1) in messages/s"

ANCHOR_SQLITE = (
    "import json, sqlite3, sys, time\n"
    "start = time.perf_counter()\n"
    "con = sqlite3.connect(sys.argv[1])\n"
    "n, total = con.execute(\"SELECT count(*), sum(outstanding_cents) FROM invoices WHERE status='open'\").fetchone()\n"
    "print(json.dumps({'query_s': time.perf_counter() - start, 'open': n, 'outstanding_cents': total}))\n"
)
ANCHOR_PG = (
    "import json, psycopg, sys, time\n"
    "start = time.perf_counter()\n"
    "with psycopg.connect(sys.argv[1]) as con:\n"
    "    n, total = con.execute(\"SELECT count(*), sum(outstanding_cents) FROM invoices WHERE status='open'\").fetchone()\n"
    "print(json.dumps({'query_s': time.perf_counter() - start, 'open': n, 'outstanding_cents': int(total or 0)}))\n"
)


# --- running commands -------------------------------------------------------------------------


def run_cmd(argv: Sequence[str | Path], *, now: bool = False, discard: bool = False, ok: Sequence[int] = (0,)) -> Run:
    """``argv`` under the runner's wrapper (wall time, own ru_maxrss); ``now`` pins DUNNINGOPS_NOW.

    ``discard`` sends stdout to /dev/null (the decide benchmark's `> /dev/null`).
    """
    argv = [str(a) for a in argv]
    env = clean_env()
    if now:
        env["DUNNINGOPS_NOW"] = DATA_NOW
    with tempfile.TemporaryDirectory(prefix="dunningops-lc-") as tmp:
        report, out, err = Path(tmp, "report.json"), Path(tmp, "stdout"), Path(tmp, "stderr")
        with (open(os.devnull, "wb") if discard else out.open("wb")) as stdout, err.open("wb") as stderr:
            code = subprocess.call([sys.executable, "-S", "-c", WRAPPER, str(report), *argv],
                                   stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, env=env)
        text = "" if discard else out.read_text(errors="replace")
        if code not in ok or not report.exists():
            raise BenchmarkError(f"{' '.join(argv)} exited {code}:\n{err.read_text(errors='replace')[-2000:]}{text[-2000:]}")
        measured = json.loads(report.read_text())
    return Run(seconds=measured["seconds"], peak_rss_kib=measured["maxrss_kib"], stdout=text)


def measure(argv: Sequence[str | Path], *, repeat: int, warmup: int = 0, setup: Callable[[], None] | None = None,
            check: Callable[[Run], None] | None = None, inner: Callable[[Run], float] | None = None, **kw) -> Sample:
    """Warm-up + measured runs of ``argv``. ``inner`` replaces the wall time by a time the process reports itself."""
    runs = []
    for index in range(warmup + repeat):
        if setup is not None:
            setup()
        run = run_cmd(argv, **kw)
        if check is not None:
            check(run)
        if inner is not None:
            run = Run(seconds=inner(run), peak_rss_kib=run.peak_rss_kib, stdout=run.stdout)
        if index >= warmup:
            runs.append(run)
    return Sample(tuple(runs))


def cli(*args: str | Path) -> list[str | Path]:
    return [bin_path("dunningops"), *args]


def expect(text: str) -> Callable[[Run], None]:
    def check(run: Run) -> None:
        if text not in run.stdout:
            raise BenchmarkError(f"expected {text!r} in the output:\n{run.stdout[-2000:]}")
    return check


# --- entries (the JSON conventions of benchmarks/report.py) -----------------------------------


def entry(sample: Sample, anchor: Sample, anchor_name: str, goal: str, meets: bool, **extra) -> dict:
    return {
        **sample.to_dict(), "anchor": anchor_name, "anchor_s": round(anchor.median_s, 4),
        "anchor_peak_rss_mib": round(anchor.peak_rss_mib, 1),
        "ratio": round(sample.median_s / anchor.median_s, 2),
        "ratio_of_min": round(sample.min_s / anchor.min_s, 2), "goal": goal, "meets_goal": meets, **extra,
    }


def summed(samples: Sequence[Sample]) -> Sample:
    """Run i of the result = the sum of run i of each sample (the whole import, kind by kind)."""
    runs = zip(*(s.runs for s in samples), strict=True)
    return Sample(tuple(Run(sum(r.seconds for r in rs), max(r.peak_rss_kib for r in rs), "") for rs in runs))


# --- servers ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def smtp_sink():
    """Postfix smtp-sink on a free loopback port, a direct child of this process (servers.md)."""
    port = free_port()
    # -u: smtp-sink refuses to run as root without an account to drop to.
    argv = [SINK, *(["-u", "nobody"] if os.geteuid() == 0 else []), f"127.0.0.1:{port}", "1000"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                raise BenchmarkError(f"smtp-sink exited {proc.returncode}: {proc.stderr.read().decode(errors='replace')}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise BenchmarkError("smtp-sink did not accept connections within 10 s") from None
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def sink_config(port: int, target: Path) -> Path:
    """A copy of the example config whose transport is the sink and whose caps do not stop 100k emails."""
    shutil.copytree(CONFIG, target)
    path = target / "dunningops.yaml"
    text = path.read_text(encoding="utf-8")
    text, n1 = re.subn(r"(?m)^    transport:\n      kind: maildir\n      path: .*\n",
                       f"    transport: {{kind: smtp, host: 127.0.0.1, port: {port}, security: none}}\n", text)
    text, n2 = re.subn(r"(?m)^(      per_day:) \d+$", r"\1 1000000", text)
    text, n3 = re.subn(r"(?m)^(      per_month:) \d+$", r"\1 1000000", text)
    if (n1, n2, n3) != (1, 1, 1):
        raise BenchmarkError(f"could not point {path} at the sink (the example config changed shape: {n1, n2, n3})")
    path.write_text(text, encoding="utf-8")  # checked by the apply that uses it
    return target


# --- 1. ledger import -------------------------------------------------------------------------


def generate(n: int, folder: Path) -> tuple[dict, dict]:
    run = run_cmd(cli("ledger", "generate", "--config", CONFIG, "--customers", n, "--seed", SEED, folder), now=True)
    counts = {kind: int(num) for num, kind in re.findall(r"(\d+) (\w+)", run.stdout) if kind in KINDS}
    if counts.get("customers") != n:
        raise BenchmarkError(f"`ledger generate` did not report {n} customers:\n{run.stdout}")
    sizes = {kind: (folder / f"{kind}.csv").stat().st_size for kind in KINDS}
    return counts, {"generate_s": round(run.seconds, 2), "csv_bytes": sizes}


def bench_import(n: int, work: Path, ledger: Path, counts: dict, repeat: int, warmup: int, snapshots: Path | None) -> tuple[dict, dict, Path]:
    """Anchors and the import of each kind; returns (entries, anchors, the imported store)."""
    base = work / "base.db"
    apply = run_cmd(cli("apply", "--auto-approve", "--config", CONFIG, "--database-url", sqlite_url(base)), now=True)
    if "Apply complete!" not in apply.stdout:
        raise BenchmarkError(f"apply of the example config failed:\n{apply.stdout[-2000:]}")

    anchors: dict[str, Sample] = {}
    bare = work / "bare.db"
    for kind in KINDS:
        log(f"[{n:,} customers] anchor: sqlite3 .import {kind}.csv")
        anchors[kind] = measure([SQLITE3, bare, f".import --csv {ledger / f'{kind}.csv'} t"], repeat=max(repeat, 3), warmup=1,
                                setup=lambda: bare.unlink(missing_ok=True))
        got = subprocess.run([SQLITE3, bare, "SELECT count(*) FROM t"], capture_output=True, text=True, check=True).stdout.strip()
        if got != str(counts[kind]):
            raise BenchmarkError(f"sqlite3 .import of {kind}.csv gave {got} rows, not {counts[kind]}")
    bare.unlink(missing_ok=True)

    store = work / "ledger.db"
    runs: dict[str, list[Run]] = {k: [] for k in (*KINDS, "reimport", "one_command")}
    together = work / "together.db"
    for rep in range(warmup + repeat):
        last = rep == warmup + repeat - 1
        log(f"[{n:,} customers] import pipeline, run {rep + 1} of {warmup + repeat}{' (warm-up)' if rep < warmup else ''}")
        copy_store(base, store)
        for kind in KINDS:
            if last and snapshots is not None:
                copy_store(store, snapshots / f"before-{kind}.db")
            run = run_cmd(cli("ledger", "import", "--config", CONFIG, "--database-url", sqlite_url(store), kind, ledger / f"{kind}.csv"), now=True)
            expect(f"{counts[kind]} added")(run)
            if rep >= warmup:
                runs[kind].append(run)
        run = run_cmd(cli("ledger", "import", "--config", CONFIG, "--database-url", sqlite_url(store), "invoices", ledger / "invoices.csv"), now=True)
        expect(f"0 added, 0 changed, {counts['invoices']} unchanged")(run)
        if rep >= warmup:
            runs["reimport"].append(run)
        # The same four files in one process and one transaction (`ledger import-all`).
        copy_store(base, together)
        run = run_cmd(cli("ledger", "import-all", "--config", CONFIG, "--database-url", sqlite_url(together), ledger), now=True)
        for kind in KINDS:
            expect(f"{kind}: imported {counts[kind]} rows from {kind}.csv: {counts[kind]} added")(run)
        if rep >= warmup:
            runs["one_command"].append(run)
    together.unlink(missing_ok=True)

    entries = {}
    for kind in KINDS:
        s = Sample(tuple(runs[kind]))
        entries[f"import_{kind}"] = entry(s, anchors[kind], f"sqlite3 .import {kind}.csv", IMPORT_GOAL,
                                          s.median_s / anchors[kind].median_s <= 3.0, rows=counts[kind])
    total, total_anchor = summed([Sample(tuple(runs[k])) for k in KINDS]), summed([anchors[k] for k in KINDS])
    entries["import_all"] = entry(total, total_anchor, "sqlite3 .import of the four files", IMPORT_GOAL,
                                  total.median_s / total_anchor.median_s <= 3.0, rows=sum(counts[k] for k in KINDS))
    one = Sample(tuple(runs["one_command"]))
    entries["import_all_one_command"] = entry(one, total_anchor, "sqlite3 .import of the four files", IMPORT_GOAL,
                                              one.median_s / total_anchor.median_s <= 3.0, rows=sum(counts[k] for k in KINDS),
                                              vs_four_commands=round(one.median_s / total.median_s, 2))
    re_s, first = Sample(tuple(runs["reimport"])), Sample(tuple(runs["invoices"]))
    entries["reimport_invoices_unchanged"] = entry(
        re_s, anchors["invoices"], "sqlite3 .import invoices.csv", REIMPORT_GOAL,
        re_s.median_s / anchors["invoices"].median_s <= 3.0 and re_s.median_s < first.median_s,
        rows=counts["invoices"], vs_first_import=round(re_s.median_s / first.median_s, 2),
    )
    anchor_dicts = {f"sqlite3_import_{k}": {"what": f"sqlite3 DB \".import --csv {k}.csv t\" into a new bare table", **a.to_dict()}
                    for k, a in anchors.items()}
    return entries, anchor_dicts, store


# --- 2. deciding what is due ------------------------------------------------------------------


def decide_argv(config: Path, url: str, *, decide_only: bool = True) -> list:
    return cli("run", "send", "--dry-run", *(["--decide-only"] if decide_only else []), "--at", AT, "--format", "json",
               "--config", config, "--database-url", url)


def bench_decide(label: str, url: str, anchor_code: str, anchor_target: str, repeat: int, *, goal_size: bool) -> tuple[dict, dict, dict]:
    """Deciding (``run send --dry-run --decide-only``) against one SELECT; and the whole dry run, which
    also prepares every due step (recipients, rendering): (decide, dry run, anchor)."""
    log(f"[{label}] decide: run send --dry-run --decide-only (warm-up, counting the decisions)")
    warm = run_cmd(decide_argv(CONFIG, url))
    decisions = json.loads(warm.stdout)["decisions"]
    outcomes = Counter(d["outcome"] for d in decisions)
    reasons = Counter(re.sub(r"\d+", "N", d["reason"]) for d in decisions if d["reason"]).most_common(4)
    json_bytes = len(warm.stdout)
    del warm, decisions
    log(f"[{label}] decide: {sum(outcomes.values()):,} decisions; {repeat} measured runs, stdout to /dev/null")
    sample = measure(decide_argv(CONFIG, url), repeat=repeat, discard=True)
    log(f"[{label}] the whole dry run (preparing every due step): warm-up, then {repeat} measured runs")
    full_warm = run_cmd(decide_argv(CONFIG, url, decide_only=False))
    full_outcomes = Counter(d["outcome"] for d in json.loads(full_warm.stdout)["decisions"])
    del full_warm
    full = measure(decide_argv(CONFIG, url, decide_only=False), repeat=repeat, discard=True)
    queries: list[dict] = []

    def inner(run: Run) -> float:
        queries.append(json.loads(run.stdout))
        return queries[-1]["query_s"]

    anchor = measure([sys.executable, "-c", anchor_code, anchor_target], repeat=max(repeat, 3), warmup=1, inner=inner)
    process = measure([sys.executable, "-c", anchor_code, anchor_target], repeat=1)
    anchor_name = "one SELECT count(*), sum(outstanding_cents) … WHERE status='open' (query time)"
    meets = sample.median_s <= 5 * anchor.median_s if goal_size else None  # memory: see memory_verdicts
    e = entry(sample, anchor, anchor_name, DECIDE_GOAL, meets, decisions=sum(outcomes.values()), outcomes=dict(outcomes),
              top_reasons=reasons, json_bytes=json_bytes, open_invoices=queries[-1]["open"],
              anchor_process_s=round(process.median_s, 4))
    dry = entry(full, anchor, anchor_name, DRY_RUN_GOAL, full.median_s <= 10.0 if goal_size else None,
                decisions=sum(full_outcomes.values()), outcomes=dict(full_outcomes),
                vs_decide_only=round(full.median_s / sample.median_s, 2))
    if not goal_size:
        e["note"] = dry["note"] = "the goal is judged at the run's goal size; this size shows the growth"
    return e, dry, {"what": "python: connect + the SELECT, timed inside the process", **anchor.to_dict()}


# --- 3. rendering + sending -------------------------------------------------------------------


def send_child(mode: str, ledger: Path, port: int, *extra: str) -> list:
    return [sys.executable, "-m", "benchmarks.ledger_cycle_send", mode, "--ledger", ledger, "--port", port,
            "--count", SEND_MESSAGES, "--today", SEND_TODAY, *extra]


def bench_send(ledger: Path, port: int, repeat: int) -> tuple[dict, dict]:
    details: dict[str, dict] = {}

    def inner(name: str) -> Callable[[Run], float]:
        def read(run: Run) -> float:
            data = json.loads(run.stdout)
            if data["sent"] != SEND_MESSAGES:
                raise BenchmarkError(f"{name}: {data['sent']} of {SEND_MESSAGES} sent")
            details[name] = data
            return data["seconds"]
        return read

    reps = {"repeat": max(repeat, 3), "warmup": 1}
    log(f"[send] anchor (1): bare smtplib, prebuilt bytes, 10 connections, {SEND_MESSAGES:,} messages")
    a1 = measure(send_child("smtplib", ledger, port), inner=inner("smtplib"), **reps)
    log(f"[send] anchor (2): smtp-source -m {SEND_MESSAGES} -s 10 -l 2000")
    a2 = measure([SOURCE, "-m", SEND_MESSAGES, "-s", "10", "-l", "2000", f"127.0.0.1:{port}"], **reps)
    log("[send] ours: RenderWorker + OutgoingMessage + SmtpTransport(pool_size=10), batches of 200 (the cycle's BATCH)")
    ours = measure(send_child("ours", ledger, port, "--batch", "200"), inner=inner("ours_batch200"), **reps)
    log("[send] ours, one process: the same batches of 200 rendered in this process (what the render worker gains)")
    ours_1p = measure(send_child("ours-one-process", ledger, port, "--batch", "200"), inner=inner("ours_one_process"), **reps)
    log("[send] ours, sequential: the same batches of 200, rendered and sent in turn (what the overlap gains)")
    ours_seq = measure(send_child("ours-sequential", ledger, port, "--batch", "200"), inner=inner("ours_sequential"), **reps)
    log(f"[send] ours: one batch of {SEND_MESSAGES:,}")
    ours_one = measure(send_child("ours", ledger, port, "--batch", str(SEND_MESSAGES)), inner=inner("ours_one_batch"), **reps)

    def rate(s: Sample) -> float:
        return round(SEND_MESSAGES / s.median_s, 1)

    entries = {}
    which = {"render_send_batch200": "ours_batch200", "render_send_one_process_batch200": "ours_one_process",
             "render_send_sequential_batch200": "ours_sequential", "render_send_one_batch": "ours_one_batch"}
    for name, s in (("render_send_batch200", ours), ("render_send_one_process_batch200", ours_1p),
                    ("render_send_sequential_batch200", ours_seq), ("render_send_one_batch", ours_one)):
        d = details[which[name]]
        ratio1 = a1.median_s / s.median_s  # messages/s over messages/s: same count
        entries[name] = {
            **s.to_dict(), "messages": SEND_MESSAGES, "messages_per_s": rate(s),
            "anchor": "(1) bare smtplib.sendmail of prebuilt bytes, 10 connections", "anchor_s": round(a1.median_s, 4),
            "anchor_messages_per_s": rate(a1), "ratio": round(ratio1, 2), "ratio_of_min": round(a1.min_s / s.min_s, 2),
            "anchor2": "(2) smtp-source -m 10000 -s 10 -l 2000", "anchor2_messages_per_s": rate(a2),
            "ratio_to_anchor2": round(a2.median_s / s.median_s, 2),
            "goal": SEND_GOAL, "meets_goal": ratio1 >= 0.5,
            "split_last_run_s": {"render_and_build": d["render_and_build_s"], "transport_send": d["transport_send_s"],
                                 **{k: d[f"{k}_s"] for k in ("cpu", "render_and_build_cpu", "waited") if f"{k}_s" in d}},
            "ratio_note": "ours messages/s ÷ anchor messages/s (higher is better; the goal is ≥ 0.5)",
        }
    anchors = {
        "smtplib_10_connections": {"what": "bare smtplib.SMTP.sendmail of the same messages prebuilt with to_bytes, 10 threads",
                                   "messages_per_s": rate(a1), "mean_message_bytes": details["smtplib"]["mean_message_bytes"],
                                   **a1.to_dict()},
        "smtp_source": {"what": f"{SOURCE} -m {SEND_MESSAGES} -s 10 -l 2000 (one connection per message, 2,000-byte messages)",
                        "messages_per_s": rate(a2), **a2.to_dict()},
    }
    return entries, anchors


def bench_run_send(n: int, work: Path, store: Path, config: Path, counts: dict) -> dict:
    """The whole `dunningops run send` (not dry-run) of the imported store, to the sink."""
    target = work / "send.db"
    copy_store(store, target)
    apply = run_cmd(cli("apply", "--auto-approve", "--config", config, "--database-url", sqlite_url(target)), now=True)
    if "Apply complete!" not in apply.stdout:
        raise BenchmarkError(f"apply of the sink config failed:\n{apply.stdout[-2000:]}")
    # A3: mail goes from an alias only once it is verified (the benchmark has nobody to click the link).
    subprocess.run([SQLITE3, target, "UPDATE aliases SET verified = 1"], check=True)
    if n == PROFILE_CUSTOMERS:
        copy_store(target, work / "send-base.db")  # for the profile, should the goal be missed
    log(f"[{n:,} customers] run send (not dry-run) to smtp-sink")
    run = run_cmd(cli("run", "send", "--at", AT, "--config", config, "--database-url", sqlite_url(target)))
    line = next((l for l in run.stdout.splitlines() if l.startswith("Send cycle at")), "")
    found = re.search(r"(\d+) sent, (\d+) failed, (\d+) deferred, (\d+) to-dos", line)
    if not found:
        raise BenchmarkError(f"run send printed no summary:\n{run.stdout[-2000:]}")
    sent, failed, deferred, todos = map(int, found.groups())
    confirmations = re.search(r"(\d+) alias confirmation emails sent", run.stdout)
    target.unlink(missing_ok=True)
    return {
        **Sample((run,)).to_dict(), "customers": n, "invoices": counts["invoices"], "sent": sent, "failed": failed,
        "deferred": deferred, "todos": todos, "alias_confirmations": int(confirmations.group(1)) if confirmations else 0,
        "messages_per_s": round(sent / run.seconds, 1), "summary_line": line, "goal": RUN_SEND_GOAL,
    }


# --- profiles ---------------------------------------------------------------------------------


def profile(argv: list) -> dict:
    """A diagnostic: its failure is recorded, never the end of the run."""
    try:
        run = run_cmd([sys.executable, "-m", "benchmarks.ledger_cycle_profile", *argv])
    except BenchmarkError as exc:
        log(f"[profile] failed: {str(exc).splitlines()[0]}")
        return {"error": str(exc)[-2000:]}
    return json.loads(run.stdout)


# --- growth, JSON, summary --------------------------------------------------------------------


def growth(sizes: list[dict]) -> dict:
    out: dict[str, list[dict]] = {}
    for small, large in itertools.pairwise(sizes):
        pairs = {**{k: (small["benchmarks"][k], v) for k, v in large["benchmarks"].items() if k in small["benchmarks"]},
                 **{f"anchor:{k}": (small["anchors"][k], v) for k, v in large["anchors"].items() if k in small["anchors"]}}
        for name, (a, b) in pairs.items():
            rss = b["peak_rss_mib"] / a["peak_rss_mib"]
            out.setdefault(name, []).append({
                "from_customers": small["customers"], "to_customers": large["customers"],
                "time_ratio": round(b["absolute_s"] / a["absolute_s"], 2), "peak_rss_ratio": round(rss, 2),
                "peak_rss_mib": [a["peak_rss_mib"], b["peak_rss_mib"]], "memory_flat": rss <= FLAT_RSS,
            })
    return out


def memory_verdicts(sizes: list[dict]) -> None:
    """Goals that say "memory flat" are met only if peak RSS at the goal size is within FLAT_RSS of a tenth of it."""
    if len(sizes) < 2:
        return
    small, large = sizes[-2]["benchmarks"], sizes[-1]["benchmarks"]
    for name, b in large.items():
        if "memory flat" in b.get("goal", "") and name in small:
            ratio = b["peak_rss_mib"] / small[name]["peak_rss_mib"]
            b["memory_flat"] = ratio <= FLAT_RSS
            b["peak_rss_ratio_at_10x"] = round(ratio, 2)
            if b["meets_goal"] is not None:
                b["meets_goal"] = b["meets_goal"] and b["memory_flat"]


def summary(result: dict) -> str:
    lines = [(f"dunningops ledger + send cycle benchmarks  {result['timestamp']}  commit {str(result['git']['commit'])[:10]}"
              f"{' (dirty)' if result['git']['dirty'] else ''}  {result['machine']['cpu_count']} CPUs  "
              f"load {result['machine']['loadavg_at_start']} → {result['machine'].get('loadavg_at_end')}")]

    def verdict(b: dict) -> str:
        text = {True: "ok", False: "MISSES GOAL", None: "-"}[b.get("meets_goal")]
        return text + (" (memory not flat)" if b.get("memory_flat") is False else "")

    for size in result["sizes"]:
        r = size["rows"]
        lines.append(f"\n{size['customers']:,} customers: {r['contacts']:,} contacts, {r['invoices']:,} invoices, {r['payments']:,} payments")
        lines.append(f"  {'figure':<30} {'ours':>9} {'anchor':>9} {'ratio':>8} {'peak RSS':>9}")
        for name, b in size["benchmarks"].items():
            if "anchor_s" in b:
                lines.append(f"  {name:<30} {b['absolute_s']:8.3f}s {b['anchor_s']:8.3f}s {b['ratio']:7.2f}× {b['peak_rss_mib']:6.1f} MiB  {verdict(b)}"
                             + (f"  ({b['decisions']:,} decisions)" if "decisions" in b else "")
                             + (f"  ({b['vs_first_import']}× the first import)" if "vs_first_import" in b else ""))
            else:
                lines.append(f"  {name:<30} {b['absolute_s']:8.3f}s {'':>9} {'':>8} {b['peak_rss_mib']:6.1f} MiB  "
                             f"{b['sent']:,} sent, {b['todos']:,} to-dos: {b['messages_per_s']:,.0f} msg/s"
                             + (f" = {b['ratio']}× anchor (1)" if "ratio" in b else ""))
    send = result.get("send")
    if send:
        lines.append(f"\nRendering + sending {SEND_MESSAGES:,} reminders to smtp-sink (ledger of {send['ledger_customers']:,} customers)")
        for name, a in send["anchors"].items():
            lines.append(f"  anchor {name:<23} {a['absolute_s']:8.3f}s  {a['messages_per_s']:8,.0f} msg/s  {a['peak_rss_mib']:6.1f} MiB")
        for name, b in send["benchmarks"].items():
            lines.append(f"  {name:<30} {b['absolute_s']:8.3f}s  {b['messages_per_s']:8,.0f} msg/s  {b['peak_rss_mib']:6.1f} MiB"
                         f"  {b['ratio']}× (1), {b['ratio_to_anchor2']}× (2)  {verdict(b)}")
    pg = result["postgresql"]
    if "imports" in pg:
        lines.append(f"\nPostgreSQL ledger import ({pg['customers']:,} customers), against psql \\copy of the same file:")
        for name, b in pg["imports"].items():
            lines.append(f"  {name:<30} {b['absolute_s']:8.3f}s  {b['peak_rss_mib']:6.1f} MiB"
                         f"  {b['ratio']}× (\\copy {b['anchor_s']:.3f}s)")
    if "decide" in pg:
        b = pg["decide"]
        lines.append(f"\nPostgreSQL ({pg['customers']:,} customers): decide {b['absolute_s']:.3f}s vs SELECT {b['anchor_s']:.4f}s,"
                     f" {b['decisions']:,} decisions, {b['peak_rss_mib']:.1f} MiB; the whole dry run {pg['dry_run']['absolute_s']:.3f}s")
    else:
        lines.append(f"\nPostgreSQL: {pg.get('skipped')}")
    if result["growth"]:
        lines.append("\nGrowth at 10× the customers (time ratio; peak RSS ratio):")
        for name, steps in result["growth"].items():
            s = steps[-1]
            lines.append(f"  {name:<40} {s['time_ratio']:6.2f}×  RSS {s['peak_rss_ratio']:.2f}× {s['peak_rss_mib']}"
                         f"{'' if s['memory_flat'] or name.startswith('anchor') else '  (not flat)'}")
    if result.get("profiles"):
        lines.append(f"\nProfiles of the missed goals (top 15 cumulative) in the JSON: {', '.join(result['profiles'])}")
    return "\n".join(lines)


# --- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ledger_cycle", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_CUSTOMERS:,} customers (growth from {QUICK_CUSTOMERS // 10:,}) "
                                                             f"instead of {FULL_CUSTOMERS:,} (from {FULL_CUSTOMERS // 10:,})")
    parser.add_argument("--customers", type=int, help="the goal size in customers, overriding --quick (growth from a tenth)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the JSON result (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="measured runs per figure at up to 10,000 customers (default: 3)")
    parser.add_argument("--repeat-large", type=int, default=1,
                        help="measured runs of the import pipeline and decide above 10,000 customers (default: 1)")
    parser.add_argument("--no-postgres", action="store_true", help="skip decide on PostgreSQL")
    parser.add_argument("--no-run-send", action="store_true", help="skip the whole `run send` to smtp-sink")
    parser.add_argument("--no-profile", action="store_true", help="no cProfile of missed goals")
    parser.add_argument("--keep", action="store_true", help="keep the generated ledgers and stores")
    parser.add_argument("--imports-only", action="store_true",
                        help="only the ledger import figures (no decide, run send, render+send or PostgreSQL): for iterating on the import")
    args = parser.parse_args(argv)
    if args.imports_only:
        args.no_postgres = args.no_run_send = True
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    goal = args.customers or (QUICK_CUSTOMERS if args.quick else FULL_CUSTOMERS)
    sizes = [max(1, goal // 10), goal]
    result: dict = {
        "schema": SCHEMA, "timestamp": timestamp(), "git": git_info(), "machine": machine_info(),
        "run": {"quick": args.quick, "customers": sizes, "goal_customers": goal, "repeat": args.repeat,
                "repeat_large": args.repeat_large, "seed": SEED, "data_now": DATA_NOW, "at": AT,
                "statistic": "median of the measured runs; wall time of the whole subprocess unless the entry says otherwise",
                "peak_rss": "ru_maxrss of each measured subprocess (os.wait4 in the runner's wrapper), max over its runs",
                "flat_memory_threshold": f"peak RSS at 10× the data ≤ {FLAT_RSS}× counts as flat"},
    }
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="dunningops-ledger-cycle-"))
    try:
        with smtp_sink() as port, postgres(not args.no_postgres) as pg:
            use_pycache(work / "pycache")
            log(f"working in {work}; smtp-sink on 127.0.0.1:{port}; PostgreSQL: {pg.info.get('server') or pg.info.get('skipped')}")
            config = sink_config(port, work / "config-sink")
            result["sizes"], ledgers, stores = [], {}, {}
            for index, n in enumerate(sizes):
                folder = work / f"c{n}"
                folder.mkdir()
                log(f"[{n:,} customers] generating the ledger")
                counts, gen = generate(n, folder / "ledger")
                ledgers[n] = folder / "ledger"
                repeat = args.repeat if n <= 10_000 else args.repeat_large
                snapshots = None
                if n == PROFILE_CUSTOMERS and not args.no_profile:
                    snapshots = folder / "snapshots"
                    snapshots.mkdir()
                benchmarks, anchors, store = bench_import(n, folder, ledgers[n], counts, repeat, 1 if index == 0 else 0, snapshots)
                stores[n] = store
                if not args.imports_only:
                    decide, dry_run, decide_anchor = bench_decide(f"{n:,} customers", sqlite_url(store), ANCHOR_SQLITE,
                                                                  str(store), repeat, goal_size=n == goal)
                    benchmarks["decide_sqlite"] = decide
                    benchmarks["dry_run_sqlite"] = dry_run
                    anchors["select_open_invoices"] = decide_anchor
                if not args.no_run_send:
                    benchmarks["run_send_sqlite"] = bench_run_send(n, folder, store, config, counts)
                result["sizes"].append({"customers": n, "rows": counts, "ledger": gen, "benchmarks": benchmarks, "anchors": anchors})

            memory_verdicts(result["sizes"])
            send_ledger = ledgers.get(SEND_LEDGER_CUSTOMERS) or ledgers[sizes[-1]]
            entries, anchors = ({}, {"smtplib_10_connections": {"messages_per_s": 0}}) if args.imports_only else bench_send(send_ledger, port, args.repeat)
            result["send"] = {"messages": SEND_MESSAGES, "ledger_customers": int(send_ledger.parent.name[1:]),
                              "templates": "courtesy, first-reminder (text), second-reminder (html), final-notice (blocks), in turn",
                              "benchmarks": entries, "anchors": anchors}
            a1 = anchors["smtplib_10_connections"]
            for size in result["sizes"]:
                b = size["benchmarks"].get("run_send_sqlite")
                if b:
                    b["anchor"], b["anchor_messages_per_s"] = "(1) bare smtplib, 10 connections (send benchmark)", a1["messages_per_s"]
                    b["ratio"] = round(b["messages_per_s"] / a1["messages_per_s"], 2)
                    b["meets_goal"] = b["ratio"] >= 0.5

            if args.imports_only:
                result["postgresql"] = {"skipped": "--imports-only"}
                result.pop("send")
            elif pg.make_database is None:
                result["postgresql"] = pg.info
            else:
                result["postgresql"] = pg_decide(pg, ledgers.get(PG_CUSTOMERS) or ledgers[sizes[-1]], args.repeat)

            result["growth"] = growth(result["sizes"])
            if not args.no_profile:
                result["profiles"] = profiles(result, stores, work, send_ledger, port, config)
        result["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        result["run"]["peak_rss_floor_mib"] = round(rss_floor_mib(), 1)
        result["run"]["wall_s"] = round(time.monotonic() - started, 1)
    except BenchmarkError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    path = write_json(result, args.out, "ledger-cycle")
    print(summary(result))
    print(f"\nWrote {path}")
    return 0


def pg_copy_anchor(psql: Path, dsn: str, csv_file: Path, repeat: int) -> Sample:
    """``psql -c "\\copy t FROM FILE (FORMAT csv, HEADER)"`` into a new bare table of text columns, one per CSV column."""
    with csv_file.open(encoding="utf-8") as fh:
        columns = len(next(csv.reader(fh)))
    create = f"DROP TABLE IF EXISTS bare; CREATE TABLE bare ({', '.join(f'c{i} text' for i in range(columns))})"
    return measure([psql, "-X", "-q", dsn, "-c", f"\\copy bare FROM '{csv_file}' WITH (FORMAT csv, HEADER true)"],
                   repeat=max(repeat, 3), warmup=1,
                   setup=lambda: subprocess.run([str(psql), "-X", "-q", dsn, "-c", create], check=True, capture_output=True))


def pg_decide(pg, ledger: Path, repeat: int) -> dict:
    """On PostgreSQL: the four imports (each run on a new database) against ``psql \\copy``, then decide."""
    customers = int(ledger.parent.name[1:])
    runs: dict[str, list[Run]] = {k: [] for k in KINDS}
    url = ""
    for rep in range(repeat):
        url = pg.make_database(f"ledger_cycle_{rep}")
        counts_run = run_cmd(cli("apply", "--auto-approve", "--config", CONFIG, "--database-url", url), now=True)
        if "Apply complete!" not in counts_run.stdout:
            raise BenchmarkError(f"apply on PostgreSQL failed:\n{counts_run.stdout[-2000:]}")
        for kind in KINDS:
            log(f"[PostgreSQL, {customers:,} customers] import {kind}, run {rep + 1} of {repeat}")
            argv = cli("ledger", "import", "--config", CONFIG, "--database-url", url, kind, ledger / f"{kind}.csv")
            run = run_cmd(argv, now=True)
            expect(" added")(run)
            runs[kind].append(run)
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    imports, anchors = {}, {}
    for kind in KINDS:
        log(f"[PostgreSQL] anchor: psql \\copy {kind}.csv")
        anchors[kind] = pg_copy_anchor(pg.psql, dsn, ledger / f"{kind}.csv", repeat)
        s = Sample(tuple(runs[kind]))
        imports[f"import_{kind}"] = entry(s, anchors[kind], f"psql \\copy {kind}.csv into a bare table of text columns",
                                          "for comparison (the goal is judged on SQLite)", None)
    total, total_anchor = summed([Sample(tuple(runs[k])) for k in KINDS]), summed([anchors[k] for k in KINDS])
    imports["import_all"] = entry(total, total_anchor, "psql \\copy of the four files", "for comparison", None)
    subprocess.run([str(pg.psql), "-X", "-q", dsn, "-c", "DROP TABLE IF EXISTS bare"], check=True, capture_output=True)
    decide, dry_run, anchor = bench_decide(f"PostgreSQL, {customers:,} customers", url, ANCHOR_PG, dsn, repeat, goal_size=False)
    decide["note"] = dry_run["note"] = f"the goals are judged on SQLite at 100k customers; PostgreSQL at {customers:,} for comparison"
    return {**pg.info, "note": "peak RSS is the dunningops client's only; the server runs in its own processes",
            "customers": customers, "imports": imports, "decide": decide, "dry_run": dry_run, "anchor": anchor}


def profiles(result: dict, stores: dict, work: Path, send_ledger: Path, port: int, config: Path) -> dict:
    """cProfile of the in-process call behind each missed goal."""
    out: dict = {}
    goal = result["sizes"][-1]
    snapshots = work / f"c{PROFILE_CUSTOMERS}" / "snapshots"
    for kind in KINDS:
        if goal["benchmarks"][f"import_{kind}"]["meets_goal"] or not snapshots.exists():
            continue
        log(f"[profile] import {kind} at {PROFILE_CUSTOMERS:,} customers")
        db = work / "profile.db"
        copy_store(snapshots / f"before-{kind}.db", db)
        out[f"import_{kind}"] = {"customers": PROFILE_CUSTOMERS, **profile(
            ["import", "--url", sqlite_url(db), "--kind", kind, "--file", work / f"c{PROFILE_CUSTOMERS}" / "ledger" / f"{kind}.csv",
             "--now", DATA_NOW])}
    if "send" not in result:  # --imports-only
        return out
    if goal["benchmarks"]["decide_sqlite"]["meets_goal"] is False:
        log(f"[profile] decide at {goal['customers']:,} customers")
        out["decide_sqlite"] = {"customers": goal["customers"],
                                **profile(["decide", "--url", sqlite_url(stores[goal["customers"]]), "--at", AT])}
    run_send = goal["benchmarks"].get("run_send_sqlite")
    prepared = work / f"c{PROFILE_CUSTOMERS}" / "send-base.db"
    if run_send and run_send["meets_goal"] is False and prepared.exists():
        log(f"[profile] run send (not dry-run) at {PROFILE_CUSTOMERS:,} customers")
        db = work / "profile.db"
        copy_store(prepared, db)
        out["run_send_sqlite"] = {"customers": PROFILE_CUSTOMERS,
                                  **profile(["run_send", "--url", sqlite_url(db), "--at", AT, "--config", config])}
    send = result["send"]["benchmarks"]["render_send_batch200"]
    if not send["meets_goal"]:
        log("[profile] render + send")
        try:
            data = json.loads(run_cmd(send_child("ours", send_ledger, port, "--batch", "200", "--profile")).stdout)
            out["render_send_batch200"] = {"seconds_with_profiler": round(data["seconds"], 3),
                                           "top15_cumulative": data["profile_top15_cumulative"].strip()}
        except BenchmarkError as exc:
            out["render_send_batch200"] = {"error": str(exc)[-2000:]}
    return out


if __name__ == "__main__":
    sys.exit(main())
