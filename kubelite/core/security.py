"""What a pod's security settings decide: seccomp and AppArmor profiles, sysctls, admission.

Owns the kubelet's rules and messages for

* `seccomp_profile` — the container's `seccompProfile`, else the pod's, else `RuntimeDefault` under
  `--seccomp-default` and `Unconfined` otherwise; privileged containers are never confined (as
  containerd and CRI-O). The deprecated annotations (`seccomp.security.alpha.kubernetes.io/pod`,
  `container.seccomp.security.alpha.kubernetes.io/<name>`) count where the field is absent, as a
  cluster's API server copies them into the fields when a pod is created.
* `apparmor_profile` — `appArmorProfile` of the container, its annotation
  (`container.apparmor.security.beta.kubernetes.io/<name>`), the pod's field; on a host with
  AppArmor an unconfigured container gets `RuntimeDefault` (not a privileged one), without it none.
* `sysctl_rejection` — the kubelet's sysctl admission (`pkg/kubelet/sysctl`): the safe set of
  Kubernetes 1.32 (by kernel version), plus `--allowed-unsafe-sysctls` patterns; its messages.
* `admission` — the reasons a pod is refused before it starts (SysctlForbidden, AppArmor).

Purely computational: the kernel version and whether AppArmor is enabled arrive as arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from kubelite.api.models import AppArmorProfile, Container, Pod, SeccompProfile
from kubelite.api.models import ResourceRequirements
from kubelite.api.security_validation import (
    APPARMOR_CONTAINER_ANNOTATION, SECCOMP_CONTAINER_ANNOTATION, SECCOMP_POD_ANNOTATION, defaulted_pod_resources,
    normalize_sysctl,
)
from kubelite.core.types import SecurityProfile

RUNTIME_DEFAULT, LOCALHOST, UNCONFINED = "RuntimeDefault", "Localhost", "Unconfined"

#: The kubelet's safe sysctls (`pkg/kubelet/sysctl/safe_sysctls.go`, Kubernetes 1.32), with the
#: kernel version from which each is namespaced; older kernels drop it from the safe set.
SAFE_SYSCTLS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("kernel.shm_rmid_forced", ()),
    ("net.ipv4.ip_local_port_range", ()),
    ("net.ipv4.tcp_syncookies", ()),
    ("net.ipv4.ping_group_range", ()),
    ("net.ipv4.ip_unprivileged_port_start", ()),
    ("net.ipv4.ip_local_reserved_ports", (3, 16)),
    ("net.ipv4.tcp_keepalive_time", (4, 5)),
    ("net.ipv4.tcp_fin_timeout", (4, 6)),
    ("net.ipv4.tcp_keepalive_intvl", (4, 5)),
    ("net.ipv4.tcp_keepalive_probes", (4, 5)),
    ("net.ipv4.tcp_rmem", (4, 15)),
    ("net.ipv4.tcp_wmem", (4, 15)),
)
SYSCTL_FORBIDDEN = "SysctlForbidden"
APPARMOR_REASON = "AppArmor"
APPARMOR_NOT_ENABLED = "Cannot enforce AppArmor: AppArmor is not enabled on the host"
#: The reasons a node refuses a pod with; its status message is REJECTED_PREFIX + the event's message.
REJECTION_REASONS = frozenset({SYSCTL_FORBIDDEN, APPARMOR_REASON})
REJECTED_PREFIX = "Pod was rejected: "

#: The namespace of a sysctl (the kubelet's `NamespacedBy`): exact names and prefixes.
_IPC_NAMES = ("kernel.sem",)
_IPC_PREFIXES = ("kernel.shm", "kernel.msg", "fs.mqueue.")
_NET_PREFIXES = ("net.",)


# ------------------------------------------------------------------------------ profiles


def _annotation_profile(value: str | None) -> SecurityProfile | None:
    """An annotation's value as a profile: runtime/default (and docker/default), unconfined, localhost/<x>."""
    if value is None:
        return None
    if value in ("runtime/default", "docker/default"):
        return SecurityProfile(RUNTIME_DEFAULT)
    if value == "unconfined":
        return SecurityProfile(UNCONFINED)
    if value.startswith("localhost/"):
        return SecurityProfile(LOCALHOST, value[len("localhost/"):])
    return None


