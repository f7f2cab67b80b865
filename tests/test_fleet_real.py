"""A fleet from one repository (issue 17): three `kubelite serve` processes on this machine — each
its own state root, run dir, bridge, pod subnet and API port — follow one git repository with a
shared base (a pod and a ConfigMap) and an overlay per node (`nodes/<node>`, a kustomization), each
with `--sync-path nodes/{node}`; kubectl reads each node through one merged kubeconfig with
`--context <node>`. A commit to the base reaches all three; a commit that breaks one overlay leaves
that node on its previous commit, with the sync error named, and the others move on.

Real containers (root, runc, conmon, CNI); the overlays use only what Debian's kubectl 1.20's
kustomize (v2.0.3) reads. Everything the nodes made is removed at the end.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from kubelite.runtime import cni
from tests.apinode import require_kubectl
from tests.real import Daemon, container, leftovers, pod, require_real_runtime, wait_for
from tests.test_gitsync import Remote

pytestmark = pytest.mark.real

NODES = ("n1", "n2", "n3")


def three_subnets() -> list[str]:
    """Three /24s of 10.221.0.0/16 that no host route touches (another test's bridge included)."""
    routes = cni.host_routes()
    found: list[str] = []
    for third in [*range(1 + os.getpid() % 200, 256), *range(1, 1 + os.getpid() % 200)]:
        candidate = ipaddress.ip_network(f"10.221.{third}.0/24")
        if cni.route_clash(candidate, routes, bridge="") is None:
            found.append(str(candidate))
            if len(found) == 3:
                return found
    raise RuntimeError("no three free /24s in 10.221.0.0/16")


def sleeper(name: str, **fields) -> dict:
    return pod(name, container("app", "trap 'exit 0' TERM; while true; do sleep 1; done", **fields))


def fleet_repository(remote: Remote) -> str:
    files = {
        "base/kustomization.yaml": "resources:\n- common.yaml\n- settings.yaml\n",
        "base/common.yaml": yaml.safe_dump(sleeper("common", env=[{"name": "GENERATION", "value": "1"}])),
        "base/settings.yaml": yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap",
                                              "metadata": {"name": "settings"}, "data": {"greeting": "hello"}}),
    }
    for index, node in enumerate(NODES, 1):
        workers = [f"worker-{i}.yaml" for i in range(1, index + 1)]   # n1: one worker, n2: two, n3: three
        files[f"nodes/{node}/kustomization.yaml"] = (
            "bases:\n- ../../base\nresources:\n" + "".join(f"- {w}\n" for w in workers)
            + f"commonLabels:\n  fleet.example.com/node: {node}\npatchesStrategicMerge:\n- role.yaml\n")
        for i, worker in enumerate(workers, 1):
            files[f"nodes/{node}/{worker}"] = yaml.safe_dump(sleeper(f"worker-{i}"))
        files[f"nodes/{node}/role.yaml"] = yaml.safe_dump(
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "worker-1"},
             "spec": {"containers": [{"name": "app", "env": [{"name": "ROLE", "value": f"role-{node}"}]}]}})
    return remote.commit(files, message="fleet")


class FleetNode(Daemon):
    def __init__(self, tmp: Path, busybox: Path, name: str, bridge: str, subnet: str, repository: Path) -> None:
        super().__init__(tmp, busybox, serve_args=(
            "--network", "cni", "--bridge", bridge, "--pod-cidr", subnet, "--warm-sandboxes", "0",
            "--relist-period", "2", "--node-name", name, "--api-address", "127.0.0.1:0",
            "--sync-repo", str(repository), "--sync-ref", "main", "--sync-path", "nodes/{node}",
            "--sync-interval", "0.5s"))
        self.name, self.bridge, self.tmp = name, bridge, tmp
        self.manifests.rmdir()   # the sync owns the manifests path as a symlink

    def sync_status(self) -> dict:
        out = self.cli("get", "sync", "-o", "json")
        return json.loads(out.stdout) if out.returncode == 0 else {}

    def running(self) -> set[str]:
        return {name for name, p in self.pods().items() if p["status"].get("phase") == "Running"}

    def clean_up(self) -> None:
        """Stop following the repository and remove every pod: serve again on an empty directory."""
        self.stop(signal.SIGTERM)
        if self.manifests.is_symlink():
            self.manifests.unlink()
        self.manifests.mkdir(exist_ok=True)
        self.serve_args = self.serve_args[:self.serve_args.index("--sync-repo")]
        self.start()


@pytest.fixture
def fleet(tmp_path: Path, busybox: Path) -> Iterator[tuple[Remote, list[FleetNode]]]:
    require_real_runtime()
    require_kubectl()
    try:
        cni.find_plugin_dir(cni.PLUGIN_DIRS)
    except cni.NetworkError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc} — CI must run the fleet test")
        pytest.skip(str(exc))
    remote = Remote(tmp_path, "fleet")
    tag = uuid.uuid4().hex[:8]
    nodes: list[FleetNode] = []
    try:
        for name, subnet in zip(NODES, three_subnets()):
            (tmp_path / name).mkdir()
            nodes.append(FleetNode(tmp_path / name, busybox, name, f"klf{tag}{name[-1]}", subnet, remote.bare))
        yield remote, nodes
    finally:
        for node in nodes:
            node.clean_up()
        try:
            for node in nodes:
                wait_for(lambda: not node.pods(), timeout=30, what=f"{node.name}'s pods to be removed")
        finally:
            for node in nodes:
                node.stop(signal.SIGTERM)
                node.log.close()
                subprocess.run(["ip", "link", "del", node.bridge], capture_output=True)
                Path(f"/run/lock/kubelite-{node.bridge}.lock").unlink(missing_ok=True)
        from kubelite.runtime.oci import instance_name

        for node in nodes:
            assert leftovers(node.root, node.run_dir, instance_name(node.root)) == []


