"""Stopping kubelite's service never stops a pod: a real `kubelite serve` runs in a cgroup of its own
(made here, in every hierarchy the host mounts, as systemd makes a service's), and everything in
that cgroup is killed with SIGKILL until it is empty, as `systemctl stop` does under
`KillMode=control-group`. Every container, its conmon and its pod's infra process live on, and the
next `serve` adopts them: the same container IDs, no restart counted, nothing started again. A
conmon left in the service's cgroup (by an older kubelite) is moved out at the next start."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import yaml

from kubelite.runtime import linux
from kubelite.runtime.view import instance_name
from tests import real
from tests.real import REPO, container, pod, wait_for

pytestmark = pytest.mark.real

SERVE = ("--network", "none", "--no-api", "--warm-sandboxes", "1", "--backoff-initial", "1",
         "--relist-period", "2", "--log-format", "json")


def own_cgroups() -> list[tuple[Path, str]]:
    """(mount point, this process's cgroup there) for each cgroup hierarchy below /sys/fs/cgroup:
    every v1 controller and named hierarchy, and the v2 one (hybrid or pure)."""
    mine = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        mine[controllers] = path
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        before, _, after = line.partition(" - ")
        fstype, _source, options = after.split()[:3]
        point = before.split()[4]
        if not point.startswith(str(linux.CGROUP_ROOT)):
            continue
        if fstype == "cgroup2":
            key = ""
        elif fstype == "cgroup":
            key = next((c for c in mine if c and set(c.split(",")) <= set(options.split(","))), None)
        else:
            continue
        if key is not None and key in mine:
            found.append((Path(point), mine[key]))
    return found


def make_cgroup(path: Path) -> None:
    """mkdir, a v1 cpuset level taking its parent's CPUs and memory nodes (it has none at first)."""
    path.mkdir()
    for name in ("cpuset.cpus", "cpuset.mems"):   # v2: empty means the parent's
        inherited = (path.parent / name).read_text().strip() if (path.parent / name).exists() else ""
        if inherited and (path / name).exists() and not (path / name).read_text().strip():
            (path / name).write_text(inherited)


def processes(dirs: list[Path]) -> set[int]:
    return {int(pid) for d in dirs for pid in (d / "cgroup.procs").read_text().split()}


def kill_cgroup(dirs: list[Path], *, timeout: float = 10.0) -> int:
    """SIGKILL whatever is in the cgroup until it is empty, as systemd's stop does; how many were killed."""
    killed: set[int] = set()
    deadline = time.monotonic() + timeout
    while pids := processes(dirs):
        assert time.monotonic() < deadline, f"the cgroup still holds {sorted(pids)}"
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.02)
    return len(killed)


class ServiceDaemon(real.Daemon):
    """`kubelite serve` started as systemd starts a service: placed in the service's cgroup before it
    runs (a shell waits for the word to go, as conmon does), with a notification socket."""

    def __init__(self, tmp: Path, busybox: Path, notify: str) -> None:
        super().__init__(tmp, busybox, serve_args=SERVE)
        self.env["NOTIFY_SOCKET"] = notify
        self.log_path = tmp / "serve.log"

    def start_in(self, cgroup: list[Path]) -> None:
        self.proc = subprocess.Popen(["sh", "-c", 'read _ && exec "$@"', "sh", sys.executable, "-m",
                                      "kubelite.cli.main", "serve", "--runtime", "runc", *self.serve_args],
                                     env=self.env, stdin=subprocess.PIPE, stdout=self.log, stderr=subprocess.STDOUT,
                                     cwd=REPO)
        for d in cgroup:
            (d / "cgroup.procs").write_text(str(self.proc.pid))
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.close()

    def running(self, name: str, restarts: dict[str, int]) -> bool:
        statuses = {s["name"]: s for s in self.pods().get(name, {}).get("status", {}).get("containerStatuses", [])}
        return set(statuses) == set(restarts) and all(
            "running" in statuses[c]["state"] and statuses[c]["restartCount"] == n for c, n in restarts.items())

    def container_ids(self) -> dict[tuple[str, str], tuple[str, int]]:
        return {(name, s["name"]): (s["containerID"].partition("://")[2], s["restartCount"])
                for name, p in self.pods().items() for s in p["status"]["containerStatuses"]}

    def cleanup(self) -> list[str]:
        for path in self.manifests.glob("*.yaml"):
            path.unlink()
        if self.proc is None:
            self.start()
        wait_for(lambda: not self.pods(), timeout=40, what="every pod to be removed")
        self.stop()
        self.log.close()
        return real.leftovers(self.root, self.run_dir, instance_name(self.root))


