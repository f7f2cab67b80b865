"""`kubectl top`, `kubelite top` and `/metrics` on real containers: a container that burns CPU is
shown at the rate its own cgroup accounts over the same window (within 20 %), and its working set.

The agent runs on the real runtime, stepped by a thread; the API server reads the same state root
(`Served`, as in the API's other real tests). The test reads the container's cgroup itself.
"""

from __future__ import annotations

import re
import time

import pytest

from kubelite.runtime import stats
from tests.apinode import wait_for
from tests.real import container, pod
from tests.test_apiserver_real import Served, busybox, served  # noqa: F401 (the fixtures: a real node with its API)

pytestmark = pytest.mark.real

BURN = "while :; do :; done"
#: The burner is held to half a core, so its rate is steady whatever else the machine runs.
LIMITS = {"limits": {"cpu": "500m", "memory": "64Mi"}}


def _cgroup(served: Served, pod_name: str, name: str) -> str:
    status = served.node.status(pod_name)
    uid = next(e.uid for e in served.node.agent.pods.values() if e.pod.metadata.name == pod_name)
    assert status["phase"] == "Running"
    return f"{stats.pod_cgroup(served.node.runtime.instance, uid)}/{served.node.container_id(pod_name, name)}"


def _cpu_ns(cgroup: str) -> int:
    counters = stats.read_cgroup(cgroup)
    assert counters is not None, f"no cgroup {cgroup}"
    return counters.cpu_ns


def _row(out: str, first: str) -> list[str]:
    rows = [line.split() for line in out.splitlines() if line.split()[:1] == [first]]
    assert rows, out
    return rows[0]


def test_kubectl_top_shows_a_burning_containers_rate_as_its_cgroup_counts_it(served):
    served.node.write(pod("burn", container("app", BURN, resources=LIMITS),
                          container("idle", "sleep 1000")))
    wait_for(lambda: "2/2" in served.kubectl("get", "pod", "burn").stdout, what="burn running", timeout=60)
    cgroup = _cgroup(served, "burn", "app")
    # the API's first answer reads twice a second apart; the next one's window starts at that reading
    first = served.kubectl("top", "pod", "burn")
    assert first.returncode == 0, first.stderr
    start_ns, start = _cpu_ns(cgroup), time.monotonic()
    time.sleep(6)
    end_ns, end = _cpu_ns(cgroup), time.monotonic()
    shown = served.kubectl("top", "pod", "burn", "--containers")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split("\n")[0].split() == ["POD", "NAME", "CPU(cores)", "MEMORY(bytes)"]
    own = (end_ns - start_ns) / (end - start) / 1e6           # millicores by the cgroup's own accounting
    app = _row(shown.stdout, "burn")
    assert app[1] == "app"
    millis = int(app[2].removesuffix("m"))
    assert own > 50, f"the burner barely ran ({own:.0f}m): the machine is too busy to measure"
    assert abs(millis - own) <= 0.2 * own, f"kubectl top says {millis}m, the cgroup {own:.0f}m"
    assert re.fullmatch(r"\d+Mi", app[3])
    idle = [line.split() for line in shown.stdout.splitlines() if line.split()[1:2] == ["idle"]][0]
    assert int(idle[2].removesuffix("m")) < 20

    # the pod's row sums its containers; -A adds the namespace; the window and timestamp as metrics-server's
    total = served.kubectl("top", "pod")
    assert total.stdout.split("\n")[0].split() == ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    assert abs(int(_row(total.stdout, "burn")[1].removesuffix("m")) - own) <= 0.25 * own
    every = served.kubectl("top", "pod", "-A")
    assert _row(every.stdout, "default")[1] == "burn"
    raw = served.kubectl("get", "--raw", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/burn")
    assert re.search(r'"window":"\d+(\.\d+)?s"', raw.stdout) and '"timestamp":"' in raw.stdout, raw.stdout

    node = served.kubectl("top", "node")
    assert node.returncode == 0, node.stderr
    assert node.stdout.split("\n")[0].split() == ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
    cells = _row(node.stdout, "test")
    assert int(cells[1].removesuffix("m")) >= 0.8 * own and cells[2].endswith("%") and cells[3].endswith("Mi")

    # kubelite's own, from the cgroups without the API
    ours = served.node.cli("top", "pods", "--containers")
    assert ours.returncode == 0, ours.stderr
    ours_millis = int(_row(ours.stdout, "burn")[2].removesuffix("m"))
    assert ours_millis >= 0.5 * own, ours.stdout   # a one-second window of its own
    assert _row(served.node.cli("top", "node").stdout, "test")[0] == "test"

    # /metrics: the cAdvisor names with the pod's labels, the counter as the cgroup has it
    scraped = served.kubectl("get", "--raw", "/metrics").stdout
    line = next(line for line in scraped.splitlines() if line.startswith("container_cpu_usage_seconds_total{")
                and 'container="app"' in line and 'pod="burn"' in line and 'namespace="default"' in line)
    seconds = float(line.split()[-1])
    assert abs(seconds - _cpu_ns(cgroup) / 1e9) < 2.0
    assert any(line.startswith("container_memory_working_set_bytes{") and 'pod="burn"' in line
               for line in scraped.splitlines())
    assert re.search(r"^node_cpu_usage_seconds_total \S+$", scraped, re.M)
    assert re.search(r"^node_memory_working_set_bytes \S+$", scraped, re.M)
    assert re.search(r'^pod_memory_working_set_bytes\{namespace="default",pod="burn"\} \S+$', scraped, re.M)
