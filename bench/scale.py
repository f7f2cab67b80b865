"""The scale curve as people read it: one line per level of running pods, and a small plot.

Owns: how the curve's figures (a new pod's start, kubelite's idle CPU, VmRSS, memory per pod,
`kubelite get pods`, each against the running pods) become a compact text table and a PNG. The
measuring is `bench_runtime`'s part 4; nothing here measures or asserts.

The plot needs matplotlib (bench/requirements.txt, installed into .venv by `bench/run`, never a
test or runtime dependency). It renders with the Agg backend, no display; without matplotlib the
plot is skipped and said so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence


@dataclass(frozen=True)
class Level:
    """One level's figures, in the units they are printed in."""

    pods: int
    start_ms: float            # a new pod's start, median
    start_p95_ms: float
    noticed_ms: float          # of the start: written -> the daemon's Scheduled line (noticed, scanned)
    cpu_percent: float         # kubelite's idle CPU, share of one core
    rss_mib: float             # kubelite's VmRSS
    own_kib_per_pod: float | None     # kubelite's VmRSS growth over 0 pods, per pod
    system_mib_per_pod: float | None  # system-wide used memory over 0 pods, per pod
    pod_mib: float | None             # a pod's processes' PSS (median) + kubelite's own per pod
    get_ms: float              # `kubelite get pods`, median
    runc_ms: float | None = None   # `runc run` of a trivial container at this level (the floor), median


def table(levels: Sequence[Level]) -> list[str]:
    """The curve as aligned text lines: one line per level, the ratio to 0 pods beside the start."""
    basis = levels[0].start_ms
    head = ("pods", "new pod start", "x of 0 pods", "of it noticed", "runc run", "x of 0 pods", "idle CPU", "VmRSS", "own/pod",
            "memory/pod", "system/pod", "get pods")
    runc_basis = levels[0].runc_ms
    rows = [head]
    for level in levels:
        runc = level.runc_ms
        rows.append((str(level.pods), f"{level.start_ms:.1f} ms", f"{level.start_ms / basis:.2f}x", f"{level.noticed_ms:.1f} ms",
                     "-" if runc is None else f"{runc:.1f} ms",
                     "-" if runc is None or not runc_basis else f"{runc / runc_basis:.2f}x",
                     f"{level.cpu_percent:.2f} %", f"{level.rss_mib:.1f} MiB",
                     "-" if level.own_kib_per_pod is None else f"{level.own_kib_per_pod:.1f} KiB",
                     "-" if level.pod_mib is None else f"{level.pod_mib:.2f} MiB",
                     "-" if level.system_mib_per_pod is None else f"{level.system_mib_per_pod:.2f} MiB",
                     f"{level.get_ms:.1f} ms"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = []
    for n, row in enumerate(rows):
        lines.append(" | ".join(c.rjust(w) for c, w in zip(row, widths)))
        if n == 0:
            lines.append("-+-".join("-" * w for w in widths))
    return lines


def plot(levels: Sequence[Level], path: Path, *, title: str, start_ratio: float, cpu_target: float,
         get_target_ms: float) -> str:
    """Render the curve to `path` (800 x 500 px PNG); returns a line saying what was done."""
    try:
        import matplotlib
    except ImportError:
        return "plot skipped: matplotlib is not installed (bench/run installs bench/requirements.txt into .venv)"
    matplotlib.use("Agg")
    from matplotlib import pyplot

    pods = [level.pods for level in levels]
    basis = levels[0].start_ms
    fig, axes = pyplot.subplots(2, 2, figsize=(8, 5), dpi=100, sharex=True)
    panels = (
        (axes[0][0], "new pod start (ms)", [lv.start_ms for lv in levels], basis * start_ratio,
         f"{start_ratio:g}x of 0 pods"),
        (axes[0][1], "kubelite get pods (ms)", [lv.get_ms for lv in levels], get_target_ms,
         f"{get_target_ms:g} ms"),
        (axes[1][0], "kubelite VmRSS (MiB)", [lv.rss_mib for lv in levels], None, ""),
        (axes[1][1], "kubelite idle CPU (% of a core)", [lv.cpu_percent for lv in levels], cpu_target,
         f"{cpu_target:g} %"),
    )
    for ax, label, values, limit, limit_label in panels:
        ax.plot(pods, values, marker="o", color="tab:blue")
        if label.startswith("new pod"):
            ax.fill_between(pods, values, [lv.start_p95_ms for lv in levels], color="tab:blue", alpha=0.15,
                            label="median to p95")
        if limit is not None:
            ax.axhline(limit, color="tab:red", linestyle="--", linewidth=1, label=f"target {limit_label}")
        ax.set_title(label, fontsize=9)
        highest = values + ([lv.start_p95_ms for lv in levels] if label.startswith("new pod") else [])
        ax.set_ylim(bottom=0, top=max(highest + ([limit * 1.15] if limit is not None else [])) * 1.15 or 1)
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=8)
        if limit is not None or label.startswith("new pod"):
            ax.legend(fontsize=7, loc="lower right")
    for ax in axes[1]:
        ax.set_xlabel("running pods", fontsize=8)
        ax.set_xticks(pods)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    # no timestamp or version in the file: the same figures render the same bytes
    fig.savefig(tmp, format="png", metadata={"Software": None})
    pyplot.close(fig)
    os.replace(tmp, path)
    return f"plot rendered (matplotlib {matplotlib.__version__}, Agg, 800x500 px)"
