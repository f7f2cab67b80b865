"""The v1 PodStatus of a pod, computed as the kubelet computes it — pure, `now` is an argument.

Owns: container statuses (`convertToAPIContainerStatuses`: state, lastState, restartCount,
ready, started, waiting reasons ContainerCreating / PodInitializing / CrashLoopBackOff /
PostStartHookError, a container whose postStart hook has not returned shown as ContainerCreating),
the pod's budget for termination messages (the status manager's `normalizeStatus`: 12 KiB shared
evenly by its containers), the pod phase (`getPhase`), conditions (`status/generate.go`) and the
QoS class. The result is a plain dict in the v1 JSON shape, ready to be stored and printed without
pydantic.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

from kubelite.api import security_validation
from kubelite.core import security
from kubelite.api.decode import DesiredPod
from kubelite.api.models import Container, Pod
from kubelite.core.types import (
    BackoffHold, ContainerState, ObservedContainer, ObservedPod, PodRecord, PostStart, ProbeResult, StartError,
)

Json = dict[str, Any]
#: `MaxPodTerminationMessageLogLength`: the bytes of termination messages one pod's status may carry,
#: split evenly between its containers (init and app).
POD_TERMINATION_MESSAGE_BYTES = 12 * 1024
#: The waiting reason after a failed postStart hook (the kubelet's `ErrPostStartHook`).
POST_START_HOOK_ERROR = "PostStartHookError"


def rfc3339(t: datetime | None) -> str | None:
    """A timestamp as the Kubernetes API writes it: UTC, whole seconds, `Z`."""
    if t is None:
        return None
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def message_budget(pod: Pod) -> int:
    """The bytes of termination message each container's state may show (`normalizeStatus`)."""
    count = len(pod.spec.containers) + len(pod.spec.init_containers)
    return POD_TERMINATION_MESSAGE_BYTES // count if count else POD_TERMINATION_MESSAGE_BYTES


def truncate_message(message: str, limit: int) -> str:
    """The first `limit` bytes of `message` (a character cut in two becomes U+FFFD, as Go's JSON writes it)."""
    data = message.encode("utf-8", errors="surrogatepass")
    if len(data) <= limit:
        return message
    return data[:limit].decode("utf-8", errors="replace")


def terminated_state(c: ObservedContainer, runtime: str, budget: int = POD_TERMINATION_MESSAGE_BYTES) -> Json:
    exit_code = c.exit_code if c.exit_code is not None else 137
    state: Json = {
        "exitCode": exit_code,
        "reason": c.reason or ("Completed" if exit_code == 0 else "Error"),
        "startedAt": rfc3339(c.started_at),
        "finishedAt": rfc3339(c.finished_at),
        "containerID": f"{runtime}://{c.id}",
    }
    if c.message:
        state["message"] = truncate_message(c.message, budget)
    return {"terminated": {k: v for k, v in state.items() if v is not None}}


def container_status(container: Container, instances: Sequence[ObservedContainer], *, init: bool,
                     default_reason: str, hold: BackoffHold | None, start_error: StartError | None,
                     probes: Mapping[tuple[str, str], ProbeResult], runtime: str,
                     post_start: Mapping[str, PostStart] | None = None,
                     budget: int = POD_TERMINATION_MESSAGE_BYTES, restarts: bool = True) -> Json:
    """One v1 ContainerStatus from the newest two runtime instances of a container.

    A running container whose postStart hook has not returned is Waiting (ContainerCreating), as
    the kubelet reports it until its `startContainer` returns; after a failed hook it waits with
    PostStartHookError while it is stopped and restarted — or, when it will not be restarted
    (`restarts` False: restartPolicy Never), shows its terminated state."""
    status: Json = {"name": container.name, "image": container.image or "", "imageID": "",
                    "restartCount": 0, "ready": False, "started": False,
                    "state": {}, "lastState": {}}
    current = instances[0] if instances else None
    previous = instances[1] if len(instances) > 1 else None
    if current is None:
        waiting = {"reason": start_error.reason, "message": start_error.message} if start_error \
            else {"reason": default_reason}
        status["state"] = {"waiting": waiting}
        return status
    status["restartCount"] = current.attempt
    status["containerID"] = f"{runtime}://{current.id}"
    if previous is not None and previous.state is not ContainerState.RUNNING:
        status["lastState"] = terminated_state(previous, runtime, budget)
    hook = (post_start or {}).get(current.id)
    if start_error is not None and start_error.reason == POST_START_HOOK_ERROR and not restarts \
            and current.state is ContainerState.EXITED:
        start_error = None   # not restarted: the kubelet shows the terminated state (ShouldContainerBeRestarted)
    if current.state is ContainerState.RUNNING and hook is not None:
        waiting = {"reason": "ContainerCreating"}
        if hook is PostStart.FAILED and start_error is not None:
            waiting = {"reason": start_error.reason, "message": start_error.message}
        status["state"] = {"waiting": waiting}
    elif current.state is ContainerState.RUNNING:
        status["state"] = {"running": {"startedAt": rfc3339(current.started_at)}}
        started = probes.get((current.id, "startup"), ProbeResult.SUCCESS) is ProbeResult.SUCCESS
        status["started"] = started
        regular_init = init and not container.is_sidecar
        status["ready"] = started and not regular_init and \
            probes.get((current.id, "readiness"), ProbeResult.SUCCESS) is ProbeResult.SUCCESS
    elif current.state is ContainerState.CREATED:
        status["state"] = {"waiting": {"reason": start_error.reason, "message": start_error.message}
                           if start_error else {"reason": "ContainerCreating"}}
    else:
        terminated = terminated_state(current, runtime, budget)
        if hold is not None:
            status["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message": hold.message}}
            status["lastState"] = terminated
        elif start_error is not None:
            status["state"] = {"waiting": {"reason": start_error.reason, "message": start_error.message}}
            status["lastState"] = terminated
        else:
            status["state"] = terminated
        if init and not container.is_sidecar and current.exit_code == 0 and hold is None:
            status["ready"] = True
    return status


