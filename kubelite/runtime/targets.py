"""The target of a verb that reaches into a pod — exec, attach, cp, port-forward, logs, kill: which
pod record, which of its containers, and whether it runs; with the words kubectl, the API server
and the kubelet say when there is none. One set of rules for the API (`apiserver.sessions`,
`apiserver.portforward`) and the CLI (`cli.containers`, `cli.attach`, `cli.portforward`).

* **The pod**: of the records with that name, one not being deleted, else one being deleted (its
  containers may still run, and an exec reaches them during its grace period, as for an API pod on
  a kubelet). None: `pods "NAME" not found` (the API server's 404).
* **The container**: the one named (`-c`, `container=`) among the app, init and ephemeral
  containers, else `container X is not valid for pod Y` (the API server's 400). Without a name,
  the container the annotation `kubectl.kubernetes.io/default-container` names if the pod has it
  (else the annotation is passed over, as kubectl does), then the first app container; kubectl's
  `Defaulted container "a" out of: a, b, i (init)` is the notice a CLI prints when the first was
  taken and the pod has others.
* **Running**: its status says running and carries a runtime ID, else the kubelet's
  `unable to upgrade connection: container not found ("NAME")` (400), the same for a container
  that has not started, has exited, or is an init container that finished; for a pod being
  deleted none of whose containers runs any more, the kubelet's `unable to upgrade connection:
  pod does not exist` (404: the kubelet no longer has it). A port-forward needs the pod's sandbox
  running instead (`no_sandbox`: the same words for a pod being deleted, else `pod "NAME" is not
  running: it has no sandbox to forward to`).
* **Completed pods**: kubectl refuses before it asks the server — `cannot exec into a container in
  a completed pod; current phase is Succeeded` (exec, cp), `cannot attach a container in a
  completed pod; …` (attach), `unable to forward port because pod is not running. Current
  status=Pending` (port-forward: any phase but Running) — `refuse_phase`, for the CLI.

Pure: it takes the pod records as `store.reader` gives them (JSON objects), standard library only.
Errors: `TargetError`, with the HTTP code and reason the API answers with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from kubelite.errors import KubeliteError

#: kubectl's annotation naming the container its commands default to (KEP-2227).
DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"


class TargetError(KubeliteError):
    """No such pod or container, or it does not run: `code` and `reason` are the API's answer,
    `server` whether kubectl prints it as the server's (`Error from server (NotFound): …`)."""

    def __init__(self, message: str, code: int, reason: str, *, server: bool = True) -> None:
        super().__init__(message)
        self.message, self.code, self.reason, self.server = message, code, reason, server

    @property
    def kubectl_line(self) -> str:
        """The line kubectl prints for it."""
        return f"Error from server ({self.reason}): {self.message}" if self.server else f"error: {self.message}"


@dataclass(frozen=True)
class Target:
    """A pod's container: its name, its status (`{}` when the status lists none yet), and the
    notice kubectl prints when it chose the container itself (None when it was named or the only one)."""

    pod: Mapping[str, Any]
    name: str
    status: Mapping[str, Any]
    notice: str | None = None

    @property
    def container_id(self) -> str:
        """`<runtime>://<id>` of a running container, "" otherwise."""
        return str(self.status.get("containerID") or "") if self.running else ""

    @property
    def running(self) -> bool:
        return "running" in (self.status.get("state") or {}) and bool(
            str(self.status.get("containerID") or "").partition("://")[2])


def not_found(name: str) -> TargetError:
    return TargetError(f'pods "{name}" not found', 404, "NotFound")


def pick_pod(records: Sequence[Mapping[str, Any]], name: str) -> Mapping[str, Any]:
    """The record a verb reaches of those named `name`: one not being deleted first."""
    live = [p for p in records if not (p.get("metadata") or {}).get("deletionTimestamp")]
    chosen = live or list(records)
    if not chosen:
        raise not_found(name)
    return chosen[0]


