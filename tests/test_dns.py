"""A pod's DNS settings and hosts file: the kubelet's rules (`core.dns`), the file formats
(`runtime.etcfiles`), the host's files (`agent.dns`) and the validation of the fields."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubelite.agent import dns as agent_dns
from kubelite.api.decode import decode_document
from kubelite.api.models import Pod
from kubelite.core import dns
from kubelite.runtime import etcfiles
from kubelite.runtime.protocol import DNSConfig, HostsConfig

HOST = dns.ResolverConfig(("192.0.2.10", "192.0.2.11"), ("example.test", "corp.test"), ("ndots:2", "timeout:1"))
MISSING = ('pod: "web_default(u1)". kubelet does not have ClusterDNS IP configured and cannot create Pod using '
           '"ClusterFirst" policy. Falling back to "Default" policy.')


def make_pod(**spec: Any) -> Pod:
    doc = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
           "spec": {"containers": [{"name": "app", "image": "busybox"}], **spec}}
    decoded = decode_document(doc, source="web.yaml")
    assert decoded.errors == [] and decoded.desired is not None, decoded.errors
    return decoded.desired.pod


def errors(**spec: Any) -> list[str]:
    doc = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
           "spec": {"containers": [{"name": "app", "image": "busybox"}], **spec}}
    return [str(e) for e in decode_document(doc, source="web.yaml").errors]


def decide(pod: Pod, **kwargs: Any) -> dns.PodDNS:
    return dns.pod_dns(pod, host=HOST, uid="u1", **kwargs)


# ------------------------------------------------------------------------------ the host's file


def test_resolv_conf_is_parsed_as_the_kubelet_parses_it():
    text = ("# comment\nnameserver 10.0.0.1\n  nameserver 10.0.0.2 # trailing\nnameserver\nsearch a.test b.test.\n"
            "search c.test . d.test.\noptions rotate\noptions ndots:3 attempts:2\ndomain ignored.test\n")
    assert dns.parse_resolv_conf(text) == dns.ResolverConfig(("10.0.0.1", "10.0.0.2"), ("c.test", "d.test"),
                                                             ("rotate", "ndots:3", "attempts:2"))


def test_options_lines_are_merged_by_name_as_the_kubelet_merges_them():
    text = "nameserver 10.0.0.1\noptions ndots:1 edns0\noptions timeout:2\noptions ndots:4\n"
    assert dns.parse_resolv_conf(text).options == ("ndots:4", "edns0", "timeout:2")


def test_the_systemd_resolved_stub_is_replaced_by_its_upstream_file(tmp_path: Path, monkeypatch):
    stub, upstream = tmp_path / "stub.conf", tmp_path / "upstream.conf"
    stub.write_text("nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n")
    upstream.write_text("nameserver 192.0.2.1\nsearch lan\n")
    monkeypatch.setattr(agent_dns, "DEFAULT_RESOLV_CONF", str(stub))
    assert agent_dns.host_resolver(str(stub), upstream=str(upstream)) == dns.ResolverConfig(("192.0.2.1",), ("lan",))
    # an explicitly chosen file is taken as it is
    assert agent_dns.host_resolver(str(upstream), upstream=str(stub)).nameservers == ("192.0.2.1",)
    assert agent_dns.host_resolver(str(tmp_path / "absent")) == dns.ResolverConfig()


# ------------------------------------------------------------------------------ the rules


@pytest.mark.parametrize(("spec", "expected", "reasons"), [
    ({}, HOST, ["MissingClusterDNS"]),
    ({"dnsPolicy": "ClusterFirst"}, HOST, ["MissingClusterDNS"]),
    ({"dnsPolicy": "ClusterFirstWithHostNet", "hostNetwork": True}, HOST, ["MissingClusterDNS"]),
    ({"dnsPolicy": "ClusterFirst", "hostNetwork": True}, HOST, []),
    ({"dnsPolicy": "Default"}, HOST, []),
    ({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["192.0.2.1"]}}, dns.ResolverConfig(("192.0.2.1",)), []),
    ({"dnsPolicy": "Default", "dnsConfig": {"nameservers": ["192.0.2.11", "192.0.2.12"],
                                            "searches": ["corp.test", "new.test"],
                                            "options": [{"name": "ndots", "value": "5"}, {"name": "edns0"},
                                                        {"name": "timeout"}]}},
     dns.ResolverConfig(("192.0.2.10", "192.0.2.11", "192.0.2.12"), ("example.test", "corp.test", "new.test"),
                        ("ndots:5", "timeout", "edns0")), []),
])
def test_dns_policy_and_dns_config_are_decided_as_the_kubelet_does(spec, expected, reasons):
    decided = decide(make_pod(**spec))
    assert decided.config == expected
    assert [reason for _, reason, _ in decided.events] == reasons


def test_the_missing_cluster_dns_warning_has_the_kubelet_s_words():
    assert decide(make_pod()).events == [("Warning", "MissingClusterDNS", MISSING)]


def test_with_a_cluster_dns_server_cluster_first_uses_it_and_the_cluster_s_search_paths():
    decided = decide(make_pod(), cluster_dns=("10.96.0.10",), cluster_domain="cluster.local")
    assert decided.config == dns.ResolverConfig(
        ("10.96.0.10",), ("default.svc.cluster.local", "svc.cluster.local", "cluster.local", "example.test",
                          "corp.test"), ("ndots:5",))
    assert decided.events == []


def test_merged_settings_are_cut_to_the_kubelet_s_limits_with_a_warning():
    many = [f"s{i}.test" for i in range(40)]
    decided = decide(make_pod(dnsPolicy="Default", dnsConfig={"nameservers": ["192.0.2.20", "192.0.2.21"],
                                                              "searches": many[:31]}))
    assert decided.config.nameservers == ("192.0.2.10", "192.0.2.11", "192.0.2.20")
    assert len(decided.config.searches) == 32
    assert [(t, r) for t, r, _ in decided.events] == [("Warning", "DNSConfigForming"), ("Warning", "DNSConfigForming")]
    assert decided.events[0][2] == ("Nameserver limits were exceeded, some nameservers have been omitted, the applied "
                                    "nameserver line is: 192.0.2.10 192.0.2.11 192.0.2.20")
    long = ["x" * 60 + f"{i:02d}.test" for i in range(30)]   # 2039 characters: valid in the pod
    decided = decide(make_pod(dnsPolicy="Default", dnsConfig={"searches": long}))
    assert decided.config.searches == ("example.test", "corp.test", *long[:-1])   # the host's come first
    assert len(" ".join(decided.config.searches)) <= 2048
    assert decided.events[0][2].startswith("Search Line limits were exceeded")


# ------------------------------------------------------------------------------ the formats


def test_resolv_conf_is_written_as_containerd_writes_it():
    assert etcfiles.resolv_conf(DNSConfig(("192.0.2.1", "192.0.2.2"), ("a.test", "b.test"), ("ndots:5", "edns0"))) \
        == "search a.test b.test\nnameserver 192.0.2.1\nnameserver 192.0.2.2\noptions ndots:5 edns0\n"
    assert etcfiles.resolv_conf(DNSConfig(("192.0.2.1",))) == "nameserver 192.0.2.1\n"
    assert etcfiles.resolv_conf(DNSConfig()) == ""



def test_the_writers_never_let_a_value_start_a_line_of_its_own():
    assert etcfiles.resolv_conf(DNSConfig(("192.0.2.1", "fe80::1%x\nnameserver 10.6.6.6"), ("a.test", "b\nc"),
                                          ("ndots:1\nnameserver 10.6.6.6", "edns0"))) \
        == "search a.test\nnameserver 192.0.2.1\noptions edns0\n"
    hosts = etcfiles.hosts_file(HostsConfig("web", aliases=(("10.0.0.1\n10.6.6.6", ("a",)),
                                                            ("10.0.0.2", ("b\nevil", "c")))), [])
    assert hosts.endswith("# Entries added by HostAliases.\n10.0.0.2\tc\n") and "10.6.6.6" not in hosts


def test_the_hosts_file_is_the_kubelet_s_managed_file():
    # the example of the Kubernetes documentation ("Adding entries to Pod /etc/hosts with HostAliases")
    hosts = HostsConfig("hostaliases-pod", aliases=(("127.0.0.1", ("foo.local", "bar.local")),
                                                    ("10.1.2.3", ("foo.remote", "bar.remote"))))
    assert etcfiles.hosts_file(hosts, ["10.244.135.10"]) == (
        "# Kubernetes-managed hosts file.\n"
        "127.0.0.1\tlocalhost\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
        "fe00::0\tip6-localnet\n"
        "fe00::0\tip6-mcastprefix\n"
        "fe00::1\tip6-allnodes\n"
        "fe00::2\tip6-allrouters\n"
        "10.244.135.10\thostaliases-pod\n"
        "\n"
        "# Entries added by HostAliases.\n"
        "127.0.0.1\tfoo.local\tbar.local\n"
        "10.1.2.3\tfoo.remote\tbar.remote\n")
    fqdn = etcfiles.hosts_file(HostsConfig("db-0", domain="db.default.svc.cluster.local"), ["10.0.0.5"])
    assert fqdn.endswith("fe00::2\tip6-allrouters\n10.0.0.5\tdb-0.db.default.svc.cluster.local\tdb-0\n")
    host = etcfiles.hosts_file(HostsConfig("n", host_network=True, host_file="127.0.0.1 localhost\n"), [])
    assert host == "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n"


def test_the_agent_names_the_pod_by_hostname_subdomain_and_namespace():
    pod = make_pod(hostname="db-0", subdomain="db", hostAliases=[{"ip": "10.1.2.3", "hostnames": ["a", "b"]}])
    _, hosts, _ = agent_dns.sandbox_dns(pod, "u1", resolv_conf="/nonexistent")
    assert hosts == HostsConfig("db-0", "db.default.svc.cluster.local", (("10.1.2.3", ("a", "b")),))


# ------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(("spec", "expected"), [
    ({"dnsPolicy": "Cluster"}, ['spec.dnsPolicy: Unsupported value: supported values: "ClusterFirstWithHostNet", '
                                '"ClusterFirst", "Default", "None"']),
    ({"dnsPolicy": "None"}, ["spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None"]),
    ({"dnsPolicy": "None", "dnsConfig": {"searches": ["a.test"]}},
     ["spec.dnsConfig.nameservers: Required value: must provide at least one DNS nameserver when `dnsPolicy` is "
      "None"]),
    ({"dnsConfig": {"nameservers": ["1.1.1.1", "1.0.0.1", "8.8.8.8", "8.8.4.4"]}},
     ["spec.dnsConfig.nameservers: Invalid value: must not have more than 3 nameservers"]),
    ({"dnsConfig": {"nameservers": ["dns.example"]}},
     ["spec.dnsConfig.nameservers[0]: Invalid value: must be a valid IP address"]),
    ({"dnsConfig": {"searches": [f"s{i}.test" for i in range(33)]}},
     ["spec.dnsConfig.searches: Invalid value: must not have more than 32 search paths"]),
    ({"dnsConfig": {"searches": ["Not_A_Domain"]}}, None),
    ({"dnsConfig": {"options": [{"value": "1"}]}},
     ["spec.dnsConfig.options[0]: Required value: Option.Name must not be empty"]),
    ({"hostAliases": [{"ip": "localhost", "hostnames": ["a"]}]},
     ["spec.hostAliases[0].ip: Invalid value: must be a valid IP address"]),
    # an IPv6 zone is no plain IP (Go's net.ParseIP), and would carry anything into the files
    ({"hostAliases": [{"ip": "fe80::1%eth0\n10.6.6.6", "hostnames": ["a"]}]},
     ["spec.hostAliases[0].ip: Invalid value: must be a valid IP address"]),
    ({"hostAliases": [{"ip": "fe80::1%eth0", "hostnames": ["a"]}]},
     ["spec.hostAliases[0].ip: Invalid value: must be a valid IP address"]),
    ({"dnsConfig": {"nameservers": ["fe80::1%1"]}},
     ["spec.dnsConfig.nameservers[0]: Invalid value: must be a valid IP address"]),
    ({"dnsConfig": {"options": [{"name": "ndots", "value": "1\nnameserver 10.6.6.6"}]}},
     ["spec.dnsConfig.options[0].value: Invalid value: must not contain spaces or control characters"]),
    ({"dnsConfig": {"options": [{"name": "a b"}]}},
     ["spec.dnsConfig.options[0].name: Invalid value: must not contain spaces or control characters"]),
    ({"hostAliases": [{"ip": "10.0.0.1", "hostnames": ["Bad_Name"]}]}, None),
    ({"subdomain": "Bad.Sub"}, None),
])
def test_dns_fields_are_validated_as_kubernetes_does(spec, expected):
    found = errors(**spec)
    if expected is None:   # a name rule: the path is what matters, the message is the names module's
        assert len(found) == 1 and found[0].split(":")[0] in ("spec.dnsConfig.searches[0]",
                                                              "spec.hostAliases[0].hostnames[0]", "spec.subdomain")
    else:
        assert found == expected


def test_valid_dns_fields_pass_and_are_no_longer_reported_as_not_implemented():
    doc = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
           "spec": {"containers": [{"name": "app", "image": "busybox"}], "dnsPolicy": "None", "subdomain": "db",
                    "dnsConfig": {"nameservers": ["192.0.2.1"], "searches": ["a.test."], "options": [{"name": "x"}]},
                    "hostAliases": [{"ip": "::1", "hostnames": ["v6.local"]}]}}
    decoded = decode_document(doc, source="web.yaml")
    assert decoded.errors == [] and decoded.warnings == []


def test_pods_without_dns_fields_keep_their_spec_hashes():
    # fields Kubernetes defaults stay unset here, so that upgrading kubelite replaces no running pod
    assert "dnsPolicy" not in make_pod().spec.to_dict() and "hostAliases" not in make_pod().spec.to_dict()