def records(run_dir: Path, kind: str) -> dict[str, dict]:
    found = {}
    for path in (run_dir / kind).glob("*/record.json"):
        data = json.loads(path.read_text())
        found[data["id"]] = data
    return found


def ready(sock: socket.socket) -> dict[str, str]:
    while True:
        fields = dict(line.split("=", 1) for line in sock.recv(4096).decode().split("\n"))
        if fields.get("READY") == "1":
            return fields


def json_log(path: Path) -> list[dict]:
    lines = []
    for line in path.read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            pass   # the shell's or Python's own words, if any
    return lines


def test_killing_everything_in_the_services_cgroup_leaves_every_pod_running_and_the_next_start_adopts_them(
        tmp_path, busybox):
    test_cgroup = f"kubelite-test-{uuid.uuid4().hex[:12]}"
    hierarchies = own_cgroups()
    assert hierarchies, "no cgroup hierarchy is mounted"
    service = [mount / mine.strip("/") / test_cgroup / "kubelite.service" for mount, mine in hierarchies]
    notify = f"@kubelite-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + notify[1:])
    sock.settimeout(60)
    d = ServiceDaemon(tmp_path, busybox, notify)
    try:
        for path in service:
            make_cgroup(path.parent)
            make_cgroup(path)
        cache = {"volumeMounts": [{"name": "cache", "mountPath": "/cache"}]}
        docs = [pod("svc-web", container("app", "exec sleep 3600")),
                pod("svc-pair", container("first", "exec sleep 3600"), container("second", "exec sleep 3600")),
                pod("svc-crashy", container("app", "[ -f /cache/crashed ] || { touch /cache/crashed; exit 1; }; "
                                                   "exec sleep 3600", **cache),
                    restartPolicy="Always", volumes=[{"name": "cache", "emptyDir": {}}])]
        for doc in docs:
            (d.manifests / f"{doc['metadata']['name']}.yaml").write_text(yaml.safe_dump(doc))
        d.start_in(service)
        first_ready = ready(sock)
        assert first_ready["MAINPID"] == str(d.proc.pid)
        expected = {"svc-web": {"app": 0}, "svc-pair": {"first": 0, "second": 0}, "svc-crashy": {"app": 1}}
        wait_for(lambda: all(d.running(name, counts) for name, counts in expected.items()), timeout=60,
                 what="the three pods running, the crashing one restarted once")
        before = d.container_ids()
        assert len(before) == 4

        # the containers, their conmon and the pods' infra processes: none in the service's cgroup
        live = [r for r in records(d.run_dir, "containers").values() if r["id"] in {i for i, _ in before.values()}]
        sandboxes = [r for r in records(d.run_dir, "sandboxes").values() if not r["warm"] and not r["stopped"]]
        assert len(live) == 4 and len(sandboxes) == 3
        pods_processes = {(r["pid"], r["pid_start"]) for r in live} | {(r["conmon_pid"], r["conmon_start"])
                                                                         for r in live} \
            | {(r["pid"], r["pid_start"]) for r in sandboxes}
        in_service = processes(service)
        assert d.proc.pid in in_service
        assert not in_service & {pid for pid, _ in pods_processes}
        for r in live:   # conmon is in the instance's conmon cgroup in every hierarchy
            conmon_cgroups = Path(f"/proc/{r['conmon_pid']}/cgroup").read_text().splitlines()
            assert all(line.endswith(f"/{instance_name(d.root)}/conmon") for line in conmon_cgroups), \
                conmon_cgroups

        assert not [line for line in json_log(d.log_path) if "conmon stays" in line["msg"]]
        # a real pod start in the JSON log names its pod and container
        started = [line for line in json_log(d.log_path) if line.get("reason") == "Started"]
        assert {(line["pod"], line["container"]) for line in started} >= {
            ("default/svc-web", "app"), ("default/svc-pair", "first"), ("default/svc-pair", "second")}

        # a conmon that an older kubelite left in the service's cgroup is moved out at the next start
        web = next(r for r in live if r["id"] == before[("svc-web", "app")][0])
        for path in service:
            (path / "cgroup.procs").write_text(str(web["conmon_pid"]))
        assert web["conmon_pid"] in processes(service)
        d.stop()   # systemctl restart with KillMode=process: SIGTERM to kubelite alone
        d.start_in(service)
        ready(sock)
        assert web["conmon_pid"] not in processes(service)
        assert linux.in_cgroup(web["conmon_pid"], f"/{instance_name(d.root)}/conmon")
        assert d.container_ids() == before

        # systemctl stop with KillMode=control-group: SIGKILL to all in the cgroup until it is empty
        assert kill_cgroup(service) >= 1
        d.proc.wait(timeout=10)
        d.proc = None
        dead = [(pid, start) for pid, start in pods_processes if not linux.alive(pid, start)]
        assert not dead, f"processes of the pods died with the service: {dead}"

        # the next start adopts every container: same IDs, same restart counts, nothing started again
        mark = len(json_log(d.log_path))
        d.start()
        ready(sock)
        assert d.container_ids() == before
        time.sleep(2 * 2 + 1)   # two relist periods: full relists look at every process
        assert d.container_ids() == before
        assert all(d.running(name, counts) for name, counts in expected.items())
        assert all(linux.alive(pid, start) for pid, start in pods_processes)
        again = [line for line in json_log(d.log_path)[mark:] if line.get("pod", "").startswith("default/svc-")]
        assert not [line for line in again if line.get("reason") in ("Killing", "Created", "Started", "BackOff")], again
    finally:
        sock.close()
        d.stop(signal.SIGKILL)
        made = [path for path in service if path.exists()]
        kill_cgroup(made)   # what the daemon started there, if the test ended before its own kill
        for path in service:
            for level in (path, path.parent):
                if level.exists():
                    level.rmdir()
        assert d.cleanup() == []


