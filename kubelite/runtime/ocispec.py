"""Pure builders of the OCI runtime: a container's and a sandbox's runc `config.json`, conmon's argv.

Owns the Kubernetes → OCI translation rules, each written the way the kubelet and containerd's CRI
plugin apply them:

* the process: command/args against the image's ENTRYPOINT/CMD with `$(VAR)` expansion
  (`resolve_command`), the environment (`container_env`), the user (`resolve_user`), the
  capabilities (`capabilities`, `capability_mask`), noNewPrivileges, the nofile rlimit;
* the root filesystem, mounts, namespaces (joined from the sandbox), masked and read-only paths;
* cgroup resources from requests and limits (`MilliCPUToShares`, `MilliCPUToQuota`), device rules,
  the pod's own cgroup from pod-level resources (`pod_cgroup_resources`);
* the seccomp filter (`seccomp.oci_seccomp`, for the container's capabilities), the AppArmor
  profile name, and the sandbox's sysctls;
* a container's stop signal (`stop_signal`); conmon's command line and signal names are
  `runtime.conmon`'s (`conmon_argv` and `signal_number` are importable from here too).

Purely computational: no processes, no files, no clock. Every fact about this machine (the nofile
hard limit, namespace paths, the pod's shm and /etc files, the image's /etc/passwd text) arrives
as a parameter. Errors: `SpecError` (a `RuntimeError_`) when a container cannot be built from its
manifest and image — the agent reports it as CreateContainerError; `ValueError` for a caller's
mistake (an unknown signal name, inconsistent conmon options).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Collection, Mapping, Protocol, Sequence

from kubelite.api.expansion import expand, expanded_env
from kubelite.api.models import Container, PodSecurityContext, ResourceRequirements, SecurityContext
from kubelite.api.quantity import bytes_, cpu_millis
from kubelite.errors import RuntimeError_
from kubelite.runtime import seccomp
from kubelite.runtime.conmon import conmon_argv, signal_number  # noqa: F401 (callers' names)
from kubelite.runtime.protocol import ContainerConfig, Mount, SandboxConfig

OCI_VERSION = "1.0.2"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: Every capability of Linux 6.x, in number order (CAP_CHOWN = 0 … CAP_CHECKPOINT_RESTORE = 40).
ALL_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
    "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)
#: containerd's and CRI-O's default set. No CAP_SYS_TIME: a container never sets the host clock
#: unless its manifest asks (`add: [SYS_TIME]`, `add: [ALL]` or `privileged: true`).
DEFAULT_CAPABILITIES = frozenset({
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
})
MASKED_PATHS = ("/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
                "/sys/devices/virtual/powercap")
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

CPU_PERIOD_US = 100_000     # the kubelet's default CFS period
MIN_QUOTA_US = 1_000        # MinQuotaPeriod
MIN_SHARES, MAX_SHARES = 2, 262_144
SANDBOX_USER = 65535        # the uid/gid of the Kubernetes pause image


class SpecError(RuntimeError_):
    """The container cannot be built from its manifest and image (CreateContainerError)."""


class ImageConfigLike(Protocol):
    """The parts of an image's config the builders read (`kubelite.runtime.images.ImageConfig`)."""

    @property
    def entrypoint(self) -> tuple[str, ...]: ...
    @property
    def cmd(self) -> tuple[str, ...]: ...
    @property
    def env(self) -> tuple[str, ...]: ...          # "K=V"
    @property
    def working_dir(self) -> str: ...
    @property
    def user(self) -> str: ...                     # "", "uid", "uid:gid", "name", "name:group"
    @property
    def stop_signal(self) -> str | None: ...


@dataclass(frozen=True)
class SandboxNamespaces:
    """What a container joins or binds from its pod's sandbox: namespace paths and shared files.

    `net` None means the host's network (hostNetwork); `pid` is given only when the pod has
    `shareProcessNamespace: true` (otherwise the container gets its own PID namespace).
    """

    net: str | None
    ipc: str
    uts: str
    pid: str | None = None
    shm_path: str | None = None
    etc_hostname: str | None = None
    etc_hosts: str | None = None
    resolv_conf: str | None = None


# --------------------------------------------------------------------------------- process


