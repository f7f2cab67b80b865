"""What a pod's sandbox is given for name resolution: the host's files read, the rules applied.

Owns the file reading the kubelet does for DNS — the host's resolv.conf (its `--resolv-conf`,
`/etc/resolv.conf` by default; when that points only at systemd-resolved's 127.0.0.53 stub,
which no pod can reach from its own network namespace, the real upstream file
`/run/systemd/resolve/resolv.conf`, as kubeadm and k3s set it up) and, for `hostNetwork` pods,
the host's /etc/hosts — and turns `core.dns`'s decision into the runtime's `DNSConfig` and
`HostsConfig`. The formats themselves are `runtime.etcfiles`'.
"""

from __future__ import annotations

import logging

from kubelite.api import names
from kubelite.api.models import Pod
from kubelite.core import dns
from kubelite.runtime.protocol import DNSConfig, HostsConfig

log = logging.getLogger("kubelite.agent")

DEFAULT_RESOLV_CONF = "/etc/resolv.conf"
SYSTEMD_RESOLVED_UPSTREAM = "/run/systemd/resolve/resolv.conf"
HOST_HOSTS = "/etc/hosts"
#: The cluster domain pod names are qualified with (`--cluster-domain`, as kubeadm and k3s set it).
CLUSTER_DOMAIN = "cluster.local"
MAX_FILE = 1024 * 1024


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            return handle.read(MAX_FILE).decode("utf-8", "replace")
    except OSError:
        return None


def host_resolver(path: str = DEFAULT_RESOLV_CONF, *, upstream: str = SYSTEMD_RESOLVED_UPSTREAM) -> dns.ResolverConfig:
    """The host's resolver settings, from the systemd-resolved upstream file when `path` has only the stub."""
    text = _read(path)
    if text is None:
        log.warning("cannot read %s: pods with dnsPolicy Default get no nameserver from the host", path)
        return dns.ResolverConfig()
    config = dns.parse_resolv_conf(text)
    if path == DEFAULT_RESOLV_CONF and dns.uses_systemd_resolved_stub(config):
        real = _read(upstream)
        if real is not None:
            return dns.parse_resolv_conf(real)
    return config


def sandbox_dns(pod: Pod, uid: str, *, resolv_conf: str = DEFAULT_RESOLV_CONF,
                cluster_domain: str = CLUSTER_DOMAIN) -> tuple[DNSConfig, HostsConfig, list[tuple[str, str, str]]]:
    """The pod's resolver settings and hosts file content, and the events (type, reason, message)."""
    decided = dns.pod_dns(pod, host=host_resolver(resolv_conf), uid=uid)
    config = DNSConfig(decided.config.nameservers, decided.config.searches, decided.config.options)
    spec, meta = pod.spec, pod.metadata
    hostname = spec.hostname or names.pod_hostname(meta.name or "")
    domain = f"{spec.subdomain}.{meta.namespace}.svc.{cluster_domain}" if spec.subdomain else ""
    aliases = tuple((a.ip or "", tuple(a.hostnames)) for a in spec.host_aliases or [])
    host_file = (_read(HOST_HOSTS) or "") if spec.host_network else ""
    hosts = HostsConfig(hostname=hostname, domain=domain, aliases=aliases, host_network=bool(spec.host_network),
                        host_file=host_file)
    return config, hosts, decided.events
