"""`kubelite reset` on real containers leaves the host as it found it.

A daemon (`serve --runtime runc`, CNI on a bridge and /24 of the test's own, one warm sandbox, the API
on a free port) runs three pods: one with a hostPort, one with a memory-backed emptyDir (a tmpfs), one
that answers SIGTERM by saying so. Their busybox image went through `kubelite image save` from another
state root and `kubelite image load` into this one: the pods run from a re-loaded image with the
original id. Before the daemon starts, the host is looked at — mounts, links, network namespaces,
iptables rules, cgroups, processes, runc containers, the bridge's lock — as far as any of it can be
this test's (other suites run beside it); while the pods run the same look finds them (so the check can
fail); after `kubelite reset -y` (the daemon asked; each pod its grace period: the SIGTERM is seen), after
`kubelite reset --force -y` (the daemon asked, a pod that ignores SIGTERM with a 300 s grace period
among them) and after `kubelite reset --force --purge -y` of a daemon killed with SIGKILL, it finds
what it found before, and a daemon asked has exited by itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from kubelite.runtime import linux
from kubelite.runtime.images import ImageStore
from kubelite.runtime.oci import instance_name
from tests.helpers import free_port, free_subnet
from tests.real import REPO, Daemon, build_busybox, container, pod, wait_for
from tests.test_network_real import require_cni

pytestmark = pytest.mark.real


class Host:
    """What of the host could be this test's: found by its paths, bridge, subnet and instance name."""

    def __init__(self, base: Path, bridge: str, subnet: str, instance: str) -> None:
        self.base, self.bridge, self.subnet, self.instance = base, bridge, subnet, instance
        self.prefix = subnet.rsplit(".", 1)[0] + "."   # "10.223.7."
        self.veths: set[str] = set()    # the pods' host-side veths, seen while they ran
        self.chains: set[str] = set()   # the per-pod iptables chains, seen while they ran

    def look(self) -> dict[str, list[str]]:
        mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
                  if str(self.base) in line.split()[4]]
        links = [line.split(":")[1].strip().split("@")[0] for line in
                 subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout.splitlines()]
        rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout.splitlines()
        ours = [r for r in rules if self.bridge in r or self.prefix in r or any(c in r for c in self.chains)]
        cgroups = [str(p) for p in linux.cgroup_dirs(f"/{self.instance}")]   # v1 controllers and v2
        processes = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                cgroup = (proc / "cgroup").read_text()
            except OSError:
                continue
            if (str(self.base) in cmdline and "pytest" not in cmdline) or self.instance in cgroup:
                processes.append(f"{proc.name} {cmdline[:120]}")
        runc_root = self.base / "run" / "runc"
        runc = subprocess.run(["runc", "--root", str(runc_root), "list", "-q"], capture_output=True,
                              text=True).stdout.split() if runc_root.is_dir() else []
        netns = sorted(p.name for p in (self.base / "run" / "netns").iterdir()) \
            if (self.base / "run" / "netns").is_dir() else []
        return {"mounts": sorted(mounts), "links": sorted(link for link in links if link == self.bridge or link in self.veths),
                "iptables": sorted(ours), "cgroups": sorted(cgroups), "processes": sorted(processes),
                "runc": sorted(runc), "netns": netns,
                "lock": [str(p) for p in [Path(f"/run/lock/kubelite-{self.bridge}.lock")] if p.exists()]}

    def remember_running(self) -> None:
        """While the pods run: their veths on the bridge and the per-pod chains their rules jump to."""
        links = subprocess.run(["ip", "-o", "link", "show", "master", self.bridge], capture_output=True,
                               text=True).stdout
        self.veths = {line.split(":")[1].strip().split("@")[0] for line in links.splitlines() if line.strip()}
        for line in subprocess.run(["iptables-save"], capture_output=True, text=True).stdout.splitlines():
            if (f'name: \\"{self.bridge}\\"' in line or self.prefix in line) and "-j CNI-" in line:
                chain = line.split("-j ")[1].split()[0]
                if not chain.startswith(("CNI-HOSTPORT-", "CNI-FORWARD", "CNI-ADMIN")):
                    self.chains.add(chain)