def _field_profile(profile: SeccompProfile | AppArmorProfile | None) -> SecurityProfile | None:
    if profile is None:
        return None
    return SecurityProfile(profile.type, profile.localhost_profile if profile.type == LOCALHOST else None)


def _privileged(container: Container) -> bool:
    return bool(container.security_context and container.security_context.privileged)


def seccomp_profile(pod: Pod, container: Container, *, seccomp_default: bool = False) -> SecurityProfile:
    """The seccomp profile `container` runs under (kubelet `getSeccompProfile`, containerd's privileged rule)."""
    if _privileged(container):
        return SecurityProfile(UNCONFINED)
    sc, psc = container.security_context, pod.spec.security_context
    annotations = pod.metadata.annotations
    for found in (_field_profile(sc.seccomp_profile if sc else None),
                  _annotation_profile(annotations.get(SECCOMP_CONTAINER_ANNOTATION + container.name)),
                  _field_profile(psc.seccomp_profile if psc else None),
                  _annotation_profile(annotations.get(SECCOMP_POD_ANNOTATION))):
        if found is not None:
            return found
    return SecurityProfile(RUNTIME_DEFAULT if seccomp_default else UNCONFINED)


def sandbox_seccomp_profile(pod: Pod, *, seccomp_default: bool = False) -> SecurityProfile:
    """The infra container's profile: the pod's (kubelet `LinuxSandboxSecurityContext.Seccomp`)."""
    psc = pod.spec.security_context
    for found in (_field_profile(psc.seccomp_profile if psc else None),
                  _annotation_profile(pod.metadata.annotations.get(SECCOMP_POD_ANNOTATION))):
        if found is not None:
            return found
    return SecurityProfile(RUNTIME_DEFAULT if seccomp_default else UNCONFINED)


def _apparmor_choice(pod: Pod, container: Container) -> SecurityProfile | None:
    """The AppArmor profile the manifest asks for, if any (kubelet `apparmor.GetProfile` order)."""
    sc, psc = container.security_context, pod.spec.security_context
    for found in (_field_profile(sc.app_armor_profile if sc else None),
                  _annotation_profile(pod.metadata.annotations.get(APPARMOR_CONTAINER_ANNOTATION + container.name)),
                  _field_profile(psc.app_armor_profile if psc else None)):
        if found is not None:
            return found
    return None


def apparmor_profile(pod: Pod, container: Container, *, apparmor_enabled: bool) -> SecurityProfile | None:
    """The AppArmor profile to apply, or None (no AppArmor on this host, or unconfined).

    On a host with AppArmor, a container that asks for nothing gets RuntimeDefault unless it is
    privileged; a privileged container gets only a Localhost profile it names (as containerd).
    """
    if not apparmor_enabled:
        return None
    chosen = _apparmor_choice(pod, container) or SecurityProfile(RUNTIME_DEFAULT)
    if chosen.type == UNCONFINED or (chosen.type == RUNTIME_DEFAULT and _privileged(container)):
        return None
    return chosen


def apparmor_required(pod: Pod) -> bool:
    """The kubelet's `isRequired`: the pod's `appArmorProfile` other than Unconfined (even when every
    container sets its own), a container's other than Unconfined, or any container annotation
    (`container.apparmor.security.beta.kubernetes.io/…`) other than `unconfined`."""
    psc = pod.spec.security_context
    if psc is not None and psc.app_armor_profile is not None and psc.app_armor_profile.type != UNCONFINED:
        return True
    for c in pod.spec.all_containers():
        sc = c.security_context
        if sc is not None and sc.app_armor_profile is not None and sc.app_armor_profile.type != UNCONFINED:
            return True
    return any(key.startswith(APPARMOR_CONTAINER_ANNOTATION) and value != "unconfined"
               for key, value in pod.metadata.annotations.items())


