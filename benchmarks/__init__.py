"""dunningops benchmarks: real CLI runs, each figure a ratio to an anchor measured in the same run.

Run with ``python -m benchmarks [--quick] [--out DIR]``; see benchmarks/README.md
and shared/design/performance.md for the goals.
"""