def settled(host: Host, before: dict[str, list[str]]) -> dict[str, list[str]]:
    """The host once killed processes have finished exiting (bounded: 10 s; a real leak stays longer)."""
    try:
        wait_for(lambda: host.look() == before, timeout=10, what="the host as found")
    except AssertionError:
        pass
    return host.look()


def manifests(host_port: int, said: Path) -> list[dict]:
    web = pod("web", container("web", "mkdir -p /www && echo hi > /www/index.html && exec httpd -f -p 80 -h /www",
                               ports=[{"containerPort": 80, "hostPort": host_port}]))
    scratch = pod("scratch", container("app", "exec sleep 3600",
                                       volumeMounts=[{"name": "scratch", "mountPath": "/scratch"}]),
                  volumes=[{"name": "scratch", "emptyDir": {"medium": "Memory"}}])
    polite = pod("polite", container("app", "trap 'echo got TERM >> /said/term; exit 0' TERM; "
                                            "while true; do sleep 0.2; done",
                                     volumeMounts=[{"name": "said", "mountPath": "/said"}]),
                 volumes=[{"name": "said", "hostPath": {"path": str(said), "type": "DirectoryOrCreate"}}],
                 terminationGracePeriodSeconds=10)
    return [web, scratch, polite]


def write(daemon: Daemon, docs: list[dict]) -> None:
    for doc in docs:
        (daemon.manifests / f"{doc['metadata']['name']}.json").write_text(json.dumps(doc))


def all_running(daemon: Daemon, count: int = 3) -> bool:
    pods = daemon.pods()
    return len(pods) == count and all(
        all("running" in c.get("state", {}) for c in p.get("status", {}).get("containerStatuses", [])) and
        len(p.get("status", {}).get("containerStatuses", [])) == 1 for p in pods.values())


def reset(daemon: Daemon, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubelite.cli.main", "reset", *flags], env=daemon.env,
                          capture_output=True, text=True, timeout=120, cwd=REPO, stdin=subprocess.DEVNULL)