def test_processes_placed_at_once_in_a_new_cgroup_all_land_there_in_every_hierarchy():
    """Pod workers start conmons side by side: the first placements make the cgroup together (a v1
    cpuset level must get its CPUs before it takes a process, whoever made it)."""
    real.require_real_runtime()
    for _ in range(5):
        relative = f"/kubelite-test-{uuid.uuid4().hex[:12]}/conmon"
        sleepers = [subprocess.Popen(["sleep", "60"]) for _ in range(6)]
        barrier, failed = threading.Barrier(len(sleepers)), []

        def place(pid: int) -> None:
            barrier.wait()
            try:
                linux.place_process(relative, pid)
            except OSError as exc:
                failed.append(exc)

        threads = [threading.Thread(target=place, args=(p.pid,)) for p in sleepers]
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=20)
            assert not failed, failed
            for p in sleepers:
                lines = Path(f"/proc/{p.pid}/cgroup").read_text().splitlines()
                assert len(lines) == len(linux.cgroup_hierarchies())
                assert all(line.endswith(relative) for line in lines), lines
        finally:
            for p in sleepers:
                p.kill()
                p.wait()
            deadline = time.monotonic() + 5
            while linux.cgroup_processes(relative) and time.monotonic() < deadline:
                time.sleep(0.02)
            linux.remove_cgroup(relative.rsplit("/", 1)[0])
        assert linux.cgroup_dirs(relative.rsplit("/", 1)[0]) == []
