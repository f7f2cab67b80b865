"""Probe benchmark: what 100 pods' http probes at periodSeconds 1 cost `kubelite serve`.

Real pods on runc + conmon + catatonit: each runs busybox `httpd -f -v` serving /healthz, with an
httpGet liveness and an httpGet readiness probe, both `periodSeconds: 1` — 200 probe runs per
second. Measured on the daemon's process (all its threads: schedstat, as `bench.common.cpu_ns`):

1. 100 such pods without probes (the same command): kubelite's CPU over the window, as a share of
   one core, and its thread count — the floor (periodic relists, nothing else);
2. the same 100 pods with both probes, once every pod is READY: the same figures, plus the probe
   runs the pods' httpd actually answered per second (each `-v` request is one line in the
   container's log, counted before and after the window).

Target: probing costs under 10 % of one core (figure 2 minus figure 1; figure 2 is printed too).
Window: 20 s (one periodic relist falls into it), 60 s with `--long` / KUBELITE_BENCH_LONG=1.

Everything lives below one temporary directory in /tmp; at the end every manifest is deleted,
kubelite removes every pod, the daemon gets SIGTERM and nothing of the run may remain (the same
check as `bench_runtime`). Needs root; about two minutes. Run: `bench/run probes`, or
`.venv/bin/python -m bench.bench_probes [--long]` from the repository root.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_runtime import IMAGE, Node, final_check, force_cleanup, orderly_cleanup, wait_for
from bench.common import REPO, Row, cpu_ns, print_table, record_summary

PODS = 100
PORT = 8080
LONG = "--long" in sys.argv[1:] or os.environ.get("KUBELITE_BENCH_LONG", "") not in ("", "0")
WINDOW_S = 60.0 if LONG else 20.0
TARGET = 10.0   # % of one core
SCRIPT = f"mkdir -p /www; echo ok > /www/healthz; trap 'exit 0' TERM; httpd -f -v -p {PORT} -h /www & wait"


def manifest(name: str, probes: bool) -> str:
    container = {"name": "app", "image": IMAGE, "imagePullPolicy": "Never", "command": ["sh", "-c", SCRIPT]}
    if probes:
        probe = {"httpGet": {"path": "/healthz", "port": PORT}, "periodSeconds": 1}
        container.update(livenessProbe=probe, readinessProbe=probe)
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                       "spec": {"terminationGracePeriodSeconds": 2, "containers": [container]}})


def pods_json(node: Node) -> list[dict]:
    out = node.cli("get", "pods", "-o", "json")
    return json.loads(out.stdout)["items"] if out.returncode == 0 else []


def all_ready(node: Node, count: int) -> bool:
    items = pods_json(node)
    return len(items) == count and all(
        s.get("ready") for p in items for s in p.get("status", {}).get("containerStatuses", [{}]))


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def answered(node: Node) -> int:
    """Requests the pods' httpd logged so far (one CRI log line each)."""
    total = 0
    for log in (node.root / "logs").glob("*/app/*.log"):
        try:
            total += log.read_text(errors="replace").count("response:")
        except OSError:
            pass
    return total


def window(node: Node) -> tuple[float, int, float]:
    """(CPU % of one core, threads at the end, requests answered per second) over WINDOW_S."""
    assert node.proc is not None
    pid = node.proc.pid
    requests, cpu, began = answered(node), cpu_ns(pid), time.monotonic()
    time.sleep(WINDOW_S)
    cpu, elapsed = cpu_ns(pid) - cpu, time.monotonic() - began
    return 100.0 * cpu / 1e9 / elapsed, threads(pid), (answered(node) - requests) / elapsed


def run_level(node: Node, probes: bool) -> tuple[float, int, float, float]:
    names = [f"probe-{i:03d}" for i in range(PODS)]
    began = time.monotonic()
    for name in names:
        node.write_text(name, manifest(name, probes))
    wait_for(lambda: all_ready(node, PODS), timeout=300, what=f"{PODS} pods ready", interval=0.5)
    ready_s = time.monotonic() - began
    time.sleep(3)  # the start's events are written; then the steady state
    cpu, count, rate = window(node)
    for name in names:
        node.delete(name)
    wait_for(lambda: not pods_json(node), timeout=120, what="every pod removed", interval=0.5)
    return cpu, count, rate, ready_s


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench_probes needs root (runc, conmon, cgroups, overlay mounts)")
    base = Path(tempfile.mkdtemp(prefix="kubelite-bench-probes-", dir="/tmp"))
    node = Node(base / "node", base / "busybox.tar")
    failure: BaseException | None = None
    results: dict[bool, tuple[float, int, float, float]] = {}
    problems: list[str] = []
    try:
        subprocess.run([str(REPO / "scripts" / "build-busybox-image"), str(node.busybox_tar), IMAGE], check=True,
                       stdout=subprocess.DEVNULL)
        node.load_image()
        node.start()
        for probes in (False, True):
            results[probes] = run_level(node, probes)
    except BaseException as exc:  # noqa: BLE001 — clean up first, then report
        failure = exc
    finally:
        try:
            orderly_cleanup(node)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"orderly cleanup: {exc}")
            node.stop()
            force_cleanup(node)
        check = final_check(node, None, base)
        problems += [f"left behind: {x}" for x in check.left]
        if check.left:
            print(f"bench_probes: keeping {base} for inspection", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)
    if failure is not None:
        for p in problems:
            print(f"bench_probes: {p}", file=sys.stderr)
        raise failure
    (cpu0, threads0, rate0, ready0), (cpu1, threads1, rate1, ready1) = results[False], results[True]
    cost = cpu1 - cpu0
    verdict = f"< {TARGET:g} % ({'met' if cost < TARGET else 'missed'})"
    rows = [
        Row(f"kubelite CPU, {PODS} pods, no probes", f"{cpu0:.1f} %", "-", "-",
            f"{threads0} threads; {rate0:.0f} requests/s answered"),
        Row(f"kubelite CPU, {PODS} pods, 2 http probes each at 1 s", f"{cpu1:.1f} %", "-", "-",
            f"{threads1} threads; {rate1:.0f} probe runs/s answered by the pods' httpd"),
        Row("probing's cost (the difference)", f"{cost:.1f} %", "-", verdict,
            f"{1000 * cost / 100 / max(rate1, 1):.2f} ms of CPU per probe run"),
        Row(f"{PODS} pods written -> all READY", f"{ready1:.1f} s", "-", "-", f"without probes: {ready0:.1f} s"),
    ]
    notes = [
        "figures are measured, never asserted; CPU is the daemon's process (every thread, /proc/<pid>/task/*/"
        f"schedstat) over {WINDOW_S:g} s as a share of one core"
        + ("" if LONG else " (--long or KUBELITE_BENCH_LONG=1: 60 s)"),
        f"pods: busybox `httpd -f -v` on port {PORT}, loopback-only pods (each probe's socket is made in the "
        "pod's network namespace); liveness and readiness httpGet /healthz, periodSeconds 1, timeoutSeconds 1",
        "requests answered: `response:` lines the pods' httpd wrote to their CRI logs in the window",
        f"load average at the end: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}",
    ] + problems
    print_table("bench_probes: 100 pods with http liveness + readiness probes at periodSeconds 1", rows, notes)
    record_summary("probes", [Row(f"probing {PODS} pods x 2 http probes at 1 s: kubelite CPU", f"{cost:.1f} %", "-",
                                  verdict, f"{cpu1:.1f} % in all ({cpu0:.1f} % without probes), "
                                           f"{threads1} threads")])
    if check.left:
        sys.exit(1)


if __name__ == "__main__":
    main()
