"""Warm pod sandboxes on real containers (decision 0020).

Proven here: a pod without hostNetwork or hostPort claims a ready warm sandbox — inside its
container the pod's hostname, /etc/hosts with its IP and name, the resolv.conf it asked for; the
infra process under the pod's cgroup `/<instance>/pod<uid>/<sandbox id>`; the record with the
pod's identity — and the pool refills to its size with new sandboxes; a claimed sandbox gets the
pod-level limits on the pod's cgroup and serves `shareProcessNamespace`; a hostPort pod and a
hostNetwork pod take the normal path and leave the pool alone; a claimed sandbox is stopped and
removed like any other (runc kill and delete still work after its cgroup was renamed); after
`kill -9` of the daemon the restarted one adopts the claimed pod without restarting it and tears
down the unclaimed sandboxes of the killed run; a sandbox whose claim was cut short after its
cgroup was renamed is torn down at the next start, cgroups included; `kubelite` stopping leaves
nothing of the pool on the host; `--warm-sandboxes 0` makes none. Each test has its own bridge and
subnet (`NetworkUnderTest`, in 10.221.0.0/16), state root and run directory.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from kubelite.runtime import cni
from kubelite.runtime.oci import instance_name
from tests.helpers import free_port, free_subnet
from tests.real import REPO, Daemon, Node, assert_pod_limits, container, leftovers, pod, wait_for
from tests.test_network_real import NetworkUnderTest, require_cni, sandbox_id, web

pytestmark = pytest.mark.real

POOL = 2


@pytest.fixture
def busybox(busybox: Path) -> Path:
    require_cni()
    return busybox


@pytest.fixture
def network(tmp_path: Path) -> Iterator[NetworkUnderTest]:
    net = NetworkUnderTest(tmp_path)
    # a /16 of these tests' own: the leftovers check matches rules by address, and other suites' pods
    # (10.218/16) may hold or have left rules on the same addresses at the same time
    net.subnet = free_subnet("10.221.0.0/16")
    try:
        yield net
    finally:
        net.remove_bridge()


def records(run_dir: Path) -> list[dict]:
    found = []
    for path in (run_dir / "sandboxes").glob("*/record.json"):
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):   # being replaced
            continue
    return found


def warm_records(run_dir: Path) -> list[dict]:
    return [r for r in records(run_dir) if r.get("warm")]


def test_a_pod_claims_a_warm_sandbox_and_the_pool_refills(tmp_path: Path, busybox: Path, network: NetworkUnderTest):
    node = Node(manifests=tmp_path / "manifests", root=network.root, run_dir=network.run_dir, busybox=busybox,
                network=network.make(), node_ip=cni.host_ip(), warm_sandboxes=POOL).start()
    seen: dict[str, str] = {}   # every warm sandbox's id → IP, for the leftovers check
    try:
        assert node.runtime._warm_pool.wait_full(30)
        ready = {r.id: r for r in node.runtime.warm_sandboxes()}
        assert len(ready) == POOL and all(r.ip and r.warm and r.uid == "" for r in ready.values())
        seen.update({i: r.ip for i, r in ready.items()})
        assert node.runtime.list_sandboxes() == []   # no pod's
        doc = pod("claimer", container("app", "exec sleep 3600"),
                  dnsPolicy="None", dnsConfig={"nameservers": ["192.0.2.53"], "searches": ["warm.example"]})
        node.write(doc)
        node.until(lambda: node.running("claimer", "app") and node.status("claimer").get("podIP"),
                   what="the pod running with an IP")
        sid, ip = sandbox_id(node, "claimer"), node.status("claimer")["podIP"]
        assert sid in ready and ip == ready[sid].ip, "the pod runs in a warm sandbox, with its address"

        assert node.exec("claimer", "app", "hostname") == (0, "claimer\n")
        code, hosts = node.exec("claimer", "app", "cat", "/etc/hosts")
        assert code == 0 and f"{ip}\tclaimer" in hosts, hosts
        code, resolv = node.exec("claimer", "app", "cat", "/etc/resolv.conf")
        assert code == 0 and "nameserver 192.0.2.53" in resolv and "search warm.example" in resolv, resolv
        assert node.exec("claimer", "app", "cat", "/etc/hostname") == (0, "claimer\n")

        uid = next(e.uid for e in node.agent.pods.values() if e.pod.metadata.name == "claimer")
        record = json.loads((network.run_dir / "sandboxes" / sid / "record.json").read_text())
        assert (record["uid"], record["name"], record["namespace"], record["warm"]) == (uid, "claimer", "default", False)
        assert record["cgroup_parent"] == f"/{node.runtime.instance}/pod{uid}"
        in_pod = f":/{node.runtime.instance}/pod{uid}/{sid}"
        infra_cgroups = Path(f"/proc/{record['pid']}/cgroup").read_text().splitlines()
        assert all(line.endswith(in_pod) for line in infra_cgroups if not line.startswith("0::")), infra_cgroups
        # a cgroup v2 hierarchy has no rename: the process is moved there right after the claim, off its path
        wait_for(lambda: all(line.endswith(in_pod) for line in
                             Path(f"/proc/{record['pid']}/cgroup").read_text().splitlines()),
                 timeout=10, what="the infra process in the pod's cgroup in every hierarchy")
        assert not any((Path("/sys/fs/cgroup") / c / node.runtime.instance / f"warm{sid}").exists()
                       for c in ("memory", "pids", "cpu", "unified", ""))
        cid = node.container_id("claimer", "app")
        app_pid = json.loads((network.run_dir / "containers" / cid / "record.json").read_text())["pid"]
        app_cgroups = Path(f"/proc/{app_pid}/cgroup").read_text()
        assert f"/{node.runtime.instance}/pod{uid}/{cid}" in app_cgroups, app_cgroups

        # the pool makes a new one in the background
        wait_for(lambda: len(node.runtime.warm_sandboxes()) == POOL, timeout=30, what="the pool to refill")
        refilled = {r.id: r.ip for r in node.runtime.warm_sandboxes()}
        assert sid not in refilled and len(set(refilled) - set(ready)) == 1
        seen.update(refilled)

        # a claimed sandbox is stopped and removed as any other: runc kill/delete despite the renamed cgroup
        (node.manifests / "claimer.yaml").unlink()
        node.agent.hint_manifests()
        node.until(lambda: not node.agent.pods, what="the pod to be removed")
        assert not Path(f"/proc/{record['pid']}").exists() or \
            Path(f"/proc/{record['pid']}/stat").read_text().split()[2] == "Z"
        assert not (network.run_dir / "sandboxes" / sid).exists()
        assert not any((Path("/sys/fs/cgroup") / c / node.runtime.instance / f"pod{uid}").exists()
                       for c in ("memory", "pids", "cpu", "unified", ""))
        assert [x for x in network.leftovers([sid], [ip]) if ip in x or sid in x] == []
    finally:
        assert node.close() == []   # the pool's sandboxes were torn down by close()
        assert network.leftovers(list(seen), list(seen.values())) == []
        assert not list((network.run_dir / "sandboxes").iterdir())


def test_a_claimed_sandbox_gets_the_pods_level_limits_and_shared_process_namespace(
        tmp_path: Path, busybox: Path, network: NetworkUnderTest):
    node = Node(manifests=tmp_path / "manifests", root=network.root, run_dir=network.run_dir, busybox=busybox,
                network=network.make(), node_ip=cni.host_ip(), warm_sandboxes=1).start()
    seen: dict[str, str] = {}
    try:
        assert node.runtime._warm_pool.wait_full(30)
        ready = {r.id: r.ip for r in node.runtime.warm_sandboxes()}
        seen.update(ready)
        node.write(pod("capped", container("app", "exec sleep 3600"), container("side", "exec sleep 3600"),
                       resources={"limits": {"memory": "64Mi", "cpu": "500m"}}, shareProcessNamespace=True))
        node.until(lambda: node.running("capped", "app") and node.running("capped", "side"), what="running")
        assert sandbox_id(node, "capped") in ready
        assert_pod_limits(node, "capped", memory=64 << 20, cpu_quota=50000)
        # one PID namespace for the pod: the infra (catatonit) is PID 1, the other container's process is seen
        code, out = node.exec("capped", "app", "ps", "-o", "pid,args")
        assert code == 0 and "catatonit" in out and out.count("sleep 3600") == 2, out
        seen.update({r.id: r.ip for r in node.runtime.warm_sandboxes()})
    finally:
        assert node.close() == []
        assert network.leftovers(list(seen), list(seen.values())) == []


def test_host_port_and_host_network_pods_take_the_normal_path(tmp_path: Path, busybox: Path,
                                                              network: NetworkUnderTest):
    node = Node(manifests=tmp_path / "manifests", root=network.root, run_dir=network.run_dir, busybox=busybox,
                network=network.make(), node_ip=cni.host_ip(), warm_sandboxes=POOL).start()
    seen: dict[str, str] = {}
    try:
        assert node.runtime._warm_pool.wait_full(30)
        ready = {r.id: r.ip for r in node.runtime.warm_sandboxes()}
        seen.update(ready)
        port = free_port()
        node.write(web("ported", port))
        node.write(pod("hosted", container("app", "exec sleep 3600"), hostNetwork=True))
        node.until(lambda: node.running("ported", "web") and node.running("hosted", "app"), what="both running")
        assert sandbox_id(node, "ported") not in ready and sandbox_id(node, "hosted") not in ready
        assert {r.id for r in node.runtime.warm_sandboxes()} == set(ready), "the pool is untouched"
        assert node.status("hosted").get("podIP") == node.status("hosted").get("hostIP")
        ported_ip = node.status("ported")["podIP"]
        assert ported_ip not in ready.values()
        out = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
        assert f"--dport {port}" in out, "portmap's rule, made at the ported pod's own ADD"
    finally:
        assert node.close() == []
        assert network.leftovers(list(seen), list(seen.values())) == []


def test_kill_9_and_restart_adopt_the_claimed_pod_and_remove_unclaimed_sandboxes(tmp_path: Path, busybox: Path,
                                                                                  network: NetworkUnderTest):
    daemon = Daemon(tmp_path, busybox, root=network.root, run_dir=network.run_dir,
                    serve_args=("--network", "cni", "--bridge", network.bridge, "--pod-cidr", network.subnet,
                                "--relist-period", "2", "--warm-sandboxes", str(POOL)))
    seen: dict[str, str] = {}
    try:
        daemon.start()
        first = wait_for(lambda: len(w := warm_records(network.run_dir)) == POOL and w, timeout=30,
                         what="the pool to fill")
        seen.update({r["id"]: r["ip"] for r in first})
        (daemon.manifests / "app.yaml").write_text(yaml.safe_dump(pod("app", container("app", "exec sleep 3600"))))
        running = wait_for(lambda: (p := daemon.pods().get("app")) and p["status"].get("phase") == "Running"
                           and p["status"].get("podIP") and p, timeout=30, what="the pod running")
        ip, cid = running["status"]["podIP"], running["status"]["containerStatuses"][0]["containerID"]
        claimed = [r for r in records(network.run_dir) if r["uid"] == running["metadata"]["uid"]]
        assert len(claimed) == 1 and claimed[0]["id"] in seen and claimed[0]["ip"] == ip
        wait_for(lambda: len(warm_records(network.run_dir)) == POOL, timeout=30, what="the pool to refill")
        unclaimed = {r["id"]: r["ip"] for r in warm_records(network.run_dir)}
        seen.update(unclaimed)

        daemon.stop(signal.SIGKILL)
        assert {r["id"] for r in warm_records(network.run_dir)} == set(unclaimed), "left by the killed run"
        daemon.start()
        wait_for(lambda: len(w := warm_records(network.run_dir)) == POOL and not set(unclaimed) & {r["id"] for r in w},
                 timeout=30, what="a new pool in place of the killed run's")
        seen.update({r["id"]: r["ip"] for r in warm_records(network.run_dir)})
        for gone in unclaimed:
            assert not (network.run_dir / "sandboxes" / gone).exists()
            assert not (network.run_dir / "netns" / gone).exists()
        leases = network.run_dir / "cni" / "networks" / network.bridge
        held = {p.read_text().splitlines()[0] for p in leases.iterdir() if p.name[0].isdigit()}
        assert not held & set(unclaimed), "the killed run's unclaimed sandboxes hold no lease"
        time.sleep(2.5)   # a relist later: the pod is adopted, not restarted
        after = daemon.pods()["app"]["status"]["containerStatuses"][0]
        assert after["containerID"] == cid and after["restartCount"] == 0 and "running" in after["state"]
        assert daemon.pods()["app"]["status"]["podIP"] == ip

        (daemon.manifests / "app.yaml").unlink()
        wait_for(lambda: not daemon.pods(), timeout=30, what="the pod to be removed")
        daemon.stop(signal.SIGTERM)
        assert warm_records(network.run_dir) == [] and not list((network.run_dir / "sandboxes").iterdir())
        assert network.leftovers(list(seen), list(seen.values())) == []
        assert leftovers(network.root, network.run_dir, instance_name(network.root)) == []
    finally:
        daemon.stop(signal.SIGKILL)
        daemon.log.close()


def test_warm_sandboxes_0_makes_none(tmp_path: Path, busybox: Path, network: NetworkUnderTest):
    daemon = Daemon(tmp_path, busybox, root=network.root, run_dir=network.run_dir,
                    serve_args=("--network", "cni", "--bridge", network.bridge, "--pod-cidr", network.subnet,
                                "--warm-sandboxes", "0"))
    try:
        daemon.start()
        (daemon.manifests / "app.yaml").write_text(yaml.safe_dump(pod("app", container("app", "exec sleep 3600"))))
        wait_for(lambda: (p := daemon.pods().get("app")) and p["status"].get("phase") == "Running", timeout=30,
                 what="the pod running")
        time.sleep(1.0)   # longer than the pool's quiet moment before a refill
        assert [r["warm"] for r in records(network.run_dir)] == [False]
        (daemon.manifests / "app.yaml").unlink()
        wait_for(lambda: not daemon.pods(), timeout=30, what="the pod to be removed")
        daemon.stop(signal.SIGTERM)
        assert leftovers(network.root, network.run_dir, instance_name(network.root)) == []
    finally:
        daemon.stop(signal.SIGKILL)
        daemon.log.close()


def test_serve_refuses_a_negative_pool(tmp_path: Path):
    result = subprocess.run([sys.executable, "-m", "kubelite.cli.main", "serve", "--runtime", "fake",
                             "--warm-sandboxes", "-1", "--root", str(tmp_path / "state"),
                             "--run-dir", str(tmp_path / "run"), "--manifests", str(tmp_path)],
                            capture_output=True, text=True, timeout=30, cwd=REPO)
    assert result.returncode != 0 and "--warm-sandboxes -1: must be 0 (no pool) or more" in result.stderr


def test_a_sandbox_killed_in_the_middle_of_a_claim_is_torn_down_at_the_next_start(tmp_path: Path, busybox: Path,
                                                                                    network: NetworkUnderTest):
    from kubelite.runtime import linux
    from kubelite.runtime.images import ImageStore
    from kubelite.runtime.oci import OCIRuntime

    first = OCIRuntime(root=network.root, run_dir=network.run_dir, images=ImageStore(network.root),
                       network=network.make(), warm_sandboxes=1)
    second = None
    try:
        assert first._warm_pool.wait_full(30)
        record = first.warm_sandboxes()[0]
        # kubelite dies after the first step of a claim: the cgroup is the pod's, the record still warm
        linux.move_cgroup(record.cgroup_parent, f"/{first.instance}/podkilled-mid-claim", leaf=record.id)
        assert first._warm_pool.stop() == [record]   # the thread ends; nothing is torn down, as after kill -9
        first._warm_pool = None
        assert linux.alive(record.pid, record.pid_start)

        second = OCIRuntime(root=network.root, run_dir=network.run_dir, images=ImageStore(network.root),
                            network=network.make(), warm_sandboxes=0)
        assert not linux.alive(record.pid, record.pid_start)
        assert second.list_sandboxes() == [] and second.warm_sandboxes() == []
        assert not (network.run_dir / "sandboxes" / record.id).exists()
        left = network.leftovers([record.id], [record.ip])
        assert left == [], (record.id, network.bridge, left)
        assert leftovers(network.root, network.run_dir, second.instance) == []
    finally:
        for runtime in (first, second):
            if runtime is not None:
                runtime.close()


def test_a_sandbox_killed_while_being_made_is_torn_down_at_the_next_start_cgroup_included(tmp_path: Path,
                                                                                           busybox: Path,
                                                                                           network: NetworkUnderTest):
    """kubelite killed after the pool's `runc run` of a warm sandbox and before its record: the
    next start finds a bundle without a record and tears it down — infra, network, and the
    sandbox's `warm<id>` cgroup, which held the infra process when the start looked for empty ones."""
    from kubelite.runtime import linux
    from kubelite.runtime.images import ImageStore
    from kubelite.runtime.oci import OCIRuntime

    first = OCIRuntime(root=network.root, run_dir=network.run_dir, images=ImageStore(network.root),
                       network=network.make(), warm_sandboxes=1)
    second = None
    try:
        assert first._warm_pool.wait_full(30)
        record = first.warm_sandboxes()[0]
        assert first._warm_pool.stop() == [record]   # the thread ends; nothing is torn down, as after kill -9
        first._warm_pool = None
        (network.run_dir / "sandboxes" / record.id / "record.json").unlink()   # killed before it was written
        assert linux.alive(record.pid, record.pid_start)
        assert linux.cgroup_dirs(f"/{first.instance}/warm{record.id}")

        second = OCIRuntime(root=network.root, run_dir=network.run_dir, images=ImageStore(network.root),
                            network=network.make(), warm_sandboxes=0)
        assert not linux.alive(record.pid, record.pid_start)
        assert not (network.run_dir / "sandboxes" / record.id).exists()
        assert network.leftovers([record.id], [record.ip]) == []
        assert leftovers(network.root, network.run_dir, second.instance) == []
    finally:
        for runtime in (first, second):
            if runtime is not None:
                runtime.close()
