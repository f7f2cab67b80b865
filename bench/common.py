"""What the benchmarks share: the machine description, summary statistics, a manual clock, the table.

Owns: how a set of timings becomes a figure (median and p95 by the inclusive method), how a figure
is printed (`figure | median | p95 | target | reference`, the machine described above the rows)
and how the machine is described (CPU model, cores, memory, kernel, Python). Nothing here asserts
a timing: a missed target is printed as "missed", never raised.

Standard library only.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Sequence

#: The repository root (bench/ lives directly under it).
REPO = Path(__file__).resolve().parent.parent
#: A file `bench/run` names for the run: each benchmark appends its headline rows, `bench.summary` prints them.
SUMMARY_ENV = "KUBELITE_BENCH_SUMMARY"


# ---------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Summary:
    """The median and 95th percentile of `n` timings, in seconds."""

    median_s: float
    p95_s: float
    n: int


def summarize(samples: Sequence[float]) -> Summary:
    """Median and p95 (inclusive method: interpolated between the samples, never beyond them)."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    p95 = statistics.quantiles(ordered, n=100, method="inclusive")[94] if len(ordered) > 1 else ordered[0]
    return Summary(statistics.median(ordered), p95, len(ordered))


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of `fn` takes (wall clock, `perf_counter`)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def repeat(fn: Callable[[], object], times: int) -> list[float]:
    return [timed(fn) for _ in range(times)]


class ManualClock:
    """A clock the benchmark moves: the agent and the fake runtime read time only from it."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


# ---------------------------------------------------------------------- formatting


def duration(seconds: float) -> str:
    """`0.42 ms`, `12.3 ms`, `2.41 s`: three significant figures or so, in the natural unit."""
    if seconds >= 1:
        return f"{seconds:.2f} s"
    ms = seconds * 1000
    return f"{ms:.2f} ms" if ms < 10 else f"{ms:.1f} ms"


def target(limit_s: float, measured_s: float, *, strict: bool = True) -> str:
    """`< 50 ms (met)` or `<= 100 ms (missed)`: printed, never asserted."""
    met = measured_s < limit_s if strict else measured_s <= limit_s
    sign = "<" if strict else "<="
    limit = f"{limit_s * 1000:g} ms" if limit_s < 1 else f"{limit_s:g} s"
    return f"{sign} {limit} ({'met' if met else 'missed'})"


@dataclass(frozen=True)
class Row:
    """One line of a table: `target` and `reference` are free text ("-" when there is none)."""

    figure: str
    median: str
    p95: str
    target: str = "-"
    reference: str = "-"

    @classmethod
    def of(cls, figure: str, summary: Summary, target: str = "-", reference: str = "-") -> "Row":
        return cls(figure, duration(summary.median_s), duration(summary.p95_s), target, reference)


HEADER = Row("figure", "median", "p95", "target", "reference")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return "unknown"


def _cores() -> str:
    total = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else total
    return f"{total}" if usable == total else f"{usable} of {total}"


def machine() -> list[tuple[str, str]]:
    """(label, value) pairs describing where the figures were measured."""
    return [
        ("cpu", f"{_cpu_model()}, {_cores()} cores"),
        ("memory", _memory()),
        ("kernel", f"{platform.system()} {platform.release()}"),
        ("python", f"{platform.python_implementation()} {platform.python_version()} ({_shown(sys.executable)})"),
    ]


def print_table(title: str, rows: Sequence[Row], notes: Sequence[str] = ()) -> None:
    """The machine, then the rows in aligned columns, then the notes."""
    print(f"== {title} ==")
    for label, value in machine():
        print(f"{label:<8}{value}")
    print()
    all_rows = [HEADER, *rows]
    columns = list(zip(*[(r.figure, r.median, r.p95, r.target, r.reference) for r in all_rows]))
    widths = [max(len(cell) for cell in column) for column in columns]
    right = {1, 2}  # median and p95 read best right-aligned
    for i, row in enumerate(all_rows):
        cells = (row.figure, row.median, row.p95, row.target, row.reference)
        print(" | ".join(c.rjust(w) if j in right else c.ljust(w)
                         for j, (c, w) in enumerate(zip(cells, widths))).rstrip())
        if i == 0:
            print("-+-".join("-" * w for w in widths))
    for note in notes:
        print(f"  {note}")
    print(flush=True)


def record_summary(bench: str, rows: Sequence[Row]) -> None:
    """Append `rows` (the headline figures of `bench`) to the run's summary file, if `bench/run` named one."""
    path = os.environ.get(SUMMARY_ENV)
    if not path:
        return
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps({"bench": bench, "rows": [asdict(r) for r in rows]}) + "\n")


def read_summary(path: Path) -> list[tuple[str, list[Row]]]:
    """The (bench, rows) records `record_summary` appended to `path`, in order."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            out.append((record["bench"], [Row(**r) for r in record["rows"]]))
    return out


def stop_process(proc: subprocess.Popen[Any]) -> int:
    """SIGTERM a daemon this run started, SIGKILL it (by its PID) if it does not stop; its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def _shown(path: str) -> str:
    """A path as the tables print it: relative to the repository when inside it (no machine's paths)."""
    try:
        return os.path.relpath(path, REPO) if os.path.abspath(path).startswith(str(REPO) + os.sep) else path
    except ValueError:
        return path


def cpu_ns(pid: int) -> int:
    """CPU time of every thread of `pid` so far (schedstat, ns); 0 when it is gone."""
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(stat.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total