def _names(spec: Mapping[str, Any], field: str) -> list[str]:
    return [str(c.get("name", "")) for c in spec.get(field) or [] if isinstance(c, Mapping)]


def all_names(pod: Mapping[str, Any]) -> str:
    """kubectl's list of a pod's containers: `app, side, debug (ephem), setup (init)`."""
    spec = pod.get("spec") or {}
    return ", ".join(_names(spec, "containers") + [f"{n} (ephem)" for n in _names(spec, "ephemeralContainers")]
                     + [f"{n} (init)" for n in _names(spec, "initContainers")])


def status_of(pod: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """The status of container `name` (app, init or ephemeral); `{}` when the pod lists none."""
    status = pod.get("status") or {}
    for field in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
        for entry in status.get(field) or []:
            if isinstance(entry, Mapping) and entry.get("name") == name:
                return entry
    return {}


def choose(pod: Mapping[str, Any], container: str | None) -> Target:
    """The container `container` names, or kubectl's default; TargetError when the pod has no such
    container. Running or not: see `running`."""
    pod_name = str((pod.get("metadata") or {}).get("name", ""))
    apps, every = _names(pod.get("spec") or {}, "containers"), _every(pod)
    if container:
        if container not in every:
            raise TargetError(f"container {container} is not valid for pod {pod_name}", 400, "BadRequest")
        return Target(pod, container, status_of(pod, container))
    annotated = str(((pod.get("metadata") or {}).get("annotations") or {}).get(DEFAULT_CONTAINER_ANNOTATION) or "")
    if annotated and annotated in every:
        return Target(pod, annotated, status_of(pod, annotated))
    if not apps:
        raise TargetError(f"pod {pod_name} does not have any containers", 400, "BadRequest")
    notice = f'Defaulted container "{apps[0]}" out of: {all_names(pod)}' if len(every) > 1 else None
    return Target(pod, apps[0], status_of(pod, apps[0]), notice)


def running(pod: Mapping[str, Any], container: str | None) -> Target:
    """`choose`, then TargetError unless that container runs (the kubelet's words)."""
    target = choose(pod, container)
    if target.running:
        return target
    if (pod.get("metadata") or {}).get("deletionTimestamp") and not any(
            "running" in (status_of(pod, n).get("state") or {}) for n in _every(pod)):
        raise TargetError("unable to upgrade connection: pod does not exist", 404, "NotFound", server=False)
    raise TargetError(f'unable to upgrade connection: container not found ("{target.name}")', 400, "BadRequest",
                      server=False)


def _every(pod: Mapping[str, Any]) -> list[str]:
    spec = pod.get("spec") or {}
    return _names(spec, "containers") + _names(spec, "initContainers") + _names(spec, "ephemeralContainers")


def no_sandbox(pod: Mapping[str, Any]) -> TargetError:
    """A port-forward to a pod without a running sandbox: the kubelet's `pod does not exist` for a
    pod being deleted, else why (400)."""
    meta = pod.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return TargetError("unable to upgrade connection: pod does not exist", 404, "NotFound", server=False)
    return TargetError(f'unable to upgrade connection: pod "{meta.get("name", "")}" is not running: it has no '
                       "sandbox to forward to", 400, "BadRequest", server=False)


#: kubectl's refusal, before it asks the server, of a verb on a pod in these phases.
COMPLETED = ("Succeeded", "Failed")


def refuse_phase(pod: Mapping[str, Any], verb: str) -> None:
    """kubectl's own check of the pod's phase before `verb` (`exec`, `attach`, `cp`, `port-forward`):
    TargetError (not the server's) when it would refuse."""
    phase = str((pod.get("status") or {}).get("phase") or "")
    if verb == "port-forward":
        if phase and phase != "Running":
            raise TargetError(f"unable to forward port because pod is not running. Current status={phase}", 400,
                              "BadRequest", server=False)
    elif phase in COMPLETED:
        what = "attach a container" if verb == "attach" else "exec into a container"
        raise TargetError(f"cannot {what} in a completed pod; current phase is {phase}", 400, "BadRequest",
                          server=False)
