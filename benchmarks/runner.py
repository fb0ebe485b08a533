"""Run a command as a subprocess and measure its wall time and its own peak RSS.

A child's ``ru_maxrss`` includes the RSS of the process it was forked from
(Linux keeps the pre-exec high-water mark), so measuring from this harness
would report max(harness, command). Each command is therefore started by a
tiny wrapper (``python -S``, ~8 MiB) that times it, waits for it with
``os.wait4`` and writes ``seconds`` and ``ru_maxrss`` to a file: the figure is
max(wrapper, command), and the wrapper's floor is reported beside it.
Timing inside the wrapper also keeps the wrapper's own start-up out of it.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


class BenchmarkError(RuntimeError):
    """A measured command failed or did not do what the benchmark expected."""


@dataclass(frozen=True)
class Run:
    seconds: float
    peak_rss_kib: int  # ru_maxrss is in KiB on Linux
    stdout: str


@dataclass(frozen=True)
class Sample:
    """Repeated runs of one command (warm-up runs excluded)."""

    runs: tuple[Run, ...]

    @property
    def median_s(self) -> float:
        return statistics.median(r.seconds for r in self.runs)

    @property
    def min_s(self) -> float:
        return min(r.seconds for r in self.runs)

    @property
    def peak_rss_mib(self) -> float:
        return max(r.peak_rss_kib for r in self.runs) / 1024

    def to_dict(self) -> dict:
        seconds = [r.seconds for r in self.runs]
        return {
            "absolute_s": round(self.median_s, 4),
            "min_s": round(min(seconds), 4),
            "max_s": round(max(seconds), 4),
            "samples_s": [round(s, 4) for s in seconds],
            "peak_rss_mib": round(self.peak_rss_mib, 1),
        }


def bin_path(name: str) -> Path:
    """A console script of the running interpreter's environment (the project's venv)."""
    return Path(sys.executable).parent / name


_pycache: Path | None = None


def use_pycache(folder: Path) -> None:
    """Cache bytecode of every measured process in ``folder`` (see clean_env)."""
    global _pycache
    _pycache = folder


def clean_env() -> dict[str, str]:
    """The environment of measured commands.

    The user's own store or config must not leak in. Bytecode is cached (after
    the warm-up run) as in a regular install, even where PYTHONDONTWRITEBYTECODE
    is set, but in a folder of the run rather than in the source tree.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUNNINGOPS_")}
    if _pycache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(_pycache)
    return env


WRAPPER = (
    "import json, os, sys, time\n"
    "report, argv = sys.argv[1], sys.argv[2:]\n"
    "start = time.perf_counter()\n"
    "pid = os.posix_spawnp(argv[0], argv, os.environ)\n"
    "_, status, usage = os.wait4(pid, 0)\n"
    "seconds = time.perf_counter() - start\n"
    "with open(report, 'w') as fh:\n"
    "    json.dump({'seconds': seconds, 'maxrss_kib': usage.ru_maxrss}, fh)\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


def run_once(argv: Sequence[str | Path]) -> Run:
    """Run ``argv`` to completion under the wrapper; raise BenchmarkError on a non-zero exit."""
    argv = [str(a) for a in argv]
    with tempfile.TemporaryDirectory(prefix="dunningops-run-") as tmp:
        report, out, err = Path(tmp, "report.json"), Path(tmp, "stdout"), Path(tmp, "stderr")
        with out.open("wb") as stdout, err.open("wb") as stderr:
            code = subprocess.call([sys.executable, "-S", "-c", WRAPPER, str(report), *argv],
                                   stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, env=clean_env())
        text = out.read_text(errors="replace")
        if code != 0 or not report.exists():
            raise BenchmarkError(f"{' '.join(argv)} exited {code}:\n{err.read_text(errors='replace')[-2000:]}{text[-2000:]}")
        measured = json.loads(report.read_text())
    return Run(seconds=measured["seconds"], peak_rss_kib=measured["maxrss_kib"], stdout=text)


def rss_floor_mib() -> float:
    """The wrapper's own peak RSS: no figure can be below it (reported for honesty)."""
    return run_once(["true"]).peak_rss_kib / 1024


def measure(
    argv: Sequence[str | Path],
    *,
    repeat: int,
    warmup: int = 1,
    expect: str | None = None,
    setup: Callable[[], None] | None = None,
) -> Sample:
    """Run ``argv`` ``warmup`` + ``repeat`` times; keep the last ``repeat``.

    Args:
        expect: text that must appear in stdout of every run (proves the run did the intended work).
        setup: called before each run, outside the timing (e.g. a fresh store for apply).
    """
    runs: list[Run] = []
    for index in range(warmup + repeat):
        if setup is not None:
            setup()
        run = run_once(argv)
        if expect is not None and expect not in run.stdout:
            raise BenchmarkError(f"expected {expect!r} in the output of {' '.join(map(str, argv))}:\n{run.stdout[-2000:]}")
        if index >= warmup:
            runs.append(run)
    return Sample(tuple(runs))
