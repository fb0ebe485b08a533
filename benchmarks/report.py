"""The result file (JSON) and the short human summary printed on stdout."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCHEMA = "dunningops-benchmarks/1"

# What performance.md asks for and this run does not measure: say so, never fake it.
TODO = {
    "store_with_ledger": (
        "Partly measured: `plan_no_changes_with_ledger` and `ledger_independence` plan the goal-size "
        "config against a store holding a ledger from `dunningops ledger generate` (see run.ledger_customers "
        "and the row counts in the entry). Still to do: the same with due reminders, to-dos and sent "
        "messages in the store once the send cycle writes them, and on PostgreSQL."
    ),
    "elsewhere": (
        "ledger import, deciding what is due, rendering + sending: `python -m benchmarks.ledger_cycle` "
        "(its own JSON; see benchmarks/LEDGER_CYCLE.md), not this command"
    ),
    "not_yet_benchmarked": [
        "import cycle: 10,000 messages from Dovecot, against a bare imapclient fetch",
        "daemon: 2 daemons on one PostgreSQL against one",
    ],
}


def machine_info() -> dict:
    info: dict = {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "executable": sys.executable,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["mem_total_mib"] = int(line.split()[1]) // 1024
                break
    except OSError:
        pass  # not Linux: the figures above are enough
    return info


def git_info() -> dict:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    # Others edit src/ while benchmarks run: a dirty tree means the commit alone does not identify the code.
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None}


def timestamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def growth(sizes: list[dict]) -> dict:
    """Cost at 10N over cost at N, for each benchmark measured at both sizes."""
    out: dict[str, list[dict]] = {}
    for small, large in zip(sizes, sizes[1:]):
        if small["n"] * 10 != large["n"]:
            continue  # growth is stated for 10x the size
        pairs = {"yaml_anchor": (small["anchor"], large["anchor"])}
        pairs.update({k: (small["benchmarks"][k], v) for k, v in large["benchmarks"].items() if k in small["benchmarks"]})
        for name, (a, b) in pairs.items():
            out.setdefault(name, []).append({
                "from_n": small["n"], "to_n": large["n"],
                "time_ratio": round(b["absolute_s"] / a["absolute_s"], 2),
                "peak_rss_ratio": round(b["peak_rss_mib"] / a["peak_rss_mib"], 2),
            })
    return out


def write_json(result: dict, out_dir: Path, prefix: str = "bench") -> Path:
    """``<prefix>-<timestamp>.json`` in ``out_dir``; the plan/apply benchmark's also as ``latest.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{prefix}-{result['timestamp'].replace(':', '').replace('-', '')}.json"
    text = json.dumps(result, indent=2, ensure_ascii=False) + "\n"
    path.write_text(text, encoding="utf-8")
    if prefix == "bench":
        (out_dir / "latest.json").write_text(text, encoding="utf-8")
    return path


def summary(result: dict) -> str:
    lines = [f"dunningops benchmarks  {result['timestamp']}  commit {str(result['git']['commit'])[:10]}"
             f"{' (dirty)' if result['git']['dirty'] else ''}  {result['machine']['cpu_count']} CPUs"
             f"  Python {result['machine']['python']}"]
    for size in result["sizes"]:
        if "anchor" not in size:
            lines.append(f"\nN={size.get('n')}: failed before the anchor was measured")
            continue
        anchor = size["anchor"]
        lines.append(f"\nN={size['n']:,} objects ({size['config']['yaml_files']} YAML + {size['config']['body_files']} body files)")
        lines.append(f"  {'yaml_anchor':<28} {anchor['absolute_s']:8.3f} s  {'':>8}  {anchor['peak_rss_mib']:7.1f} MiB")
        for name, b in size["benchmarks"].items():
            verdict = "ok" if b["meets_goal"] else "MISSES GOAL"
            lines.append(f"  {name:<28} {b['absolute_s']:8.3f} s  {b['ratio']:6.2f}×  {b['peak_rss_mib']:7.1f} MiB"
                         f"  vs {b['anchor']}  {verdict}")
    if result["growth"]:
        lines.append("\nGrowth (time at 10N / time at N):")
        for name, steps in result["growth"].items():
            lines.append(f"  {name:<28} " + ", ".join(f"{s['from_n']:,}→{s['to_n']:,}: {s['time_ratio']}×" for s in steps))
    pg = result["postgresql"]
    if "skipped" in pg:
        lines.append(f"\nPostgreSQL skipped: {pg['skipped']}")
    lines.append(f"\nNot benchmarked yet: {len(result['todo']['not_yet_benchmarked'])} items of performance.md (see JSON 'todo')")
    return "\n".join(lines)
