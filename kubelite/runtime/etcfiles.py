"""The pod's /etc/hosts and /etc/resolv.conf, byte for byte as a Kubernetes node writes them.

Owns the two formats, and nothing else (pure; the runtime writes the results into the sandbox):

* `/etc/hosts` as the kubelet writes it (`managedHostsFileContent`): the
  "# Kubernetes-managed hosts file." header, the localhost and IPv6 lines, the pod's IP with
  `<hostname>.<subdomain>.<namespace>.svc.<cluster domain>` and its short name (or the name
  alone without a subdomain), then `hostAliases` under "# Entries added by HostAliases.", one
  tab-separated line per IP. A `hostNetwork` pod gets the host's own file under the
  "(host network)" header, plus its aliases (`nodeHostsFileContent`).
* `/etc/resolv.conf` as containerd and CRI-O write it from the kubelet's DNS settings
  (`parseDNSOptions`): `search`, then one `nameserver` line each, then `options`.

A value is never allowed to start a line of its own: validation refuses IPs with a zone and
option names or values with spaces or control characters, and the writers leave out any word
that would still hold one (`_word`).
"""

from __future__ import annotations

from kubelite.runtime.protocol import DNSConfig, HostsConfig

MANAGED_HEADER = "# Kubernetes-managed hosts file.\n"
HOST_NETWORK_HEADER = "# Kubernetes-managed hosts file (host network).\n"
ALIASES_HEADER = "# Entries added by HostAliases.\n"


def _word(value: str) -> bool:
    """Whether `value` is one word of a line: no space, tab, line break or other control character."""
    return bool(value) and not any(ch.isspace() or not ch.isprintable() for ch in value)


def _aliases(hosts: HostsConfig) -> str:
    lines = [(ip, [n for n in names if _word(n)]) for ip, names in hosts.aliases if _word(ip)]
    lines = [(ip, names) for ip, names in lines if names]
    if not lines:
        return ""
    return "\n" + ALIASES_HEADER + "".join(f"{ip}\t{chr(9).join(names)}\n" for ip, names in lines)


def hosts_file(hosts: HostsConfig, ips: list[str]) -> str:
    """The pod's /etc/hosts for its IPs (none yet: no line for the pod itself)."""
    if hosts.host_network:
        return HOST_NETWORK_HEADER + hosts.host_file + _aliases(hosts)
    out = (MANAGED_HEADER + "127.0.0.1\tlocalhost\n" + "::1\tlocalhost ip6-localhost ip6-loopback\n"
           + "fe00::0\tip6-localnet\n" + "fe00::0\tip6-mcastprefix\n" + "fe00::1\tip6-allnodes\n"
           + "fe00::2\tip6-allrouters\n")
    for ip in ips:
        if hosts.domain:
            out += f"{ip}\t{hosts.hostname}.{hosts.domain}\t{hosts.hostname}\n"
        else:
            out += f"{ip}\t{hosts.hostname}\n"
    return out + _aliases(hosts)


def resolv_conf(dns: DNSConfig) -> str:
    """The pod's /etc/resolv.conf; '' when there is nothing to say (the runtime then copies the host's)."""
    out = ""
    searches, servers, options = ([w for w in words if _word(w)] for words in (dns.searches, dns.nameservers,
                                                                                dns.options))
    if searches:
        out += "search " + " ".join(searches) + "\n"
    if servers:
        out += "nameserver " + "\nnameserver ".join(servers) + "\n"
    if options:
        out += "options " + " ".join(options) + "\n"
    return out
