"""Pod workers on real containers with pod networking: many pods started, edited and removed at once.

The race detector of parallel syncs: 100 pods (some with a hostPort) dropped at once while the loop
runs as the daemon's does (it never waits for a worker); once they run, half of the files are
deleted and the other half edited at once — a new command (the container is restarted in place) or
a new hostname (the pod is replaced). At the end the runtime, the store and the host must match the
directory: every wanted pod running its new revision, nothing left of the others (containers,
mounts, cgroups, conmon processes, address leases, iptables rules, veths, pinned namespaces) and no
pass failed. KUBELITE_SLOW_TESTS=1 adds a longer variant: 150 pods, three rounds of edits and
deletions with new pods arriving meanwhile (the test's pod network is a /24).

The kill -9 fault test on workers: the daemon killed with SIGKILL while 50 pods run and a burst of
new pods starts and deleted ones are removed; after the restart no running pod was restarted, no
exit code was lost, the directory's pods run and nothing of the deleted ones is left on the host
(KUBELITE_SLOW_TESTS=1: 100 pods and a burst twice as large, the kill half-way through it).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from kubelite.runtime import cni, linux
from kubelite.runtime.oci import instance_name
from kubelite.store.reader import Reader
from tests.helpers import free_port
from tests.real import Node, container, leftovers, pod, wait_for
from tests.test_faults_real import (STEADY, Kubelite, Loop, ends_on_term_with, finished, force_cleanup,
                                    gone_pod_remains, mounts_below, starts)
from tests.test_network_real import NetworkUnderTest, require_cni

pytestmark = pytest.mark.real
SLOW = os.environ.get("KUBELITE_SLOW_TESTS") == "1"
WORKERS = 4
DOOMED_GRACE_S = 8   # the kill -9 test's deleted pods that ignore SIGTERM are killed this long after it


def doc(name: str, revision: int, *, hostname: str | None = None, host_port: int | None = None) -> dict[str, Any]:
    app = container("app", f"echo {revision} > /dev/shm/revision; trap 'exit 0' TERM; sleep 3600 & wait")
    if host_port is not None:
        app["ports"] = [{"containerPort": 8080, "hostPort": host_port}]
    spec: dict[str, Any] = {"hostname": hostname} if hostname else {}
    return pod(name, app, **spec)


class Fleet:
    """The directory as the test wants it: name → (revision, hostname, host port)."""

    def __init__(self, node: Node, rng: random.Random) -> None:
        self.node, self.rng = node, rng
        self.wanted: dict[str, tuple[int, str | None, int | None]] = {}

    def put(self, name: str, revision: int, hostname: str | None, host_port: int | None) -> None:
        self.wanted[name] = (revision, hostname, host_port)
        path = self.node.manifests / f"{name}.yaml"
        tmp = self.node.manifests / f".{name}.yaml.tmp"
        tmp.write_text(yaml.safe_dump(doc(name, revision, hostname=hostname, host_port=host_port)))
        os.replace(tmp, path)

    def add(self, names: list[str]) -> None:
        for i, name in enumerate(names):
            self.put(name, 0, None, free_port() if i % 10 == 0 else None)
        self.node.agent.hint_manifests()

    def churn(self) -> None:
        """Delete half of the pods and edit the others, all at once."""
        names = sorted(self.wanted)
        self.rng.shuffle(names)
        for name in names[: len(names) // 2]:
            del self.wanted[name]
            (self.node.manifests / f"{name}.yaml").unlink()
        for i, name in enumerate(names[len(names) // 2:]):
            revision, hostname, port = self.wanted[name]
            if i % 3 == 0:   # a pod-level change: the pod is replaced
                hostname = "h" if hostname is None else None
            self.put(name, revision + 1, hostname, port)
        self.node.agent.hint_manifests()

    def mismatches(self) -> list[str]:
        """What differs between the directory and what runs: pods, their revision, their hostname."""
        agent = self.node.agent
        found = []
        with agent.state.lock:
            live = {e.pod.metadata.name: e for e in agent.pods.values() if e.deleted_at is None}
            extra = sorted({e.pod.metadata.name for e in agent.pods.values()} - set(self.wanted))
            statuses = {name: e.status for name, e in live.items()}
        found += [f"pod {name} still there" for name in extra]
        for name, (revision, hostname, _) in self.wanted.items():
            status = statuses.get(name)
            if status is None:
                found.append(f"{name} missing")
                continue
            states = [s for s in status.get("containerStatuses", []) if "running" in s.get("state", {})]
            if not states:
                found.append(f"{name} not running")
                continue
            entry = live[name]
            command = entry.pod.spec.containers[0].command or []
            if f"echo {revision} " not in command[-1] or (entry.pod.spec.hostname or None) != hostname:
                found.append(f"{name} not at revision {revision}")
            elif states[0].get("started") is not True:
                found.append(f"{name} not started")
        return found


def teardown_networks(run_dir: Path) -> list[str]:
    """The last resort after a failure, before `force_cleanup`: CNI DEL of every attachment this
    run's sandboxes still hold (addresses, masquerade and host port rules), pending ones too."""
    from kubelite import layout

    done = []
    records = [layout.network_record_path(bundle) for bundle in layout.sandboxes_dir(run_dir).glob("*")]
    records += sorted(layout.cni_pending_dir(run_dir).glob("*.json"))
    for record in records:
        if record.exists():
            try:
                cni.teardown(record)
                done.append(f"CNI DEL {record.parent.name}")
            except cni.NetworkError as exc:
                done.append(f"CNI DEL {record.parent.name} failed: {exc}")
    return done


