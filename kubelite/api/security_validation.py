"""Kubernetes validation of a pod's security settings and pod-level resources.

Owns the rules (pkg/apis/core/validation, Kubernetes 1.32–1.34) for

* `seccompProfile` and `appArmorProfile` of the pod and of each container: the three types,
  `localhostProfile` exactly when the type is Localhost (a relative path without `..` for
  seccomp); the deprecated annotations' values, and that an annotation and the field it stands
  for agree (`validateSeccompAnnotationsAndFields`, `ValidateAppArmorAnnotationsAndFields`);
* `securityContext.sysctls`: names (`IsValidSysctlName`), no duplicates, no net.* sysctl with
  hostNetwork (whether this node allows a sysctl is the kubelet's admission: `core.security`);
* `spec.resources` (pod-level resources, KEP-2837 as of 1.34): cpu and memory only, requests at
  most the limits, the pod's requests at least the containers' aggregate requests (init
  containers and sidecars counted as the scheduler counts them), no container limit above the
  pod's limit.

Purely computational; messages name fields and rules, never values.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

from kubelite.api import qos, quantity
from kubelite.api.fieldissues import FieldIssue
from kubelite.api.models import AppArmorProfile, Pod, ResourceRequirements, SeccompProfile

PROFILE_TYPES = ("Localhost", "RuntimeDefault", "Unconfined")
SECCOMP_POD_ANNOTATION = "seccomp.security.alpha.kubernetes.io/pod"
SECCOMP_CONTAINER_ANNOTATION = "container.seccomp.security.alpha.kubernetes.io/"
APPARMOR_CONTAINER_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
POD_LEVEL_RESOURCES = qos.QOS_RESOURCES
SYSCTL_MAX_LENGTH = 253
_SYSCTL_SEGMENT = r"[a-z0-9]([-_a-z0-9]*[a-z0-9])?"
SYSCTL_NAME = re.compile(rf"({_SYSCTL_SEGMENT}[\./])*{_SYSCTL_SEGMENT}")


def annotation_value(profile: SeccompProfile | AppArmorProfile) -> str:
    """The annotation form of a field's profile, to compare the two as the API server does."""
    if profile.type == "Localhost":
        return f"localhost/{profile.localhost_profile or ''}"
    return {"RuntimeDefault": "runtime/default", "Unconfined": "unconfined"}.get(profile.type, profile.type)


def _valid_annotation(value: str, *, seccomp: bool) -> bool:
    if value in ("runtime/default", "unconfined") or (seccomp and value == "docker/default"):
        return True
    return value.startswith("localhost/") and len(value) > len("localhost/")


def _profile(path: str, profile: SeccompProfile | AppArmorProfile | None, *, seccomp: bool) -> list[FieldIssue]:
    if profile is None:
        return []
    what = "seccomp" if seccomp else "AppArmor"
    if profile.type not in PROFILE_TYPES:
        return [FieldIssue(f"{path}.type", "Unsupported value: supported values: "
                                           + ", ".join(f'"{t}"' for t in PROFILE_TYPES))]
    local = profile.localhost_profile
    if profile.type != "Localhost":
        if local is not None:
            return [FieldIssue(f"{path}.localhostProfile", f"Invalid value: can only be set when {what} type is "
                                                           "Localhost")]
        return []
    if not local:
        return [FieldIssue(f"{path}.localhostProfile", f"Required value: must be set when {what} type is "
                                                       "Localhost")]
    if seccomp:
        return _local_descending_path(f"{path}.localhostProfile", local)
    if local.strip() != local:   # Kubernetes: strings.TrimSpace(x) != x
        return [FieldIssue(f"{path}.localhostProfile", "Invalid value: must not be padded with whitespace")]
    return []


def _local_descending_path(path: str, local: str) -> list[FieldIssue]:
    """`validateLocalDescendingPath`: a Localhost seccomp profile stays below the profile root."""
    if local.startswith("/"):
        return [FieldIssue(path, "Invalid value: must be a relative path")]
    if ".." in local.replace("\\", "/").split("/"):
        return [FieldIssue(path, "Invalid value: must not contain '..'")]
    return []


