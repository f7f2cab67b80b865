"""Real pods under seccomp profiles, with sysctls and pod-level resources, on this machine.

RuntimeDefault is the profile of Debian's golang-github-containers-common; a Localhost profile is
read from `<root>/seccomp`. Sysctls are set in the pod's own namespaces; pod-level limits land on
the pod's cgroup. Every test checks afterwards that nothing was left behind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

from tests.real import Node, assert_pod_limits, container, pod

pytestmark = pytest.mark.real


@pytest.fixture
def make_node(tmp_path: Path, busybox: Path) -> Iterator:
    made: list[Node] = []

    def make(**options) -> Node:
        n = Node(tmp_path / "manifests", tmp_path / "state", tmp_path / "run", busybox, options=options).start()
        made.append(n)
        return n

    yield make
    for n in made:
        left = n.close()
        assert left == [], f"left behind: {left}"


def _seccomp_mode(node: Node, pod_name: str, name: str) -> str:
    code, out = node.exec(pod_name, name, "grep", "^Seccomp:", "/proc/self/status")
    assert code == 0, out
    return out.split()[1]


SYS_ADMIN = {"capabilities": {"add": ["SYS_ADMIN"]}}


def test_runtime_default_filters_syscalls_and_unconfined_does_not(make_node):
    """Under RuntimeDefault `Seccomp: 2` and swapoff is refused by the filter (EPERM) even with
    CAP_SYS_ADMIN; Unconfined shows 0 and the kernel itself answers (ENOENT for a missing file)."""
    node = make_node()
    node.write(pod("filtered",
                   container("strict", "exec sleep 3600",
                             securityContext={**SYS_ADMIN, "seccompProfile": {"type": "RuntimeDefault"}}),
                   container("loose", "exec sleep 3600",
                             securityContext={**SYS_ADMIN, "seccompProfile": {"type": "Unconfined"}})))
    node.until(lambda: node.running("filtered", "strict") and node.running("filtered", "loose"), what="running")
    assert _seccomp_mode(node, "filtered", "strict") == "2"
    assert _seccomp_mode(node, "filtered", "loose") == "0"
    code, out = node.exec("filtered", "strict", "sh", "-c", "swapoff /no-such-swap 2>&1")
    assert code != 0 and "Operation not permitted" in out
    code, out = node.exec("filtered", "loose", "sh", "-c", "swapoff /no-such-swap 2>&1")
    assert code != 0 and "No such file or directory" in out


def test_seccomp_default_flag_and_pod_level_profile_with_container_override(make_node):
    node = make_node(seccomp_default=True)
    node.write(pod("defaults", container("plain", "exec sleep 3600"),
                   container("opted-out", "exec sleep 3600",
                             securityContext={"seccompProfile": {"type": "Unconfined"}}),
                   container("privileged", "exec sleep 3600", securityContext={"privileged": True})))
    node.until(lambda: all(node.running("defaults", n) for n in ("plain", "opted-out", "privileged")),
               what="running")
    assert _seccomp_mode(node, "defaults", "plain") == "2"
    assert _seccomp_mode(node, "defaults", "opted-out") == "0"
    assert _seccomp_mode(node, "defaults", "privileged") == "0"
    uid = next(e.uid for e in node.agent.pods.values() if e.pod.metadata.name == "defaults")
    [infra] = [r for r in node.runtime._sandboxes.values() if r.uid == uid and not r.stopped]
    status = Path(f"/proc/{infra.pid}/status").read_text()
    assert "Seccomp:\t2" in status, "the infra container runs under the pod's default profile too"


def test_a_localhost_profile_below_the_seccomp_root_blocks_mkdir(make_node):
    node = make_node()
    profiles = node.root / "seccomp" / "profiles"
    profiles.mkdir(parents=True)
    (profiles / "no-mkdir.json").write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}))
    node.write(pod("local", container("app", "exec sleep 3600"),
                   securityContext={"seccompProfile": {"type": "Localhost",
                                                       "localhostProfile": "profiles/no-mkdir.json"}}))
    node.until(lambda: node.running("local", "app"), what="running")
    assert _seccomp_mode(node, "local", "app") == "2"
    code, out = node.exec("local", "app", "sh", "-c", "mkdir /tmp/x 2>&1")
    assert code != 0 and "Operation not permitted" in out
    assert node.exec("local", "app", "sh", "-c", "touch /tmp/file && echo ok")[1] == "ok\n"


def test_a_missing_localhost_profile_is_a_create_container_error(make_node):
    node = make_node()
    node.write(pod("missing", container("app", "exec sleep 3600",
                                        securityContext={"seccompProfile": {"type": "Localhost",
                                                                            "localhostProfile": "nope.json"}})))
    waiting = node.until(lambda: node.container("missing", "app").get("state", {}).get("waiting", {})
                         .get("reason") == "CreateContainerError" and node.container("missing", "app"),
                         what="CreateContainerError")
    message = waiting["state"]["waiting"]["message"]
    assert "cannot load seccomp profile" in message and str(node.root / "seccomp" / "nope.json") in message


def test_safe_and_allowed_sysctls_are_set_in_the_pods_namespaces(make_node):
    node = make_node(allowed_unsafe_sysctls=("kernel.msg*",))
    node.write(pod("tuned", container("app", "exec sleep 3600"),
                   securityContext={"sysctls": [{"name": "net.ipv4.ip_local_port_range", "value": "20000 20999"},
                                                {"name": "kernel.shm_rmid_forced", "value": "1"},
                                                {"name": "kernel.msgmax", "value": "12345"}]}))
    node.until(lambda: node.running("tuned", "app"), what="running")
    assert node.exec("tuned", "app", "cat", "/proc/sys/net/ipv4/ip_local_port_range")[1].split() == ["20000", "20999"]
    assert node.exec("tuned", "app", "cat", "/proc/sys/kernel/shm_rmid_forced")[1] == "1\n"
    assert node.exec("tuned", "app", "cat", "/proc/sys/kernel/msgmax")[1] == "12345\n"
    host = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    assert host != ["20000", "20999"], "the host's own setting is untouched"


def test_an_unsafe_sysctl_fails_the_pod_with_sysctlforbidden(make_node):
    node = make_node()
    node.write(pod("unsafe", container("app", "exec sleep 3600"),
                   securityContext={"sysctls": [{"name": "kernel.msgmax", "value": "65536"}]}))
    status = node.until(lambda: node.status("unsafe").get("phase") == "Failed" and node.status("unsafe"),
                        what="the pod to be refused")
    assert status["reason"] == "SysctlForbidden"
    assert status["message"] == 'Pod was rejected: forbidden sysctl: "kernel.msgmax" not allowlisted'
    assert not node.runtime.list_containers() and not node.runtime.list_sandboxes()
    events = node.cli("get", "events", "-o", "json")
    assert events.returncode == 0, events.stderr
    found = [e for e in json.loads(events.stdout)["items"] if e["reason"] == "SysctlForbidden"]
    assert found and found[0]["type"] == "Warning"


def test_pod_level_resources_limit_the_pods_cgroup(make_node):
    node = make_node()
    node.write(pod("capped", container("app", "exec sleep 3600"), container("side", "exec sleep 3600"),
                   resources={"limits": {"memory": "64Mi", "cpu": "500m"}}))
    node.until(lambda: node.running("capped", "app") and node.running("capped", "side"), what="running")
    assert_pod_limits(node, "capped", memory=64 << 20, cpu_quota=50000)
    assert node.status("capped")["qosClass"] == "Guaranteed"
    # a container without its own limit sees the pod's as its cgroup maximum
    spec = json.loads((node.run_dir / "containers" / node.container_id("capped", "app") / "config.json").read_text())
    assert spec["linux"]["resources"]["memory"]["limit"] == 64 << 20


RESTRICTED = """\
apiVersion: v1
kind: Pod
metadata:
  name: restricted
  labels:
    app: restricted
