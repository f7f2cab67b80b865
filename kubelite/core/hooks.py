"""Lifecycle hooks (postStart, preStop) as the kubelet runs them — the pure parts.

Owns: what a hook's handler runs (`hook_action`): an exec command as written (the kubelet expands
no `$(VAR)` in hook commands), an httpGet resolved as `NewRequestForHTTPGetAction` resolves it
(host: the handler's, else the pod's IP; a named port from the container's ports; the path with
a leading `/`; headers; scheme), a sleep's seconds; and the kubelet's words for a hook that failed
(`lifecycle/handlers.go` `Run`, `kuberuntime_container.go`): the message of the PostStartHookError
waiting state and the events' reasons and messages.

Purely computational, no side effects. Carrying hooks out belongs to `agent.hooks`.

What the kubelet decides about hooks, and kubelite with it:
* postStart runs right after the container started; it has no timeout (the kubelet passes none);
  until it returns the container is not Running and no later container of the pod starts
  (`core.plan`, `core.status`). A failed postStart hook: a `FailedPostStartHook` event ("PostStartHook
  failed"), the container killed (its preStop hook runs, Killing "FailedPostStartHook"), then
  restarted by its restartPolicy, with the waiting reason PostStartHookError and the message below.
* preStop runs before the stop signal, within the grace period; a failure is a `FailedPreStopHook`
  event ("PreStopHook failed") and the stop goes on. After the hook the container still gets what
  is left of the grace period, and at least 2 s (`minimumGracePeriodInSeconds`) between SIGTERM
  and SIGKILL (`pre_stop_deadline`, `deadline_after_pre_stop`).
* httpGet hooks fail only when no response arrives (a refused connection, a timeout): the
  kubelet does not look at the status code of a hook's response.
* tcpSocket is accepted by the API but not run by the kubelet: the hook fails ("Cannot run handler").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Sequence

from kubelite.api.models import Container, LifecycleHandler
from kubelite.core.probes import LOOPBACK, resolve_port
from kubelite.core.types import ProbeTarget

POST_START = "postStart"
PRE_STOP = "preStop"
#: Event reasons and messages (the kubelet leaves the hook's output out of events: it may hold secrets).
FAILED_POST_START = ("FailedPostStartHook", "PostStartHook failed")
FAILED_PRE_STOP = ("FailedPreStopHook", "PreStopHook failed")
#: The kubelet's least time between the stop signal and SIGKILL once a preStop hook has returned.
MIN_GRACE_AFTER_PRE_STOP = timedelta(seconds=2)
#: The User-Agent product of a hook's HTTP request (`kube-lifecycle/<major>.<minor>`).
USER_AGENT_PRODUCT = "kube-lifecycle"


@dataclass(frozen=True)
class HookAction:
    """One hook of one container, resolved: `action` is exec, http, sleep, or invalid (`error` says why)."""

    kind: str                        # postStart | preStop
    action: str
    command: tuple[str, ...] = ()
    target: ProbeTarget | None = None   # http: what the prober's HTTP client fetches
    seconds: int = 0                 # sleep
    path: str = ""                   # httpGet.path as written, for the message
    error: str = ""


def pre_stop_deadline(now: datetime, grace_s: float) -> datetime:
    """SIGKILL's due time while a preStop hook runs (started `now`): the hook may use the whole grace
    period, and the 2 s after it are still the container's."""
    return now + timedelta(seconds=grace_s) + MIN_GRACE_AFTER_PRE_STOP


def deadline_after_pre_stop(deadline: datetime, now: datetime) -> datetime:
    """SIGKILL's due time once the preStop hook returned (`now`): the rest of the grace period, at
    least 2 s (the kubelet's `killContainer`), from the `pre_stop_deadline` set when it started."""
    return max(deadline - MIN_GRACE_AFTER_PRE_STOP, now + MIN_GRACE_AFTER_PRE_STOP)


def handler(container: Container, kind: str) -> LifecycleHandler | None:
    lifecycle = container.lifecycle
    if lifecycle is None:
        return None
    return lifecycle.post_start if kind == POST_START else lifecycle.pre_stop


def hook_action(container: Container, kind: str, *, container_id: str, pod_ip: str | None, timeout_s: float,
                now: datetime) -> HookAction | None:
    """What runs for the container's `kind` hook; None when it has none."""
    h = handler(container, kind)
    if h is None:
        return None
    if h.exec_ is not None:
        return HookAction(kind, "exec", command=tuple(h.exec_.command))
    if h.http_get is not None:
        get = h.http_get
        numeric = isinstance(get.port, str) and get.port.isascii() and get.port.isdigit()
        port = 80 if get.port == "" else int(get.port) if numeric else resolve_port(get.port, container)
        if port is None:
            return HookAction(kind, "invalid", path=get.path,
                              error=f"couldn't find port: {get.port} in container {container.name}")
        path = get.path if get.path.startswith("/") else "/" + get.path
        target = ProbeTarget(container_id=container_id, kind=kind, action="http", first_at=now, period_s=1,
                             timeout_s=max(1, int(timeout_s)), scheme=get.scheme.lower(),
                             host=get.host or pod_ip or LOOPBACK, port=port, path=path,
                             headers=tuple((x.name, x.value) for x in get.http_headers))
        return HookAction(kind, "http", target=target, path=get.path)
    if h.sleep is not None:
        return HookAction(kind, "sleep", seconds=max(0, h.sleep.seconds))
    what = "tcpSocket is not supported as a lifecycle hook" if h.tcp_socket is not None else "no action"
    return HookAction(kind, "invalid", error=f"invalid handler: {what}")


def pod_ref(name: str, namespace: str, uid: str) -> str:
    """A pod as the kubelet's `format.Pod` writes it: name_namespace(uid)."""
    return f"{name}_{namespace}({uid})"


def go_quote(text: str) -> str:
    """`%q` of a Go string, near enough: double quotes, escapes for quotes and control characters."""
    return json.dumps(text, ensure_ascii=False)


def exec_error(command: Sequence[str], exit_code: int, stderr: str) -> str:
    """The CRI ExecSync error of a command that exited non-zero."""
    return f"command '{' '.join(command)}' exited with {exit_code}: {stderr}"


def failure_message(action: HookAction, *, container: str, pod: str, error: str, output: str = "") -> str:
    """The kubelet's message for a failed hook (the PostStartHookError waiting message, the log line)."""
    if action.action == "exec":
        return (f"Exec lifecycle hook ([{' '.join(action.command)}]) for Container {go_quote(container)} in Pod "
                f"{go_quote(pod)} failed - error: {error}, message: {go_quote(output)}")
    if action.action == "http":
        return (f"HTTP lifecycle hook ({action.path}) for Container {go_quote(container)} in Pod {go_quote(pod)} "
                f"failed - error: {error}")
    if action.action == "sleep":
        return (f"Sleep lifecycle hook ({action.seconds}) for Container {go_quote(container)} in Pod "
                f"{go_quote(pod)} failed - error: {error}")
    return f"Cannot run handler: {error}"