def test_reset_asked_of_a_running_daemon_and_after_kill_9_leaves_the_host_as_found(tmp_path: Path):
    require_cni()
    base = tmp_path
    # the image: built, loaded into another root, saved from there, loaded into this node's root
    original = build_busybox(tmp_path / "busybox.tar")
    other = {**os.environ, "KUBELITE_ROOT": str(tmp_path / "other"), "PYTHONPATH": str(REPO)}
    for args in (["image", "load", str(original)], ["image", "save", "busybox", "-o", str(tmp_path / "saved.tar")]):
        out = subprocess.run([sys.executable, "-m", "kubelite.cli.main", *args], env=other, capture_output=True,
                             text=True, timeout=60, cwd=REPO)
        assert out.returncode == 0, out.stderr
    bridge, subnet = "klr" + uuid.uuid4().hex[:8], free_subnet("10.223.0.0/16")
    daemon = Daemon(base, tmp_path / "saved.tar",
                    serve_args=("--network", "cni", "--bridge", bridge, "--pod-cidr", subnet, "--warm-sandboxes", "1",
                                "--api-address", "127.0.0.1:0", "--relist-period", "2"))
    loaded = ImageStore(daemon.root).get("busybox")
    original_image = ImageStore(tmp_path / "other").get("busybox")
    assert loaded is not None and original_image is not None and loaded.id == original_image.id
    host = Host(base, bridge, subnet, instance_name(daemon.root))
    before = host.look()
    assert before == {"mounts": [], "links": [], "iptables": [], "cgroups": [], "processes": [], "runc": [],
                      "netns": [], "lock": []}, before
    try:
        write(daemon, manifests(free_port(), tmp_path / "said"))
        daemon.start()
        wait_for(lambda: all_running(daemon), timeout=90, what="three running pods")
        host.remember_running()
        running = host.look()
        assert host.veths and running["links"] and running["iptables"] and running["mounts"] \
            and running["cgroups"] and running["processes"] and running["runc"] and running["netns"], running

        # the daemon is asked: it drains, every pod with its grace period, and exits by itself
        out = reset(daemon, "-y")
        assert out.returncode == 0, out.stdout + out.stderr
        assert daemon.proc is not None and daemon.proc.wait(timeout=30) == 0
        assert f"asked kubelite (pid {daemon.proc.pid})" in out.stdout
        daemon.proc = None
        assert settled(host, before) == before
        # SIGTERM, not SIGKILL: the grace period was given (the pod's logs went with it, as a kubelet's do)
        assert (tmp_path / "said" / "term").read_text() == "got TERM\n"
        assert "busybox" in daemon.cli("image", "ls").stdout   # without --purge the images stay
        assert sorted(p.name for p in daemon.manifests.iterdir()) == ["polite.json", "scratch.json", "web.json"]

        # --force asked of a running daemon: a pod that ignores SIGTERM for 300 s does not hold it up
        write(daemon, [pod("stubborn", container("app", "trap '' TERM; while true; do sleep 0.2; done"),
                           terminationGracePeriodSeconds=300)])
        daemon.start()
        wait_for(lambda: all_running(daemon, 4), timeout=90, what="four running pods")
        host.remember_running()
        started = time.monotonic()
        out = reset(daemon, "--force", "-y")
        assert out.returncode == 0, out.stdout + out.stderr
        assert daemon.proc is not None and daemon.proc.wait(timeout=30) == 0
        daemon.proc = None
        assert time.monotonic() - started < 60
        assert settled(host, before) == before
        (daemon.manifests / "stubborn.json").unlink()

        # again, with the daemon killed -9 (pods and a warm sandbox left running): reset acts itself
        daemon.start()
        wait_for(lambda: all_running(daemon), timeout=90, what="three running pods again")
        host.remember_running()
        assert host.look()["runc"]
        daemon.stop(signal.SIGKILL)
        out = reset(daemon, "--force", "--purge", "-y")
        assert out.returncode == 0, out.stdout + out.stderr
        assert "asked kubelite" not in out.stdout
        assert settled(host, before) == before
        assert not daemon.root.exists() and not daemon.run_dir.exists()
    finally:
        daemon.stop(signal.SIGKILL)
        if host.look() != before:   # a failure above: leave nothing behind all the same
            reset(daemon, "--force", "--purge", "-y")
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)
        Path(f"/run/lock/kubelite-{bridge}.lock").unlink(missing_ok=True)


def test_reset_refuses_without_a_terminal_unless_told_yes(tmp_path: Path):
    env = {**os.environ, "KUBELITE_ROOT": str(tmp_path / "state"), "KUBELITE_RUN_DIR": str(tmp_path / "run"),
           "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "kubelite.cli.main", "reset"], env=env, capture_output=True,
                         text=True, timeout=60, cwd=REPO, stdin=subprocess.DEVNULL)
    assert out.returncode == 1 and "refusing without a terminal" in out.stderr and "give -y" in out.stderr
    out = subprocess.run([sys.executable, "-m", "kubelite.cli.main", "reset", "-y"], env=env, capture_output=True,
                         text=True, timeout=60, cwd=REPO, stdin=subprocess.DEVNULL)
    assert out.returncode == 0 and "kubelite reset: done" in out.stdout, out.stderr
    assert not (tmp_path / "state").exists()   # nothing there: nothing made