spec:
  terminationGracePeriodSeconds: 2
  securityContext:
    runAsNonRoot: true
    runAsUser: 1000
    seccompProfile:
      type: RuntimeDefault
  containers:
  - name: app
    image: busybox:latest
    imagePullPolicy: Never
    command: ["sh", "-c", "exec sleep 3600"]
    securityContext:
      allowPrivilegeEscalation: false
      capabilities:
        drop: ["ALL"]
"""


def test_a_pod_of_the_restricted_pod_security_level_validates_and_runs_filtered(make_node):
    node = make_node()
    path = node.manifests / "restricted.yaml"
    path.write_text(RESTRICTED)
    checked = node.cli("validate", str(path))
    assert checked.returncode == 0 and "warning" not in (checked.stdout + checked.stderr).lower(), checked
    node.agent.hint_manifests()
    node.until(lambda: node.running("restricted", "app"), what="running")
    _, status = node.exec("restricted", "app", "cat", "/proc/self/status")
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert (fields["Seccomp"].strip(), fields["NoNewPrivs"].strip(), fields["CapEff"].strip()) == \
        ("2", "1", "0000000000000000")
    assert fields["Uid"].split()[0] == "1000"


def test_without_apparmor_a_pod_requiring_a_profile_fails_and_unconfined_runs(make_node):
    node = make_node(apparmor_enabled=False)
    node.write(pod("armored", container("app", "exec sleep 3600",
                                        securityContext={"appArmorProfile": {"type": "RuntimeDefault"}})))
    node.write(pod("plain", container("app", "exec sleep 3600"),
                   securityContext={"appArmorProfile": {"type": "Unconfined"}}))
    status = node.until(lambda: node.status("armored").get("phase") == "Failed" and node.status("armored"),
                        what="the pod to be refused")
    assert (status["reason"], status["message"]) == (
        "AppArmor", "Pod was rejected: Cannot enforce AppArmor: AppArmor is not enabled on the host")
    assert "containerStatuses" not in status
    node.until(lambda: node.running("plain", "app"), what="the unconfined pod to run")
    described = node.cli("describe", "pod", "armored")
    assert "Cannot enforce AppArmor" in described.stdout, described.stdout