def _last_terminated(status: Json) -> Json | None:
    return status["lastState"].get("terminated")


def phase(pod: Pod, init_statuses: Sequence[Json], statuses: Sequence[Json], *, initialized: bool) -> str:
    """`getPhase`, rule for rule (a static pod never gets a terminal phase forced on termination)."""
    spec = pod.spec
    pending_init = failed_init = pending_sidecar = 0
    running = waiting = stopped = succeeded = unknown = 0
    by_name = {s["name"]: s for s in init_statuses}
    for c in spec.init_containers:
        s = by_name.get(c.name)
        state = s["state"] if s else {}
        if c.is_sidecar:
            if s is None:
                unknown += 1
            elif "running" in state:
                pending_sidecar += 0 if s.get("started") else 1
                running += 1
            elif "waiting" in state and _last_terminated(s) is None:
                pending_sidecar += 1
                waiting += 1
            continue
        if s is None or "running" in state:
            pending_init += 1
        elif "terminated" in state:
            failed_init += state["terminated"]["exitCode"] != 0
        elif "waiting" in state:
            last = _last_terminated(s)
            if last is None:
                pending_init += 1
            elif last["exitCode"] != 0:
                failed_init += 1
        else:
            pending_init += 1
    for s in statuses:
        state = s["state"]
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            succeeded += state["terminated"]["exitCode"] == 0
        elif "waiting" in state:
            if _last_terminated(s) is not None:
                stopped += 1
            else:
                waiting += 1
        else:
            unknown += 1
    unknown += len(spec.containers) - len(statuses)
    if failed_init and spec.restart_policy == "Never":
        return "Failed"
    if pending_init or (pending_sidecar and not initialized) or waiting:
        return "Pending"
    if running and not unknown:
        return "Running"
    if not running and stopped and not unknown:
        if spec.restart_policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if spec.restart_policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def qos_class(pod: Pod) -> str:
    """Guaranteed, Burstable or BestEffort (`GetPodQOS`): Kubernetes' rule in `api.qos`, where only
    cpu and memory count; from the pod-level resources when the pod sets cpu or memory there."""
    return security_validation.qos_class(pod)


def _condition(kind: str, ok: bool, reason: str | None, message: str | None,
               previous: Mapping[str, Json], now: datetime) -> Json:
    value = "True" if ok else "False"
    old = previous.get(kind)
    since = old.get("lastTransitionTime") if old and old.get("status") == value else rfc3339(now)
    cond: Json = {"type": kind, "status": value, "lastProbeTime": None, "lastTransitionTime": since}
    if not ok and reason:
        cond["reason"] = reason
        if message:
            cond["message"] = message
    return cond


