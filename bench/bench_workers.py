"""Pod workers benchmark: many pods started, and removed beside new starts, with pod networking.

Measures `kubelite serve --runtime runc --network cni` (a bridge and a /24 of its own), once with
the default pod workers and once with `--pod-workers 0` (every pod synced one after another on the
loop: the reference, in the same run), the two daemons one after the other on state roots of
their own, and podman beside them (figures are printed, never asserted):

1. Burst: 50 one-container pods written at once → all running: from `CLOCK_BOOTTIME` just before
   the first write to the last of the 50 containers' first acts (each prints /proc/uptime first,
   as bench_runtime's pods do), in seconds and pods per second; the last `Started` in the daemon's
   log beside it. Goal: ≥ 20 pods/s, ≥ 3.5× podman's rate in the same run. Then 250 pods at
   once on the pod workers' daemon (goal: all running in ≤ 15 s).
2. Removal beside creation: 50 pods with a hostPort each run; their 50 files are deleted and 50
   new pods (no hostPort) written at once. The new pods' rate (goal: within 20 % of part 1's) and
   the time until all 50 removals are complete (`removed` logged; each removal stops the
   container, waits out nothing — the shell leaves at SIGTERM — and runs CNI DEL with the
   portmap rules). Afterwards nothing of the removed pods may be left: iptables rules naming
   their sandboxes, address leases beyond the running pods', veths beyond theirs, pinned network
   namespaces beyond theirs.
3. podman's reference (bench/podman.py: a store, configuration and bridge network of the run's
   own), when podman is installed: the same 50 pods (same image, same script) measured the same
   way, to the last first act: once as one `podman kube play` of a 50-document file (podman
   creates and starts them one after another) and once as 50 `podman kube play` of one pod each,
   started at once; the faster is the reference of goal 1. Then 250 pods the faster way (at most
   50 plays at a time), unless the 50 took so long that 250 would take over `PODMAN_250_BUDGET_S`.
   Each burst is taken down with `podman kube down` (and `podman pod rm -f` of its own names).

Everything lives below one temporary directory in /tmp; at the end every manifest is deleted,
kubelite removes every pod, the daemon stops, and the bridge is removed. Needs root, runc, conmon,
catatonit and Debian's containernetworking-plugins (and podman for part 3). About three minutes
with podman on a quiet machine. Run: `bench/run workers`, or `.venv/bin/python -m
bench.bench_workers` from the repository root.
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

from bench.bench_runtime import GRACE_S, IMAGE, NAMESPACE, Node, boottime, retag, uptime_of, wait_for
from bench.common import REPO, Row, duration, print_table, record_summary
from bench.podman import Podman
from tests.helpers import free_port, free_subnet

PODS = 50
#: The larger burst of goal 1 (all running in <= 15 s), on the pod workers' daemon only.
BIG = 250
BIG_TARGET_S = 15.0
RATE_TARGET = 20.0
PODMAN_RATIO_TARGET = 3.5
#: podman's 250 are skipped when its 50 took so long that 250 would take longer than this.
PODMAN_250_BUDGET_S = 180.0
#: At most this many `podman kube play` processes at a time.
PODMAN_PLAYS = 50
#: podman's two ways of starting a burst.
CONCURRENT, ONE_FILE = "50 plays at once", "one file"
#: The first act prints /proc/uptime (bench_runtime's measure); the shell leaves at SIGTERM at once,
#: so a removal waits out no grace period.
SCRIPT = "trap 'exit 0' TERM; cat /proc/uptime; sleep 3600 & wait"


def pod_yaml(name: str, host_port: int | None = None, image: str = IMAGE) -> str:
    ports = f"    ports:\n    - containerPort: 8080\n      hostPort: {host_port}\n" if host_port else ""
    return (f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {NAMESPACE}\nspec:\n"
            f"  terminationGracePeriodSeconds: {GRACE_S}\n  containers:\n  - name: app\n    image: {image}\n"
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

    def last_first_act(self, names: list[str]) -> float:
        """The latest /proc/uptime (CLOCK_BOOTTIME) among the first lines `names`' containers printed."""
        return max(uptime_of(self.wait_lines(n, 0, 1)[0]) for n in names)

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
    burst_s: float = 0.0           # the 50, from CLOCK_BOOTTIME before the first write to the last first act
    started_s: float = 0.0         # the same 50, first write -> last `Started` logged
    big_s: float = 0.0             # BIG pods, as burst_s (the pod workers' daemon only)
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


def burst(node: NetNode, names: list[str]) -> tuple[float, float]:
    """`names` written at once: (to the last first act, to the last Started), then all removed."""
    node.wait_idle()
    time.sleep(0.5)   # the warm pool refilled
    node.wait_idle()
    t_boot, began = boottime(), time.time()
    for name in names:
        node.put(name)
    started = node.wait_started(names, timeout=600) - began
    acted = node.last_first_act(names) - t_boot
    for name in names:
        node.delete(name)
    node.wait_removed_at(names, timeout=600)
    return acted, started


