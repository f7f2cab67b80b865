"""Kubernetes validation of a decoded Pod (the subset of `ValidatePodCreate` that matters here).

Owns: the rules and their messages, in kubectl's words ("Required value", "Invalid value",
"Duplicate value", "Unsupported value"), and `ValidateObjectMeta` (name, namespace, labels,
annotations, uid: `fieldissues`) for Pods, ConfigMaps and Secrets; each name is checked by `names`;
volumes and env sources by `volume_validation`, security settings and pod-level resources by
`security_validation`. Purely computational: takes a `Pod`, returns a list of
`FieldIssue`; never raises for bad input and never echoes a field's value (manifests may hold
secrets, so messages name the field and the rule only).
"""

from __future__ import annotations

import ipaddress

from kubelite.api import names, quantity, security_validation, volume_validation
from kubelite.api.fieldissues import PULL_POLICIES, FieldIssue, invalid, validate_object_meta
from kubelite.api.fieldissues import label as _label
from kubelite.api.models import Container, Lifecycle, Pod, Probe

RESTART_POLICIES = ("Always", "OnFailure", "Never")
PROTOCOLS = ("TCP", "UDP", "SCTP")
MESSAGE_POLICIES = ("File", "FallbackToLogsOnError")
SCHEMES = ("HTTP", "HTTPS")
DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
MAX_DNS_NAMESERVERS = 3          # validation.MaxDNSNameservers
MAX_DNS_SEARCH_PATHS = 32        # MaxDNSSearchPathsExpanded (ExpandedDNSConfig, GA in 1.28)
MAX_DNS_SEARCH_CHARS = 2048      # MaxDNSSearchListCharsExpanded


def _unsupported(path: str, allowed: tuple[str, ...]) -> FieldIssue:
    return FieldIssue(path, "Unsupported value: supported values: " + ", ".join(f'"{v}"' for v in allowed))


def validate_pod(pod: Pod) -> list[FieldIssue]:
    """All validation errors of `pod`, in field order. An empty list means the pod is valid."""
    errors: list[FieldIssue] = []
    errors += validate_object_meta(pod.metadata)

    spec = pod.spec
    if spec.restart_policy not in RESTART_POLICIES:
        errors.append(_unsupported("spec.restartPolicy", RESTART_POLICIES))
    if spec.termination_grace_period_seconds < 0:
        errors.append(FieldIssue("spec.terminationGracePeriodSeconds",
                                 "Invalid value: must be greater than or equal to 0"))
    if spec.active_deadline_seconds is not None and not 1 <= spec.active_deadline_seconds <= 2**31 - 1:
        errors.append(FieldIssue("spec.activeDeadlineSeconds", "Invalid value: must be between 1 and 2147483647"))
    if spec.hostname is not None:
        errors += _label("spec.hostname", spec.hostname)
    if spec.subdomain:
        errors += _label("spec.subdomain", spec.subdomain)
    errors += _validate_dns(pod)

    errors += volume_validation.validate_volumes(spec)
    volume_names: set[str] = set()
    for i, volume in enumerate(spec.volumes):
        path = f"spec.volumes[{i}].name"
        errors += _label(path, volume.name)
        if volume.name in volume_names:
            errors.append(FieldIssue(path, "Duplicate value"))
        volume_names.add(volume.name)

    if not spec.containers:
        errors.append(FieldIssue("spec.containers", "Required value"))
    seen: set[str] = set()
    for field, containers in (("initContainers", spec.init_containers), ("containers", spec.containers)):
        for i, container in enumerate(containers):
            path = f"spec.{field}[{i}]"
            errors += _label(f"{path}.name", container.name)
            if container.name in seen:
                errors.append(FieldIssue(f"{path}.name", "Duplicate value: container names must be unique "
                                                         "across init and app containers"))
            seen.add(container.name)
            errors += _validate_container(container, path, init=field == "initContainers",
                                          volume_names=volume_names, grace_s=spec.termination_grace_period_seconds)
    errors += _validate_host_ports(pod)
    errors += security_validation.validate_security(pod)
    errors += security_validation.validate_pod_resources(pod)
    return errors