def merged_kubeconfig(nodes: list[FleetNode], out: Path) -> Path:
    """One kubeconfig with a context per node, as `KUBECONFIG=a:b:c kubectl config view --flatten` makes."""
    parts = []
    for node in nodes:
        printed = node.cli("kubeconfig")
        assert printed.returncode == 0, printed.stderr
        part = node.tmp / "kubeconfig"
        part.write_text(printed.stdout)
        parts.append(str(part))
    merged = subprocess.run(["kubectl", "config", "view", "--flatten"], capture_output=True, text=True, timeout=30,
                            env={**os.environ, "KUBECONFIG": os.pathsep.join(parts), "HOME": str(out.parent)})
    assert merged.returncode == 0, merged.stderr
    out.write_text(merged.stdout)
    return out


def kubectl_pods(config: Path, context: str) -> dict[str, dict]:
    done = subprocess.run(["kubectl", "--kubeconfig", str(config), "--context", context, "get", "pods", "-o", "json"],
                          capture_output=True, text=True, timeout=30, env={**os.environ, "HOME": str(config.parent)})
    assert done.returncode == 0, done.stderr
    return {p["metadata"]["name"]: p for p in json.loads(done.stdout)["items"]}


def env_of(pod_: dict) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in pod_["spec"]["containers"][0].get("env", [])}


def test_three_nodes_follow_one_repository_with_a_shared_base_and_an_overlay_each(tmp_path: Path, fleet):
    remote, nodes = fleet
    first = fleet_repository(remote)
    for node in nodes:
        node.start()
    expected = {node.name: {"common", *(f"worker-{i}" for i in range(1, NODES.index(node.name) + 2))}
                for node in nodes}
    for node in nodes:
        wait_for(lambda: node.running() == expected[node.name], timeout=40, what=f"{node.name}'s overlay running")
        assert node.sync_status()["commit"] == first

    config = merged_kubeconfig(nodes, tmp_path / "kubeconfig")
    for node in nodes:
        seen = kubectl_pods(config, node.name)
        assert set(seen) == expected[node.name]
        assert {p["metadata"]["labels"]["fleet.example.com/node"] for p in seen.values()} == {node.name}
        assert env_of(seen["worker-1"]) == {"ROLE": f"role-{node.name}"}
        assert env_of(seen["common"]) == {"GENERATION": "1"}

    # a commit to the base reaches every node
    second = remote.commit({"base/common.yaml": yaml.safe_dump(
        sleeper("common", env=[{"name": "GENERATION", "value": "2"}]))}, message="base: generation 2")
    for node in nodes:
        wait_for(lambda: node.sync_status().get("commit") == second, timeout=20, what=f"{node.name} on the 2nd commit")
    for node in nodes:
        wait_for(lambda: env_of(kubectl_pods(config, node.name)["common"]) == {"GENERATION": "2"}
                 and node.running() == expected[node.name], timeout=30, what=f"{node.name}'s common pod replaced")

    # a commit that breaks n2's overlay (and changes the base): n2 stays, n1 and n3 move on
    third = remote.commit({
        "nodes/n2/kustomization.yaml": "bases:\n- ../../base\nresources:\n- worker-1.yaml\n- missing.yaml\n",
        "base/settings.yaml": yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap",
                                              "metadata": {"name": "settings"}, "data": {"greeting": "bonjour"}}),
    }, message="n2: a resource that is not there")
    for node in (nodes[0], nodes[2]):
        wait_for(lambda: node.sync_status().get("commit") == third, timeout=20, what=f"{node.name} on the 3rd commit")
    broken = wait_for(lambda: (s := nodes[1].sync_status()).get("rejected_commit") == third and s, timeout=20,
                      what="n2 to refuse the 3rd commit")
    assert broken["commit"] == second
    assert broken["last_error"].startswith(f"commit {third[:12]} not applied: nodes/n2/kustomization.yaml: "
                                           "resources[1]: 'missing.yaml' is not a file or directory of this commit")
    shown = nodes[1].cli("get", "sync")
    assert f"Rejected Commit: {third}" in shown.stdout and "missing.yaml" in shown.stdout
    assert set(kubectl_pods(config, "n2")) == expected["n2"]
    got = nodes[0].cli("get", "configmap", "settings", "-o", "json")
    assert json.loads(got.stdout)["data"] == {"greeting": "bonjour"}
    got = nodes[1].cli("get", "configmap", "settings", "-o", "json")
    assert json.loads(got.stdout)["data"] == {"greeting": "hello"}