def measure(node: NetNode, tag: str, big: bool) -> Round:
    result = Round()
    names = [f"{tag}-burst-{i:02d}" for i in range(PODS)]
    result.burst_s, result.started_s = burst(node, names)
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
    if big:
        result.big_s = burst(node, [f"{tag}-big-{i:03d}" for i in range(BIG)])[0]
    return result


def run_daemon(base: Path, busybox: Path, workers: int | None, tag: str) -> Round:
    bridge = "klb" + uuid.uuid4().hex[:8]
    node = NetNode(base / tag, busybox, bridge=bridge, subnet=free_subnet("10.219.0.0/16"), workers=workers)
    try:
        node.load_image()
        node.start()
        time.sleep(1.0)
        return measure(node, tag, big=workers is None)
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


@dataclass
class PodmanResult:
    one_file_s: float | None = None     # the 50 in one `kube play` of a 50-document file
    concurrent_s: float | None = None   # the 50 as 50 `kube play` of one pod each, at once
    big_s: float | None = None          # BIG pods, the faster way
    note: str = ""                      # why a figure is missing ("not installed", a failure)
    big_note: str = ""

    @property
    def best(self) -> tuple[float, str] | None:
        found = [(s, how) for s, how in ((self.concurrent_s, CONCURRENT), (self.one_file_s, ONE_FILE)) if s]
        return min(found) if found else None


def podman_burst(pm: Podman, work: Path, names: list[str], concurrent: bool) -> float:
    """`names` played at once (one file, or one `kube play` each, at most PODMAN_PLAYS at a time):
    from CLOCK_BOOTTIME before the first play to the last first act; then all taken down."""
    paths = []
    for name in names:
        path = work / f"{name}.yaml"
        path.write_text(pod_yaml(name, image=pm.image))
        paths.append(path)
    everything = work / f"{names[0]}-all.yaml"
    everything.write_text("---\n".join(p.read_text() for p in paths))
    pm.pods.update(names)
    try:
        t_boot = boottime()
        if concurrent:
            waiting = list(paths)
            running: list[subprocess.Popen[bytes]] = []
            failed = []
            while waiting or running:
                while waiting and len(running) < PODMAN_PLAYS:
                    running.append(pm.popen(*pm.play_args(waiting.pop(0), pm.network)))
                done = running.pop(0)
                _, err = done.communicate(timeout=600)
                if done.returncode != 0:
                    failed.append(err.decode(errors="replace").strip()[-200:])
            if failed:
                raise RuntimeError(f"{len(failed)} kube play failed: {failed[0]}")
        else:
            pm.run(*pm.play_args(everything, pm.network), timeout=600)
        containers = [f"{n}-app" for n in names]
        lines = wait_for(lambda: (found := pm.first_lines(containers)) and len(found) == len(names) and found,
                         timeout=60, what=f"the first line of {len(names)} podman containers", interval=0.2)
        return max(float(v.split()[0]) for v in lines.values()) - t_boot
    finally:
        pm.down(everything, names, timeout=900)


def podman_part(base: Path, busybox: Path) -> tuple[PodmanResult, list[str]]:
    """podman's figures, and what it left (nothing, normally)."""
    result = PodmanResult()
    pm = Podman.open(base / "podman")
    if pm is None:
        result.note = result.big_note = "not installed"
        return result, []
    work = base / "podman-pods"
    work.mkdir()
    failures = (subprocess.SubprocessError, OSError, RuntimeError, TimeoutError, ValueError)
    try:
        pm.load(busybox)
        pm.make_bridge()
        podman_burst(pm, work, ["warmup-00"], concurrent=False)   # builds podman's pause image
        for attr, prefix, concurrent in (("one_file_s", "one", False), ("concurrent_s", "each", True)):
            try:
                setattr(result, attr, podman_burst(pm, work, [f"{prefix}-{i:02d}" for i in range(PODS)], concurrent))
            except failures as exc:
                result.note = f"failed: {exc}"[:120]
        best = result.best
        projected = best[0] * BIG / PODS if best else 0.0
        if best is None:
            result.big_note = result.note
        elif projected > PODMAN_250_BUDGET_S:
            result.big_note = (f"not measured: the {PODS} took {duration(best[0])}, so {BIG} would take about "
                               f"{projected:.0f} s (budget {PODMAN_250_BUDGET_S:.0f} s)")
        else:
            result.big_s = podman_burst(pm, work, [f"big-{i:03d}" for i in range(BIG)],
                                        concurrent=best[1] == CONCURRENT)
    except failures as exc:
        result.note = result.note or f"failed: {exc}"[:120]
        result.big_note = result.big_note or f"failed: {exc}"[:120]
    finally:
        left = pm.close()
    return result, left


