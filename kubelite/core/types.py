"""The data the engine decides over: what was observed, what is remembered, what is to be done.

Owns: plain frozen dataclasses and str enums, shared by `plan`, `status`, the store and the
agent. No behaviour beyond small derived properties; no I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class ContainerState(str, enum.Enum):
    """A runtime container's state, as CRI names them."""

    CREATED = "created"
    RUNNING = "running"
    EXITED = "exited"
    UNKNOWN = "unknown"


class StopReason(str, enum.Enum):
    """Why kubelite stopped a container; decides what follows its exit."""

    DEFINITION_CHANGED = "DefinitionChanged"  # restarted whatever the restart policy
    LIVENESS = "LivenessProbe"                # restarted unless restartPolicy Never
    STARTUP = "StartupProbe"                  # restarted unless restartPolicy Never
    POD_TERMINATION = "PodTermination"        # pod deleted, replaced, failed or completed
    REMOVED = "Removed"                       # the container left the pod's spec
    POST_START_HOOK = "FailedPostStartHook"   # its postStart hook failed: restarted per restartPolicy


class PostStart(str, enum.Enum):
    """Where a running container's postStart hook is (no entry: it has none, or it returned)."""

    RUNNING = "Running"    # the hook runs: the container is not reported Running yet
    FAILED = "Failed"      # the hook failed: the container is killed (FailedPostStartHook)


@dataclass(frozen=True)
class SecurityProfile:
    """A container's seccomp or AppArmor profile as decided (CRI's `SecurityProfile`).

    `type` is RuntimeDefault, Localhost or Unconfined; `localhost_ref` is the profile's path
    relative to the seccomp profile root (seccomp) or the loaded profile's name (AppArmor).
    """

    type: str
    localhost_ref: str | None = None


class ProbeResult(str, enum.Enum):
    SUCCESS = "Success"
    FAILURE = "Failure"
    UNKNOWN = "Unknown"


@dataclass(frozen=True)
class ObservedContainer:
    """One runtime container: one attempt of one container of a pod."""

    id: str
    name: str
    attempt: int              # the restartCount this attempt carries (0 for the first)
    spec_hash: str
    state: ContainerState
    created_at: datetime
    sandbox_id: str = ""
    image: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    reason: str | None = None     # Completed, Error, OOMKilled, StartError, ContainerStatusUnknown
    message: str | None = None
    stop_reason: StopReason | None = None   # set when kubelite asked it to stop
    kill_deadline: datetime | None = None   # SIGKILL due at this time if it still runs

    @property
    def running(self) -> bool:
        return self.state is ContainerState.RUNNING


@dataclass(frozen=True)
class ObservedSandbox:
    """A pod sandbox (the shared namespaces). Only the newest one of a pod matters."""

    id: str
    attempt: int
    sandbox_hash: str
    ready: bool
    created_at: datetime
    ip: str | None = None     # its IP on the pod network, as the runtime reports it


@dataclass(frozen=True)
class ObservedPod:
    """Everything the runtime has for one pod uid: sandboxes newest first, all kept containers."""

    uid: str
    sandboxes: tuple[ObservedSandbox, ...] = ()
    containers: tuple[ObservedContainer, ...] = ()

    @property
    def sandbox(self) -> ObservedSandbox | None:
        return self.sandboxes[0] if self.sandboxes else None

    def instances(self, name: str) -> list[ObservedContainer]:
        """The attempts of container `name`, newest first."""
        found = [c for c in self.containers if c.name == name]
        found.sort(key=lambda c: (c.attempt, c.created_at), reverse=True)
        return found


@dataclass(frozen=True)
class BackoffEntry:
    """The kubelet's flowcontrol.Backoff entry for one stable key."""

    key: str
    backoff_s: float
    last_update: datetime


@dataclass(frozen=True)
class BackoffPolicy:
    """CrashLoopBackOff tuning: the kubelet's 10 s → 300 s, reset after 600 s (KEP-4603/5593)."""

    initial_s: float = 10.0
    max_s: float = 300.0
    reset_s: float = 600.0

    def __post_init__(self) -> None:
        if self.max_s <= 0 or self.initial_s <= 0:
            raise ValueError("backoff delays must be positive")
        if self.initial_s > self.max_s:  # the kubelet lowers initial to max
            object.__setattr__(self, "initial_s", self.max_s)


@dataclass(frozen=True)
class PodRecord:
    """What the agent remembers about a pod beyond its manifest and its runtime objects."""

    start_time: datetime | None = None           # status.startTime: first sync
    terminating: bool = False                    # deleted, replaced, or to be stopped
    failed_reason: str | None = None             # pod-level status.reason (DeadlineExceeded)
    failed_message: str | None = None
    terminal_phase: str | None = None            # Succeeded/Failed once reached: sticky


