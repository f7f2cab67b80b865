"""Probe benchmark: what 100 pods' http probes at periodSeconds 1 cost `kubelite serve`.

Real pods on runc + conmon + catatonit: each runs busybox `httpd -f -v` serving /healthz, with an
httpGet liveness and an httpGet readiness probe, both `periodSeconds: 1` — 200 probe runs per
second. Measured on the daemon's process (all its threads: schedstat, as `bench.common.cpu_ns`):

1. 100 such pods without probes (the same command): kubelite's CPU over the window, as a share of
   one core, and its thread count — the floor (periodic relists, nothing else);
2. the same 100 pods with both probes, once every pod is READY: the same figures, plus the probe
   runs the pods' httpd actually answered per second (each `-v` request is one line in the
   container's log, counted before and after the window).

3. for reference, podman's way of probing http (curl or wget run inside the image): 10 pods whose
   liveness and readiness probes are `exec: wget -q -O /dev/null http://127.0.0.1:8080/healthz`
   (20 runs per second through `runc exec`), with the CPU of the `runc exec` processes kubelite
   waited for (its children's utime + stime) added: the CPU per probe run, next to figure 2's.

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
EXEC_PODS = 10
CLK_TCK = os.sysconf("SC_CLK_TCK")
PORT = 8080
LONG = "--long" in sys.argv[1:] or os.environ.get("KUBELITE_BENCH_LONG", "") not in ("", "0")
WINDOW_S = 60.0 if LONG else 20.0
TARGET = 10.0   # % of one core
SCRIPT = f"mkdir -p /www; echo ok > /www/healthz; trap 'exit 0' TERM; httpd -f -v -p {PORT} -h /www & wait"


def manifest(name: str, probes: str) -> str:
    container = {"name": "app", "image": IMAGE, "imagePullPolicy": "Never", "command": ["sh", "-c", SCRIPT]}
    if probes == "http":
        probe = {"httpGet": {"path": "/healthz", "port": PORT}, "periodSeconds": 1}
        container.update(livenessProbe=probe, readinessProbe=probe)
    elif probes == "exec":
        probe = {"exec": {"command": ["wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{PORT}/healthz"]},
                 "periodSeconds": 1, "timeoutSeconds": 5}
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


def children_ticks(pid: int) -> int:
    """cutime + cstime: CPU of the children `pid` waited for (the `runc exec` of exec probes)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[13]) + int(fields[14])


def window(node: Node) -> tuple[float, int, float, float]:
    """(CPU % of one core, threads at the end, requests answered per second, children's CPU %) over WINDOW_S."""
    assert node.proc is not None
    pid = node.proc.pid
    requests, cpu, children, began = answered(node), cpu_ns(pid), children_ticks(pid), time.monotonic()
    time.sleep(WINDOW_S)
    cpu, elapsed = cpu_ns(pid) - cpu, time.monotonic() - began
    children_pct = 100.0 * (children_ticks(pid) - children) / CLK_TCK / elapsed
    return 100.0 * cpu / 1e9 / elapsed, threads(pid), (answered(node) - requests) / elapsed, children_pct


def run_level(node: Node, probes: str, pods: int = PODS) -> tuple[float, int, float, float, float]:
    names = [f"probe-{i:03d}" for i in range(pods)]
    began = time.monotonic()
    for name in names:
        node.write_text(name, manifest(name, probes))
    wait_for(lambda: all_ready(node, pods), timeout=300, what=f"{pods} pods ready", interval=0.5)
    ready_s = time.monotonic() - began
    time.sleep(3)  # the start's events are written; then the steady state
    cpu, count, rate, children = window(node)
    for name in names:
        node.delete(name)
    wait_for(lambda: not pods_json(node), timeout=120, what="every pod removed", interval=0.5)
    return cpu, count, rate, ready_s, children


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench_probes needs root (runc, conmon, cgroups, overlay mounts)")
    base = Path(tempfile.mkdtemp(prefix="kubelite-bench-probes-", dir="/tmp"))
    node = Node(base / "node", base / "busybox.tar")
    failure: BaseException | None = None
    results: dict[str, tuple[float, int, float, float, float]] = {}
    problems: list[str] = []
    try:
        subprocess.run([str(REPO / "scripts" / "build-busybox-image"), str(node.busybox_tar), IMAGE], check=True,
                       stdout=subprocess.DEVNULL)
        node.load_image()
        node.start()
        for probes in ("none", "http"):
            results[probes] = run_level(node, probes)
        results["exec"] = run_level(node, "exec", EXEC_PODS)
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
    (cpu0, threads0, rate0, ready0, _), (cpu1, threads1, rate1, ready1, _) = results["none"], results["http"]
    cpu2, threads2, rate2, _, children2 = results["exec"]
    cost = cpu1 - cpu0
    exec_ms = 1000 * (cpu2 - cpu0 * EXEC_PODS / PODS + children2) / 100 / max(rate2, 1)
    verdict = f"< {TARGET:g} % ({'met' if cost < TARGET else 'missed'})"
    rows = [
        Row(f"kubelite CPU, {PODS} pods, no probes", f"{cpu0:.1f} %", "-", "-",
            f"{threads0} threads; {rate0:.0f} requests/s answered"),
        Row(f"kubelite CPU, {PODS} pods, 2 http probes each at 1 s", f"{cpu1:.1f} %", "-", "-",
            f"{threads1} threads; {rate1:.0f} probe runs/s answered by the pods' httpd"),
        Row("probing's cost (the difference)", f"{cost:.1f} %", "-", verdict,
            f"{1000 * cost / 100 / max(rate1, 1):.2f} ms of CPU per probe run"),
        Row(f"{PODS} pods written -> all READY", f"{ready1:.1f} s", "-", "-", f"without probes: {ready0:.1f} s"),
        Row(f"ref: exec wget in the container, {EXEC_PODS} pods x 2 at 1 s", f"{cpu2 + children2:.1f} %", "-", "-",
            f"kubelite {cpu2:.1f} % + runc exec {children2:.1f} %; {rate2:.0f} runs/s; "
            f"{exec_ms:.1f} ms of CPU per probe run"),
    ]
    notes = [
        "figures are measured, never asserted; CPU is the daemon's process (every thread, /proc/<pid>/task/*/"
        f"schedstat) over {WINDOW_S:g} s as a share of one core"
        + ("" if LONG else " (--long or KUBELITE_BENCH_LONG=1: 60 s)"),
        f"pods: busybox `httpd -f -v` on port {PORT}, loopback-only pods (each probe's socket is made in the "
        "pod's network namespace); liveness and readiness httpGet /healthz, periodSeconds 1, timeoutSeconds 1",
        "requests answered: `response:` lines the pods' httpd wrote to their CRI logs in the window",
        "ref: podman's way (an http client run inside the image): exec probes through `runc exec` (kubelite's "
        "exec probes); its CPU adds the `runc exec` processes kubelite reaped (cutime+cstime, 10 ms ticks); "
        "per run: minus the no-probe floor scaled to its pod count",
        f"load average at the end: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}",
    ] + problems
    print_table("bench_probes: 100 pods with http liveness + readiness probes at periodSeconds 1", rows, notes)
    record_summary("probes", [Row(f"probing {PODS} pods x 2 http probes at 1 s: kubelite CPU", f"{cost:.1f} %", "-",
                                  verdict, f"{cpu1:.1f} % in all ({cpu0:.1f} % without probes), "
                                           f"{threads1} threads; exec wget: {exec_ms:.1f} ms per run")])
    if check.left:
        sys.exit(1)


if __name__ == "__main__":
    main()
