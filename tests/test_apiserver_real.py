"""kubectl against real containers: `logs`, `logs -f`, `logs --previous` and `get pods -w` on a
runc pod that prints and crashes, read through the node's API.

The agent runs on the real runtime (root, runc, conmon, busybox), stepped by a thread here; the
API server reads the same state root, as `kubelite serve` wires them.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import replace

import pytest

from kubelite.apiserver import auth
from kubelite.apiserver.auth import kubeconfig
from kubelite.apiserver.server import ApiServer, Health
from kubelite.core.types import BackoffPolicy
from tests.apinode import KUBECTL, Stream, require_kubectl, wait_for
from tests.real import Node, container, pod

pytestmark = pytest.mark.real


@pytest.fixture
def busybox(busybox):   # the shared image (conftest), once kubectl is known to be there
    require_kubectl()
    return busybox


class Served:
    """A real node, its API, and a thread that runs the agent's passes."""

    def __init__(self, tmp_path, busybox) -> None:
        self.node = Node(tmp_path / "manifests", tmp_path / "state", tmp_path / "run", busybox).start()
        self.node.agent.config = replace(self.node.agent.config, backoff=BackoffPolicy(initial_s=2, max_s=4))
        self.api = ApiServer(root=self.node.root, node_name="test", runtime="runc", host="127.0.0.1", port=0,
                             health=lambda: Health(True, "ok"), containers=self.node.runtime,
                             run_dir=self.node.run_dir)
        self.api.start()
        self.kubeconfig = tmp_path / "kubeconfig"
        self.kubeconfig.write_text(kubeconfig(server=self.api.url, token=self.api.token, node="test",
                                              ca_pem=(auth.api_dir(self.node.root) / "ca.crt").read_bytes()))
        self.admin_kubeconfig = tmp_path / "admin-kubeconfig"   # as `kubelite kubeconfig --admin` prints it
        self.admin_kubeconfig.write_text(kubeconfig(server=self.api.url, token=self.api.admin_token, node="test",
                                                    ca_pem=(auth.api_dir(self.node.root) / "ca.crt").read_bytes(),
                                                    admin=True))
        self.home = tmp_path
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stop.is_set():
            self.node.step()
            self.api.notify()
            self.stop.wait(0.1)

    def kubectl(self, *args: str, kubeconfig=None, **run):
        import subprocess

        return subprocess.run([KUBECTL, *args], env=self.env(kubeconfig), capture_output=True, text=True, timeout=60,
                              **run)

    def stream(self, *args: str) -> Stream:
        import subprocess

        return Stream(subprocess.Popen([KUBECTL, *args], env=self.env(), stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True))

    def env(self, kubeconfig=None):
        import os

        return {**os.environ, "KUBECONFIG": str(kubeconfig or self.kubeconfig), "HOME": str(self.home)}

    def close(self) -> list[str]:
        self.stop.set()
        self.thread.join(timeout=10)
        self.api.close()
        return self.node.close()


@pytest.fixture
def served(tmp_path, busybox):
    s = Served(tmp_path, busybox)
    yield s
    left = s.close()
    assert left == [], f"left behind: {left}"


SCRIPT = "for i in 1 2 3; do echo line-$i; sleep 0.4; done; echo bye >&2; exit 3"


def test_kubectl_logs_follow_previous_and_watch_on_a_real_crashing_pod(served):
    watch = served.stream("get", "pods", "-w")
    try:
        served.node.write(pod("talker", container("app", SCRIPT), restartPolicy="Always"))
        # -f from the start of the first attempt: every line as it comes, and kubectl ends with the attempt
        wait_for(lambda: served.kubectl("get", "pod", "talker", "-o", "jsonpath={.status.containerStatuses[0]"
                                        ".state.running}").stdout, what="talker running", timeout=30)
        follow = served.stream("logs", "-f", "talker")
        lines = follow.rest(timeout=30)
        follow.close()
        assert [line for line in lines if line.startswith("line-")][-1] == "line-3"
        assert lines[-1] == "bye"
        # the crash and the restart, as kubectl's watch prints them
        watch.until(lambda line: line.startswith("talker") and ("Error" in line or "CrashLoopBackOff" in line),
                    what="the crash")
        watch.until(lambda line: line.startswith("talker") and line.split()[2] == "Running"
                    and int(line.split()[3]) >= 1, what="the restart", timeout=30)
    finally:
        watch.close()
    previous = served.kubectl("logs", "talker", "--previous")
    assert previous.returncode == 0, previous.stderr
    assert previous.stdout == "line-1\nline-2\nline-3\nbye\n"
    stamped = served.kubectl("logs", "talker", "--previous", "--timestamps", "--tail=1").stdout
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z bye\n", stamped), stamped
    described = served.kubectl("describe", "pod", "talker").stdout
    assert "Exit Code:    3" in described and "BackOff" in described


def test_kubectl_get_pods_matches_kubelite_on_real_containers(served):
    served.node.write(pod("steady", container("app", "sleep 1000")))
    wait_for(lambda: "Running" in served.kubectl("get", "pod", "steady").stdout, what="steady running", timeout=30)
    for _ in range(3):
        theirs = served.kubectl("get", "pods", "-o", "wide").stdout
        ours = served.node.cli("get", "pods", "-o", "wide").stdout
        if theirs == ours:
            break
        time.sleep(0.2)
    assert theirs == ours
    assert "runc://" in served.kubectl("get", "pod", "steady", "-o",
                                       "jsonpath={.status.containerStatuses[0].containerID}").stdout
