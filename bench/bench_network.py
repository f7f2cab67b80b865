"""Pod networking benchmark: what CNI adds to a pod's start and removal, against `--network none`.

Measures, in one run, on the real runtime in-process (figures are printed, never asserted):

1. Pod start, from `OCIRuntime.run_sandbox()` to `start_container()` returning for one busybox
   `sleep 3600` container: the sandbox (infra container; with CNI also the pinned namespace and
   the ADD of bridge, loopback, portmap, firewall), then the container (overlay, conmon, runc).
   With `--network none` (loopback-only, the infra container makes its namespace), with CNI and
   no hostPort, and with CNI and one hostPort (portmap then writes rules); two runtimes with state
   roots of their own, the three kinds of pod alternating, after two warm-ups each.
2. Pod removal: container killed and removed, then `remove_sandbox()` (with CNI: DEL in reverse,
   the namespace unpinned).
3. References, measured in the same run: `Network.setup()` alone (pin + ADD, no infra
   container) and its teardown (DEL + unpin), and `unshare --net=FILE true` (pinning a namespace).
4. Warm sandboxes (decision 0020): one pod, manifest written -> the container's first act (the
   /proc/uptime value it prints, as bench_runtime's part 1, and conmon's timestamp of that line),
   on `kubelite serve` processes: default networking with the default pool (`--warm-sandboxes
   2`) and with `--warm-sandboxes 0`, and `--network none` with and without the pool; the four
   alternate, one pod at a time, each pod's manifest written only once its daemon is idle and its
   pool full. Target: median <= 60 ms with default networking and the pool. The pool's cost, with
   no pod: the daemon's RSS with and without a pool, the infra processes' RSS and PSS, and the
   leases held. `podman kube play` of the same pod as the reference when podman is installed, on
   a bridge network of podman's own (bench/podman.py); goal: the pool's start >= 3.5x faster.

The CNI runtime uses a bridge and a /24 of its own (never `kubelite0`, never a subnet the host
routes); the bridge is removed at the end. Everything lives below one temporary directory. Needs root and Debian's
containernetworking-plugins. About 90 s. Run: `bench/run network`, or `.venv/bin/python -m
bench.bench_network` from the repository root.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench import bench_runtime
from bench.common import REPO, Row, Summary, duration, print_table, record_summary, summarize, target
from bench.podman import Podman
from kubelite.api.models import Container
from kubelite.errors import RuntimeError_
from kubelite.runtime import cni, linux
from kubelite.runtime.images import ImageStore
from kubelite.runtime.oci import OCIRuntime
from kubelite.runtime.protocol import ContainerConfig, PortMapping, SandboxConfig
from tests.helpers import free_port, free_subnet
from tests.real import leftovers

RUNS = 12
WARMUPS = 2
IMAGE = "busybox:latest"
POOL = 2
WARM_TARGET_S = 0.060
#: Goal 2: one pod with default networking at least this many times faster than podman's.
PODMAN_RATIO_TARGET = 3.5
#: The measured pod: its first act prints /proc/uptime; it leaves at SIGTERM (no grace period waited out).
WARM_SCRIPT = "trap 'exit 0' TERM; cat /proc/uptime; sleep 3600 & wait"
#: The daemons of part 4: (label, serve flags besides the network's, pool size).
WARM_MODES = (("cni, --warm-sandboxes 2 (default)", "cni", POOL), ("cni, --warm-sandboxes 0", "cni", 0),
              ("none, --warm-sandboxes 2", "none", POOL), ("none, --warm-sandboxes 0", "none", 0))


def start_pod(runtime: OCIRuntime, n: int, host_port: int | None) -> tuple[float, float, str, str]:
    """(sandbox s, whole start s, sandbox id, container id) for one pod."""
    uid = f"bench-{uuid.uuid4().hex[:12]}"
    mappings = (PortMapping(host_port, 80),) if host_port else ()
    config = SandboxConfig(uid=uid, name=f"p{n}", namespace="default", attempt=0, sandbox_hash="h", hostname=f"p{n}",
                           port_mappings=mappings)
    container = Container.model_validate({"name": "c", "image": IMAGE, "command": ["sleep", "3600"]})
    began = time.perf_counter()
    sandbox_id = runtime.run_sandbox(config)
    sandboxed = time.perf_counter()
    container_id = runtime.create_container(sandbox_id, ContainerConfig(
        uid=uid, pod_name=f"p{n}", namespace="default", container=container, attempt=0, spec_hash="h"))
    runtime.start_container(container_id)
    done = time.perf_counter()
    return sandboxed - began, done - began, sandbox_id, container_id


def remove_pod(runtime: OCIRuntime, sandbox_id: str, container_id: str) -> float:
    began = time.perf_counter()
    runtime.signal_container(container_id, "KILL")
    deadline = time.monotonic() + 10
    while True:
        try:
            runtime.remove_container(container_id)   # refused while its PID 1 still runs
            break
        except RuntimeError_:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.001)
    runtime.remove_sandbox(sandbox_id)
    return time.perf_counter() - began


def warm_records(node: bench_runtime.Node) -> list[dict]:
    return [r for r in node.records("sandboxes") if r.get("warm")]


def start_daemon(base: Path, tar: Path, network: str, pool: int, subnet: str) -> tuple[bench_runtime.Node, str]:
    """A `kubelite serve` with this networking and pool, its image loaded; (node, its bridge or "")."""
    bridge = "klw" + uuid.uuid4().hex[:8] if network == "cni" else ""
    args = ["--network", network, "--warm-sandboxes", str(pool), "--relist-period", "20", "--api-address", "127.0.0.1:0"]
    if network == "cni":
        args += ["--bridge", bridge, "--pod-cidr", subnet]
    node = bench_runtime.Node(base, tar, serve_args=tuple(args))
    node.load_image()
    node.start()
    return node, bridge


def measure_warm(node: bench_runtime.Node, pool: int, name: str) -> tuple[float, float]:
    """(uptime s, conmon's timestamp s) from the manifest's write to the first act of one pod, then the
    pod removed; written when the daemon is idle and its pool full."""
    bench_runtime.wait_for(lambda: len(warm_records(node)) >= pool, timeout=30, what="the pool to be full")
    node.wait_idle()
    t_real, t_boot = time.time(), bench_runtime.boottime()
    node.write(name, ["sh", "-c", WARM_SCRIPT])
    first = node.wait_lines(name, 0, 1)[0]
    latency, cri = bench_runtime.uptime_of(first) - t_boot, first.at - t_real
    node.wait_event(name, "Started:")
    node.delete(name)
    node.wait_removed([name])
    return latency, cri


def pool_cost(node: bench_runtime.Node, bridge: str) -> dict[str, float]:
    """With no pod: the daemon's RSS, the warm infra processes' RSS and PSS, and the leases held."""
    assert node.proc is not None
    infra = [r for r in warm_records(node) if linux.alive(r["pid"], r["pid_start"])]
    leases = node.run_dir / "cni" / "networks" / bridge
    held = [p for p in leases.iterdir() if p.name[0].isdigit()] if bridge and leases.is_dir() else []
    return {"daemon_rss": float(bench_runtime.status_kib(node.proc.pid, "VmRSS") or 0),
            "infra": float(len(infra)),
            "infra_rss": float(sum(bench_runtime.status_kib(r["pid"], "VmRSS") or 0 for r in infra)),
            "infra_pss": float(sum(bench_runtime.pss_kib(r["pid"]) or 0 for r in infra)),
            "leases": float(len(held))}


def podman_start(base: Path, tar: Path) -> tuple[Summary | None, str, list[str]]:
    """`podman kube play` of a one-container pod to its first act (bench_runtime's reference), on
    podman's bridge networking (a network of the run's own, bench/podman.py): (the figure or None,
    its text, what podman left)."""
    pm = Podman.open(base / "podman")
    if pm is None:
        return None, "not installed", []
    work = base / "podman-pods"
    work.mkdir()
    figure: Summary | None = None
    try:
        pm.load(tar)
        figure = summarize(bench_runtime.measure_podman(pm, work, pm.make_bridge()))
        text = f"{duration(figure.median_s)} median, {duration(figure.p95_s)} p95 (n={figure.n})"
    except (subprocess.SubprocessError, OSError, RuntimeError, TimeoutError, ValueError, IndexError) as exc:
        text = f"failed: {exc}"[:100]
    finally:
        left = pm.close()
    return figure, text, left


def warm_part(base: Path, tar: Path) -> tuple[list[Row], list[str], Row]:
    """Part 4: the rows, problems found (leftovers), and the summary row."""
    samples = {label: {"uptime": [], "cri": []} for label, _, _ in WARM_MODES}
    nodes: dict[str, tuple[bench_runtime.Node, str, int]] = {}
    costs: dict[str, dict[str, float]] = {}
    problems: list[str] = []
    try:
        for i, (label, network, pool) in enumerate(WARM_MODES):
            node, bridge = start_daemon(base / f"warm{i}", tar, network, pool, free_subnet("10.219.0.0/16"))
            nodes[label] = (node, bridge, pool)
            # full: its bridge and route exist, so the next daemon's subnet is another one
            bench_runtime.wait_for(lambda: len(warm_records(node)) >= pool, timeout=30, what="the pool to fill")
        for label, (node, bridge, pool) in nodes.items():
            node.wait_idle()
            costs[label] = pool_cost(node, bridge)
        for i in range(WARMUPS + RUNS):
            for label, (node, _bridge, pool) in nodes.items():
                uptime, cri = measure_warm(node, pool, f"warm-{i:02d}")
                if i >= WARMUPS:
                    samples[label]["uptime"].append(uptime)
                    samples[label]["cri"].append(cri)
    finally:
        for label, (node, bridge, _pool) in nodes.items():
            for path in node.manifests.glob("*.yaml"):
                path.unlink()
            node.stop()
            problems += [f"{label}: {item}" for item in leftovers(node.root, node.run_dir, node.instance)]
            if bridge:
                leases = node.run_dir / "cni" / "networks" / bridge
                if leases.is_dir():
                    problems += [f"{label}: lease {p.name}" for p in leases.iterdir() if p.name[0].isdigit()]
                subprocess.run(["ip", "link", "del", bridge], capture_output=True)
    podman_s, podman, podman_left = podman_start(base, tar)
    problems += [f"podman: {item}" for item in podman_left]
    warm, cold = (summarize(samples[WARM_MODES[k][0]]["uptime"]) for k in (0, 1))
    fast_enough = podman_s is not None and podman_s.median_s >= PODMAN_RATIO_TARGET * warm.median_s
    versus = (f"; {podman_s.median_s / warm.median_s:.1f}x faster than podman kube play (goal >= "
              f"{PODMAN_RATIO_TARGET:g}x: {'met' if fast_enough else 'missed'})" if podman_s else "")
    rows = [Row("4. one pod: manifest written -> first act (/proc/uptime), a kubelite serve each", "", "")]
    for label, _network, pool in WARM_MODES:
        s = summarize(samples[label]["uptime"])
        aim = target(WARM_TARGET_S, s.median_s, strict=False) if label == WARM_MODES[0][0] else "-"
        rows.append(Row.of(f"--network {label}", s, aim,
                           f"{cold.median_s / s.median_s:.1f}x faster than no pool{versus}" if pool and "cni" in label
                           else "-"))
    for label, _network, _pool in WARM_MODES:
        rows.append(Row.of(f"  conmon's timestamp of that line, {label}", summarize(samples[label]["cri"])))
    podman_label = "ref: podman kube play, the same pod, podman's bridge network"
    rows.append(Row.of(podman_label, podman_s, "-", f"n={podman_s.n}") if podman_s
                else Row(podman_label, podman, "-", "-"))
    with_pool, without = costs[WARM_MODES[0][0]], costs[WARM_MODES[1][0]]
    rows += [
        Row("5. the pool's cost, no pod (cni, 2 warm sandboxes vs none)", "", ""),
        Row("kubelite's RSS", f"{with_pool['daemon_rss'] / 1024:.1f} MiB", "-", "-",
            f"{without['daemon_rss'] / 1024:.1f} MiB without a pool"),
        Row("infra processes (catatonit) RSS / PSS", f"{with_pool['infra_rss']:.0f} KiB", "-", "-",
            f"{int(with_pool['infra'])} processes; PSS {with_pool['infra_pss']:.0f} KiB"),
        Row("addresses leased by the pool", f"{int(with_pool['leases'])}", "-", "-",
            f"{int(without['leases'])} without a pool"),
    ]
    summary = Row("9. one pod, default networking: manifest -> first act, warm pool", duration(warm.median_s),
                  duration(warm.p95_s), target(WARM_TARGET_S, warm.median_s, strict=False),
                  f"--warm-sandboxes 0: {duration(cold.median_s)}; podman kube play: {podman}{versus}")
    return rows, problems, summary


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench_network needs root (runc, conmon, network namespaces, iptables)")
    cni.find_plugin_dir(cni.PLUGIN_DIRS)
    base = Path(tempfile.mkdtemp(prefix="kubelite-bench-network-", dir="/tmp"))
    if "--warm-only" in sys.argv[1:]:   # parts 4 and 5 alone
        try:
            tar = base / "busybox.tar"
            subprocess.run([str(REPO / "scripts" / "build-busybox-image"), str(tar), IMAGE], check=True,
                           stdout=subprocess.DEVNULL)
            warm_rows, problems, warm_summary = warm_part(base, tar)
        finally:
            shutil.rmtree(base, ignore_errors=True)
        print_table("network: warm sandboxes", warm_rows, [f"{RUNS} runs per figure after {WARMUPS} warm-ups."]
                    + [f"LEFT BEHIND: {p}" for p in problems])
        record_summary("network", [warm_summary])
        return
    bridge = "klb" + uuid.uuid4().hex[:8]
    runtimes: dict[str, OCIRuntime] = {}
    modes = {"none": ("none", False), "cni": ("cni", False), "cni+hostPort": ("cni", True)}
    samples: dict[str, dict[str, list[float]]] = {m: {"sandbox": [], "start": [], "remove": []} for m in modes}
    refs: dict[str, list[float]] = {"setup": [], "teardown": [], "unshare": []}
    try:
        tar = base / "busybox.tar"
        subprocess.run([str(REPO / "scripts" / "build-busybox-image"), str(tar), IMAGE], check=True,
                       stdout=subprocess.DEVNULL)
        subnet = free_subnet("10.219.0.0/16")
        for mode in ("none", "cni"):
            root, run_dir = base / mode / "state", base / mode / "run"
            images = ImageStore(root)
            images.load(tar)
            network = cni.Network(root=root, run_dir=run_dir, bridge=bridge, pod_cidr=subnet) if mode == "cni" else None
            runtimes[mode] = OCIRuntime(root=root, run_dir=run_dir, images=images, network=network)
        for i in range(WARMUPS + RUNS):
            for mode, (kind, host_port) in modes.items():
                runtime = runtimes[kind]
                sandbox_s, start_s, sid, cid = start_pod(runtime, i, free_port() if host_port else None)
                remove_s = remove_pod(runtime, sid, cid)
                if i >= WARMUPS:
                    samples[mode]["sandbox"].append(sandbox_s)
                    samples[mode]["start"].append(start_s)
                    samples[mode]["remove"].append(remove_s)
        network = runtimes["cni"].network
        assert network is not None
        for i in range(WARMUPS + RUNS):
            record = base / f"ref-{i}.json"
            began = time.perf_counter()
            network.setup(record, sandbox_id=f"ref{i:04d}{uuid.uuid4().hex[:8]}",
                          port_mappings=(PortMapping(free_port(), 80),))
            set_up = time.perf_counter()
            cni.teardown(record)
            torn = time.perf_counter()
            pin = base / f"ns-{i}"
            pin.touch()
            began_pin = time.perf_counter()
            subprocess.run(["unshare", f"--net={pin}", "true"], check=True)
            pinned = time.perf_counter()
            subprocess.run(["umount", str(pin)], check=True)
            if i >= WARMUPS:
                refs["setup"].append(set_up - began)
                refs["teardown"].append(torn - set_up)
                refs["unshare"].append(pinned - began_pin)
        warm_rows, problems, warm_summary = warm_part(base, tar)
    finally:
        for runtime in runtimes.values():
            runtime.close()
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)

    none, plain, with_cni = ({k: summarize(v) for k, v in samples[m].items()} for m in modes)
    setup, teardown, unshare = (summarize(refs[k]) for k in ("setup", "teardown", "unshare"))
    added = with_cni["start"].median_s - none["start"].median_s
    rows = [
        Row("1. pod start (sandbox + one container started)", "", ""),
        Row.of("--network none", none["start"]),
        Row.of("--network cni, no hostPort", plain["start"], "-",
               f"+{duration(plain['start'].median_s - none['start'].median_s)} over none"),
        Row.of("--network cni, one hostPort", with_cni["start"], "-",
               f"+{duration(added)} over none ({with_cni['start'].median_s / none['start'].median_s:.1f}x)"),
        Row.of("  of which the sandbox, none", none["sandbox"]),
        Row.of("  of which the sandbox, cni, no hostPort", plain["sandbox"]),
        Row.of("  of which the sandbox, cni, one hostPort", with_cni["sandbox"]),
        Row.of("ref: CNI setup alone, one hostPort (pin netns + ADD of 4 plugins)", setup),
        Row.of("ref: unshare --net=FILE true (pin a netns)", unshare),
        Row("2. pod removal (container killed and removed, sandbox removed)", "", ""),
        Row.of("--network none", none["remove"]),
        Row.of("--network cni, no hostPort", plain["remove"]),
        Row.of("--network cni, one hostPort", with_cni["remove"]),
        Row.of("ref: CNI teardown alone, one hostPort (DEL of 4 plugins + unpin)", teardown),
        *warm_rows,
    ]
    print_table("network: pod start and removal with CNI vs --network none", rows,
                [f"{RUNS} runs per figure after {WARMUPS} warm-ups; the three kinds of pod alternate, one pod at a time.",
                 "iptables here is the nf_tables variant: portmap's and bridge's rule changes dominate the CNI time.",
                 "Part 4: /proc/uptime has 10 ms steps; conmon's timestamp is when it read the line (after the act)."]
                + [f"LEFT BEHIND: {p}" for p in problems])
    record_summary("network", [Row("8. pod start, --network cni (one hostPort) vs none",
                                   duration(with_cni["start"].median_s), duration(with_cni["start"].p95_s), "-",
                                   f"none: {duration(none['start'].median_s)}; +{duration(added)}"), warm_summary])


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    main()