def test_the_sweep_removes_what_no_record_names_and_leaves_another_kubelites_bridge(tmp_path: Path):
    """What a drain normally leaves nothing of, planted by hand: the sweep finds it by the instance's paths,
    cgroup and network; the same things of a bridge another kubelite holds stay."""
    require_cni()
    from kubelite import layout
    from kubelite.runtime import cni
    from kubelite.runtime.oci import cleanup

    root, run_dir = tmp_path / "state", tmp_path / "run"
    ours, theirs = "kls" + uuid.uuid4().hex[:8], "klo" + uuid.uuid4().hex[:8]
    subnets = [free_subnet("10.223.0.0/16"), free_subnet("10.224.0.0/16")]
    veth = "klv" + uuid.uuid4().hex[:8]
    chain = "CNI-" + uuid.uuid4().hex[:24]
    comment = f'name: "{ours}" id: "sandbox1"'
    ip = subnets[0].rsplit(".", 1)[0] + ".9"
    held = None
    disks = [root, root / "volumes", run_dir]   # the host's: a disk at the state root, claims' data, /run
    try:
        for disk in disks:
            disk.mkdir(mode=0o700, exist_ok=True)
            subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0700", "tmpfs", str(disk)], check=True)
        for bridge, subnet in zip((ours, theirs), subnets):
            path = layout.cni_conflist_path(root, bridge)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(cni.conflist(bridge=bridge, subnet=subnet,
                                                    data_dir=str(layout.cni_networks_dir(run_dir)))))
            (layout.cni_networks_dir(run_dir) / bridge).mkdir(parents=True)
            subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
        subprocess.run(["ip", "link", "add", veth, "type", "veth", "peer", "name", veth + "p"], check=True)
        subprocess.run(["ip", "link", "set", veth, "master", ours], check=True)
        subprocess.run(["iptables", "-w", "-t", "nat", "-N", chain], check=True)
        subprocess.run(["iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-s", f"{ip}/32", "-m", "comment",
                        "--comment", comment, "-j", chain], check=True)
        (run_dir / "netns").mkdir(parents=True, exist_ok=True)
        (run_dir / "netns" / "leftover").touch()
        subprocess.run(["unshare", f"--net={run_dir / 'netns' / 'leftover'}", "true"], check=True)   # pinned
        volume = root / "pods" / "x" / "volumes" / "kubernetes.io~empty-dir" / "scratch"
        shm = run_dir / "sandboxes" / "s1" / "shm"
        for point in (volume, shm):
            point.mkdir(parents=True)
            subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(point)], check=True)
        instance = instance_name(root)
        cgroup = next(iter(linux.cgroup_dirs("/")), None)
        assert cgroup is not None
        (cgroup / instance / "podx").mkdir(parents=True)
        held, _ = linux.try_lock(cni.bridge_lock_path(theirs), "another kubelite")

        removed = cleanup.sweep(root, run_dir, runc=None)

        assert {f"bridge {ours}", f"veth {veth}", f"address leases of {ours}", "network namespace leftover",
                f"mount {volume}", f"mount {shm}", f"iptables -t nat chain {chain}"} <= set(removed), removed
        assert not Path("/sys/class/net", ours).exists() and not Path("/sys/class/net", veth).exists()
        assert chain not in subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
        assert sorted(linux.mounts_below(tmp_path)) == sorted(disks)   # the host's disks stay mounted
        assert not linux.cgroup_dirs(f"/{instance}")
        assert not layout.cni_conflist_path(root, ours).exists()
        assert Path("/sys/class/net", theirs).exists() and (layout.cni_networks_dir(run_dir) / theirs).is_dir()
        assert layout.cni_conflist_path(root, theirs).exists()
    finally:
        if held is not None:
            held.close()
            cni.bridge_lock_path(theirs).unlink(missing_ok=True)
        for link in (veth, ours, theirs):
            subprocess.run(["ip", "link", "del", link], capture_output=True)
        subprocess.run(["iptables", "-w", "-t", "nat", "-D", "POSTROUTING", "-s", f"{ip}/32", "-m", "comment",
                        "--comment", comment, "-j", chain], capture_output=True)
        for action in ("-F", "-X"):
            subprocess.run(["iptables", "-w", "-t", "nat", action, chain], capture_output=True)
        for point in linux.mounts_below(tmp_path):
            linux.unmount(point)
        linux.remove_cgroup(f"/{instance_name(root)}")
