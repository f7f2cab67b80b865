"""kubelite restarts over real containers: `kill -9` of the daemon, and a simulated reboot.

After `kill -9` no container is restarted because of it, every running one is adopted, and an
exit that happened while kubelite was down is recorded with its real exit code. After a reboot
(the run directory empty, every container gone) the pods come back by their restart policy,
restart counts kept.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import pytest
import yaml

from kubelite.runtime import linux
from kubelite.runtime.oci import instance_name
from tests import real
from tests.real import SEARCH, container, leftovers, pod, wait_for

pytestmark = pytest.mark.real


class Daemon(real.Daemon):
    """The shared daemon harness, plus the container checks and the cleanup these tests need."""

    def status(self, name: str) -> dict:
        p = self.pods().get(name)
        return p["status"]["containerStatuses"][0] if p and p.get("status", {}).get("containerStatuses") else {}

    def running(self, name: str, restarts: int) -> bool:
        s = self.status(name)
        return "running" in s.get("state", {}) and s.get("restartCount") == restarts

    def cleanup(self) -> list[str]:
        for path in self.manifests.glob("*.yaml"):
            path.unlink()
        if self.proc is None:
            self.start()
        wait_for(lambda: not self.pods(), timeout=30, what="every pod to be removed")
        self.stop()
        self.log.close()
        return leftovers(self.root, self.run_dir, instance_name(self.root))


def write(d: Daemon, doc: dict) -> None:
    (d.manifests / f"{doc['metadata']['name']}.yaml").write_text(yaml.safe_dump(doc))


def test_kill_9_of_kubelite_restarts_nothing_and_records_exits_that_happened_meanwhile(tmp_path, busybox):
    d = Daemon(tmp_path, busybox)
    try:
        write(d, pod("steady", container("app", "exec sleep 3600")))
        write(d, pod("victim", container("app", "exec sleep 3600")))
        d.start()
        wait_for(lambda: d.running("steady", 0) and d.running("victim", 0), what="both pods running")
        steady_id = d.status("steady")["containerID"]
        d.stop(signal.SIGKILL)                                  # kubelite dies; its containers do not
        assert d.running("steady", 0), "the state still says running"
        killed = d.cli("kill", "victim", "-s", "KILL")          # a crash while kubelite is down
        assert killed.returncode == 0, killed.stderr
        time.sleep(0.5)
        down_until = time.time()
        d.start()
        wait_for(lambda: d.running("victim", 1), what="the crashed container to be restarted")
        assert d.status("steady")["containerID"] == steady_id and d.status("steady")["restartCount"] == 0
        last = d.status("victim")["lastState"]["terminated"]
        assert last["exitCode"] == 137
        finished = time.mktime(time.strptime(last["finishedAt"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
        assert finished <= down_until + 1, "the exit is recorded with the time it happened"
    finally:
        d.stop(signal.SIGKILL)
        assert d.cleanup() == []


def simulate_reboot(d: Daemon) -> None:
    """What a reboot does to this instance: every process gone, mounts gone, the run dir (tmpfs) empty."""
    for record in d.run_dir.glob("*/*/record.json"):
        data = json.loads(record.read_text())
        for pid, start in ((data.get("pid", 0), data.get("pid_start", 0)),
                           (data.get("conmon_pid", 0), data.get("conmon_start", 0))):
            if pid and linux.alive(pid, start):
                os.kill(pid, signal.SIGKILL)
    time.sleep(0.3)
    runc = shutil.which("runc", path=SEARCH)
    for cid in subprocess.run([runc, "--root", str(d.run_dir / "runc"), "list", "-q"], capture_output=True,
                              text=True).stdout.split():
        subprocess.run([runc, "--root", str(d.run_dir / "runc"), "delete", "--force", cid], capture_output=True)
    for mount in [*d.root.glob("pods/*/containers/*/rootfs"), *d.run_dir.glob("sandboxes/*/shm")]:
        linux.unmount(mount)
    shutil.rmtree(d.run_dir)


def test_after_a_reboot_pods_come_back_with_restart_counts_kept(tmp_path, busybox):
    d = Daemon(tmp_path, busybox)
    try:
        write(d, pod("survivor", container("app", "exec sleep 3600")))
        d.start()
        wait_for(lambda: d.running("survivor", 0), what="running")
        d.stop()
        simulate_reboot(d)
        d.start()
        wait_for(lambda: d.running("survivor", 1), timeout=30, what="the pod to come back")
        last = d.status("survivor")["lastState"]["terminated"]
        assert last["reason"] in ("ContainerStatusUnknown", "Error")
    finally:
        d.stop(signal.SIGKILL)
        assert d.cleanup() == []


def test_after_a_reboot_an_empty_dir_keeps_its_files_and_a_pod_deleted_meanwhile_loses_its_volumes(tmp_path, busybox):
    d = Daemon(tmp_path, busybox)
    mounts = {"volumeMounts": [{"name": "data", "mountPath": "/data"}]}
    volumes = [{"name": "data", "emptyDir": {}}]
    try:
        write(d, pod("keeper", container("app", "echo boot >> /data/boots; exec sleep 3600", **mounts), volumes=volumes))
        write(d, pod("goner", container("app", "touch /data/f; exec sleep 3600", **mounts), volumes=volumes))
        d.start()
        wait_for(lambda: d.running("keeper", 0) and d.running("goner", 0), what="both pods running")
        uids = {name: p["metadata"]["uid"] for name, p in d.pods().items()}
        data = {name: d.root / "pods" / uid / "volumes" / "kubernetes.io~empty-dir" / "data" for name, uid in uids.items()}
        wait_for(lambda: (data["goner"] / "f").exists(), what="the file in the emptyDir")
        d.stop()
        simulate_reboot(d)
        (d.manifests / "goner.yaml").unlink()                     # deleted while the machine was down
        d.start()
        wait_for(lambda: d.running("keeper", 1), timeout=30, what="the pod to come back")
        assert d.pods()["keeper"]["metadata"]["uid"] == uids["keeper"]
        wait_for(lambda: (data["keeper"] / "boots").read_text() == "boot\nboot\n", what="the second boot's line")
        wait_for(lambda: "goner" not in d.pods(), what="the deleted pod to be removed")
        assert not (d.root / "pods" / uids["goner"]).exists()
    finally:
        d.stop(signal.SIGKILL)
        assert d.cleanup() == []
