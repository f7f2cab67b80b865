"""A pod's DNS settings, decided as the kubelet's DNS configurer does (`GetPodDNS`).

Owns the rules, and only the rules: the host's resolv.conf as text in, nameservers, search
paths and options out, with the events the kubelet records on the way. Purely computational:
no files, no clock (the agent reads the host's file; the runtime writes the pod's).

* `dnsPolicy: Default` — the host's nameservers, search paths and options (the kubelet's
  `--resolv-conf`);
* `ClusterFirst` (the default) and `ClusterFirstWithHostNet` — the cluster's DNS server first; a
  node without one (kubelite's case unless told otherwise) falls back to `Default` with the
  kubelet's `MissingClusterDNS` warning. `ClusterFirst` with `hostNetwork` is `Default`, silently;
* `None` — nothing from the host: `dnsConfig` alone.

`dnsConfig` is then merged in: nameservers and search paths appended without duplicates, options
overriding the same name. Limits as the kubelet applies them (3 nameservers, 32 search paths,
2048 characters, no path over 253), each cut reported by a `DNSConfigForming` warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kubelite.api.models import Pod

MAX_NAMESERVERS = 3
MAX_SEARCH_PATHS = 32
MAX_SEARCH_CHARS = 2048
MAX_SEARCH_PATH_LENGTH = 253   # IsDNS1123Subdomain's limit: glibc aborts on longer ones
#: The options a pod resolving through the cluster's DNS gets (`defaultDNSOptions`).
CLUSTER_OPTIONS = ("ndots:5",)


@dataclass(frozen=True)
class ResolverConfig:
    """What a resolv.conf says: CRI's `DNSConfig`."""

    nameservers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class PodDNS:
    """The pod's resolver settings and the events (type, reason, message) deciding them produced."""

    config: ResolverConfig
    events: list[tuple[str, str, str]] = field(default_factory=list)


def parse_resolv_conf(text: str) -> ResolverConfig:
    """`parseResolvConf`: nameserver lines accumulate; the last search line wins; options lines
    are merged by option name, a later value winning (`appendOptions`; the kubelet's Go map has
    no order, here: first appearance); a search path's trailing dot is dropped and a lone '.'
    ignored; comments skipped."""
    nameservers: list[str] = []
    searches: list[str] = []
    options: dict[str, str] = {}   # name → the option as written
    for line in text.split("\n"):
        trimmed = line.strip()
        if trimmed.startswith("#"):
            continue
        fields = trimmed.split()
        if not fields:
            continue
        if fields[0] == "nameserver" and len(fields) >= 2:
            nameservers.append(fields[1])
        elif fields[0] == "search":
            searches = [s.removesuffix(".") for s in fields[1:] if s != "."]
        elif fields[0] == "options":
            options.update((option.split(":")[0], option) for option in fields[1:])
    return ResolverConfig(tuple(nameservers), tuple(searches), tuple(options.values()))


def uses_systemd_resolved_stub(config: ResolverConfig) -> bool:
    """Whether a resolv.conf only points at systemd-resolved's local stub (127.0.0.53), which a
    pod in its own network namespace cannot reach: then the real upstream file must be used."""
    return bool(config.nameservers) and all(ns.startswith("127.0.0.53") for ns in config.nameservers)


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _merge_options(existing: list[str], pod_options: list[tuple[str, str | None]]) -> list[str]:
    """`mergeDNSOptions`: one entry per option name, the pod's value winning. The kubelet builds a Go
    map (random order); here: first appearance order, the pod's new names last."""
    merged: dict[str, str] = {}
    for option in existing:
        name, _, value = option.partition(":")
        merged[name] = value
    for name, value in pod_options:
        merged[name] = value or ""
    return [f"{name}:{value}" if value else name for name, value in merged.items()]


def _fit_searches(searches: list[str]) -> tuple[list[str], bool]:
    """`formDNSSearchFitsLimits`: at most 32 paths, none over 253 characters, 2048 in all."""
    exceeded = False
    if len(searches) > MAX_SEARCH_PATHS:
        searches, exceeded = searches[:MAX_SEARCH_PATHS], True
    kept = [s for s in searches if len(s) <= MAX_SEARCH_PATH_LENGTH]
    exceeded = exceeded or len(kept) != len(searches)
    while kept and len(" ".join(kept)) > MAX_SEARCH_CHARS:
        kept.pop()
        exceeded = True
    return kept, exceeded


def pod_dns(pod: Pod, *, host: ResolverConfig, uid: str, cluster_dns: tuple[str, ...] = (),
            cluster_domain: str = "") -> PodDNS:
    """The pod's resolver settings (`GetPodDNS`) from the host's resolv.conf (`host`)."""
    spec = pod.spec
    policy = spec.dns_policy or "ClusterFirst"
    events: list[tuple[str, str, str]] = []
    servers, searches, options = list(host.nameservers), list(host.searches), list(host.options)
    cluster = policy == "ClusterFirstWithHostNet" or (policy == "ClusterFirst" and not spec.host_network)
    if policy == "None":
        servers, searches, options = [], [], []
    elif cluster and cluster_dns:
        servers = list(cluster_dns)
        if cluster_domain:
            ns = pod.metadata.namespace
            searches = _unique([f"{ns}.svc.{cluster_domain}", f"svc.{cluster_domain}", cluster_domain, *searches])
        options = list(CLUSTER_OPTIONS)
    elif cluster:
        message = ('kubelet does not have ClusterDNS IP configured and cannot create Pod using "ClusterFirst" '
                   'policy. Falling back to "Default" policy.')
        meta = pod.metadata
        events.append(("Warning", "MissingClusterDNS", f'pod: "{meta.name}_{meta.namespace}({uid})". {message}'))
    if spec.dns_config is not None:
        servers = _unique(servers + list(spec.dns_config.nameservers))
        searches = _unique(searches + list(spec.dns_config.searches))
        options = _merge_options(options, [(o.name or "", o.value) for o in spec.dns_config.options])
    if len(servers) > MAX_NAMESERVERS:
        servers = servers[:MAX_NAMESERVERS]
        events.append(("Warning", "DNSConfigForming", "Nameserver limits were exceeded, some nameservers have been "
                                                      "omitted, the applied nameserver line is: " + " ".join(servers)))
    searches, exceeded = _fit_searches(searches)
    if exceeded:
        events.append(("Warning", "DNSConfigForming", "Search Line limits were exceeded, some search paths have been "
                                                      "omitted, the applied search line is: " + " ".join(searches)))
    return PodDNS(ResolverConfig(tuple(servers), tuple(searches), tuple(options)), events)