def networked_node(tmp_path: Path, busybox: Path) -> tuple[NetworkUnderTest, Node]:
    """An in-process agent on pod workers with pod networking on a bridge of the test's own."""
    require_cni()
    net = NetworkUnderTest(tmp_path)
    node = Node(tmp_path / "manifests", net.root, net.run_dir, busybox, network=net.make(), node_ip=cni.host_ip(),
                options={"pod_workers": WORKERS})
    return net, node.start()


def stress(tmp_path: Path, busybox: Path, *, pods: int, rounds: int, settle_s: float) -> None:
    net, node = networked_node(tmp_path, busybox)
    left: list[str] = ["close did not finish"]
    seen: dict[str, str] = {}   # every sandbox's id → its IP
    try:
        fleet = Fleet(node, random.Random(5))
        with Loop(node) as loop:
            fleet.add([f"p{i:03d}" for i in range(pods)])
            started = time.monotonic()
            wait_for(lambda: not fleet.mismatches(), timeout=settle_s, what=f"{pods} pods running")
            print(f"\n{pods} pods running after {time.monotonic() - started:.1f}s")
            for r in range(rounds):
                seen.update({s.id: s.ip or "" for s in node.runtime.list_sandboxes()})
                fleet.churn()
                if r + 1 < rounds:   # new pods arrive while the others are removed and edited
                    fleet.add([f"r{r}-{i:03d}" for i in range(pods // 4)])
                started = time.monotonic()
                try:
                    wait_for(lambda: not fleet.mismatches(), timeout=settle_s, what="the pods to match the directory")
                except AssertionError:
                    raise AssertionError(f"still different: {fleet.mismatches()[:10]}") from None
                print(f"round {r}: {len(fleet.wanted)} pods match after {time.monotonic() - started:.1f}s")
                seen.update({s.id: s.ip or "" for s in node.runtime.list_sandboxes()})
            wait_for(lambda: not node.agent.workers.busy(), timeout=30, what="the workers to be idle")
        assert loop.errors == [], "reconcile passes failed:\n" + "\n".join(loop.errors[:3])
        with node.agent.state.lock:
            live = set(node.agent.pods)
        assert gone_pod_remains(node, live) == []
        sandboxes = [s for s in node.runtime.list_sandboxes()]
        live_ips = {s.ip for s in sandboxes}
        gone = {sid: ip for sid, ip in seen.items() if sid not in {s.id for s in sandboxes}}
        found = net.leftovers(list(gone), [ip for ip in gone.values() if ip and ip not in live_ips])
        assert [item for item in found if not item.startswith(("veth", "lease", "netns"))] == []
        assert len([item for item in found if item.startswith("veth")]) == len(live), "one veth per live pod"
        assert len([item for item in found if item.startswith("lease")]) == len(live), "one lease per live pod"
        assert len([item for item in found if item.startswith("netns")]) == len(live), "one netns per live pod"
        node.agent.state.flush()   # every write of the workers reaches the database (the loop has stopped)
        reader = Reader(node.root)
        try:
            stored = {p["metadata"]["name"]: p for p in reader.pods()}
        finally:
            reader.close()
        assert set(stored) == set(fleet.wanted)
        assert all(p["status"]["phase"] == "Running" for p in stored.values())
        assert {c.uid for c in node.runtime.list_containers()} == live
        assert {s.uid for s in node.runtime.list_sandboxes() if s.state.value == "ready"} == live
    finally:
        try:
            for path in node.manifests.iterdir():
                path.unlink()
            left = node.close()
            left += net.leftovers([], [])
        finally:
            forced = teardown_networks(node.run_dir) if left else []
            forced += force_cleanup(node.root, node.run_dir)
            net.remove_bridge()
    assert left == [], f"left behind: {left} (then force-cleaned: {forced})"


def test_100_pods_started_then_half_deleted_and_half_edited_at_once_leave_exactly_the_directory(tmp_path, busybox):
    stress(tmp_path, busybox, pods=100, rounds=1, settle_s=90)


@pytest.mark.slow
@pytest.mark.skipif(not SLOW, reason="the long variant: set KUBELITE_SLOW_TESTS=1")
def test_150_pods_with_three_rounds_of_deletions_edits_and_arrivals(tmp_path, busybox):
    stress(tmp_path, busybox, pods=150, rounds=3, settle_s=300)


def test_two_pods_asking_for_one_host_port_at_once_do_not_both_get_it(tmp_path, busybox):
    net, node = networked_node(tmp_path, busybox)
    left: list[str] = ["close did not finish"]
    try:
        port = free_port()
        for name in ("first", "second", "third"):
            (node.manifests / f"{name}.yaml").write_text(yaml.safe_dump(doc(name, 0, host_port=port)))
        node.agent.hint_manifests()

        def settled() -> list[str] | None:
            node.step()
            running = [n for n in ("first", "second", "third") if node.running(n, "app")]
            waiting = [n for n in ("first", "second", "third")
                       if "already allocated" in str(node.container(n, "app").get("state", {}).get("waiting", {}))]
            return running if len(running) + len(waiting) == 3 else None
        running = wait_for(settled, timeout=60, what="one pod running and two refused their host port")
        assert len(running) == 1, f"{running} all hold host port {port}"
    finally:
        try:
            left = node.close()
            left += net.leftovers([], [])
        finally:
            if left:
                teardown_networks(node.run_dir)
                force_cleanup(node.root, node.run_dir)
            net.remove_bridge()
    assert left == [], f"left behind: {left}"


def records(run_dir: Path, kind: str) -> list[dict[str, Any]]:
    """The runtime's records of one kind ("sandboxes", "containers") in the run dir, stopped ones too."""
    found = []
    for path in sorted((run_dir / kind).glob("*/record.json")):
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):   # a record written or removed as it is read
            continue
    return found


def signal_container(k: Kubelite, status: dict[str, Any], sig: int) -> None:
    """The container of this status gets `sig` (its PID checked with its start time, as the runtime does)."""
    cid = status["containerID"].partition("://")[2]
    record = json.loads((k.run_dir / "containers" / cid / "record.json").read_text())
    assert linux.alive(record["pid"], record["pid_start"]), f"{record['pod_name']}'s container is not running"
    os.kill(record["pid"], sig)


def host_remains(k: Kubelite, net: NetworkUnderTest, uids: set[str], sandboxes: dict[str, str],
                 containers: set[str]) -> list[str]:
    """What is left on the machine of gone pods (`uids`), their sandboxes (id → IP) and containers."""
    live_sandboxes = [r for r in records(k.run_dir, "sandboxes") if not r.get("stopped")]
    live_ips = {r["ip"] for r in live_sandboxes if r.get("ip")}
    found = [f"sandbox record of {r['name']}" for r in records(k.run_dir, "sandboxes") if r["uid"] in uids]
    found += [f"container record of {r['pod_name']}" for r in records(k.run_dir, "containers") if r["uid"] in uids]
    gone_dirs = [k.root / "pods" / uid for uid in uids]
    gone_dirs += [k.run_dir / "sandboxes" / sid for sid in sandboxes]
    gone_dirs += [k.run_dir / "containers" / cid for cid in containers]
    found += [f"mount {point}" for point in mounts_below(*gone_dirs)]
    found += [f"dir {d}" for d in gone_dirs if d.exists()]
    found += [f"log dir {d}" for d in (k.root / "logs").glob("*") if d.name.rpartition("_")[2] in uids]
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    found += [f"conmon {line.strip()}" for line in ps.splitlines()
              if "conmon" in line and any(cid in line for cid in containers | set(sandboxes))]
    instance = instance_name(k.root)
    found += [f"cgroup {d}" for uid in uids for d in linux.cgroup_dirs(f"/{instance}/pod{uid}")]
    found += [item for item in net.leftovers(list(sandboxes), [ip for ip in sandboxes.values()
                                                               if ip and ip not in live_ips])
              if item.startswith("iptables")]
    found += [f"netns {sid}" for sid in sandboxes if (k.run_dir / "netns" / sid).exists()]
    leases = k.run_dir / "cni" / "networks" / net.bridge
    for lease in leases.glob("[0-9]*"):
        try:
            holder = (lease.read_text().splitlines() or [""])[0]
        except FileNotFoundError:   # released as it is read (the warm pool works meanwhile)
            continue
        if holder in sandboxes:
            found.append(f"lease {lease.name}")
    return found


def host_matches_sandboxes(k: Kubelite, net: NetworkUnderTest) -> list[str]:
    """The addresses leased, namespaces pinned, veths on the bridge and the instance's cgroups
    (`pod<uid>`, `warm<id>`) are exactly those of the live sandboxes (pods' and the warm pool's):
    what differs."""
    sandboxes = [r for r in records(k.run_dir, "sandboxes") if not r.get("stopped")]
    live = [r for r in sandboxes if r.get("netns")]
    cgroups = {d.name for base in linux.cgroup_dirs(f"/{instance_name(k.root)}") for d in base.iterdir()
               if d.is_dir() and d.name != "conmon"}   # conmon's cgroup holds the monitors of every pod
    wanted = {f"warm{r['id']}" if r.get("warm") else f"pod{r['uid']}" for r in sandboxes}
    found = net.leftovers([], [])
    leased = {item.removeprefix("lease ") for item in found if item.startswith("lease ")}
    pinned = {item.removeprefix("netns ") for item in found if item.startswith("netns ")}
    veths = [item for item in found if item.startswith("veth ")]
    wrong = [f"lease {ip} of no live sandbox" for ip in sorted(leased - {r["ip"] for r in live})]
    wrong += [f"live sandbox {r['name'] or r['id']} without a lease" for r in live if r["ip"] not in leased]
    wrong += [f"netns {sid} of no live sandbox" for sid in sorted(pinned - {r["id"] for r in live})]
    wrong += [f"live sandbox {r['name'] or r['id']} without its netns" for r in live if r["id"] not in pinned]
    if len(veths) != len(live):
        wrong.append(f"{len(veths)} veths on the bridge for {len(live)} live sandboxes")
    wrong += [f"cgroup {name} of no live sandbox" for name in sorted(cgroups - wanted)]
    wrong += [f"no cgroup {name}" for name in sorted(wanted - cgroups)]
    return wrong


@contextmanager
def networked_daemon(tmp: Path, busybox: Path, *serve_args: str) -> Iterator[tuple[Kubelite, NetworkUnderTest]]:
    """`kubelite serve` on pod workers with pod networking on a bridge of the test's own; at the end
    every pod is removed, the daemon stopped, and nothing of it may be left on the machine."""
    require_cni()
    net = NetworkUnderTest(tmp)
    # Kubelite's own `--network none` comes first: the last one given counts
    k = Kubelite(tmp, busybox, "--network", "cni", "--bridge", net.bridge, "--pod-cidr", net.subnet,
                 "--pod-workers", str(WORKERS), *serve_args, root=net.root)
    left: list[str] = ["cleanup did not finish"]
    forced: list[str] = []
    try:
        yield k, net
    finally:
        try:
            left = k.cleanup()
            left += net.leftovers([], [])
        finally:
            if k.proc is not None:
                k.stop(signal.SIGKILL)
            if left:
                forced = teardown_networks(k.run_dir)
            forced += force_cleanup(k.root, k.run_dir)
            net.remove_bridge()
        assert left == [], f"left behind: {left} (then force-cleaned: {forced})"


def kill_9_mid_burst(tmp_path: Path, busybox: Path, *, steady: int, doomed: int, burst: int, kill_at: int) -> None:
    """`steady` + 6 victims + `doomed` pods running (every fifth with a hostPort); then at once three
    victims end (TERM with a code of their own, or KILL), the doomed manifests are deleted and
    `burst` new pods written; the daemon is killed -9 once `kill_at` new pods have started (a third
    of the doomed pods stop at once, a third in 2 s, a third only at their kill deadline), and three
    more victims end while it is down. After the restart: no running pod restarted, every container
    alive at the kill adopted, every exit recorded with its code and restarted once, every pod of
    the directory Running and started once, nothing left of the deleted pods or of the killed run's
    warm sandboxes, the host's leases, namespaces, veths and cgroups exactly the live sandboxes'."""
    steady_names = [f"steady-{i:03d}" for i in range(steady)]
    doomed_names = [f"doomed-{i:03d}" for i in range(doomed)]
    burst_names = [f"burst-{i:03d}" for i in range(burst)]
    mid = {"mid-0": 20, "mid-1": 21, "mid-kill": 137}       # end as the burst begins
    down = {"down-0": 30, "down-1": 31, "down-kill": 137}   # end while kubelite is down
    victims = {**mid, **down}

    def doc_of(name: str, i: int) -> dict[str, Any]:
        code = victims.get(name, 0)
        script = ends_on_term_with(code) if name in victims and code != 137 else STEADY
        spec: dict[str, Any] = {}
        if name in doomed_names:   # ends at once, after 2 s, or at the kill deadline: removals still in flight
            script = f"echo start >> /dev/shm/starts; trap 'sleep {(0, 2, 60)[i % 3]}; exit 0' TERM; sleep 3600 & wait"
            spec["terminationGracePeriodSeconds"] = DOOMED_GRACE_S
        app = container("app", script)
        if i % 5 == 0:
            app["ports"] = [{"containerPort": 8080, "hostPort": free_port()}]
        return pod(name, app, **spec)

    with networked_daemon(tmp_path, busybox, "--backoff-initial", "1", "--backoff-max", "2") as (k, net):
        for i, name in enumerate(steady_names + list(victims) + doomed_names):
            k.write(doc_of(name, i))
        k.start()
        first = steady_names + list(victims) + doomed_names
        wanted = steady_names + list(victims) + burst_names

        def running(names: list[str]) -> bool:
            s = k.statuses()
            return all(n in s and "running" in s[n]["state"] for n in names)
        started = time.monotonic()
        wait_for(lambda: running(first), timeout=2 * len(first) + 20, what=f"{len(first)} pods running")
        print(f"\n{len(first)} pods running after {time.monotonic() - started:.1f}s")
        before = k.pods()
        before_status = {n: p["status"]["containerStatuses"][0] for n, p in before.items()}
        gone_uids = {before[n]["metadata"]["uid"] for n in doomed_names}
        gone_sandboxes = {r["id"]: r.get("ip") or "" for r in records(k.run_dir, "sandboxes") if r["uid"] in gone_uids}
        gone_containers = {r["id"] for r in records(k.run_dir, "containers") if r["uid"] in gone_uids}
        assert len(gone_sandboxes) == len(doomed_names)

        for name, code in mid.items():
            signal_container(k, before_status[name], signal.SIGKILL if code == 137 else signal.SIGTERM)
        for name in doomed_names:
            (k.manifests / f"{name}.yaml").unlink()
        for i, name in enumerate(burst_names):
            k.write(doc_of(name, i))

        def new_started() -> int:
            log = k.log(1)
            return sum(f"pod default/{n}: Started" in log for n in burst_names)
        wait_for(lambda: new_started() >= kill_at, timeout=120, what=f"{kill_at} new pods started")
        k.stop(signal.SIGKILL)   # conmon and the containers live on; starts and removals were in flight
        warm_at_kill = {r["id"]: r.get("ip") or "" for r in records(k.run_dir, "sandboxes") if r.get("warm")}
        alive_at_kill = {r["pod_name"]: r["id"] for r in records(k.run_dir, "containers")   # created or started
                         if r["pod_name"] in wanted and r["pod_name"] not in down
                         and linux.alive(r["pid"], r["pid_start"])}
        log = k.log(1)
        started_n = new_started()
        removed_n = sum(f"pod default/{n}: removed" in log for n in doomed_names)
        print(f"at the kill: {started_n} of {burst} started, {removed_n} of {doomed} removed, "
              f"{len(warm_at_kill)} warm sandboxes unclaimed")
        assert started_n < burst and removed_n < doomed, "the kill came after the work: nothing was in flight"
        for name, code in down.items():
            signal_container(k, before_status[name], signal.SIGKILL if code == 137 else signal.SIGTERM)
        wait_for(lambda: all(not linux.alive(r["pid"], r["pid_start"]) for r in records(k.run_dir, "containers")
                             if r["pod_name"] in down), timeout=10, what="the victims' containers to end")
        down_until = time.time()

        k.start()
        started = time.monotonic()

        def settled() -> bool:
            pods = k.pods()
            if set(pods) != set(wanted):
                return False
            s = {n: p["status"]["containerStatuses"][0] for n, p in pods.items()
                 if p["status"].get("containerStatuses")}
            return len(s) == len(wanted) and all(p["status"].get("phase") == "Running" for p in pods.values()) \
                and all("running" in s[n]["state"] for n in wanted) \
                and all(s[n]["restartCount"] == 1 for n in victims)
        try:
            wait_for(settled, timeout=2 * len(wanted) + 20, what="the directory's pods running, victims restarted")
        except AssertionError:
            pods = k.pods()
            idle = sorted(n for n, p in pods.items() if p["status"].get("phase") != "Running")
            raise AssertionError(f"extra {sorted(set(pods) - set(wanted))}, missing {sorted(set(wanted) - set(pods))}, "
                                 f"not Running {idle}") from None
        print(f"settled {time.monotonic() - started:.1f}s after the restart")
        after = k.statuses()
        counted = starts(k.run_dir)
        for name in steady_names:
            assert (after[name]["containerID"], after[name]["restartCount"]) == \
                (before_status[name]["containerID"], 0), f"{name} was restarted"
            assert counted[name] == 1, f"{name} started {counted[name]} times"
        for name in burst_names:
            assert after[name]["restartCount"] == 0 and counted[name] == 1, f"{name} started {counted[name]} times"
        for name, cid in alive_at_kill.items():
            assert after[name]["containerID"].partition("://")[2] == cid, f"{name}: its container was not adopted"
        uids = {p["metadata"]["uid"] for p in k.pods().values()}
        pod_sandboxes = [r["uid"] for r in records(k.run_dir, "sandboxes") if not r.get("warm")]
        assert sorted(pod_sandboxes) == sorted(uids), "one sandbox per pod of the directory, no other"
        assert {r["uid"] for r in records(k.run_dir, "containers")} == uids
        for name, code in victims.items():
            last = after[name]["lastState"]["terminated"]
            assert (last["exitCode"], last["containerID"]) == (code, before_status[name]["containerID"]), name
            if name in down:
                assert finished(after[name]) <= down_until + 1, f"{name}: the exit is recorded with its time"
            assert counted[name] == 2, f"{name} started {counted[name]} times"
        gone_sandboxes.update({sid: ip for sid, ip in warm_at_kill.items()
                               if sid not in {r["id"] for r in records(k.run_dir, "sandboxes")}})
        assert not set(warm_at_kill) & {r["id"] for r in records(k.run_dir, "sandboxes") if r.get("warm")}, \
            "the killed run's unclaimed warm sandboxes are torn down"
        assert host_remains(k, net, gone_uids, gone_sandboxes, gone_containers) == []
        try:   # the warm pool may be refilling: a sandbox's lease and cgroup come before its record
            wait_for(lambda: not host_matches_sandboxes(k, net), timeout=15, what="the host to match")
        except AssertionError:
            raise AssertionError(f"the host: {host_matches_sandboxes(k, net)}") from None
        log = k.log(2)
        assert "ContainerStatusUnknown" not in log and "orphan" not in log, log
        assert "Traceback" not in k.log()


def test_kill_9_while_50_pods_run_and_a_burst_starts_and_removes_pods_on_workers(tmp_path, busybox):
    """The fault test of kill -9 with 50 pods, with a burst of starts and removals in flight."""
    kill_9_mid_burst(tmp_path, busybox, steady=34, doomed=10, burst=25, kill_at=1)


@pytest.mark.slow
@pytest.mark.skipif(not SLOW, reason="the long variant: set KUBELITE_SLOW_TESTS=1")
def test_kill_9_while_100_pods_run_and_a_larger_burst_is_in_flight(tmp_path, busybox):
    kill_9_mid_burst(tmp_path, busybox, steady=69, doomed=25, burst=50, kill_at=25)


def test_a_start_not_recorded_before_a_crash_is_seen_as_running_and_a_created_container_as_created(node):
    """kubelite stopped between `runc start` and writing the record: the runtime sees the command
    running (not "created", which would start it a second time); one only created stays created."""
    import json

    from kubelite.api.models import Container
    from kubelite.core.types import ContainerState
    from kubelite.runtime.oci import OCIRuntime
    from kubelite.runtime.protocol import ContainerConfig

    node.write(pod("web", container("app", STEADY)))
    node.until(lambda: node.running("web", "app"), what="web running")
    cid = node.container_id("web", "app")
    [info] = [c for c in node.runtime.list_containers() if c.id == cid]
    spare = node.runtime.create_container(info.sandbox_id, ContainerConfig(
        uid=info.uid, pod_name="web", namespace="default", attempt=0, spec_hash="h",
        container=Container.model_validate({"name": "spare", "image": "busybox:latest", "command": ["sleep", "60"]})))
    record = node.run_dir / "containers" / cid / "record.json"
    data = json.loads(record.read_text())
    data["started_at"] = None   # as if kubelite died right after `runc start`
    record.write_text(json.dumps(data))
    again = OCIRuntime(root=node.root, run_dir=node.run_dir, images=node.runtime.images)
    seen = {c.id: c for c in again.list_containers()}
    assert seen[cid].state is ContainerState.RUNNING and seen[cid].started_at is not None
    assert json.loads(record.read_text())["started_at"], "the start is recorded now"
    assert seen[spare].state is ContainerState.CREATED
    node.runtime.signal_container(spare, "KILL")
    wait_for(lambda: next(c for c in node.runtime.list_containers() if c.id == spare).state
             is ContainerState.EXITED, what="the spare container gone")
    node.runtime.remove_container(spare)


def test_a_sandbox_one_worker_stops_while_its_pods_worker_removes_it_fails_neither(tmp_path, busybox):
    """A worker checking host ports stops another pod's sandbox whose infra died, while that pod's
    own worker removes it: the removal ends between the stop's steps, and the stop does not fail
    on the record's directory being gone (it failed the new pod's sync, retried 10 s later)."""
    from kubelite.runtime.images import ImageStore
    from kubelite.runtime.oci import OCIRuntime
    from kubelite.runtime.protocol import SandboxConfig

    require_cni()
    net = NetworkUnderTest(tmp_path)
    runtime = OCIRuntime(root=net.root, run_dir=net.run_dir, images=ImageStore(net.root), network=net.make())
    left: list[str] = ["the test did not finish"]
    try:
        sid = runtime.run_sandbox(SandboxConfig(uid="u1", name="gone", namespace="default", attempt=0,
                                                sandbox_hash="h", hostname="gone"))
        [ip] = [s.ip for s in runtime.list_sandboxes()]
        teardown = runtime._teardown_network
        removals = []

        def removed_meanwhile(sandbox_id: str) -> bool:
            if not removals:   # the first stop's CNI DEL: the pod's own worker removes the sandbox now
                removals.append(sandbox_id)
                runtime.remove_sandbox(sandbox_id)
            return teardown(sandbox_id)
        runtime._teardown_network = removed_meanwhile   # type: ignore[method-assign]
        runtime.stop_sandbox(sid)
        assert removals == [sid]
        assert runtime.list_sandboxes() == [] and not (net.run_dir / "sandboxes" / sid).exists()
        assert net.leftovers([sid], [ip or "-"]) == []
        left = leftovers(net.root, net.run_dir, runtime.instance)
    finally:
        runtime.close()
        forced = teardown_networks(net.run_dir) + force_cleanup(net.root, net.run_dir) if left else []
        net.remove_bridge()
    assert left == [], f"left behind: {left} (then force-cleaned: {forced})"
