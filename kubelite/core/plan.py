"""`plan()`: what to do now for one pod — the kubelet's `computePodActions`, as a pure function.

Purely computational, no side effects: it takes the desired pod, what the runtime has for it,
what the agent remembers, the backoff entries, probe results and `now`, and returns
`PodActions`. Unlike the kubelet, CrashLoopBackOff is decided here, so a held restart and the
time it is held until are part of the result, as is the next time the pod must be looked at.

The rules, in the order they apply:
1. A container being stopped is escalated to SIGKILL once its grace period is over.
2. A pod that is terminating (deleted or replaced), failed (activeDeadlineSeconds, or refused
   by the node before anything of it ran: `rejection`) or finished stops its app containers,
   then its sidecars, then its sandbox; nothing starts.
3. A pod without a usable sandbox (none, not ready, or built from an older pod-level spec) has
   its containers stopped, then its old sandbox if still ready, and gets a new one once nothing
   runs, unless `restartPolicy: Never` and it already ran; then the first init container, or
   every app container (under OnFailure: those that did not succeed), starts.
4. Init containers run one at a time in spec order; a sidecar (init container with
   `restartPolicy: Always`) must be running before the next one starts. A failed init container
   fails the pod under Never and is restarted with backoff otherwise.
5. App containers: not yet created → start; running with a changed spec → stop, then restart
   whatever the policy; liveness/startup failure → stop, restart unless Never; a failed
   postStart hook → stop (`FailedPostStartHook`), restart per `restartPolicy`; exited →
   restart per `restartPolicy` (`ShouldContainerBeRestarted`), held by CrashLoopBackOff.
6. Nothing running and nothing to start → stop the pod (sandbox and sidecars).

Waits hold starts too, as the kubelet's pod worker and image backoff do: while `waiting` (a failed
sync's retry pause, a missing ConfigMap/Secret/claim, ErrImagePull, ImagePullBackOff or a pull in
progress) is in force, nothing starts and no sandbox is made — kills and failures go on — and the
pod is looked at again when it ends. A container whose image is being pulled (`pulling`) is held
until the pull ends, and takes no CrashLoopBackOff step: its restart has not happened yet; it is
named in `pull_held`, and the pod's pull wait goes on while it is (as the kubelet's pod worker,
blocked in the image step, starts nothing else of the pod in later passes). For postStart hooks it
counts as started: the containers after one with a hook wait for the pull and the hook.

PostStart hooks hold starts as the kubelet's blocking `startContainer` does: containers start in
spec order, and none after a container with a postStart hook starts until that hook has returned;
while any postStart hook of the pod runs, no other container of the pod starts. Stopping is never
held.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import AbstractSet, Iterable, Mapping

from kubelite.api.decode import DesiredPod
from kubelite.api.models import Container
from kubelite.core import backoff as backoffs
from kubelite.core.change import container_changed, sandbox_changed
from kubelite.core.types import (
    BackoffEntry, BackoffHold, BackoffPolicy, ContainerState, KillAction, ObservedContainer, ObservedPod,
    PodActions, PodRecord, PodWait, PostStart, ProbeResult, StartAction, StopReason,
)

#: The kubelet never gives a container less than this to stop (`minimumGracePeriodInSeconds`).
MINIMUM_GRACE_S = 2
#: About 68 years: a larger grace period means "never" just the same, and still fits in a date.
MAXIMUM_GRACE_S = 2**31 - 1
DEADLINE_REASON = "DeadlineExceeded"
DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"

ProbeResults = Mapping[tuple[str, str], ProbeResult]
#: The message of the Killing event when a postStart hook failed (the kubelet's `reasonFailedPostStartHook`).
POST_START_KILL_MESSAGE = "FailedPostStartHook"


def should_restart(container: ObservedContainer, restart_policy: str) -> bool:
    """`ShouldContainerBeRestarted` for a container that is not running."""
    if container.stop_reason is StopReason.DEFINITION_CHANGED:
        return True
    if container.stop_reason in (StopReason.LIVENESS, StopReason.STARTUP):
        return restart_policy != "Never"
    if container.stop_reason in (StopReason.POD_TERMINATION, StopReason.REMOVED):
        return False
    if container.state is not ContainerState.EXITED:
        return True  # created but never started, or unknown: (re)start it
    if restart_policy == "Never":
        return False
    if restart_policy == "OnFailure":
        return container.exit_code != 0
    return True


def active_containers(desired: DesiredPod, observed: Iterable[ObservedContainer]) -> set[str]:
    """The containers of a pod that run, or will start again by its restart policy: each judged by its
    newest attempt (highest attempt, then latest creation) with `should_restart`; one never created
    will start. The agent's rule, and `kubelite diff`'s for what a change restarts."""
    newest: dict[str, ObservedContainer] = {}
    for c in observed:
        if c.name not in newest or (c.attempt, c.created_at) > (newest[c.name].attempt, newest[c.name].created_at):
            newest[c.name] = c
    policy = desired.pod.spec.restart_policy
    return {c.name for c in desired.pod.spec.all_containers()
            if c.name not in newest or newest[c.name].running or should_restart(newest[c.name], policy)}


def has_post_start(container: Container) -> bool:
    return container.lifecycle is not None and container.lifecycle.post_start is not None


def grace_period(desired: DesiredPod) -> int:
    """The effective per-container grace period: the pod's, never below two seconds (and never
    beyond what a date can hold: Kubernetes accepts any int64 here)."""
    return min(max(desired.pod.spec.termination_grace_period_seconds, MINIMUM_GRACE_S), MAXIMUM_GRACE_S)


_NOTHING = PodActions()


@dataclass(slots=True)
class _Draft:
    """The actions while a plan is being made; frozen into `PodActions` at the end."""

    kill_pod: bool = False
    stop_sandbox: bool = False
    create_sandbox: bool = False
    sandbox_attempt: int = 0
    to_start: list[StartAction] = field(default_factory=list)
    to_kill: list[KillAction] = field(default_factory=list)
    backoff_holds: list[BackoffHold] = field(default_factory=list)
    fail_pod: tuple[str, str] | None = None
    fail_warning: bool = False
    terminal_phase: str | None = None
    pod_stopped: bool = False
    waiting: PodWait | None = None
    next_wakeup: datetime | None = None

    def wake_at(self, when: datetime | None) -> None:
        if when is not None and (self.next_wakeup is None or when < self.next_wakeup):
            self.next_wakeup = when

    def hold(self, waiting: PodWait) -> None:
        """Nothing starts and no sandbox is made before `waiting.until`."""
        self.to_start.clear()
        self.create_sandbox = False
        self.waiting = waiting
        self.wake_at(waiting.until)

    def frozen(self, pull_held: tuple[str, ...] = ()) -> PodActions:
        if not (self.to_start or self.to_kill or self.backoff_holds or self.kill_pod or self.stop_sandbox
                or self.create_sandbox or self.fail_pod or self.pod_stopped or self.waiting or self.terminal_phase
                or self.next_wakeup or pull_held):
            return _NOTHING   # most pods, most passes: one shared immutable value
        return PodActions(
            kill_pod=self.kill_pod, stop_sandbox=self.stop_sandbox, create_sandbox=self.create_sandbox,
            sandbox_attempt=self.sandbox_attempt, to_start=tuple(self.to_start), to_kill=tuple(self.to_kill),
            backoff_holds=tuple(self.backoff_holds), fail_pod=self.fail_pod, fail_warning=self.fail_warning,
            terminal_phase=self.terminal_phase, pod_stopped=self.pod_stopped, waiting=self.waiting,
            pull_held=pull_held, next_wakeup=self.next_wakeup)


class _Planner:
    """One planning pass; an object only to keep the shared inputs out of every signature."""

    def __init__(self, desired: DesiredPod, observed: ObservedPod, record: PodRecord,
                 backoff: Mapping[str, BackoffEntry], probes: ProbeResults, now: datetime,
                 policy: BackoffPolicy, post_start: Mapping[str, PostStart],
                 rejection: tuple[str, str] | None = None, waiting: PodWait | None = None,
                 pulling: AbstractSet[str] = frozenset()) -> None:
        self.desired, self.observed, self.record = desired, observed, record
        self.rejection, self.waiting, self.pulling = rejection, waiting, pulling
        self.backoff, self.probes, self.now, self.policy = backoff, probes, now, policy
        self.post_start = post_start
        self.spec = desired.pod.spec
        self.specs = {c.name: c for c in self.spec.all_containers()}
        self.actions = _Draft()
        self.pull_held: list[str] = []  # containers that would start but for their image's pull
        self.newest: dict[str, ObservedContainer] = {}  # the latest attempt of each container name
        for c in observed.containers:
            best = self.newest.get(c.name)
            if best is None or (c.attempt, c.created_at) > (best.attempt, best.created_at):
                self.newest[c.name] = c

    # -------------------------------------------------------------- building blocks

    def stopping(self, c: ObservedContainer | None) -> bool:
        return c is not None and c.running and c.kill_deadline is not None

    def kill(self, c: ObservedContainer, reason: StopReason, message: str) -> None:
        if self.stopping(c) or any(k.container_id == c.id for k in self.actions.to_kill):
            return  # already asked to stop (escalation is rule 1), or by an earlier rule of this plan
        self.actions.to_kill.append(KillAction(c.id, c.name, "TERM", grace_period(self.desired), reason, message))

    def startable(self, last: ObservedContainer, container: Container) -> bool:
        """A container created but never started (kubelite stopped between create and start), of
        the current spec, in the pod's ready sandbox: it is started as it is — the app has not
        run, so this is no restart (the kubelet would make a new container and count one)."""
        sandbox = self.observed.sandbox
        return last.state is ContainerState.CREATED and sandbox is not None and sandbox.ready \
            and sandbox.id == last.sandbox_id and not sandbox_changed(sandbox.sandbox_hash, self.desired) \
            and not container_changed(last.spec_hash, container.name, self.desired)

    def start(self, container: Container, *, init: bool) -> bool:
        """Start `container` now unless its image's pull, CrashLoopBackOff or a postStart hook holds it;
        True if it starts."""
        last = self.newest.get(container.name)
        if last is not None and self.startable(last, container):
            if self.held_by_post_start():
                return False
            self.actions.to_start.append(StartAction(container.name, last.attempt, init=init, created_id=last.id))
            return True
        if container.name in self.pulling:
            self.pull_held.append(container.name)
            return False   # it starts once the pull has ended (the pull's end wakes the loop)
        attempt = last.attempt + 1 if last is not None else 0
        if last is not None and last.state is ContainerState.EXITED and last.finished_at is not None:
            meta = self.desired.pod.metadata
            key = backoffs.stable_key(pod_name=meta.name or "", namespace=meta.namespace, uid=self.desired.uid,
                                      container=container.name,
                                      spec_hash=self.desired.container_hashes[container.name])
            entry = self.backoff.get(key)
            until = backoffs.held_until(entry, finished_at=last.finished_at, now=self.now, policy=self.policy)
            if until is not None and entry is not None:
                message = (f"back-off {backoffs.go_duration(entry.backoff_s)} restarting failed "
                           f"container={container.name} pod={meta.name}_{meta.namespace}({self.desired.uid})")
                self.actions.backoff_holds.append(BackoffHold(container.name, until, entry.backoff_s, message))
                self.actions.wake_at(until)
                return False
            if self.held_by_post_start():
                return False
            update = backoffs.next_entry(entry, key=key, finished_at=last.finished_at, now=self.now,
                                         policy=self.policy)
            self.actions.to_start.append(StartAction(container.name, attempt, init=init, backoff_update=update))
            return True
        if self.held_by_post_start():
            return False
        self.actions.to_start.append(StartAction(container.name, attempt, init=init))
        return True

    def held_by_post_start(self) -> bool:
        """True while a postStart hook of the pod runs, or one will run for a container this plan
        starts or that waits for its image's pull: the containers after it wait for it to return (the
        hook's outcome, or the pull's end, wakes the loop)."""
        if any(c.running and self.post_start.get(c.id) is PostStart.RUNNING for c in self.newest.values()):
            return True
        return any(has_post_start(self.specs[name]) for name in
                   [*(s.name for s in self.actions.to_start), *self.pull_held] if name in self.specs)

    def is_running(self, name: str) -> bool:
        c = self.newest.get(name)
        return c is not None and c.running

    def succeeded(self, name: str) -> bool:
        c = self.newest.get(name)
        return c is not None and c.state is ContainerState.EXITED and c.exit_code == 0

    def running(self) -> list[ObservedContainer]:
        return [c for c in self.newest.values() if c.running]

    def kill_pod(self, *, running: bool) -> None:
        """Mark the pod for stopping: containers now, the sandbox once nothing runs."""
        sandbox = self.observed.sandbox
        sandbox_ready = sandbox is not None and sandbox.ready
        self.actions.kill_pod = running or sandbox_ready
        self.actions.stop_sandbox = sandbox_ready and not running

    def stop_everything(self) -> None:
        """Kill the pod: stop what runs, then (once nothing runs) the sandbox. A no-op when all is stopped."""
        running = self.running()
        self.kill_pod(running=bool(running))
        for c in running:
            self.kill(c, StopReason.POD_TERMINATION, f"Stopping container {c.name}")

    def probe_failed(self, c: ObservedContainer, kind: str) -> bool:
        return self.probes.get((c.id, kind)) is ProbeResult.FAILURE

    # -------------------------------------------------------------- the rules

    def run(self) -> PodActions:
        self.rules()
        if self.waiting is not None and self.now < self.waiting.until:
            self.actions.hold(self.waiting)                               # waits hold every start
        return self.actions.frozen(tuple(self.pull_held))

    def rules(self) -> None:
        self.escalate()                                                   # rule 1
        if self.rejected() or self.deadline_exceeded() or self.record.terminating or self.record.terminal_phase:
            self.stop_pod()                                               # rule 2
            return
        sandbox = self.observed.sandbox
        if sandbox is None or not sandbox.ready or sandbox_changed(sandbox.sandbox_hash, self.desired):
            self.new_sandbox()                                            # rule 3
            return
        initialized = self.init_containers()                             # rule 4
        if initialized:
            self.app_containers()                                         # rules 5 and 6

    def escalate(self) -> None:
        for c in self.newest.values():
            if c.running and c.kill_deadline is not None:
                if self.now >= c.kill_deadline:
                    self.actions.to_kill.append(KillAction(c.id, c.name, "KILL", 0, c.stop_reason
                                                           or StopReason.POD_TERMINATION, ""))
                else:
                    self.actions.wake_at(c.kill_deadline)

    def rejected(self) -> bool:
        """The node refuses the pod (the kubelet's admit handlers: SysctlForbidden, AppArmor): it fails
        before anything of it starts. A pod already started is never rejected afterwards."""
        if self.rejection is None or self.record.terminal_phase or self.record.failed_reason \
                or self.observed.sandboxes or self.observed.containers:
            return False
        self.actions.fail_pod = self.rejection
        self.actions.fail_warning = True
        self.actions.terminal_phase = "Failed"
        return True

    def deadline_exceeded(self) -> bool:
        deadline = self.spec.active_deadline_seconds
        start = self.record.start_time
        if deadline is None or start is None or self.record.terminal_phase:
            return False
        due = start + timedelta(seconds=deadline)
        if self.now >= due:
            if self.record.failed_reason is None:
                self.actions.fail_pod = (DEADLINE_REASON, DEADLINE_MESSAGE)
                self.actions.terminal_phase = "Failed"
            return True
        self.actions.wake_at(due)
        return False

    def stop_pod(self) -> None:
        """Stop app containers (and regular init containers) first, then sidecars, then the sandbox."""
        sidecars = {c.name for c in self.spec.sidecars}
        running = self.running()
        main = [c for c in running if c.name not in sidecars]
        for c in main or running:
            self.kill(c, StopReason.POD_TERMINATION, f"Stopping container {c.name}")
        self.kill_pod(running=bool(running))
        self.actions.pod_stopped = not running

    def new_sandbox(self) -> None:
        """Rule 3, as the kubelet's KillPod then CreateSandbox: the old sandbox's containers stop
        first; once nothing runs, a sandbox still ready (built from an older pod-level spec of a pod
        that kept its UID) is stopped in the same pass, before the new one is created, so that its
        address and host ports are free for it."""
        running = self.running()
        self.kill_pod(running=bool(running))
        if running:  # the old sandbox's containers go first
            for c in running:
                self.kill(c, StopReason.POD_TERMINATION, f"Stopping container {c.name}")
            return
        ran_before = bool(self.observed.containers)
        if self.spec.restart_policy == "Never" and ran_before:
            return  # the pod has run its course; its sandbox is already gone
        if self.spec.init_containers:
            self.start(self.spec.init_containers[0], init=True)
        else:
            for container in self.spec.containers:
                if self.spec.restart_policy == "OnFailure" and self.succeeded(container.name):
                    continue
                self.start(container, init=False)
        if self.actions.to_start or self.actions.backoff_holds or self.pull_held:
            self.actions.create_sandbox = True
            previous = self.observed.sandbox
            self.actions.sandbox_attempt = previous.attempt + 1 if previous is not None else 0

    def init_containers(self) -> bool:
        """Rule 4; True when the pod is initialized and app containers may run."""
        initialized = any(c.name in self.newest for c in self.spec.containers) or all(
            self.is_running(c.name) if c.is_sidecar else self.succeeded(c.name) for c in self.spec.init_containers)
        for container in self.spec.init_containers:
            last = self.newest.get(container.name)
            if container.is_sidecar:
                if last is not None and last.running:
                    self.check_running(container, last, restart=True)
                    continue
                if initialized and last is not None:
                    continue  # restarted with the app containers, unless the pod is finishing
                if not self.stopping(last):
                    self.start(container, init=True)
                if initialized:
                    continue
                return False
            if initialized:
                continue  # regular init containers never run again once the pod is initialized
            if last is None:
                self.start(container, init=True)
                return False
            if last.running:
                return False
            if self.succeeded(container.name):
                continue
            if self.spec.restart_policy == "Never":
                self.stop_everything()  # the pod has failed (getPhase: failedInit under Never)
                return False
            self.start(container, init=True)
            return False
        return True

    def check_running(self, container: Container, c: ObservedContainer, *, restart: bool) -> bool | None:
        """Stop a running container whose spec changed or whose probe failed.

        None if it keeps running; otherwise whether it will be restarted once it has exited.
        """
        if self.stopping(c):
            return None
        if self.post_start.get(c.id) is PostStart.FAILED:
            self.kill(c, StopReason.POST_START_HOOK, POST_START_KILL_MESSAGE)
            return restart or self.spec.restart_policy != "Never"
        if container_changed(c.spec_hash, container.name, self.desired):
            self.kill(c, StopReason.DEFINITION_CHANGED, f"Container {container.name} definition changed, "
                                                        "will be restarted")
            return True
        for kind, reason in (("liveness", StopReason.LIVENESS), ("startup", StopReason.STARTUP)):
            if self.probe_failed(c, kind):
                will = restart or self.spec.restart_policy != "Never"
                self.kill(c, reason, f"Container {container.name} failed {kind} probe"
                                     + (", will be restarted" if will else ""))
                return will
        return None

    def app_containers(self) -> None:
        policy = self.spec.restart_policy
        keep = 0
        pending = 0  # containers that will run again: started now, held, or being restarted
        for container in self.spec.containers:
            last = self.newest.get(container.name)
            if last is None:
                self.start(container, init=False)
                pending += 1
            elif last.running:
                restarting = self.check_running(container, last, restart=False)
                if restarting is None:
                    keep += 1
                elif restarting:
                    pending += 1
            elif should_restart(last, policy):
                self.start(container, init=False)
                pending += 1
        wanted = {c.name for c in self.spec.all_containers()}
        for name, c in self.newest.items():
            if c.running and name not in wanted:
                self.kill(c, StopReason.REMOVED, f"Stopping container {name}")
        if keep == 0 and pending == 0:
            self.stop_everything()  # everything finished: stop sidecars and the sandbox
            return
        for container in self.spec.sidecars:  # sidecars restart while the pod still has work
            last = self.newest.get(container.name)
            if last is not None and not last.running and not self.stopping(last):
                self.start(container, init=True)


def plan(desired: DesiredPod, observed: ObservedPod, *, record: PodRecord,
         backoff: Mapping[str, BackoffEntry], now: datetime, probes: ProbeResults | None = None,
         policy: BackoffPolicy = BackoffPolicy(), post_start: Mapping[str, PostStart] | None = None,
         rejection: tuple[str, str] | None = None, waiting: PodWait | None = None,
         pulling: AbstractSet[str] = frozenset()) -> PodActions:
    """Decide what to do now for one pod. Pure: same inputs, same `PodActions`.

    `post_start` maps a running container's id to its postStart hook's state (no entry: it has
    none, or it returned). `rejection` is the node's (reason, message) for refusing the pod
    (`core.security.admission`). `waiting` is the pod's pause after a failed sync, a missing
    config or an image pull (`PodWait`); `pulling`, the containers whose image is being pulled.
    """
    return _Planner(desired, observed, record, backoff, probes or {}, now, policy, post_start or {}, rejection,
                    waiting, pulling).run()