def resolve_command(container: Container, image: ImageConfigLike, *,
                    resolved: Mapping[str, str] | None = None) -> list[str]:
    """The argv: `command` replaces ENTRYPOINT (and drops CMD), `args` replaces CMD.

    `$(VAR)` in command and args expands from the container's env (not the image's), as the
    kubelet does — `resolved` when the agent resolved envFrom/valueFrom. Raises SpecError when
    nothing is left to run.
    """
    env = resolved if resolved is not None else expanded_env(container)
    command = [expand(part, env) for part in container.command]
    args = [expand(part, env) for part in container.args]
    if not container.command:
        if not container.args:
            args = list(image.cmd)
        if tuple(image.entrypoint) != ("",):
            command = list(image.entrypoint)
    argv = command + args
    if not argv or not argv[0]:
        raise SpecError(f"container {container.name}: no command specified")
    return argv


def container_env(container: Container, image: ImageConfigLike, *, hostname: str | None = None,
                  resolved: Mapping[str, str] | None = None) -> list[str]:
    """The process environment: defaults, then the image's Env, then the container's env.

    Seeded with PATH (containerd's default) and HOSTNAME, so that the image and the manifest can
    override both; each later entry replaces an earlier one of the same name in place, as
    containerd does; an image entry without `=` unsets the name.
    """
    env: dict[str, str] = {"PATH": DEFAULT_PATH}
    if hostname:
        env["HOSTNAME"] = hostname
    for entry in image.env:
        name, sep, value = entry.partition("=")
        if sep:
            env[name] = value
        else:
            env.pop(name, None)
    env.update(resolved if resolved is not None else expanded_env(container))
    return [f"{name}={value}" for name, value in env.items()]


def stop_signal(container: Container, image: ImageConfigLike) -> int:
    """The signal that asks the container to stop: lifecycle.stopSignal, else STOPSIGNAL, else TERM."""
    declared = container.lifecycle.stop_signal if container.lifecycle else None
    return signal_number(declared or image.stop_signal or "TERM")


_NUMBER = re.compile(r"[0-9]+\Z")


def _passwd(text: str | None, *, name: str | None = None, uid: int | None = None) -> tuple[int, int] | None:
    """(uid, gid) of the first /etc/passwd entry with this name or uid."""
    for line in (text or "").splitlines():
        fields = line.split(":")
        if len(fields) < 4 or not _NUMBER.match(fields[2]) or not _NUMBER.match(fields[3]):
            continue
        if fields[0] == name or (uid is not None and int(fields[2]) == uid):
            return int(fields[2]), int(fields[3])
    return None


def _group(text: str | None, name: str) -> int | None:
    for line in (text or "").splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] == name and _NUMBER.match(fields[2]):
            return int(fields[2])
    return None


def resolve_user(container: Container, image: ImageConfigLike, *, pod_security: PodSecurityContext | None = None,
                 etc_passwd: str | None = None, etc_group: str | None = None) -> tuple[int, int]:
    """(uid, gid) the process runs as, and the runAsNonRoot check (kubelet `verifyRunAsNonRoot`).

    runAsUser/runAsGroup (container, else pod) override the image's USER. A numeric uid without a
    group takes its primary group from the image's /etc/passwd text, else 0. A user or group
    *name* is resolved only through `etc_passwd`/`etc_group` (the caller reads them from the
    rootfs); an unresolvable name raises SpecError rather than silently running as root.
    """
    sc = container.security_context or SecurityContext()
    psc = pod_security or PodSecurityContext()
    run_as_user = sc.run_as_user if sc.run_as_user is not None else psc.run_as_user
    run_as_group = sc.run_as_group if sc.run_as_group is not None else psc.run_as_group
    non_root = sc.run_as_non_root if sc.run_as_non_root is not None else psc.run_as_non_root
    who = f"container {container.name}"

    user_part, _, group_part = image.user.partition(":")
    if non_root:
        if run_as_user == 0:
            raise SpecError(f"{who}: container's runAsUser breaks non-root policy")
        if run_as_user is None and user_part and not _NUMBER.match(user_part):
            raise SpecError(f"{who}: container has runAsNonRoot and image has non-numeric user ({user_part}), "
                            "cannot verify user is non-root")
        if run_as_user is None and int(user_part or 0) == 0:
            raise SpecError(f"{who}: container has runAsNonRoot and image will run as root")

    if run_as_user is not None:
        uid, group_part = run_as_user, ""
        gid = (_passwd(etc_passwd, uid=uid) or (uid, 0))[1]
    elif not user_part:
        uid, gid = 0, 0
    elif _NUMBER.match(user_part):
        uid = int(user_part)
        gid = (_passwd(etc_passwd, uid=uid) or (uid, 0))[1]
    else:
        entry = _passwd(etc_passwd, name=user_part)
        if entry is None:
            raise SpecError(f"{who}: unable to find user {user_part}: no matching entries in passwd file")
        uid, gid = entry
    if group_part:
        found = int(group_part) if _NUMBER.match(group_part) else _group(etc_group, group_part)
        if found is None:
            raise SpecError(f"{who}: unable to find group {group_part}: no matching entries in group file")
        gid = found
    if run_as_group is not None:
        gid = run_as_group
    return uid, gid