def _annotation(key: str, value: str | None, field: SeccompProfile | AppArmorProfile | None, field_path: str, *,
                seccomp: bool) -> list[FieldIssue]:
    if value is None:
        return []
    path = f"metadata.annotations[{key}]"
    if not _valid_annotation(value, seccomp=seccomp):
        return [FieldIssue(path, "Invalid value: must be runtime/default, unconfined or localhost/<profile>")]
    if seccomp and value.startswith("localhost/"):
        found = _local_descending_path(path, value.removeprefix("localhost/"))
        if found:
            return found
    if field is not None and field.type in PROFILE_TYPES:
        normal = "runtime/default" if value == "docker/default" else value
        if annotation_value(field) != normal:
            what = "seccomp" if seccomp else "apparmor"
            return [FieldIssue(field_path, f"Forbidden: {what} type in annotation and field must match")]
    return []


def validate_security(pod: Pod) -> list[FieldIssue]:
    """Seccomp and AppArmor fields and annotations, and sysctls."""
    errors: list[FieldIssue] = []
    spec, annotations = pod.spec, pod.metadata.annotations
    psc = spec.security_context
    pod_seccomp = psc.seccomp_profile if psc else None
    pod_apparmor = psc.app_armor_profile if psc else None
    errors += _profile("spec.securityContext.seccompProfile", pod_seccomp, seccomp=True)
    errors += _profile("spec.securityContext.appArmorProfile", pod_apparmor, seccomp=False)
    errors += _annotation(SECCOMP_POD_ANNOTATION, annotations.get(SECCOMP_POD_ANNOTATION), pod_seccomp,
                          "spec.securityContext.seccompProfile.type", seccomp=True)
    for field, containers in (("initContainers", spec.init_containers), ("containers", spec.containers)):
        for i, c in enumerate(containers):
            path = f"spec.{field}[{i}].securityContext"
            sc = c.security_context
            errors += _profile(f"{path}.seccompProfile", sc.seccomp_profile if sc else None, seccomp=True)
            errors += _profile(f"{path}.appArmorProfile", sc.app_armor_profile if sc else None, seccomp=False)
            key = SECCOMP_CONTAINER_ANNOTATION + c.name
            errors += _annotation(key, annotations.get(key), sc.seccomp_profile if sc else None,
                                  f"{path}.seccompProfile.type", seccomp=True)
            key = APPARMOR_CONTAINER_ANNOTATION + c.name
            errors += _annotation(key, annotations.get(key), sc.app_armor_profile if sc else None,
                                  f"{path}.appArmorProfile.type", seccomp=False)
    errors += _sysctls(pod)
    return errors


def _sysctls(pod: Pod) -> list[FieldIssue]:
    psc = pod.spec.security_context
    errors: list[FieldIssue] = []
    seen: set[str] = set()
    for i, sysctl in enumerate(psc.sysctls if psc else ()):
        path = f"spec.securityContext.sysctls[{i}].name"
        name = sysctl.name
        if not name:
            errors.append(FieldIssue(path, "Required value"))
            continue
        if len(name) > SYSCTL_MAX_LENGTH or not SYSCTL_NAME.fullmatch(name):
            errors.append(FieldIssue(path, f"Invalid value: must have at most {SYSCTL_MAX_LENGTH} characters and "
                                           f"match regex {SYSCTL_NAME.pattern}"))
            continue
        normal = normalize_sysctl(name)
        if normal in seen:
            errors.append(FieldIssue(path, "Duplicate value"))
        seen.add(normal)
        if pod.spec.host_network and normal.startswith("net."):
            errors.append(FieldIssue(path, "Invalid value: may not be specified when 'hostNetwork' is true"))
    return errors


