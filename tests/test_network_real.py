"""Pod networking on real containers: CNI bridge, host-local, portmap, masquerade — and cleanup.

Each test uses a bridge and a pod subnet of its own (never `kubelite0`, never a subnet the host
routes), so a kubelite running on this machine is not disturbed, and removes the bridge after
itself. Proven here: a pod's IP answers from the host; a hostPort answers on 127.0.0.1 and on the
host's own address; the masquerade rule for outbound traffic exists; a hostPort already taken
gives the pod a clear waiting reason and event while other pods run on; a pod whose infra process
dies gets a new sandbox and its old address back in the pool; a pod-level edit of a pod with a
fixed `metadata.uid` stops the old sandbox, so the new one gets its host port; and nothing —
veth, address lease, iptables rule, pinned namespace — is left after the pod goes, also when
kubelite was killed with SIGKILL (and the pod's infra process too) before the pod was deleted,
when the namespace vanished before teardown, or when kubelite died halfway through making a
sandbox. `serve` refuses a pod subnet that overlaps a host route.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import urllib.request
import uuid
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from kubelite.runtime import cni
from tests.helpers import free_port, free_subnet
from tests.real import Daemon, Node, container, leftovers, pod, require_real_runtime, wait_for

pytestmark = pytest.mark.real


def require_cni() -> None:
    require_real_runtime()
    try:
        cni.find_plugin_dir(cni.PLUGIN_DIRS)
    except cni.NetworkError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc} — CI must run the networking tests")
        pytest.skip(str(exc))


@pytest.fixture
def busybox(busybox: Path) -> Path:   # the shared image (conftest), once the CNI plugins are known to be there
    require_cni()
    return busybox


class NetworkUnderTest:
    """A bridge and subnet for one test; `leftovers()` lists what pods left on the host."""

    def __init__(self, tmp: Path) -> None:
        self.bridge = "klt" + uuid.uuid4().hex[:8]
        self.subnet = free_subnet("10.218.0.0/16")
        self.run_dir = tmp / "run"
        self.root = tmp / "state"

    def make(self) -> cni.Network:
        return cni.Network(root=self.root, run_dir=self.run_dir, bridge=self.bridge, pod_cidr=self.subnet)

    def leftovers(self, ids: list[str], ips: list[str]) -> list[str]:
        found = []
        links = subprocess.run(["ip", "-o", "link", "show", "master", self.bridge], capture_output=True,
                               text=True).stdout
        found += [f"veth {line.split(':')[1].strip()}" for line in links.splitlines() if line.strip()]
        leases = self.run_dir / "cni" / "networks" / self.bridge
        if leases.is_dir():
            found += [f"lease {p.name}" for p in leases.iterdir() if p.name not in ("lock", "last_reserved_ip.0")]
        rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
        for line in rules.splitlines():
            if any(i in line for i in ids) or any(f"{ip}/" in line or f"{ip}:" in line for ip in ips):
                found.append(f"iptables {line}")
        netns = self.run_dir / "netns"
        if netns.is_dir():
            found += [f"netns {p.name}" for p in netns.iterdir()]
        return found

    def remove_bridge(self) -> None:
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        Path(f"/run/lock/kubelite-{self.bridge}.lock").unlink(missing_ok=True)   # left by a daemon killed -9


@pytest.fixture
def network(tmp_path: Path) -> Iterator[NetworkUnderTest]:
    net = NetworkUnderTest(tmp_path)
    try:
        yield net
    finally:
        net.remove_bridge()


@pytest.fixture
def node(tmp_path: Path, busybox: Path, network: NetworkUnderTest) -> Iterator[Node]:
    n = Node(manifests=tmp_path / "manifests", root=network.root, run_dir=network.run_dir, busybox=busybox,
             network=network.make(), node_ip=cni.host_ip())
    n.start()
    try:
        yield n
    finally:
        assert n.close() == []


def http_get(url: str, timeout: float = 3.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def web(name: str, host_port: int | None = None) -> dict:
    port = {"containerPort": 80, **({"hostPort": host_port} if host_port else {})}
    return pod(name, container("web", f"mkdir -p /www && echo hello from {name} > /www/index.html "
                                      "&& exec httpd -f -p 80 -h /www", ports=[port]))


def answers(url: str) -> str | None:
    """The body at `url`, or None while nothing answers there (a container runs before it listens)."""
    try:
        return http_get(url)
    except OSError:
        return None


def sandbox_id(node: Node, name: str) -> str:
    for entry in node.agent.pods.values():
        if entry.pod.metadata.name == name:
            return node.agent.observed(entry.uid).sandbox.id
    raise AssertionError(f"no sandbox for {name}")


def test_a_pod_ip_answers_from_the_host_and_its_host_port_on_the_host(node: Node, network: NetworkUnderTest):
    host_port = free_port()
    node.write(web("web", host_port))
    node.until(lambda: node.running("web", "web") and node.status("web").get("podIP"), what="web running with an IP")
    status = node.status("web")
    ip = status["podIP"]
    assert ipaddress.ip_address(ip) in ipaddress.ip_network(network.subnet)
    assert status["podIPs"] == [{"ip": ip}]
    assert status["hostIP"] == cni.host_ip()

    assert wait_for(lambda: answers(f"http://{ip}/"), what="the pod's IP to answer") == "hello from web\n"
    assert answers(f"http://127.0.0.1:{host_port}/") == "hello from web\n"
    if status["hostIP"]:
        assert answers(f"http://{status['hostIP']}:{host_port}/") == "hello from web\n"

    sid = sandbox_id(node, "web")
    nat = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
    assert any(sid in line and "MASQUERADE" in line for line in nat.splitlines()), "no outbound NAT rule"
    # inside the pod: its own address on eth0, loopback up, its name on its IP in /etc/hosts
    code, out = node.exec("web", "web", "sh", "-c", "ip -o -4 addr show; cat /etc/hosts")
    assert code == 0 and re.search(rf"eth0\s+inet {re.escape(ip)}/24", out), out
    assert re.search(r"lo\s+inet 127\.0\.0\.1/8", out), out
    assert f"{ip}\tweb" in out

    shown = node.cli("get", "pods", "-o", "wide")
    assert shown.returncode == 0 and ip in shown.stdout, shown.stdout + shown.stderr
    described = node.cli("describe", "pod", "web").stdout
    assert re.search(rf"^IP:\s+{re.escape(ip)}$", described, re.M), described
    assert re.search(rf"^Node:\s+test/{re.escape(status['hostIP'] or '')}$", described, re.M), described

    (node.manifests / "web.yaml").unlink()
    node.agent.hint_manifests()
    node.until(lambda: not node.agent.pods, what="the pod to be removed")
    assert network.leftovers([sid], [ip]) == []


def test_a_host_port_in_use_is_reported_and_other_pods_run_on(node: Node, network: NetworkUnderTest):
    taken = socket.socket()
    taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    taken.bind(("0.0.0.0", 0))
    taken.listen()
    port = taken.getsockname()[1]
    free = free_port()
    try:
        node.write(web("first", free))
        node.until(lambda: node.running("first", "web"), what="first running")
        node.write(web("blocked", port))
        node.write(web("second", free))   # the same host port as `first`
        node.until(lambda: node.container("blocked", "web").get("state", {}).get("waiting", {}).get("reason")
                   == "CreatePodSandboxError" and
                   node.container("second", "web").get("state", {}).get("waiting", {}).get("reason")
                   == "CreatePodSandboxError", what="both to be refused")
        message = node.container("blocked", "web")["state"]["waiting"]["message"]
        assert message == f"Failed to create pod sandbox: host port {port}/TCP is already in use on this machine"
        assert node.container("second", "web")["state"]["waiting"]["message"] == \
            f"Failed to create pod sandbox: host port {free}/TCP is already allocated to pod default/first"
        events = node.cli("get", "events").stdout
        assert "FailedCreatePodSandBox" in events and f"host port {port}/TCP is already in use" in events
        shown = node.cli("get", "pods").stdout
        assert "CreatePodSandboxError" in shown
        # the pod that runs was not disturbed
        assert node.running("first", "web")
        assert http_get(f"http://127.0.0.1:{free}/") == "hello from first\n"
    finally:
        taken.close()


def test_a_pod_whose_infra_process_dies_gets_a_new_sandbox_and_the_old_address_is_released(
        node: Node, network: NetworkUnderTest):
    node.write(web("web", free_port()))
    node.until(lambda: node.running("web", "web") and node.status("web").get("podIP"), what="web running")
    old_id, old_ip = sandbox_id(node, "web"), node.status("web")["podIP"]
    record = json.loads((network.run_dir / "sandboxes" / old_id / "record.json").read_text())
    os.kill(record["pid"], signal.SIGKILL)   # no exit file: seen at the next full relist (20 s at most)
    node.until(lambda: sandbox_id(node, "web") != old_id and node.running("web", "web", restarts=1)
               and node.status("web").get("podIP") not in (None, old_ip), timeout=45, what="a new sandbox")
    new_id, new_ip = sandbox_id(node, "web"), node.status("web")["podIP"]
    left = network.leftovers([old_id], [old_ip])
    assert [item for item in left if not item.startswith("veth") and new_ip not in item and new_id not in item] == []
    assert len([item for item in left if item.startswith("veth")]) == 1   # the new sandbox's
    assert wait_for(lambda: answers(f"http://{new_ip}/"), what="the new address to answer") == "hello from web\n"


def test_a_pod_level_edit_of_a_pod_with_a_fixed_uid_frees_the_old_sandboxs_host_port_and_address(
        node: Node, network: NetworkUnderTest):
    port = free_port()
    doc = web("web", port)
    doc["metadata"]["uid"] = "4f7c1a52-fixed"
    node.write(doc)
    node.until(lambda: node.running("web", "web") and node.status("web").get("podIP"), what="web running")
    old_id, old_ip = sandbox_id(node, "web"), node.status("web")["podIP"]
    doc["spec"]["hostname"] = "renamed"   # pod-level: a new sandbox under the same UID
    node.write(doc)
    node.until(lambda: sandbox_id(node, "web") != old_id and node.running("web", "web", restarts=1)
               and node.status("web").get("podIP") not in (None, old_ip), timeout=60, what="a new sandbox")
    assert node.status("web")["containerStatuses"][0]["state"]["running"]
    assert node.exec("web", "web", "hostname") == (0, "renamed\n")
    # the new sandbox got the host port
    assert wait_for(lambda: answers(f"http://127.0.0.1:{port}/"), what="the host port") == "hello from web\n"
    assert "FailedCreatePodSandBox" not in node.cli("get", "events").stdout
    new_id, new_ip = sandbox_id(node, "web"), node.status("web")["podIP"]
    left = network.leftovers([old_id], [old_ip])
    assert [item for item in left if not item.startswith("veth") and new_ip not in item and new_id not in item] == []
    assert len([item for item in left if item.startswith("veth")]) == 1   # the new sandbox's


def test_teardown_removes_the_masquerade_rule_also_when_the_namespace_is_gone(network: NetworkUnderTest):
    require_cni()
    net = network.make()
    record = network.run_dir / "network.json"
    sid = "gone" + uuid.uuid4().hex[:12]
    attachment = net.setup(record, sandbox_id=sid, port_mappings=())
    nat = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
    assert sid in nat
    subprocess.run(["umount", attachment.netns], check=True)   # as if the namespace vanished
    cni.teardown(record)
    assert not record.exists()
    assert network.leftovers([sid], [attachment.ip or "-"]) == []


def test_a_sandbox_half_made_when_kubelite_died_is_torn_down_at_the_next_start(busybox: Path,
                                                                              network: NetworkUnderTest):
    from kubelite.runtime.images import ImageStore
    from kubelite.runtime.oci import OCIRuntime

    net = network.make()
    sid = uuid.uuid4().hex
    bundle = network.run_dir / "sandboxes" / sid
    bundle.mkdir(parents=True)
    attachment = net.setup(bundle / "network.json", sandbox_id=sid, port_mappings=())   # ADD done, no record
    stray = Path(net.pin_netns("stray" + uuid.uuid4().hex[:8]))                        # pinned, never recorded
    assert network.leftovers([sid], [attachment.ip or "-"]) != []
    runtime = OCIRuntime(root=network.root, run_dir=network.run_dir, images=ImageStore(network.root), network=net)
    runtime.close()
    assert not bundle.exists() and not stray.exists()
    assert network.leftovers([sid], [attachment.ip or "-"]) == []


def daemon_on(network: NetworkUnderTest, tmp: Path, busybox: Path) -> Daemon:
    """`kubelite serve --runtime runc` with the test's own bridge and subnet, as a process."""
    return Daemon(tmp, busybox, root=network.root, run_dir=network.run_dir,
                  serve_args=("--network", "cni", "--bridge", network.bridge, "--pod-cidr", network.subnet,
                              "--relist-period", "2"))