def _capability(raw: str) -> str:
    name = raw.strip().upper()
    if name == "ALL":
        return name
    name = name if name.startswith("CAP_") else "CAP_" + name
    if name not in ALL_CAPABILITIES:
        raise SpecError(f"unknown capability {raw!r}")
    return name


def capability_mask(mask: str | int) -> frozenset[str]:
    """The capability names in a bit mask, e.g. the hex `CapBnd:` field of /proc/self/status."""
    bits = int(mask, 16) if isinstance(mask, str) else mask
    return frozenset(name for number, name in enumerate(ALL_CAPABILITIES) if bits >> number & 1)


def capabilities(security_context: SecurityContext | None, *,
                 host_capabilities: Collection[str] | None = None) -> list[str]:
    """The capability set (bounding = effective = permitted), in number order.

    containerd's order of application: add ALL, drop ALL, then each named add, then each named
    drop — so `drop: [ALL], add: [NET_BIND_SERVICE]` keeps just that one. Privileged: all.
    `host_capabilities` is what the runtime itself holds (its bounding set): "all" means those,
    as containerd's `getCurrentCaps`; the default set is cut to it; *adding* one outside it is a
    SpecError — runc could not grant it ("unable to apply caps: operation not permitted").
    None: every Linux capability is available.
    """
    sc = security_context or SecurityContext()
    available = ALL_CAPABILITIES if host_capabilities is None else tuple(
        c for c in ALL_CAPABILITIES if c in host_capabilities)
    if sc.privileged:
        return list(available)
    add = [_capability(c) for c in sc.capabilities.add] if sc.capabilities else []
    drop = [_capability(c) for c in sc.capabilities.drop] if sc.capabilities else []
    missing = sorted(set(add).difference(available, {"ALL"}), key=ALL_CAPABILITIES.index)
    if missing:
        raise SpecError(f"capabilities not available on this machine: {', '.join(missing)}")
    caps = DEFAULT_CAPABILITIES.intersection(available)
    if "ALL" in add:
        caps = set(available)
    if "ALL" in drop:
        caps = set()
    caps |= {c for c in add if c != "ALL"}
    caps -= set(drop)
    return [c for c in ALL_CAPABILITIES if c in caps]


# --------------------------------------------------------------------------------- linux