def normalize_sysctl(name: str) -> str:
    """`net/ipv4/ip_forward` → `net.ipv4.ip_forward` (the kubelet's `NormalizeName`): when the first
    separator is a slash, slashes and dots swap."""
    first = re.search(r"[./]", name)
    if first is not None and first.group(0) == "/":
        return name.translate(str.maketrans("./", "/."))
    return name


# ------------------------------------------------------------------------------ pod-level resources


def _amount(values: dict, name: str) -> Fraction | None:
    return qos.amount(values.get(name))


def _containers(pod: Pod) -> tuple[list[qos.InitContainer], list[ResourceRequirements]]:
    init = [qos.InitContainer(c.resources, c.is_sidecar) for c in pod.spec.init_containers]
    return init, [c.resources for c in pod.spec.containers]


def aggregate_requests(pod: Pod, name: str) -> Fraction | None:
    """The containers' aggregate request (KEP-753, `qos.aggregate_request`). None: no container
    sets one."""
    return qos.aggregate_request(name, *_containers(pod))


def pod_requests(pod: Pod) -> dict[str, Fraction]:
    """Pod-level requests after defaulting (`qos.pod_requests`)."""
    return qos.pod_requests(pod.spec.resources or ResourceRequirements(), *_containers(pod))


def qos_class(pod: Pod) -> str:
    """The pod's QoS class by the one rule (`qos.qos_class`)."""
    resources = pod.spec.resources
    if qos.uses_pod_level_resources(resources):
        init, app = _containers(pod)
        return qos.qos_class(app, init, resources)
    return qos.qos_class([c.resources for c in pod.spec.all_containers()])


def defaulted_pod_resources(pod: Pod) -> ResourceRequirements | None:
    """Pod-level `spec.resources` with its requests defaulted (`pod_requests`), as the API server
    stores them; None without pod-level resources."""
    resources = pod.spec.resources
    if resources is None:
        return None
    requests = dict(resources.requests)
    for name, amount in pod_requests(pod).items():
        if name not in requests:
            requests[name] = f"{math.ceil(amount * 1000)}m" if name == "cpu" else str(math.ceil(amount))
    return resources.model_copy(update={"requests": requests})


def validate_pod_resources(pod: Pod) -> list[FieldIssue]:
    resources = pod.spec.resources
    if resources is None:
        return []
    errors: list[FieldIssue] = []
    for kind, values in (("limits", resources.limits), ("requests", resources.requests)):
        for name, value in values.items():
            path = f"spec.resources.{kind}.{name}"
            if name not in POD_LEVEL_RESOURCES:
                errors.append(FieldIssue(path, "Unsupported value: supported values: "
                                               + ", ".join(f'"{r}"' for r in POD_LEVEL_RESOURCES)))
                continue
            try:
                amount = quantity.parse(value)
            except (ValueError, OverflowError):
                errors.append(FieldIssue(path, "Invalid value: must be a quantity such as 500m, 2 or 64Mi"))
                continue
            if amount < 0:
                errors.append(FieldIssue(path, "Invalid value: must be greater than or equal to 0"))
    if errors:
        return errors
    requests = pod_requests(pod)
    for name in POD_LEVEL_RESOURCES:
        limit = _amount(resources.limits, name)
        request = requests.get(name)
        if limit is not None and request is not None and request > limit:
            errors.append(FieldIssue(f"spec.resources.requests.{name}",
                                     f"Invalid value: must be less than or equal to {name} limit"))
        aggregate = aggregate_requests(pod, name)
        if name in resources.requests and aggregate is not None and request is not None and aggregate > request:
            errors.append(FieldIssue("spec.resources.requests",
                                     f"Invalid value: {name} must be greater than or equal to aggregate container "
                                     "requests"))
        if limit is None:
            continue
        for field, containers in (("initContainers", pod.spec.init_containers), ("containers", pod.spec.containers)):
            for i, c in enumerate(containers):
                own = _amount(c.resources.limits, name)
                if own is not None and own > limit:
                    errors.append(FieldIssue(f"spec.{field}[{i}].resources.limits.{name}",
                                             "Invalid value: must be less than or equal to pod limits"))
    return errors