@dataclass(frozen=True)
class StartError:
    """The last failure to create/start a container (the kubelet's reasonCache)."""

    reason: str      # CreateContainerError, RunContainerError
    message: str


@dataclass(frozen=True)
class StartAction:
    name: str
    attempt: int
    init: bool = False
    message: str = ""
    #: the CrashLoopBackOff step this restart takes; recorded once the start is under way (not while
    #: it waits for its image to be pulled: that restart has not happened yet)
    backoff_update: BackoffEntry | None = None
    #: a container of this attempt that was created but never started (kubelite stopped between
    #: `runc create` and `runc start`): it is started as it is, rather than made again
    created_id: str | None = None


@dataclass(frozen=True)
class KillAction:
    container_id: str
    name: str
    signal: str                 # "TERM" (graceful, with grace_s) or "KILL"
    grace_s: int
    stop_reason: StopReason
    message: str                # the Killing event: "Stopping container web"


@dataclass(frozen=True)
class BackoffHold:
    """A restart held back by CrashLoopBackOff until `until`."""

    name: str
    until: datetime
    backoff_s: float
    message: str


class WaitReason(str, enum.Enum):
    """Why a pod's starts wait for a time, beside CrashLoopBackOff (which holds one container)."""

    SYNC_ERROR = "SyncError"               # a create or start failed: the pod worker's retry pause
    CONFIG = "ConfigWait"                  # a ConfigMap, Secret, key, claim or volume is not usable yet
    ERR_IMAGE_PULL = "ErrImagePull"        # a pull failed just now: look again in a moment
    IMAGE_PULL_BACKOFF = "ImagePullBackOff"  # the image's pull backoff holds the start until `until`
    PULLING = "Pulling"                    # an image pull runs: until it ends (`until` is only a bound)


@dataclass(frozen=True)
class PodWait:
    """A pause of a pod's starts (and its sandbox's creation) until `until`, as the kubelet's pod
    worker backs off after a failed sync; kills and pod-level failures are never held."""

    reason: WaitReason
    until: datetime


@dataclass(frozen=True)
class PodActions:
    """The result of `plan()`: what to do now for one pod, and when to look again. Immutable: the
    executor carries it out as it is."""

    kill_pod: bool = False                  # the pod is to be stopped: containers first, then the sandbox
    stop_sandbox: bool = False              # nothing runs any more: stop the sandbox now
    create_sandbox: bool = False
    sandbox_attempt: int = 0
    to_start: tuple[StartAction, ...] = ()
    to_kill: tuple[KillAction, ...] = ()
    backoff_holds: tuple[BackoffHold, ...] = ()
    fail_pod: tuple[str, str] | None = None  # (reason, message): pod-level failure decided now
    fail_warning: bool = False               # the failure's event is a Warning (a refused pod)
    terminal_phase: str | None = None        # Succeeded/Failed reached by this plan
    pod_stopped: bool = False                # terminating and nothing is left running
    waiting: PodWait | None = None           # the pause that held this pod's starts in this plan
    pull_held: tuple[str, ...] = ()          # would start now but for their image's pull: the pod keeps waiting
    next_wakeup: datetime | None = None

    @property
    def backoff_updates(self) -> tuple[BackoffEntry, ...]:
        """The CrashLoopBackOff steps of the restarts in `to_start`."""
        return tuple(s.backoff_update for s in self.to_start if s.backoff_update is not None)

    @property
    def idle(self) -> bool:
        """True when nothing is to be done now."""
        return not (self.stop_sandbox or self.create_sandbox or self.to_start or self.to_kill or self.fail_pod)


@dataclass(frozen=True)
class ProbeTarget:
    """One probe of one running container, resolved for the prober: what to run, where, how often.

    `action` is `exec` (`command`), `http` (`scheme`, `host`, `port`, `path`, `headers`) or `tcp`
    (`host`, `port`). The first run is due at `first_at` (the container's start plus
    initialDelaySeconds), then every `period_s`; each run may take `timeout_s`.
    """

    container_id: str
    kind: str                   # liveness | readiness | startup
    action: str                 # exec | http | tcp
    first_at: datetime
    period_s: int
    timeout_s: int
    command: tuple[str, ...] = ()
    scheme: str = "http"        # http | https
    host: str = "127.0.0.1"
    port: int = 0
    path: str = "/"
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ProbeOutcome:
    """One run of a probe, as the prober reports it (thresholds are applied by `core.probes`).

    `result` is UNKNOWN when the prober could not run the probe at all (the kubelet's probe
    error): such a run is thrown away. `warning` marks a success with a warning (an HTTP
    redirect to another host that was not followed).
    """

    container_id: str
    kind: str
    result: ProbeResult
    output: str = ""
    warning: bool = False