def _is_ip(value: str) -> bool:
    """A plain IPv4 or IPv6 address, as Go's `net.ParseIP` reads one: no IPv6 zone (`%eth0`)."""
    if "%" in value:
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _validate_dns(pod: Pod) -> list[FieldIssue]:
    """`validateDNSPolicy`, `validatePodDNSConfig` (the limits of 1.32: 3 nameservers, 32 search
    paths, 2048 characters) and `ValidateHostAliases`."""
    errors: list[FieldIssue] = []
    spec = pod.spec
    policy = spec.dns_policy or "ClusterFirst"
    if policy not in DNS_POLICIES:
        errors.append(_unsupported("spec.dnsPolicy", DNS_POLICIES))
    config = spec.dns_config
    if policy == "None":
        if config is None:
            errors.append(FieldIssue("spec.dnsConfig", "Required value: must provide `dnsConfig` when `dnsPolicy` "
                                                       "is None"))
        elif not config.nameservers:
            errors.append(FieldIssue("spec.dnsConfig.nameservers", "Required value: must provide at least one DNS "
                                                                   "nameserver when `dnsPolicy` is None"))
    if config is not None:
        if len(config.nameservers) > MAX_DNS_NAMESERVERS:
            errors.append(FieldIssue("spec.dnsConfig.nameservers", f"Invalid value: must not have more than "
                                                                   f"{MAX_DNS_NAMESERVERS} nameservers"))
        for i, server in enumerate(config.nameservers):
            if not _is_ip(server):
                errors.append(FieldIssue(f"spec.dnsConfig.nameservers[{i}]", "Invalid value: must be a valid IP "
                                                                             "address"))
        if len(config.searches) > MAX_DNS_SEARCH_PATHS:
            errors.append(FieldIssue("spec.dnsConfig.searches", f"Invalid value: must not have more than "
                                                                f"{MAX_DNS_SEARCH_PATHS} search paths"))
        if len(" ".join(config.searches)) > MAX_DNS_SEARCH_CHARS:
            errors.append(FieldIssue("spec.dnsConfig.searches", f"Invalid value: must not have more than "
                                                                f"{MAX_DNS_SEARCH_CHARS} characters (including "
                                                                "spaces) in the search list"))
        for i, search in enumerate(config.searches):
            if search != ".":   # the root domain: no search at all
                errors += invalid(f"spec.dnsConfig.searches[{i}]", names.is_dns1123_subdomain(search.removesuffix(".")))
        for i, option in enumerate(config.options):
            if not option.name:
                errors.append(FieldIssue(f"spec.dnsConfig.options[{i}]", "Required value: Option.Name must not be "
                                                                         "empty"))
            # kubelite's own rule (Kubernetes checks neither): each is one word of resolv.conf's options line
            for part, text in (("name", option.name or ""), ("value", option.value or "")):
                if any(ch.isspace() or not ch.isprintable() for ch in text):
                    errors.append(FieldIssue(f"spec.dnsConfig.options[{i}].{part}", "Invalid value: must not "
                                                                                    "contain spaces or control "
                                                                                    "characters"))
    for i, alias in enumerate(spec.host_aliases or []):
        if not alias.ip or not _is_ip(alias.ip):
            errors.append(FieldIssue(f"spec.hostAliases[{i}].ip", "Invalid value: must be a valid IP address"))
        for j, hostname in enumerate(alias.hostnames):
            errors += invalid(f"spec.hostAliases[{i}].hostnames[{j}]", names.is_dns1123_subdomain(hostname))
    return errors


def _validate_host_ports(pod: Pod) -> list[FieldIssue]:
    """Kubernetes' host port rules: unique per (hostIP, hostPort, protocol) across the pod's containers,
    and equal to containerPort with hostNetwork."""
    errors: list[FieldIssue] = []
    seen: set[tuple[str, int, str]] = set()
    for field, containers in (("initContainers", pod.spec.init_containers), ("containers", pod.spec.containers)):
        for i, c in enumerate(containers):
            for j, port in enumerate(c.ports):
                path = f"spec.{field}[{i}].ports[{j}].hostPort"
                if pod.spec.host_network and port.host_port and port.host_port != port.container_port:
                    errors.append(FieldIssue(path, "Invalid value: must match `containerPort` when `hostNetwork` "
                                                   "is true"))
                if not port.host_port:
                    continue
                key = (port.host_ip or "", port.host_port, port.protocol)
                if key in seen:
                    errors.append(FieldIssue(path, f'Duplicate value: "{port.host_port}/{port.protocol}"'))
                seen.add(key)
    return errors


