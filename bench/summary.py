"""The one table of `bench/run`: the headline figures every benchmark of the run recorded, in order.

Each benchmark appends its headline rows to the file named by KUBELITE_BENCH_SUMMARY
(`common.record_summary`); `bench/run` prints them with this module once every benchmark is done.
The full tables, with every stage and reference, are printed above it by the benchmarks themselves.

Run: `.venv/bin/python -m bench.summary FILE [LOADAVG_AT_START] [SECONDS]` (bench/run does).
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

from bench.common import Row, print_table, read_summary

ORDER = ("runtime", "workers", "cli", "engine", "gitops", "network", "probes", "config", "pull", "api",
         "portforward", "streams")


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: python -m bench.summary FILE [LOADAVG_AT_START] [SECONDS]")
    records = read_summary(Path(sys.argv[1]))
    records.sort(key=lambda r: ORDER.index(r[0]) if r[0] in ORDER else len(ORDER))
    rows: list[Row] = []
    for _bench, bench_rows in records:
        rows.extend(bench_rows)
    ran = {bench for bench, _ in records}
    load_start = sys.argv[2] if len(sys.argv) > 2 else "?"
    seconds = sys.argv[3] if len(sys.argv) > 3 else "?"
    load_end = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    notes = [f"run finished {datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')} after {seconds} s; "
             f"load average {load_start} at start, {load_end} at end",
             "headline figures only; every stage, reference and note is in the tables above",
             "benchmarks in this run: " + (", ".join(b for b in ORDER if b in ran) or "none")]
    missing = [b for b in ORDER if b not in ran]
    if missing:
        notes.append("not in this run: " + ", ".join(missing))
    print_table("bench/run summary: kubelite's figures next to the references measured in the same run", rows,
                notes=notes)


if __name__ == "__main__":
    main()