def network_status(pod: Pod, observed: ObservedPod, *, host_ip: str | None) -> Json:
    """hostIP/hostIPs and podIP/podIPs (`generateAPIPodStatus`): hostNetwork pods take the node's IP."""
    found: Json = {}
    if host_ip:
        found["hostIP"], found["hostIPs"] = host_ip, [{"ip": host_ip}]
    sandbox = observed.sandbox
    pod_ip = host_ip if pod.spec.host_network else (sandbox.ip if sandbox is not None else None)
    if pod_ip:
        found["podIP"], found["podIPs"] = pod_ip, [{"ip": pod_ip}]
    return found


def pod_status(desired: DesiredPod, observed: ObservedPod, *, record: PodRecord, now: datetime,
               holds: Sequence[BackoffHold] = (), start_errors: Mapping[str, StartError] | None = None,
               probes: Mapping[tuple[str, str], ProbeResult] | None = None,
               previous_conditions: Sequence[Json] = (), runtime: str = "fake", host_ip: str | None = None,
               post_start: Mapping[str, PostStart] | None = None) -> Json:
    """The pod's v1 status as a JSON-shaped dict.

    `post_start` maps a running container's id to its postStart hook's state (no entry: none, or
    it returned).
    `hostIP` is the node's address; `podIP` the newest sandbox's (kept once the pod has stopped,
    as the kubelet keeps it), or the node's with hostNetwork.
    """
    pod = desired.pod
    spec = pod.spec
    held = {h.name: h for h in holds}
    errors = start_errors or {}
    probe_results = probes or {}
    default_reason = "PodInitializing" if spec.init_containers else "ContainerCreating"
    budget = message_budget(pod)

    def statuses(containers: Sequence[Container], init: bool) -> list[Json]:
        return [container_status(c, observed.instances(c.name)[:2], init=init, default_reason=default_reason,
                                 hold=held.get(c.name), start_error=errors.get(c.name), probes=probe_results,
                                 runtime=runtime, post_start=post_start, budget=budget,
                                 restarts=spec.restart_policy != "Never" or c.is_sidecar) for c in containers]

    init_statuses = statuses(spec.init_containers, True)
    app_statuses = statuses(spec.containers, False)

    app_started = any(s["state"].get("running") or s["state"].get("terminated") or _last_terminated(s)
                      for s in app_statuses)
    incomplete = [c.name for c, s in zip(spec.init_containers, init_statuses)
                  if not (s["started"] if c.is_sidecar else s["ready"])]
    initialized = not incomplete or app_started
    pod_phase = record.terminal_phase or phase(pod, init_statuses, app_statuses, initialized=initialized)
    if record.failed_reason:
        pod_phase = "Failed"
    if pod_phase == "Succeeded":
        initialized = True

    sidecars = {c.name for c in spec.sidecars}
    unready = [s["name"] for s in init_statuses if s["name"] in sidecars and not s["ready"]]
    unready += [s["name"] for s in app_statuses if not s["ready"]]
    if pod_phase in ("Succeeded", "Failed"):
        ready_reason = "PodCompleted" if pod_phase == "Succeeded" else "PodFailed"
        ready_message = None
        containers_ready = False
    else:
        ready_reason = "ContainersNotReady"
        ready_message = f"containers with unready status: [{' '.join(unready)}]"
        containers_ready = not unready

    previous = {c.get("type", ""): c for c in previous_conditions}
    sandbox = observed.sandbox
    sandbox_ready = sandbox is not None and sandbox.ready and pod_phase not in ("Succeeded", "Failed")
    conditions = [
        _condition("PodReadyToStartContainers", sandbox_ready, None, None, previous, now),
        _condition("Initialized", initialized, "ContainersNotInitialized",
                   f"containers with incomplete status: [{' '.join(incomplete)}]", previous, now),
        _condition("Ready", containers_ready, ready_reason, ready_message, previous, now),
        _condition("ContainersReady", containers_ready, ready_reason, ready_message, previous, now),
        _condition("PodScheduled", True, None, None, previous, now),
    ]
    status: Json = {"phase": pod_phase, "conditions": conditions}
    status.update(network_status(pod, observed, host_ip=host_ip))
    if record.failed_reason:
        status["reason"] = record.failed_reason
        status["message"] = record.failed_message or ""
    if record.start_time is not None:
        status["startTime"] = rfc3339(record.start_time)
    if record.failed_reason in security.REJECTION_REASONS and not observed.containers:
        status["qosClass"] = qos_class(pod)   # the kubelet's rejectPod: no container statuses
        return status
    if init_statuses:
        status["initContainerStatuses"] = init_statuses
    status["containerStatuses"] = app_statuses
    status["qosClass"] = qos_class(pod)
    return status