def test_cleanup_after_kill_9_of_kubelite_and_of_the_pod_infra(tmp_path: Path, busybox: Path,
                                                                network: NetworkUnderTest):
    daemon = daemon_on(network, tmp_path, busybox)
    daemon.start()
    try:
        (daemon.manifests / "web.yaml").write_text(yaml.safe_dump(web("web", free_port())))
        pod_ = wait_for(lambda: (p := daemon.pods().get("web")) and p["status"].get("podIP")
                        and p["status"]["phase"] == "Running" and p, timeout=30, what="web running with an IP")
        ip = pod_["status"]["podIP"]
        records = [json.loads(r.read_text()) for r in (network.run_dir / "sandboxes").glob("*/record.json")]
        pods = [r for r in records if not r.get("warm")]   # serve keeps warm sandboxes besides (decision 0020)
        assert len(pods) == 1
        record = pods[0]
        assert wait_for(lambda: http_get(f"http://{ip}/"), what="the pod to answer")
        daemon.stop(signal.SIGKILL)
        os.kill(record["pid"], signal.SIGKILL)   # the pod's infra process dies too: its netns stays pinned
        (daemon.manifests / "web.yaml").unlink()
        daemon.start()
        wait_for(lambda: not daemon.pods(), timeout=30, what="the pod to be removed after the restart")
        daemon.stop(signal.SIGTERM)
        assert network.leftovers([record["id"]], [ip]) == []
        from kubelite.runtime.oci import instance_name
        assert leftovers(network.root, network.run_dir, instance_name(network.root)) == []
    finally:
        daemon.stop(signal.SIGKILL)


