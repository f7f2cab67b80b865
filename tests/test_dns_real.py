"""A pod's /etc/hosts and /etc/resolv.conf on real containers, byte for byte as a Kubernetes node
writes them: dnsPolicy Default, ClusterFirst (no cluster DNS: the host's settings, and the
kubelet's MissingClusterDNS warning), None with dnsConfig, dnsConfig merged into the host's;
hostAliases and subdomains; a hostNetwork pod's hosts file. Pods get IPs on a bridge of their own."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterator

import pytest

from kubelite.runtime import cni
from tests.real import Node, container, events, pod
from tests.test_network_real import NetworkUnderTest, require_cni

pytestmark = pytest.mark.real

HOST_RESOLV = ("# written for the test\nnameserver 192.0.2.10\nnameserver 192.0.2.11\n"
               "search example.test corp.test.\noptions ndots:2 timeout:1\n")
MANAGED = ("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
           "fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n")


@pytest.fixture
def dns_node(tmp_path: Path, busybox: Path) -> Iterator[Node]:
    require_cni()
    network = NetworkUnderTest(tmp_path)
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(HOST_RESOLV)
    n = Node(manifests=tmp_path / "manifests", root=network.root, run_dir=network.run_dir, busybox=busybox,
             network=network.make(), node_ip=cni.host_ip())
    n.start()
    n.agent.config = dataclasses.replace(n.agent.config, resolv_conf=str(resolv))
    try:
        yield n
    finally:
        try:
            assert n.close() == []
        finally:
            network.remove_bridge()


def sleeper(name: str, **spec: Any) -> dict[str, Any]:
    return pod(name, container("app", "exec sleep 3600"), **spec)


def files(node: Node, name: str) -> tuple[str, str, str]:
    node.until(lambda: node.running(name, "app"), timeout=30, what=f"{name} running")
    hosts = node.exec(name, "app", "cat", "/etc/hosts")
    resolv = node.exec(name, "app", "cat", "/etc/resolv.conf")
    assert hosts[0] == 0 and resolv[0] == 0
    return hosts[1], resolv[1], node.status(name)["podIP"]


def test_cluster_first_without_cluster_dns_is_the_host_s_resolver_with_the_kubelet_s_warning(dns_node):
    dns_node.write(sleeper("plain"))
    hosts, resolv, ip = files(dns_node, "plain")
    assert hosts == MANAGED + f"{ip}\tplain\n"
    assert resolv == "search example.test corp.test\nnameserver 192.0.2.10\nnameserver 192.0.2.11\n" \
                     "options ndots:2 timeout:1\n"
    uid = next(e.uid for e in dns_node.agent.pods.values() if e.pod.metadata.name == "plain")
    assert events(dns_node, "MissingClusterDNS") == [
        f'pod: "plain_default({uid})". kubelet does not have ClusterDNS IP configured and cannot create Pod using '
        '"ClusterFirst" policy. Falling back to "Default" policy.']


def test_default_policy_merges_dns_config_and_host_aliases_and_a_subdomain_name_the_pod(dns_node):
    dns_node.write(sleeper("merged", dnsPolicy="Default", hostname="db-0", subdomain="db",
                           dnsConfig={"nameservers": ["192.0.2.10", "192.0.2.99"], "searches": ["extra.test"],
                                      "options": [{"name": "ndots", "value": "5"}, {"name": "edns0"}]},
                           hostAliases=[{"ip": "127.0.0.1", "hostnames": ["foo.local", "bar.local"]},
                                        {"ip": "10.1.2.3", "hostnames": ["foo.remote", "bar.remote"]}]))
    hosts, resolv, ip = files(dns_node, "merged")
    assert hosts == MANAGED + f"{ip}\tdb-0.db.default.svc.cluster.local\tdb-0\n" \
                              "\n# Entries added by HostAliases.\n127.0.0.1\tfoo.local\tbar.local\n" \
                              "10.1.2.3\tfoo.remote\tbar.remote\n"
    assert resolv == "search example.test corp.test extra.test\nnameserver 192.0.2.10\nnameserver 192.0.2.11\n" \
                     "nameserver 192.0.2.99\noptions ndots:5 timeout:1 edns0\n"
    assert events(dns_node, "MissingClusterDNS") == []
    code, out = dns_node.exec("merged", "app", "hostname")
    assert (code, out) == (0, "db-0\n")


def test_policy_none_takes_only_the_dns_config(dns_node):
    dns_node.write(sleeper("custom", dnsPolicy="None",
                           dnsConfig={"nameservers": ["192.0.2.1"],
                                      "searches": ["ns1.svc.cluster-domain.example", "my.dns.search.suffix"],
                                      "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}))
    _, resolv, _ = files(dns_node, "custom")
    assert resolv == "search ns1.svc.cluster-domain.example my.dns.search.suffix\nnameserver 192.0.2.1\n" \
                     "options ndots:2 edns0\n"


def test_a_host_network_pod_gets_the_host_s_hosts_file_under_the_host_network_header(dns_node):
    dns_node.write(sleeper("hostnet", hostNetwork=True,
                           hostAliases=[{"ip": "10.9.8.7", "hostnames": ["printer.lan"]}]))
    hosts, resolv, _ = files(dns_node, "hostnet")
    assert hosts == "# Kubernetes-managed hosts file (host network).\n" + Path("/etc/hosts").read_text() + \
        "\n# Entries added by HostAliases.\n10.9.8.7\tprinter.lan\n"
    assert resolv.startswith("search example.test corp.test\nnameserver 192.0.2.10\n")   # hostNetwork: Default
