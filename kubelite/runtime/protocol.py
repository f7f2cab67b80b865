"""The runtime protocol: the one I/O seam between the agent and containers (CRI-shaped).

Owns: the calls the agent makes (sandbox run/stop/remove; container create/start/signal/remove;
list; exec, and a streaming exec for clients; attach; exit hints) and the records they return. Implementations: `fake.FakeRuntime`
(in-memory, deterministic, for tests and dry runs) and the OCI runtime (runc + conmon).

One deliberate difference from CRI: there is no blocking `StopContainer(timeout)`. The agent
sends SIGTERM, remembers the deadline, and sends SIGKILL itself when it passes, so a long grace
period never blocks the single reconcile thread, and the decision stays in `core.plan`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Protocol

from kubelite.api.models import Container, PodSecurityContext, ResourceRequirements
from kubelite.runtime.attach import AttachSession
from kubelite.core.types import ContainerState, SecurityProfile
from kubelite.runtime.streaming import ExecSession


class SandboxState(str, enum.Enum):
    READY = "ready"
    NOTREADY = "notready"


@dataclass(frozen=True)
class PortMapping:
    """A `hostPort` of one of the pod's containers, published on the host (CRI PortMapping)."""

    host_port: int
    container_port: int
    protocol: str = "TCP"
    host_ip: str = ""


@dataclass(frozen=True)
class DNSConfig:
    """The pod's resolver settings, as the kubelet decided them (CRI's `DNSConfig`)."""

    nameservers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class HostsConfig:
    """What the pod's /etc/hosts holds besides its IP: its names, `hostAliases`, and for a
    `hostNetwork` pod the host's own file."""

    hostname: str
    domain: str = ""                                   # <subdomain>.<namespace>.svc.<cluster domain>
    aliases: tuple[tuple[str, tuple[str, ...]], ...] = ()
    host_network: bool = False
    host_file: str = ""                                # the host's /etc/hosts, for a hostNetwork pod


@dataclass(frozen=True)
class SandboxConfig:
    uid: str
    name: str
    namespace: str
    attempt: int
    sandbox_hash: str
    hostname: str
    host_network: bool = False
    share_process_namespace: bool = False
    log_directory: str = ""
    port_mappings: tuple[PortMapping, ...] = ()
    dns: DNSConfig | None = None          # None: the host's /etc/resolv.conf as it is
    hosts: HostsConfig | None = None      # None: just the hostname
    sysctls: tuple[tuple[str, str], ...] = ()          # set in the pod's namespaces (admitted before)
    resources: ResourceRequirements | None = None     # pod-level resources: the pod's cgroup
    seccomp: SecurityProfile | None = None            # the infra container's (the pod's); None: unconfined


@dataclass(frozen=True)
class Mount:
    """A volume mount, prepared on the host: `host_path` is bound at `container_path`."""

    container_path: str
    host_path: str
    read_only: bool = False


@dataclass(frozen=True)
class ContainerConfig:
    """Everything a runtime needs to create one container; recovery data rides along as labels."""

    uid: str
    pod_name: str
    namespace: str
    container: Container
    attempt: int
    spec_hash: str
    log_path: str = ""
    annotations: dict[str, str] = field(default_factory=dict)   # the pod's
    pod_security: PodSecurityContext | None = None
    env: dict[str, str] | None = None    # envFrom and env resolved (valueFrom); None: only the spec's values
    mounts: tuple[Mount, ...] = ()       # the container's volume mounts
    init: bool = False                   # a regular init container (not a sidecar): it runs to completion
    seccomp: SecurityProfile | None = None    # None: unconfined
    apparmor: SecurityProfile | None = None   # None: no AppArmor profile
    pod_resources: ResourceRequirements | None = None   # pod-level limits cap a container without its own


@dataclass(frozen=True)
class SandboxInfo:
    id: str
    uid: str
    attempt: int
    sandbox_hash: str
    state: SandboxState
    created_at: datetime
    ip: str | None = None      # the pod's IP on the pod network; None without one (hostNetwork, no CNI)


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    sandbox_id: str
    uid: str
    name: str
    attempt: int
    spec_hash: str
    image: str
    state: ContainerState
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    reason: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class PulledImage:
    """An image a pull put into the runtime's image store."""

    id: str          # "sha256:<hex>" of its config
    size: int        # bytes of its unpacked layers
    digest: str = ""  # the manifest digest the registry named it by


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: bytes = b""
    stderr: bytes = b""
    timed_out: bool = False


