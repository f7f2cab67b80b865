"""Pod workers benchmark: many pods started, and removed beside new starts, with pod networking.

Measures `kubelite serve --runtime runc --network cni` (a bridge and a /24 of its own), once with
the default pod workers and once with `--pod-workers 0` (every pod synced one after another on the
loop: the reference, in the same run), the two daemons one after the other on state roots of
their own (figures are printed, never asserted):

1. Burst: 50 one-container pods (`sleep 3600`) written at once → all running, from the first
   write to the last `Started` in the daemon's log: seconds and pods per second.
   Goal: ≥ 20 pods/s (≥ 3.5× podman kube play of the same pods, when podman is installed).
2. Removal beside creation: 50 pods with a hostPort each run; their 50 files are deleted and 50
   new pods (no hostPort) written at once. The new pods' rate (goal: within 20 % of part 1's) and
   the time until all 50 removals are complete (`removed` logged; each removal stops the
   container, waits out nothing — the shell leaves at SIGTERM — and runs CNI DEL with the
   portmap rules). Afterwards nothing of the removed pods may be left: iptables rules naming
   their sandboxes, address leases beyond the running pods', veths beyond theirs, pinned network
   namespaces beyond theirs.

Everything lives below one temporary directory in /tmp; at the end every manifest is deleted,
kubelite removes every pod, the daemon stops, and the bridge is removed. Needs root, runc, conmon,
catatonit and Debian's containernetworking-plugins. About a minute. Run: `bench/run workers`, or
`.venv/bin/python -m bench.bench_workers` from the repository root.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench.bench_runtime import GRACE_S, IMAGE, NAMESPACE, Node, retag, wait_for
from bench.common import REPO, Row, duration, print_table, record_summary
from tests.helpers import free_port, free_subnet

PODS = 50
#: Each container leaves at SIGTERM at once, so a removal waits out no grace period.
SCRIPT = "trap 'exit 0' TERM; sleep 3600 & wait"


def pod_yaml(name: str, host_port: int | None = None) -> str:
    ports = f"    ports:\n    - containerPort: 8080\n      hostPort: {host_port}\n" if host_port else ""
    return (f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {NAMESPACE}\nspec:\n"
            f"  terminationGracePeriodSeconds: {GRACE_S}\n  containers:\n  - name: app\n    image: {IMAGE}\n"
            f"    imagePullPolicy: Never\n    command: {json.dumps(['sh', '-c', SCRIPT])}\n{ports}")


class NetNode(Node):
    """`kubelite serve` with pod networking on a bridge of its own, and the pod workers given."""

    def __init__(self, base: Path, busybox_tar: Path, *, bridge: str, subnet: str, workers: int | None) -> None:
        args = ["--network", "cni", "--bridge", bridge, "--pod-cidr", subnet, "--api-address", "127.0.0.1:0"]
        if workers is not None:
            args += ["--pod-workers", str(workers)]
        super().__init__(base, busybox_tar, serve_args=tuple(args))
        self.bridge, self.subnet, self.workers = bridge, subnet, workers

    def put(self, name: str, host_port: int | None = None) -> None:
        self.write_text(name, pod_yaml(name, host_port))

    def wait_started(self, names: list[str], timeout: float = 180) -> float:
        """The time (epoch) of the last `Started` among `names`."""
        assert self.log is not None
        log = self.log

        def all_started() -> float | None:
            log.poll()
            if not all(n in log.started for n in names):
                return None
            return max(log.started[n][0].at for n in names)
        return wait_for(all_started, timeout=timeout, what=f"{len(names)} pods running", interval=0.02)

    def wait_removed_at(self, names: list[str], timeout: float = 180) -> float:
        assert self.log is not None
        log = self.log

        def all_removed() -> float | None:
            log.poll()
            if not set(names) <= log.removed:
                return None
            return max(e.at for n in names for e in log.by_pod.get(n, ()) if e.text.endswith(": removed"))
        return wait_for(all_removed, timeout=timeout, what=f"{len(names)} pods removed", interval=0.02)


@dataclass
class Round:
    burst_s: float = 0.0
    beside_s: float = 0.0          # the new pods of part 2, first write → last Started
    removed_s: float = 0.0         # part 2's removals, first delete → last removed
    left: tuple[str, ...] = ()

    @property
    def burst_rate(self) -> float:
        return PODS / self.burst_s

    @property
    def beside_rate(self) -> float:
        return PODS / self.beside_s


def network_left(node: NetNode, sandbox_ids: list[str], live: int) -> list[str]:
    """What the removed pods left: rules naming their sandboxes, and leases, veths and namespaces
    beyond the `live` pods' and the warm pool's."""
    found = []
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    found += [f"iptables {line}" for line in rules.splitlines() if any(s in line for s in sandbox_ids)]
    leases = node.run_dir / "cni" / "networks" / node.bridge
    held = [p.name for p in leases.iterdir() if p.name not in ("lock",) and not p.name.startswith("last_reserved")] \
        if leases.is_dir() else []
    if len(held) != live:
        found.append(f"{len(held)} leases for {live} pods")
    links = subprocess.run(["ip", "-o", "link", "show", "master", node.bridge], capture_output=True, text=True).stdout
    veths = [line for line in links.splitlines() if line.strip()]
    if len(veths) != live:
        found.append(f"{len(veths)} veths for {live} pods")
    netns = node.run_dir / "netns"
    pinned = list(netns.iterdir()) if netns.is_dir() else []
    if len(pinned) != live:
        found.append(f"{len(pinned)} pinned namespaces for {live} pods")
    return found


def measure(node: NetNode, tag: str) -> Round:
    result = Round()
    names = [f"{tag}-burst-{i:02d}" for i in range(PODS)]
    node.wait_idle()
    began = time.time()
    for name in names:
        node.put(name)
    result.burst_s = node.wait_started(names) - began
    for name in names:
        node.delete(name)
    node.wait_removed_at(names)
    ported = [f"{tag}-port-{i:02d}" for i in range(PODS)]
    for name in ported:
        node.put(name, free_port())
    node.wait_started(ported)
    time.sleep(1.0)
    node.wait_idle()
    sandboxes = [r["id"] for r in node.records("sandboxes") if r.get("name") in ported]
    fresh = [f"{tag}-new-{i:02d}" for i in range(PODS)]
    began = time.time()
    for old, new in zip(ported, fresh):
        node.delete(old)
        node.put(new)
    result.beside_s = node.wait_started(fresh) - began
    result.removed_s = node.wait_removed_at(ported) - began
    time.sleep(0.5)
    warm = sum(1 for r in node.records("sandboxes") if r.get("warm"))   # the pool's own leases and veths
    result.left = tuple(network_left(node, sandboxes, live=PODS + warm))
    for name in fresh:
        node.delete(name)
    node.wait_removed_at(fresh)
    return result


def run_daemon(base: Path, busybox: Path, workers: int | None, tag: str) -> Round:
    bridge = "klb" + uuid.uuid4().hex[:8]
    node = NetNode(base / tag, busybox, bridge=bridge, subnet=free_subnet("10.219.0.0/16"), workers=workers)
    try:
        node.load_image()
        node.start()
        time.sleep(1.0)
        return measure(node, tag)
    finally:
        try:
            for path in node.manifests.glob("*.yaml"):
                path.unlink()
            if node.proc is not None and node.proc.poll() is None:
                try:
                    wait_for(lambda: not [r for r in node.records("sandboxes") if not r.get("warm")], timeout=120,
                             what="every pod removed", interval=0.1)
                finally:
                    node.stop()
        finally:
            subprocess.run(["ip", "link", "del", bridge], capture_output=True)
            Path(f"/run/lock/kubelite-{bridge}.lock").unlink(missing_ok=True)


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="kubelite-bench-workers-", dir="/tmp"))
    try:
        plain = base / "busybox-plain.tar"
        subprocess.run([str(REPO / "scripts" / "build-busybox-image"), str(plain), IMAGE], check=True,
                       stdout=subprocess.DEVNULL)
        busybox = base / "busybox.tar"
        retag(plain, busybox, [IMAGE])
        parallel = run_daemon(base, busybox, None, "workers")
        serial = run_daemon(base, busybox, 0, "serial")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    from kubelite.agent.workers import default_size

    rows = [
        Row(f"{PODS} pods dropped at once -> all running (CNI)", duration(parallel.burst_s), "-",
            f">= 20 pods/s ({'met' if parallel.burst_rate >= 20 else 'missed'})",
            f"{parallel.burst_rate:.1f} pods/s with {default_size()} workers; one at a time "
            f"(--pod-workers 0): {duration(serial.burst_s)}, {serial.burst_rate:.1f} pods/s; "
            f"{parallel.burst_rate / serial.burst_rate:.1f}x; podman: not measured"),
        Row(f"{PODS} new pods while {PODS} with a hostPort are removed -> all running", duration(parallel.beside_s),
            "-", f"rate within 20 % of the burst's "
            f"({'met' if parallel.beside_rate >= 0.8 * parallel.burst_rate else 'missed'})",
            f"{parallel.beside_rate:.1f} pods/s vs {parallel.burst_rate:.1f}; one at a time: "
            f"{duration(serial.beside_s)}, {serial.beside_rate:.1f} pods/s"),
        Row(f"  the {PODS} removals -> all complete", duration(parallel.removed_s), "-", "nothing left",
            f"left: {', '.join(parallel.left) or 'nothing'}; one at a time: {duration(serial.removed_s)}, "
            f"left: {', '.join(serial.left) or 'nothing'}"),
    ]
    print_table("bench_workers: pods started and removed side by side, kubelite serve --network cni", rows, [
        "figures are measured, never asserted; wall clock, from the first file written (or deleted) to the last "
        "`Started` (or `removed`) line in the daemon's log",
        f"pods: one busybox container each, `{SCRIPT}` (leaves at SIGTERM); {PODS} with hostPorts (portmap rules), "
        "a bridge and /24 of the run's own",
        "the same run starts a second daemon with --pod-workers 0 (every sync on the loop, one after another) as the "
        "reference; podman is not installed here",
        "both daemons run serve's default warm pool (2 sandboxes): the first pods of a burst claim them"])
    record_summary("workers", rows)


if __name__ == "__main__":
    main()