def milli_cpu_to_shares(milli_cpu: int) -> int:
    """The kubelet's MilliCPUToShares: 1 CPU = 1024 shares, at least 2 (also for no request)."""
    if milli_cpu == 0:
        return MIN_SHARES
    return max(MIN_SHARES, min(MAX_SHARES, milli_cpu * 1024 // 1000))


def milli_cpu_to_quota(milli_cpu: int, period: int = CPU_PERIOD_US) -> int:
    """The kubelet's MilliCPUToQuota: 0 (no quota) for 0, else at least 1000 µs."""
    if milli_cpu == 0:
        return 0
    return max(MIN_QUOTA_US, milli_cpu * period // 1000)


def _device(kind: str, major: int | None, minor: int | None, access: str = "rwm") -> dict[str, Any]:
    rule: dict[str, Any] = {"allow": True, "type": kind, "access": access}
    if major is not None:
        rule["major"] = major
    if minor is not None:
        rule["minor"] = minor
    return rule


#: Deny all, then mknod of anything and read/write of null, zero, full, random, urandom, tty, ptmx, pts.
DEFAULT_DEVICE_RULES = (
    {"allow": False, "access": "rwm"},
    _device("c", None, None, "m"), _device("b", None, None, "m"),
    _device("c", 1, 3), _device("c", 1, 5), _device("c", 1, 7), _device("c", 1, 8), _device("c", 1, 9),
    _device("c", 5, 0), _device("c", 5, 2), _device("c", 136, None),
)


def _devices(privileged: bool) -> list[dict[str, Any]]:
    return [{"allow": True, "access": "rwm"}] if privileged else [dict(rule) for rule in DEFAULT_DEVICE_RULES]


def container_resources(container: Container, *, pids_limit: int | None = 4096,
                        pod_resources: ResourceRequirements | None = None) -> dict[str, Any]:
    """`linux.resources` from requests and limits (device rules added by the spec builder).

    The CPU request defaults to the container's own CPU limit, as the API server's defaulting does.
    A container without a limit of its own takes the pod-level limit as its cgroup's maximum
    (KEP-2837: some runtimes, Java's among them, size themselves from their own cgroup) — not as
    its request: its CPU shares stay those of no request.
    """
    own, requests = container.resources.limits, container.resources.requests
    limits = dict(own)
    for name, value in (pod_resources.limits if pod_resources is not None else {}).items():
        if name in ("cpu", "memory"):
            limits.setdefault(name, value)   # the cgroup's maximum only, never a request
    resources: dict[str, Any] = {}
    memory = bytes_(limits["memory"]) if "memory" in limits else 0
    if memory:
        resources["memory"] = {"limit": memory}
    request = requests.get("cpu", own.get("cpu"))
    cpu: dict[str, Any] = {"shares": milli_cpu_to_shares(cpu_millis(request) if request is not None else 0)}
    quota = milli_cpu_to_quota(cpu_millis(limits["cpu"])) if "cpu" in limits else 0
    if quota:
        cpu.update(quota=quota, period=CPU_PERIOD_US)
    resources["cpu"] = cpu
    if pids_limit is not None:
        resources["pids"] = {"limit": pids_limit}
    return resources


def pod_cgroup_resources(resources: ResourceRequirements | None) -> dict[str, int]:
    """The pod cgroup's values from pod-level `spec.resources` (Kubernetes 1.34, KEP-2837):
    `memory_limit` (bytes), `cpu_quota` and `cpu_period` (µs), `cpu_shares`. Empty without them.

    `resources` are the pod-level requirements after the API server's defaulting
    (`security_validation.defaulted_pod_resources`: a request missing from the spec is the
    containers' aggregate, else the limit); shares follow the request, as for a container.
    """
    if resources is None:
        return {}
    limits, requests = resources.limits, resources.requests
    values: dict[str, int] = {}
    if "memory" in limits:
        values["memory_limit"] = bytes_(limits["memory"])
    if "cpu" in limits:
        quota = milli_cpu_to_quota(cpu_millis(limits["cpu"]))
        if quota:
            values.update(cpu_quota=quota, cpu_period=CPU_PERIOD_US)
    request = requests.get("cpu")
    if request is not None:
        values["cpu_shares"] = milli_cpu_to_shares(cpu_millis(request))
    return values


def _mount(destination: str, kind: str, source: str, options: Sequence[str]) -> dict[str, Any]:
    return {"destination": destination, "type": kind, "source": source, "options": list(options)}


def _base_mounts(*, privileged: bool, shm_path: str | None) -> list[dict[str, Any]]:
    sys_mode = "rw" if privileged else "ro"
    shm = (_mount("/dev/shm", "bind", shm_path, ["rbind", "nosuid", "noexec", "nodev", "rw"]) if shm_path
           else _mount("/dev/shm", "tmpfs", "shm", ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]))
    return [
        _mount("/proc", "proc", "proc", ["nosuid", "noexec", "nodev"]),
        _mount("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        _mount("/dev/pts", "devpts", "devpts",
               ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
        shm,
        _mount("/dev/mqueue", "mqueue", "mqueue", ["nosuid", "noexec", "nodev"]),
        _mount("/sys", "sysfs", "sysfs", ["nosuid", "noexec", "nodev", sys_mode]),
        _mount("/sys/fs/cgroup", "cgroup", "cgroup", ["nosuid", "noexec", "nodev", "relatime", sys_mode]),
    ]


def volume_mounts(mounts: Sequence[Mount]) -> list[dict[str, Any]]:
    """Bind mounts for a container's volumes, parents before children (as containerd sorts them)."""
    ordered = sorted(mounts, key=lambda m: len([p for p in m.container_path.split("/") if p]))
    return [_mount(m.container_path, "bind", m.host_path, ["rbind", "rprivate", "ro" if m.read_only else "rw"])
            for m in ordered]


def _namespaces(**paths: str | None) -> list[dict[str, str]]:
    """One entry per keyword, in order: a path joins that namespace, None (or "") makes a new one."""
    return [{"type": kind, "path": path} if path else {"type": kind} for kind, path in paths.items()]


# --------------------------------------------------------------------------------- specs


def _seccomp(profile: Mapping[str, Any], what: str, *, machine: str, capabilities: Collection[str],
             kernel: Sequence[int] | None) -> dict[str, Any]:
    """The profile in runc's form (`seccomp.oci_seccomp`); SpecError naming `what` when it cannot be."""
    try:
        return seccomp.oci_seccomp(profile, machine=machine, capabilities=capabilities, kernel=kernel)
    except (seccomp.ProfileError, TypeError, ValueError, KeyError, AttributeError) as exc:
        raise SpecError(f"{what}: invalid seccomp profile: {exc}") from None


def build_container_spec(*, config: ContainerConfig, image: ImageConfigLike, rootfs: str,
                         namespaces: SandboxNamespaces, cgroups_path: str, hostname: str,
                         annotations: Mapping[str, str], nofile: int = 1024, pids_limit: int | None = 4096,
                         pod_security: PodSecurityContext | None = None, etc_passwd: str | None = None,
                         etc_group: str | None = None, oom_score_adj: int | None = None,
                         host_capabilities: Collection[str] | None = None,
                         extra_mounts: Sequence[Mapping[str, Any]] = (),
                         seccomp_profile: Mapping[str, Any] | None = None, machine: str = "x86_64",
                         kernel: Sequence[int] | None = None, apparmor_profile: str | None = None,
                         pod_resources: ResourceRequirements | None = None) -> dict[str, Any]:
    """A complete runc `config.json` for one container of a pod.

    The container joins the sandbox's IPC, UTS and network namespaces (the host's network when
    `namespaces.net` is None), and its PID namespace only when `namespaces.pid` is given; it gets
    its own mount and PID namespaces otherwise, and no user or cgroup namespace. `hostname` is
    the pod's (for the HOSTNAME variable: the UTS namespace is joined, so no `hostname` field).
    `nofile` should be at most this process's hard RLIMIT_NOFILE and `host_capabilities` its
    bounding set (`capability_mask` of /proc/self/status CapBnd): the caller reads both.
    `extra_mounts` (volumes) are appended after the standard mounts, in order.
    `seccomp_profile` is the profile file's JSON (None: unconfined), filtered for the container's
    capabilities on `machine` (`uname -m`) and `kernel`; `apparmor_profile` a loaded profile's name.
    """
    container = config.container
    sc = container.security_context or SecurityContext()
    privileged = bool(sc.privileged)
    psc = pod_security or PodSecurityContext()
    uid, gid = resolve_user(container, image, pod_security=pod_security, etc_passwd=etc_passwd, etc_group=etc_group)
    cwd = container.working_dir or image.working_dir or "/"
    if not cwd.startswith("/"):
        raise SpecError(f"container {container.name}: workingDir {cwd!r} is not an absolute path")
    caps = capabilities(sc, host_capabilities=host_capabilities)

    user: dict[str, Any] = {"uid": uid, "gid": gid}
    groups = list(dict.fromkeys([*psc.supplemental_groups, *([psc.fs_group] if psc.fs_group is not None else [])]))
    if groups:
        user["additionalGids"] = groups
    process: dict[str, Any] = {
        "terminal": bool(container.tty),   # conmon (`-t`) holds the terminal's other end and logs it
        "user": user,
        "args": resolve_command(container, image, resolved=config.env),
        "env": container_env(container, image, hostname=hostname, resolved=config.env),
        "cwd": cwd,
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}],
        "noNewPrivileges": sc.allow_privilege_escalation is False,
    }
    if oom_score_adj is not None:
        process["oomScoreAdj"] = oom_score_adj
    if apparmor_profile:
        process["apparmorProfile"] = apparmor_profile

    readonly_root = bool(sc.read_only_root_filesystem)
    mounts = _container_mounts(namespaces, privileged=privileged, readonly_root=readonly_root,
                               extra_mounts=extra_mounts)

    linux: dict[str, Any] = {
        "namespaces": _namespaces(pid=namespaces.pid, mount=None, ipc=namespaces.ipc, uts=namespaces.uts,
                                  **({"network": namespaces.net} if namespaces.net else {})),
        "cgroupsPath": cgroups_path,
        "resources": {**container_resources(container, pids_limit=pids_limit, pod_resources=pod_resources),
                      "devices": _devices(privileged)},
    }
    if seccomp_profile is not None:
        linux["seccomp"] = _seccomp(seccomp_profile, f"container {container.name}", machine=machine,
                                    capabilities=caps, kernel=kernel)
    if not privileged:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
    return {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": rootfs, "readonly": readonly_root},
        "mounts": mounts,
        "annotations": dict(annotations),
        "linux": linux,
    }


def _container_mounts(namespaces: SandboxNamespaces, *, privileged: bool, readonly_root: bool,
                      extra_mounts: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The standard mounts, the pod's /etc files (read-only with a read-only root, as containerd
    binds them) and then the volumes, in order."""
    mounts = _base_mounts(privileged=privileged, shm_path=namespaces.shm_path)
    file_mode = "ro" if readonly_root else "rw"
    for destination, source in (("/etc/hostname", namespaces.etc_hostname), ("/etc/hosts", namespaces.etc_hosts),
                                ("/etc/resolv.conf", namespaces.resolv_conf)):
        if source:
            mounts.append(_mount(destination, "bind", source, ["rbind", "rprivate", file_mode]))
    return mounts + [dict(m) for m in extra_mounts]


def build_sandbox_spec(*, config: SandboxConfig, rootfs: str, catatonit_host_path: str, cgroups_path: str,
                       annotations: Mapping[str, str], pause_binary_path_in_rootfs: str = "/catatonit",
                       net_path: str | None = None, seccomp_profile: Mapping[str, Any] | None = None,
                       machine: str = "x86_64", kernel: Sequence[int] | None = None) -> dict[str, Any]:
    """The pod's infra container: `catatonit -P` holding the pod's namespaces, in an empty rootfs.

    It creates the pod's IPC, UTS (hostname = config.hostname) and PID namespaces (its own PID
    namespace always, so it is PID 1 there — the one containers join under shareProcessNamespace)
    and a network namespace — or joins `net_path` (a pinned namespace the caller set up with CNI),
    or, with hostNetwork, uses the host's network *and* UTS namespaces as containerd does (then no
    hostname). The pod's sysctls are set in its namespaces (net.* in its network namespace,
    kernel.shm*/msg*/sem in its IPC namespace), which every container then shares. catatonit is
    bind-mounted read-only from `catatonit_host_path`. It runs as 65535:65535 (the pause image's
    user) with no capabilities, no new privileges, a read-only root; under the pod's seccomp
    profile when `seccomp_profile` is given.
    """
    own_uts = not config.host_network
    network = {} if config.host_network else {"network": net_path}
    linux: dict[str, Any] = {
        "namespaces": _namespaces(pid=None, mount=None, ipc=None, **({"uts": None} if own_uts else {}), **network),
        "cgroupsPath": cgroups_path,
        "resources": {"devices": _devices(False)},
        "maskedPaths": list(MASKED_PATHS),
        "readonlyPaths": list(READONLY_PATHS),
    }
    if config.sysctls:   # written by runc inside the new namespaces, before /proc/sys turns read-only
        linux["sysctl"] = dict(config.sysctls)
    if seccomp_profile is not None:   # the pod's profile, for a process without capabilities
        linux["seccomp"] = _seccomp(seccomp_profile, "pod sandbox", machine=machine, capabilities=(), kernel=kernel)
    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False,
            "user": {"uid": SANDBOX_USER, "gid": SANDBOX_USER},
            "args": [pause_binary_path_in_rootfs, "-P"],
            "env": [f"PATH={DEFAULT_PATH}"],
            "cwd": "/",
            "capabilities": {"bounding": [], "effective": [], "permitted": []},
            "noNewPrivileges": True,
        },
        "root": {"path": rootfs, "readonly": True},
        "mounts": [
            _mount("/proc", "proc", "proc", ["nosuid", "noexec", "nodev"]),
            _mount("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
            _mount(pause_binary_path_in_rootfs, "bind", catatonit_host_path, ["rbind", "ro", "nosuid", "nodev"]),
        ],
        "annotations": dict(annotations),
        "linux": linux,
    }
    if own_uts:
        spec["hostname"] = config.hostname
    return spec