# ------------------------------------------------------------------------------ sysctls


def pod_cgroup_requirements(pod: Pod) -> ResourceRequirements | None:
    """What the pod's own cgroup is set from: pod-level `spec.resources` with the requests the API
    server defaults (`defaulted_pod_resources`); None without pod-level resources."""
    return defaulted_pod_resources(pod)


def sysctl_namespace(name: str) -> str | None:
    """"ipc", "net" or None (not namespaced, so never allowed for a pod)."""
    name = normalize_sysctl(name)
    if name in _IPC_NAMES or name.startswith(_IPC_PREFIXES):
        return "ipc"
    if name.startswith(_NET_PREFIXES):
        return "net"
    return None


def safe_sysctls(kernel: Sequence[int] | None) -> list[str]:
    """The safe set on a kernel of this version (None: unknown, only the ungated ones)."""
    return [name for name, since in SAFE_SYSCTLS
            if not since or (kernel is not None and tuple(kernel) >= since)]


def check_allowed_unsafe(patterns: Iterable[str]) -> list[str]:
    """`--allowed-unsafe-sysctls` as the kubelet checks it at start: each name or `prefix*` must be
    namespaced. Returns the patterns; ValueError names those that are not."""
    patterns = [p.strip() for p in patterns if p.strip()]
    bad = [p for p in patterns if "*" in p[:-1] or sysctl_namespace(p.removesuffix("*")) is None]
    if bad:
        raise ValueError(f"the sysctls {', '.join(bad)} are not known to be namespaced")
    return patterns


@dataclass(frozen=True)
class SysctlPolicy:
    """What this node allows: the safe set for its kernel and `--allowed-unsafe-sysctls`."""

    kernel: tuple[int, ...] | None = None
    allowed_unsafe: tuple[str, ...] = ()

    def rejection(self, name: str, *, host_network: bool) -> str | None:
        """Why `name` may not be set (the kubelet's `validateSysctl` text), or None. (The kubelet also
        refuses IPC sysctls with hostIPC; kubelite never shares the host's IPC namespace.)"""
        name = normalize_sysctl(name)
        allowed = set(safe_sysctls(self.kernel)) | {p for p in self.allowed_unsafe if not p.endswith("*")}
        prefixes = [p[:-1] for p in self.allowed_unsafe if p.endswith("*")]
        if name not in allowed and not any(name.startswith(p) for p in prefixes):
            return f'"{name}" not allowlisted'
        namespace = sysctl_namespace(name)
        if namespace == "net" and host_network:
            return f'"{name}" not allowed with host net enabled'
        return None


def sysctl_rejection(pod: Pod, policy: SysctlPolicy) -> str | None:
    """The SysctlForbidden message for the first sysctl this node does not allow, or None."""
    psc = pod.spec.security_context
    for sysctl in psc.sysctls if psc else ():
        why = policy.rejection(sysctl.name, host_network=bool(pod.spec.host_network))
        if why is not None:
            return f"forbidden sysctl: {why}"
    return None


def pod_sysctls(pod: Pod) -> dict[str, str]:
    """The pod's sysctls for the sandbox's OCI `linux.sysctl`, names normalized, in manifest order."""
    psc = pod.spec.security_context
    return {normalize_sysctl(s.name): s.value for s in (psc.sysctls if psc else ())}


# ------------------------------------------------------------------------------ admission


def admission(pod: Pod, *, sysctls: SysctlPolicy, apparmor_enabled: bool) -> tuple[str, str] | None:
    """(reason, message) when this node refuses the pod before starting it, as the kubelet's admit
    handlers do (the pod fails with that reason); None when it is admitted."""
    message = sysctl_rejection(pod, sysctls)
    if message is not None:
        return SYSCTL_FORBIDDEN, message
    if not apparmor_enabled and apparmor_required(pod):
        return APPARMOR_REASON, APPARMOR_NOT_ENABLED
    return None