def podman_text(seconds: float | None, pods: int, how: str, note: str) -> str:
    return f"{duration(seconds)} ({pods / seconds:.1f} pods/s, {how})" if seconds else note


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
        podman, podman_left = podman_part(base, plain)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    rows = report(parallel, serial, podman)
    print_table("bench_workers: pods started and removed side by side, kubelite serve --network cni", rows, [
        "figures are measured, never asserted; wall clock; the removal rows from the first file deleted and written "
        "to the last `removed` and `Started` lines in the daemon's log",
        f"pods: one busybox container each, `{SCRIPT}` (leaves at SIGTERM); {PODS} with hostPorts (portmap rules), "
        "a bridge and /24 of the run's own",
        "the same run starts a second daemon with --pod-workers 0 (every sync on the loop, one after another) as the "
        "reference",
        "both daemons run serve's default warm pool (2 sandboxes): the first pods of a burst claim them",
        f"bursts: from CLOCK_BOOTTIME before the first write (podman: before the first `kube play`) to the last "
        f"/proc/uptime the {PODS} containers printed first (10 ms steps)",
        "podman: its own store, configuration and netavark bridge network (a /24 of 10.223.0.0/16, no DNS, as "
        "podman's default network) below the run's directory (bench/podman.py); the faster of its two ways is "
        "the reference of the ratio"]
        + [f"LEFT BEHIND by podman: {item}" for item in podman_left])
    record_summary("workers", rows[:1] + rows[3:])   # podman's rows are in the first one's reference


def report(parallel: Round, serial: Round, podman: PodmanResult) -> list[Row]:
    from kubelite.agent.workers import default_size

    best = podman.best
    if best is not None:
        podman_rate = PODS / best[0]
        ratio = parallel.burst_rate / podman_rate
        versus = f"{ratio:.1f}x podman ({podman_rate:.1f} pods/s, {best[1]})"
        versus_aim = f"{'met' if ratio >= PODMAN_RATIO_TARGET else 'missed'}"
    else:
        versus, versus_aim = f"podman: {podman.note}", "not measured"
    big_rate = f"{BIG / parallel.big_s:.1f} pods/s" if parallel.big_s else "-"
    return [
        Row(f"{PODS} pods dropped at once -> all running (CNI)", duration(parallel.burst_s), "-",
            f">= {RATE_TARGET:g} pods/s ({'met' if parallel.burst_rate >= RATE_TARGET else 'missed'}), "
            f">= {PODMAN_RATIO_TARGET:g}x podman ({versus_aim})",
            f"{parallel.burst_rate:.1f} pods/s with {default_size()} workers; {versus}; last Started logged "
            f"{duration(parallel.started_s)}; one at a time (--pod-workers 0): {duration(serial.burst_s)}, "
            f"{serial.burst_rate:.1f} pods/s; {parallel.burst_rate / serial.burst_rate:.1f}x"),
        Row(f"  ref: podman kube play, the same {PODS} pods, 50 plays at once", "-" if podman.concurrent_s is None
            else duration(podman.concurrent_s), "-", "-",
            podman_text(podman.concurrent_s, PODS, "one `kube play` per pod, all started at once", podman.note)),
        Row(f"  ref: podman kube play, the same {PODS} pods, one {PODS}-document file",
            "-" if podman.one_file_s is None else duration(podman.one_file_s), "-", "-",
            podman_text(podman.one_file_s, PODS, "podman starts them one after another", podman.note)),
        Row(f"{BIG} pods dropped at once -> all running (CNI)", duration(parallel.big_s), "-",
            f"<= {BIG_TARGET_S:g} s ({'met' if parallel.big_s <= BIG_TARGET_S else 'missed'})",
            f"{big_rate} with {default_size()} workers; podman: "
            + podman_text(podman.big_s, BIG, f"one play per pod, at most {PODMAN_PLAYS} at a time"
                          if best and best[1] == CONCURRENT else "one file", podman.big_note)),
        Row(f"{PODS} new pods while {PODS} with a hostPort are removed -> all running", duration(parallel.beside_s),
            "-", f"rate within 20 % of the burst's "
            f"({'met' if parallel.beside_rate >= 0.8 * parallel.burst_rate else 'missed'})",
            f"{parallel.beside_rate:.1f} pods/s vs {parallel.burst_rate:.1f}; one at a time: "
            f"{duration(serial.beside_s)}, {serial.beside_rate:.1f} pods/s"),
        Row(f"  the {PODS} removals -> all complete", duration(parallel.removed_s), "-", "nothing left",
            f"left: {', '.join(parallel.left) or 'nothing'}; one at a time: {duration(serial.removed_s)}, "
            f"left: {', '.join(serial.left) or 'nothing'}"),
    ]


if __name__ == "__main__":
    main()