def _validate_container(c: Container, path: str, *, init: bool, volume_names: set[str],
                        grace_s: int | None = None) -> list[FieldIssue]:
    errors: list[FieldIssue] = []
    if not c.image or not c.image.strip():
        errors.append(FieldIssue(f"{path}.image", "Required value"))
    elif c.image != c.image.strip():
        errors.append(FieldIssue(f"{path}.image", "Invalid value: must not have leading or trailing whitespace"))
    if c.image_pull_policy is not None and c.image_pull_policy not in PULL_POLICIES:
        errors.append(_unsupported(f"{path}.imagePullPolicy", PULL_POLICIES))
    if c.termination_message_policy not in MESSAGE_POLICIES:
        errors.append(_unsupported(f"{path}.terminationMessagePolicy", MESSAGE_POLICIES))
    if c.restart_policy is not None:
        if not init:
            errors.append(FieldIssue(f"{path}.restartPolicy",
                                     "Forbidden: may only be set on init containers (sidecars)"))
        elif c.restart_policy != "Always":
            errors.append(_unsupported(f"{path}.restartPolicy", ("Always",)))
    sidecar = init and c.is_sidecar
    if init and not sidecar:
        for name, value in (("lifecycle", c.lifecycle), ("livenessProbe", c.liveness_probe),
                            ("readinessProbe", c.readiness_probe), ("startupProbe", c.startup_probe)):
            if value is not None:
                errors.append(FieldIssue(f"{path}.{name}", "Forbidden: may not be set for init containers "
                                                           "without restartPolicy=Always"))
    for i, env in enumerate(c.env):
        if not env.name:
            errors.append(FieldIssue(f"{path}.env[{i}].name", "Required value"))
        else:
            errors += invalid(f"{path}.env[{i}].name", names.is_env_var_name(env.name))
        if env.value is not None and env.value_from is not None:
            errors.append(FieldIssue(f"{path}.env[{i}].valueFrom",
                                     "Invalid value: may not be specified when `value` is not empty"))
    port_names: set[str] = set()
    for i, port in enumerate(c.ports):
        ppath = f"{path}.ports[{i}]"
        if not 1 <= port.container_port <= 65535:
            errors.append(FieldIssue(f"{ppath}.containerPort", "Invalid value: must be between 1 and 65535, inclusive"))
        if port.host_port is not None and not 0 <= port.host_port <= 65535:
            errors.append(FieldIssue(f"{ppath}.hostPort", "Invalid value: must be between 1 and 65535, inclusive"))
        if port.protocol not in PROTOCOLS:
            errors.append(_unsupported(f"{ppath}.protocol", PROTOCOLS))
        if port.name:   # an empty name is no name
            bad = names.is_port_name(port.name)
            errors += invalid(f"{ppath}.name", bad)
            if not bad and port.name in port_names:
                errors.append(FieldIssue(f"{ppath}.name", "Duplicate value"))
            port_names.add(port.name)
    errors += _validate_resources(c, path)
    errors += volume_validation.validate_container_config(c, path)
    for i, mount in enumerate(c.volume_mounts):
        if mount.name not in volume_names:
            errors.append(FieldIssue(f"{path}.volumeMounts[{i}].name", "Not found: no volume of this name"))
        if not mount.mount_path:
            errors.append(FieldIssue(f"{path}.volumeMounts[{i}].mountPath", "Required value"))
    for name, probe in (("livenessProbe", c.liveness_probe), ("readinessProbe", c.readiness_probe),
                        ("startupProbe", c.startup_probe)):
        if probe is not None:
            errors += _validate_probe(probe, f"{path}.{name}", single_success=name != "readinessProbe",
                                      port_names=port_names)
    if c.lifecycle is not None:
        errors += _validate_lifecycle(c.lifecycle, f"{path}.lifecycle", grace_s=grace_s)
    return errors


def _validate_resources(c: Container, path: str) -> list[FieldIssue]:
    errors: list[FieldIssue] = []
    parsed: dict[str, dict[str, object]] = {"limits": {}, "requests": {}}
    for kind, values in (("limits", c.resources.limits), ("requests", c.resources.requests)):
        for name, value in values.items():
            try:
                amount = quantity.parse(value)
            except (ValueError, OverflowError):
                errors.append(FieldIssue(f"{path}.resources.{kind}.{name}",
                                         "Invalid value: must be a quantity such as 500m, 2 or 64Mi"))
                continue
            if amount < 0:
                errors.append(FieldIssue(f"{path}.resources.{kind}.{name}",
                                         "Invalid value: must be greater than or equal to 0"))
            parsed[kind][name] = amount
    for name, request in parsed["requests"].items():
        limit = parsed["limits"].get(name)
        if limit is not None and request > limit:  # type: ignore[operator]
            errors.append(FieldIssue(f"{path}.resources.requests.{name}",
                                     "Invalid value: must be less than or equal to the limit"))
    return errors


