"""Pod networking without root: the CNI builders and rules (pure), the fake runtime's addresses, and
the agent's podIP/hostIP, hostPort conflicts and hostNetwork on the simulated node."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import replace
from pathlib import Path

import pytest

from kubelite.api.decode import decode_document
from kubelite.core import status as statuses
from kubelite.core.types import ObservedPod, ObservedSandbox
from kubelite.runtime import cni
from kubelite.errors import RuntimeError_
from kubelite.runtime.fake import FakeRuntime
from kubelite.runtime.protocol import PortMapping, SandboxConfig, SandboxState
from tests.helpers import T0, desired, pod_doc
from tests.simulated import simulated_node

SUBNET = ipaddress.ip_network("10.217.0.0/24")


# ------------------------------------------------------------------ the conflist and each plugin's input


def test_the_conflist_is_bridge_with_host_local_then_loopback_portmap_firewall():
    conf = cni.conflist(bridge="kubelite0", subnet="10.217.0.0/24", data_dir="/run/kubelite/cni/networks")
    assert conf["cniVersion"] == "1.0.0" and conf["name"] == "kubelite0"
    assert [p["type"] for p in conf["plugins"]] == ["bridge", "loopback", "portmap", "firewall"]
    bridge = conf["plugins"][0]
    assert (bridge["bridge"], bridge["isGateway"], bridge["ipMasq"]) == ("kubelite0", True, True)
    assert bridge["ipam"] == {"type": "host-local", "ranges": [[{"subnet": "10.217.0.0/24"}]],
                              "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "/run/kubelite/cni/networks"}
    assert conf["plugins"][2]["capabilities"] == {"portMappings": True}


def test_only_a_plugin_with_the_capability_gets_the_port_mappings_and_every_one_the_previous_result():
    conf = cni.conflist(bridge="b0", subnet="10.217.0.0/24", data_dir="/d")
    mappings = cni.runtime_port_mappings([PortMapping(8080, 80), PortMapping(5353, 53, "UDP", "127.0.0.1")])
    assert mappings == [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": ""},
                        {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"}]
    runtime = {"portMappings": mappings}
    bridge = cni.plugin_input(conf, conf["plugins"][0], prev_result=None, runtime_config=runtime)
    assert "runtimeConfig" not in bridge and "prevResult" not in bridge
    assert bridge["name"] == "b0" and bridge["cniVersion"] == "1.0.0"
    portmap = cni.plugin_input(conf, conf["plugins"][2], prev_result={"ips": []}, runtime_config=runtime)
    assert portmap["runtimeConfig"] == {"portMappings": mappings} and portmap["prevResult"] == {"ips": []}


def test_the_pods_ip_is_the_first_ipv4_address_of_the_result():
    result = {"ips": [{"address": "fd00::2/64"}, {"address": "10.217.0.7/24", "gateway": "10.217.0.1"}]}
    assert cni.result_ip(result) == "10.217.0.7"
    assert cni.result_ip({}) is None and cni.result_ip(None) is None


def test_the_masquerade_chain_is_named_as_the_bridge_plugin_names_it():
    # seen on this kind of machine: bridge plugin 1.1.1, network "kltest0", container "cid0002"
    assert cni.masquerade_chain("kltest0", "cid0002") == "CNI-a839f248b2bd9080e78178b1"
    assert cni.masquerade_comment("kltest0", "cid0002") == 'name: "kltest0" id: "cid0002"'


# ------------------------------------------------------------------ the subnet and the options


@pytest.mark.parametrize("routes, clash", [
    ([("default", "eth0"), ("192.0.2.0/24", "eth0")], None),
    ([("10.217.0.0/24", "kubelite0")], None),                      # kubelite's own bridge
    ([("10.0.0.0/8", "wg0")], "10.0.0.0/8 dev wg0"),               # a wider route covers it
    ([("10.217.0.128/25", "eth1")], "10.217.0.128/25 dev eth1"),   # a narrower one inside it
    ([("10.217.0.5", "eth1")], "10.217.0.5 dev eth1"),             # a host route
    ([("10.218.0.0/24", "eth1"), ("fe80::/64", "eth0")], None),
])
def test_a_pod_subnet_that_overlaps_a_host_route_clashes(routes, clash):
    assert cni.route_clash(SUBNET, routes, bridge="kubelite0") == clash


@pytest.mark.parametrize("bridge, cidr, message", [
    ("kubelite0", "10.217.0.1/24", "--pod-cidr '10.217.0.1/24': 10.217.0.1/24 has host bits set"),
    ("kubelite0", "fd00::/64", "--pod-cidr fd00::/64: only IPv4 pod subnets are supported"),
    ("kubelite0", "10.217.0.0/30", "--pod-cidr 10.217.0.0/30: too small"),
    ("kubelite0", "127.0.0.0/24", "--pod-cidr 127.0.0.0/24: not a usable unicast subnet"),
    ("kubelite0", "nonsense", "--pod-cidr 'nonsense'"),
    ("a-bridge-name-too-long", "10.217.0.0/24", "--bridge 'a-bridge-name-too-long'"),
    ("bad/name", "10.217.0.0/24", "--bridge 'bad/name'"),
])
def test_unusable_options_are_refused_naming_the_flag(bridge, cidr, message):
    with pytest.raises(cni.NetworkError) as caught:
        cni.validate_options(bridge=bridge, pod_cidr=cidr)
    assert str(caught.value).startswith(message)


def test_a_port_a_process_listens_on_is_in_use():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(cni.HostPortInUse, match=f"host port 127.0.0.1:{port}/TCP is already in use"):
            cni.check_host_port_free(PortMapping(port, 80, "TCP", "127.0.0.1"))
        with pytest.raises(cni.HostPortInUse, match=f"host port {port}/TCP is already in use"):
            cni.check_host_port_free(PortMapping(port, 80))   # all addresses include 127.0.0.1
    cni.check_host_port_free(PortMapping(port, 80))            # free again


def test_missing_plugins_say_what_to_install(tmp_path: Path):
    with pytest.raises(cni.NetworkError, match="apt-get install containernetworking-plugins.*--network none"):
        cni.find_plugin_dir([str(tmp_path)])


# ------------------------------------------------------------------ status


def test_pod_ip_comes_from_the_sandbox_and_host_network_pods_take_the_host_ip():
    d = desired("web")
    sb = ObservedSandbox("sb", 0, d.sandbox_hash, True, T0, ip="10.217.0.9")
    status = statuses.network_status(d.pod, ObservedPod(d.uid, (sb,)), host_ip="192.0.2.2")
    assert status == {"hostIP": "192.0.2.2", "hostIPs": [{"ip": "192.0.2.2"}],
                      "podIP": "10.217.0.9", "podIPs": [{"ip": "10.217.0.9"}]}
    assert statuses.network_status(d.pod, ObservedPod(d.uid), host_ip=None) == {}
    host = desired("host", hostNetwork=True)
    assert statuses.network_status(host.pod, ObservedPod(host.uid), host_ip="192.0.2.2")["podIP"] == "192.0.2.2"


# ------------------------------------------------------------------ manifests


def _ports(*ports: dict, **spec) -> dict:
    doc = pod_doc("web", **spec)
    doc["spec"]["containers"][0]["ports"] = list(ports)
    return doc


def test_host_ports_are_validated_as_kubernetes_validates_them():
    errors = [str(e) for e in decode_document(_ports({"containerPort": 80, "hostPort": 8080},
                                                     {"containerPort": 81, "hostPort": 8080}), source="x").errors]
    assert errors == ['spec.containers[0].ports[1].hostPort: Duplicate value: "8080/TCP"']
    errors = [str(e) for e in decode_document(_ports({"containerPort": 80, "hostPort": 8080}, hostNetwork=True),
                                              source="x").errors]
    assert errors == ["spec.containers[0].ports[0].hostPort: Invalid value: must match `containerPort` when "
                      "`hostNetwork` is true"]
    assert decode_document(_ports({"containerPort": 80, "hostPort": 8080},
                                  {"containerPort": 80, "hostPort": 8080, "protocol": "UDP"}), source="x").errors == []


def test_a_changed_host_port_replaces_the_sandbox_and_no_host_port_keeps_the_hash():
    plain = decode_document(_ports({"containerPort": 80}), source="x").desired
    assert plain.sandbox_hash == decode_document(pod_doc("web"), source="x").desired.sandbox_hash
    first = decode_document(_ports({"containerPort": 80, "hostPort": 8080}), source="x").desired
    second = decode_document(_ports({"containerPort": 80, "hostPort": 8081}), source="x").desired
    assert len({plain.sandbox_hash, first.sandbox_hash, second.sandbox_hash}) == 3


# ------------------------------------------------------------------ the simulated node


@pytest.fixture
def env(tmp_path: Path):
    with simulated_node(tmp_path) as node:
        node.agent.config = replace(node.agent.config, node_ip="192.0.2.2")
        yield node


def test_simulated_pods_get_ips_in_order_and_the_node_ip_as_host_ip(env):
    env.write("a.yaml", pod_doc("a"))
    env.write("b.yaml", pod_doc("b"))
    env.write("h.yaml", pod_doc("h", hostNetwork=True))
    env.settle()
    ips = {p["metadata"]["name"]: p["status"].get("podIP") for p in env.pods()}
    assert sorted([ips["a"], ips["b"]]) == ["10.217.0.2", "10.217.0.3"]
    assert ips["h"] == "192.0.2.2"
    assert all(p["status"]["hostIP"] == "192.0.2.2" for p in env.pods())
    assert env.row("a").ip in ("10.217.0.2", "10.217.0.3")


def test_a_host_port_held_by_another_pod_refuses_the_sandbox_with_a_clear_reason(env):
    env.write("a.yaml", _ports({"containerPort": 80, "hostPort": 8080}) | {"metadata": {"name": "a"}})
    env.settle()
    env.write("b.yaml", _ports({"containerPort": 80, "hostPort": 8080}) | {"metadata": {"name": "b"}})
    env.settle()
    assert env.row("a").status == "Running"
    waiting = env.container("b")["state"]["waiting"]
    assert waiting["reason"] == "CreatePodSandboxError"
    assert waiting["message"].startswith("Failed to create pod sandbox: host port 8080/TCP is already allocated")
    assert env.row("b").status == "CreatePodSandboxError"
    assert "podIP" not in env.pod("b")["status"]
    [event] = env.events("FailedCreatePodSandBox")
    assert event["involvedObject"]["name"] == "b" and event["type"] == "Warning"
    # the first pod goes: the second one gets the port at its next try, and the reason goes away
    (env.manifests / "a.yaml").unlink()
    env.agent.hint_manifests()
    env.settle()
    assert env.row("b").status == "CreatePodSandboxError"   # until its next try, 10 s after the last
    env.advance(10)
    assert env.row("b").status == "Running"
    assert env.container("b")["state"].get("running")


def test_a_pod_level_edit_of_a_pod_with_a_fixed_uid_stops_the_old_sandbox_before_the_new_one(env):
    # with metadata.uid set the edit keeps the pod: its old sandbox must go, or its host port stays taken
    doc = _ports({"containerPort": 80, "hostPort": 8080})
    doc["metadata"]["uid"] = "fixed-uid"
    env.write("web.yaml", doc)
    env.settle()
    [old] = [s for s in env.runtime.list_sandboxes() if s.state is SandboxState.READY]
    doc["spec"]["hostname"] = "renamed"
    env.write("web.yaml", doc)
    env.settle()
    env.advance(30)
    assert env.events("FailedCreatePodSandBox") == []
    [new] = [s for s in env.runtime.list_sandboxes() if s.state is SandboxState.READY]
    assert new.id != old.id and new.attempt == old.attempt + 1 and new.uid == "fixed-uid"
    calls = [c for c in env.runtime.calls if c in (("stop_sandbox", old.id), ("run_sandbox", new.id))]
    assert calls == [("stop_sandbox", old.id), ("run_sandbox", new.id)]
    assert env.row("web").status == "Running" and env.pod("web")["status"]["podIP"] == new.ip
    [changed] = env.events("SandboxChanged")
    assert changed["message"] == "Pod sandbox changed, it will be killed and re-created."


def test_the_fake_runtime_names_the_holder_of_a_host_port_as_the_oci_runtime_does():
    runtime = FakeRuntime()
    first = SandboxConfig(uid="u1", name="a", namespace="default", attempt=0, sandbox_hash="h", hostname="a",
                          port_mappings=(PortMapping(8080, 80),))
    runtime.run_sandbox(first)
    with pytest.raises(RuntimeError_, match=r"^host port 8080/TCP is already allocated to an earlier sandbox "
                                            r"of this pod$"):
        runtime.run_sandbox(replace(first, attempt=1))
    with pytest.raises(RuntimeError_, match=r"^host port 127.0.0.1:8080/TCP is already allocated to pod "
                                            r"default/a$"):
        runtime.run_sandbox(replace(first, uid="u2", name="b", port_mappings=(PortMapping(8080, 80, "TCP",
                                                                                          "127.0.0.1"),)))


def test_serve_refuses_an_unusable_pod_subnet_in_one_line(tmp_path: Path, capsys):
    from kubelite.cli.main import main

    code = main(["serve", "--runtime", "fake", "--root", str(tmp_path / "state"), "--run-dir", str(tmp_path / "run"),
                 "--manifests", str(tmp_path / "manifests"), "--pod-cidr", "10.217.0.0/33"])
    assert code == 1
    assert capsys.readouterr().err.splitlines()[-1] == \
        "error: --pod-cidr 10.217.0.0/33: '10.217.0.0/33' does not appear to be an IPv4 or IPv6 network"


# ------------------------------------------------------------------ the OCI runtime's hold on the network

FAKE_BINARIES = {"runc": "/bin/true", "conmon": "/bin/true", "catatonit": "/bin/true"}


def fake_plugins(directory: Path) -> tuple[Path, Path, Path]:
    """Plugins that log each call and succeed — except `bridge`, which fails while `fail` exists."""
    directory.mkdir(parents=True)
    calls, fail = directory / "calls.log", directory / "fail"
    for name in cni.PLUGINS:
        script = directory / name
        refuse = f'if [ -e {fail} ]; then echo \'{{"code":11,"msg":"bridge is busy"}}\'; exit 1; fi\n' \
            if name == "bridge" else ""
        script.write_text(f'#!/bin/sh\ncat >/dev/null\n{refuse}echo "$CNI_COMMAND {name} $CNI_CONTAINERID" >> {calls}\n')
        script.chmod(0o755)
    return directory, calls, fail


def oci_runtime(tmp_path: Path, network: cni.Network | None = None):
    from kubelite.runtime.images import ImageStore
    from kubelite.runtime.oci import OCIRuntime

    root = tmp_path / "state"
    return OCIRuntime(root=root, run_dir=tmp_path / "run", images=ImageStore(root), binaries=FAKE_BINARIES,
                      network=network)


def test_the_bridge_stays_claimed_while_kubelite_serves_and_is_released_when_it_stops(tmp_path: Path):
    plugins, _, _ = fake_plugins(tmp_path / "plugins")
    locks = tmp_path / "locks"

    def network(name: str) -> cni.Network:
        return cni.Network(root=tmp_path / name, run_dir=tmp_path / f"{name}-run", plugin_dirs=[str(plugins)])

    first = network("first")
    first.claim(locks)
    runtime = oci_runtime(tmp_path, first)
    runtime.set_exit_hint(lambda: None)       # as `serve` does once the agent exists
    with pytest.raises(cni.NetworkError, match="bridge kubelite0 is in use by another kubelite"):
        network("second").claim(locks)        # another root, the same bridge
    runtime.close()                           # kubelite stops
    network("second").claim(locks)


def test_a_failed_network_teardown_is_kept_and_retried_at_start_and_from_the_relist(tmp_path: Path, monkeypatch):
    from kubelite.runtime import linux, oci

    monkeypatch.setattr(linux, "unmount", lambda target: None)   # nothing is mounted here
    plugins, calls, fail = fake_plugins(tmp_path / "plugins")
    runtime = oci_runtime(tmp_path)

    def sandbox(sandbox_id: str) -> None:
        record = oci._Sandbox(sandbox_id, f"uid-{sandbox_id}", "web", "default", 0, "h", T0.isoformat(), False,
                              False, f"/{runtime.instance}/poduid-{sandbox_id}")
        (runtime.sandbox_dir / sandbox_id).mkdir()
        runtime._sandboxes[sandbox_id] = record
        runtime._save(record)
        cni.save_attachment(runtime.sandbox_dir / sandbox_id / "network.json", cni.Attachment(
            sandbox_id, str(tmp_path / "run" / "netns" / sandbox_id), network=cni.conflist(
                bridge="kubelite0", subnet=str(SUBNET), data_dir=str(tmp_path / "leases")), plugin_dir=str(plugins)))

    def dels(sandbox_id: str) -> int:
        return calls.read_text().count(f"DEL bridge {sandbox_id}") if calls.exists() else 0

    pending = tmp_path / "run" / "cni" / "pending"
    fail.touch()
    for sandbox_id in ("s1", "s2"):
        sandbox(sandbox_id)
        runtime.remove_sandbox(sandbox_id)    # DEL fails at stop, and again at removal
        assert not (runtime.sandbox_dir / sandbox_id).exists()
        assert (pending / f"{sandbox_id}.json").exists(), "the attachment is kept for a retry"
    fail.unlink()
    runtime.list_sandboxes()                  # not due yet
    assert dels("s1") == 0
    runtime._next_teardown_retry = 0          # a minute later
    runtime.list_sandboxes()
    assert dels("s1") == 1 and dels("s2") == 1 and not any(pending.iterdir())

    fail.touch()
    sandbox("s3")
    runtime.remove_sandbox("s3")
    fail.unlink()
    oci_runtime(tmp_path)                     # kubelite starts again
    assert dels("s3") == 1 and not (pending / "s3.json").exists()