class Runtime(Protocol):
    """What the agent needs from a container runtime. Errors derive from `errors.RuntimeError_`."""

    #: The scheme of container IDs in statuses: `<name>://<id>`.
    name: str
    #: True when the containers are a simulation (no processes, nothing outside the state root, time
    #: from the caller's clock): volumes are then laid out without mounts or ownership changes,
    #: lifecycle hooks run inline, and probe outcomes come from the runtime's script
    #: (`probe_succeeds`) instead of the network. Callers ask this, never which runtime it is.
    simulated: bool

    def run_sandbox(self, config: SandboxConfig) -> str: ...
    def stop_sandbox(self, sandbox_id: str) -> None: ...
    def remove_sandbox(self, sandbox_id: str) -> None: ...
    def create_container(self, sandbox_id: str, config: ContainerConfig) -> str: ...
    def start_container(self, container_id: str) -> None: ...
    def signal_container(self, container_id: str, signal: str) -> None: ...
    def remove_container(self, container_id: str) -> None: ...
    def sandbox_ip(self, sandbox_id: str) -> str | None: ...   # the pod IP (CRI's PodSandboxStatus); None without one

    def list_sandboxes(self, *, full: bool = True) -> list[SandboxInfo]:
        """Every sandbox of this runtime. `full=False` is a relist between full ones: a sandbox's
        readiness may be the one its last full list found, unless the runtime's own calls changed it
        since (a stopped sandbox is not ready at once); a full list looks at every infra process."""
        ...

    def list_containers(self, *, full: bool = True) -> list[ContainerInfo]:
        """Every container of this runtime. `full=False` is a relist between full ones: a container
        that gave no sign of an exit since it was last looked at (an exit file, for the OCI runtime)
        may be answered as it was then, without looking at its processes; a full list looks at
        every one. An exit that leaves its sign is seen by either."""
        ...

    def exec_sync(self, container_id: str, command: list[str], timeout_s: float) -> ExecResult: ...

    def exec_stream(self, container_id: str, command: list[str], *, stdin: bool, stdout: bool = True,
                    stderr: bool = True, tty: bool = False) -> ExecSession:
        """Start `command` in the running container for a client (CRI's `Exec`): its pipes or its
        terminal as an `ExecSession`, which the caller waits for or kills, then closes."""
        ...
    def image_present(self, image: str) -> bool: ...

    def attach_container(self, container_id: str, *, stdin: bool) -> AttachSession:
        """Attach to a running container's main process (CRI's `Attach`): its output, and its stdin
        when `stdin` is asked and the container has `stdin: true`. Closing the session detaches;
        the container runs on (with `stdinOnce`, its stdin closes). `errors.RuntimeError_` when it
        is not running."""
        ...

    def sandbox_netns(self, sandbox_id: str) -> str | None:
        """A path to the pod's network namespace usable with setns(2) (`/proc/<infra pid>/ns/net`);
        None for a pod on the host's network, or a runtime without namespaces (the fake one)."""
        ...

    def pull_image(self, image: str) -> PulledImage:
        """Fetch `image` from its registry into the image store. Blocking: called by pull workers,
        never on the reconcile loop. Errors derive from `errors.RuntimeError_` (one line)."""
        ...

    def image_layers(self, image: str) -> list[str]:
        """The unpacked layer directories of a stored image, bottom first (an image volume's
        overlay); marks the image used. Raises `errors.RuntimeError_` when it is not stored."""
        ...

    def remove_unused_images(self, in_use: set[str], *, high_percent: int, low_percent: int) -> list[str]:
        """Image GC: when the image filesystem is fuller than `high_percent`, remove images that no
        reference in `in_use` names, least recently used first, down to `low_percent`. Returns the
        ids removed."""
        ...

    def set_exit_hint(self, hint: Callable[[], None]) -> None:
        """Call `hint()` (from any thread) soon after a container exits: a hint, not the truth."""

    def next_event_time(self) -> datetime | None:
        """When the runtime itself will next change state (the fake's scripted exits), if it knows."""