def _validate_probe(p: Probe, path: str, *, single_success: bool, port_names: set[str]) -> list[FieldIssue]:
    errors: list[FieldIssue] = []
    handlers = [h for h in (p.exec_, p.http_get, p.tcp_socket, p.grpc) if h is not None]
    if len(handlers) != 1:
        errors.append(FieldIssue(path, "Required value: must specify exactly one handler type"
                                       if not handlers else "Forbidden: may not specify more than 1 handler type"))
    for name, value, low in (("initialDelaySeconds", p.initial_delay_seconds, 0),
                             ("timeoutSeconds", p.timeout_seconds, 1), ("periodSeconds", p.period_seconds, 1),
                             ("successThreshold", p.success_threshold, 1),
                             ("failureThreshold", p.failure_threshold, 1)):
        if value < low:
            errors.append(FieldIssue(f"{path}.{name}", f"Invalid value: must be greater than or equal to {low}"))
    if single_success and p.success_threshold != 1:
        errors.append(FieldIssue(f"{path}.successThreshold", "Invalid value: must be 1"))
    if p.http_get is not None and p.http_get.scheme not in SCHEMES:
        errors.append(_unsupported(f"{path}.httpGet.scheme", SCHEMES))
    for name, action in (("httpGet", p.http_get), ("tcpSocket", p.tcp_socket)):
        if action is None:
            continue
        port = action.port
        if isinstance(port, int) and not 1 <= port <= 65535:
            errors.append(FieldIssue(f"{path}.{name}.port", "Invalid value: must be between 1 and 65535, inclusive"))
        elif isinstance(port, str) and port not in port_names:
            errors.append(FieldIssue(f"{path}.{name}.port", "Invalid value: must be a port number or the name "
                                                            "of one of the container's ports"))
    return errors


def _validate_lifecycle(lifecycle: Lifecycle, path: str, *, grace_s: int | None) -> list[FieldIssue]:
    """`validateLifecycle`: each hook has exactly one handler; an httpGet a path, a port and a known
    scheme; a sleep between 0 and the grace period (tcpSocket passes, as in Kubernetes, and fails
    when run, as the kubelet runs no tcpSocket hook)."""
    errors: list[FieldIssue] = []
    for name, hook in (("postStart", lifecycle.post_start), ("preStop", lifecycle.pre_stop)):
        if hook is None:
            continue
        hpath = f"{path}.{name}"
        handlers = [n for n, h in (("exec", hook.exec_), ("httpGet", hook.http_get), ("tcpSocket", hook.tcp_socket),
                                   ("sleep", hook.sleep)) if h is not None]
        if not handlers:
            errors.append(FieldIssue(hpath, "Required value: must specify a handler type"))
        elif len(handlers) > 1:
            errors.append(FieldIssue(f"{hpath}.{handlers[1]}", "Forbidden: may not specify more than 1 handler type"))
        if hook.exec_ is not None and not hook.exec_.command:
            errors.append(FieldIssue(f"{hpath}.exec.command", "Required value"))
        get = hook.http_get
        if get is not None:
            if not get.path:
                errors.append(FieldIssue(f"{hpath}.httpGet.path", "Required value"))
            if get.scheme not in SCHEMES:
                errors.append(_unsupported(f"{hpath}.httpGet.scheme", SCHEMES))
            port = get.port
            if isinstance(port, int) and not 1 <= port <= 65535:
                errors.append(FieldIssue(f"{hpath}.httpGet.port",
                                         "Invalid value: must be between 1 and 65535, inclusive"))
            elif isinstance(port, str) and not (port.isascii() and port.isdigit()):
                # Kubernetes checks only the name's form: a name no port has fails when the hook runs
                errors += invalid(f"{hpath}.httpGet.port", names.is_port_name(port))
        if hook.sleep is not None and grace_s is not None and not 0 <= hook.sleep.seconds <= grace_s:
            errors.append(FieldIssue(f"{hpath}.sleep.seconds", "Invalid value: must be non-negative and less than "
                                                               f"terminationGracePeriodSeconds ({grace_s})"))
    return errors