def test_serve_refuses_a_pod_subnet_that_clashes_with_the_hosts_routes(tmp_path: Path, busybox: Path,
                                                                       network: NetworkUnderTest):
    # not the route of another test's bridge (klt…, klb…, klw…): it may be gone before serve checks
    routes = [dst for dst, dev in cni.host_routes() if dst not in ("default", "0.0.0.0/0") and "/" in dst
              and not dev.startswith(("klt", "klb", "klw"))]
    if not routes:
        pytest.skip("the host has no subnet route to clash with")
    network.subnet = str(ipaddress.ip_network(routes[0], strict=False))
    daemon = daemon_on(network, tmp_path, busybox)
    daemon.start()
    assert daemon.proc is not None
    try:
        assert daemon.proc.wait(timeout=20) == 1
    finally:
        daemon.stop()   # SIGTERM, should it have started after all: its warm sandboxes are torn down
    daemon.proc = None
    text = (tmp_path / "serve.log").read_text()
    assert f"error: --pod-cidr {network.subnet} clashes with the host route {routes[0]}" in text
    # nothing was created: no bridge
    assert subprocess.run(["ip", "link", "show", network.bridge], capture_output=True).returncode != 0


def test_a_del_that_fails_at_removal_is_retried_later_and_leaks_nothing(tmp_path: Path, network: NetworkUnderTest):
    from kubelite.runtime.images import ImageStore
    from kubelite.runtime.oci import OCIRuntime, _Sandbox
    from kubelite.runtime.protocol import PortMapping

    require_cni()
    real = cni.find_plugin_dir(cni.PLUGIN_DIRS)
    plugins, fail = tmp_path / "plugins", tmp_path / "fail"
    plugins.mkdir()
    for name in cni.PLUGINS:   # the real plugins; portmap's DEL fails while `fail` exists
        if name != "portmap":
            (plugins / name).symlink_to(real / name)
    (plugins / "portmap").write_text(f'#!/bin/sh\nif [ "$CNI_COMMAND" = DEL ] && [ -e {fail} ]; then\n'
                                     f'  echo \'{{"code":11,"msg":"xtables lock is busy"}}\'; exit 1\nfi\n'
                                     f'exec {real / "portmap"}\n')
    (plugins / "portmap").chmod(0o755)
    net = cni.Network(root=network.root, run_dir=network.run_dir, bridge=network.bridge, pod_cidr=network.subnet,
                      plugin_dirs=[str(plugins)])
    runtime = OCIRuntime(root=network.root, run_dir=network.run_dir, images=ImageStore(network.root), network=net)
    sid = uuid.uuid4().hex
    bundle = network.run_dir / "sandboxes" / sid
    bundle.mkdir(parents=True)
    attachment = net.setup(bundle / "network.json", sandbox_id=sid,
                           port_mappings=(PortMapping(container_port=80, host_port=free_port()),))
    record = _Sandbox(sid, "uid-leak", "web", "default", 0, "h", "2026-01-01T00:00:00+00:00", False, False,
                      f"/{runtime.instance}/poduid-leak")
    runtime._sandboxes[sid] = record
    runtime._save(record)
    copy = tmp_path / "network.json"   # for the cleanup, whatever happens
    copy.write_bytes((bundle / "network.json").read_bytes())
    try:
        fail.touch()
        runtime.remove_sandbox(sid)
        assert any(line.startswith("iptables") for line in network.leftovers([sid], [attachment.ip or "-"]))
        fail.unlink()
        runtime._next_teardown_retry = 0   # the relist's retry, a minute later
        runtime.list_sandboxes()
        assert network.leftovers([sid], [attachment.ip or "-"]) == []
    finally:
        fail.unlink(missing_ok=True)
        cni.teardown(copy)   # DEL is idempotent
        runtime.close()
