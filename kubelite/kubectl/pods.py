"""`kubectl get pods`: the row and the table, STATUS, READY and RESTARTS derived as kubectl's printPod.

Owns: `PodRow` (one row, the `-o wide` cells last), `pod_row` and `format_pod_table`, translated
from printPod (kubernetes pkg/printers/internalversion/printers.go). Pure; standard library only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable, Mapping, NamedTuple

from kubelite.kubectl.common import _dict, _int, _list, _present, _since, _str, _table, age, label_text, parse_time

# ---------------------------------------------------------------------------- get pods


class PodRow(NamedTuple):
    """One `kubectl get pods` row; the last four cells are only shown with `-o wide`.

    A NamedTuple rather than a dataclass: importing `dataclasses` costs `get pods` ~8 ms.
    """

    name: str
    namespace: str
    ready: str
    status: str
    restarts: str
    age: str
    ip: str
    node: str
    nominated_node: str
    readiness_gates: str


_TERMINAL_PHASES = ("Succeeded", "Failed")
_NODE_LOST = "NodeLost"  # node.NodeUnreachablePodReason
_SCHEDULING_GATED = "SchedulingGated"


def _is_sidecar(container: Mapping[str, Any] | None) -> bool:
    """A restartable init container (`restartPolicy: Always`)."""
    return container is not None and container.get("restartPolicy") == "Always"


def _condition_true(conditions: Iterable[Any], kind: str, *, first_only: bool) -> bool:
    for condition in conditions:
        condition = _dict(condition)
        if condition.get("type") != kind:
            continue
        if condition.get("status") == "True":
            return True
        if first_only:
            return False
    return False


def _last_termination(status: Mapping[str, Any]) -> datetime | None:
    terminated = _dict(status.get("lastState")).get("terminated")
    if not _present(terminated):
        return None
    return parse_time(terminated.get("finishedAt"))


def _later(current: datetime | None, candidate: datetime | None) -> datetime | None:
    if candidate is None:
        return current
    if current is None or current < candidate:
        return candidate
    return current


def _terminated_reason(terminated: Mapping[str, Any], prefix: str) -> str:
    reason = _str(terminated.get("reason"))
    if reason:
        return prefix + reason
    signal = _int(terminated.get("signal"))
    if signal != 0:
        return f"{prefix}Signal:{signal}"
    return f"{prefix}ExitCode:{_int(terminated.get('exitCode'))}"


def pod_row(pod: dict, now: datetime) -> PodRow:
    """kubectl's printPod: the NAME/READY/STATUS/RESTARTS/AGE (+ wide) cells of a pod."""
    meta, spec, status = _dict(pod.get("metadata")), _dict(pod.get("spec")), _dict(pod.get("status"))
    conditions = _list(status.get("conditions"))
    phase = _str(status.get("phase"))
    reason = _str(status.get("reason")) or phase
    if any(_dict(c).get("type") == "PodScheduled" and _dict(c).get("reason") == _SCHEDULING_GATED
           for c in conditions):
        reason = _SCHEDULING_GATED

    init_specs = [_dict(c) for c in _list(spec.get("initContainers"))]
    init_by_name = {_str(c.get("name")): c for c in init_specs}
    total = len(_list(spec.get("containers"))) + sum(1 for c in init_specs if _is_sidecar(c))
    ready = 0
    restarts = sidecar_restarts = 0
    last_restart: datetime | None = None
    last_sidecar_restart: datetime | None = None

    initializing = False
    for index, container in enumerate(_list(status.get("initContainerStatuses"))):
        container = _dict(container)
        count = _int(container.get("restartCount"))
        finished = _last_termination(container)
        restarts += count
        last_restart = _later(last_restart, finished)
        sidecar = _is_sidecar(init_by_name.get(_str(container.get("name"))))
        if sidecar:
            sidecar_restarts += count
            last_sidecar_restart = _later(last_sidecar_restart, finished)
        state = _dict(container.get("state"))
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if _present(terminated) and _int(terminated.get("exitCode")) == 0:
            continue
        if sidecar and container.get("started") is True:
            if container.get("ready") is True:
                ready += 1
            continue
        if _present(terminated):
            reason = _terminated_reason(terminated, "Init:")
        elif (
            _present(waiting)
            and _str(waiting.get("reason"))
            and waiting.get("reason") != "PodInitializing"
        ):
            reason = "Init:" + _str(waiting.get("reason"))
        else:
            reason = f"Init:{index}/{len(init_specs)}"
        initializing = True
        break

    if not initializing or _condition_true(conditions, "Initialized", first_only=True):
        reason, app_ready, app_restarts, last_restart, has_running = _app_containers(
            _list(status.get("containerStatuses")), reason, last_sidecar_restart)
        ready, restarts = ready + app_ready, sidecar_restarts + app_restarts
        # a pod whose last container completed but another still runs is not "Completed"
        if reason == "Completed" and has_running:
            reason = "Running" if _condition_true(conditions, "Ready", first_only=False) else "NotReady"

    if meta.get("deletionTimestamp"):
        if status.get("reason") == _NODE_LOST:
            reason = "Unknown"
        elif phase not in _TERMINAL_PHASES:
            reason = "Terminating"

    pod_ips = _list(status.get("podIPs"))
    ip = _str(_dict(pod_ips[0]).get("ip")) if pod_ips else _str(status.get("podIP"))

    return PodRow(
        name=_str(meta.get("name")),
        namespace=_str(meta.get("namespace")),
        ready=f"{ready}/{total}",
        status=reason,
        restarts=str(restarts) if restarts == 0 or last_restart is None else
        f"{restarts} ({_since(last_restart, now)} ago)",
        age=age(meta.get("creationTimestamp"), now),
        ip=ip or "<none>",
        node=_str(spec.get("nodeName")) or "<none>",
        nominated_node=_str(status.get("nominatedNodeName")) or "<none>",
        readiness_gates=_readiness_gates(_list(spec.get("readinessGates")), conditions),
    )


def _app_containers(statuses: list[Any], reason: str, last_restart: datetime | None
                    ) -> tuple[str, int, int, datetime | None, bool]:
    """printPod's pass over the app containers, last first: the reason, how many are ready, their
    restarts, the latest termination (from `last_restart` on), and whether one runs ready."""
    ready = restarts = 0
    has_running = False
    for container in reversed(statuses):
        container = _dict(container)
        restarts += _int(container.get("restartCount"))
        last_restart = _later(last_restart, _last_termination(container))
        state = _dict(container.get("state"))
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if _present(waiting) and _str(waiting.get("reason")):
            reason = _str(waiting.get("reason"))
        elif _present(terminated):
            reason = _terminated_reason(terminated, "")
        elif container.get("ready") is True and _present(state.get("running")):
            has_running = True
            ready += 1
    return reason, ready, restarts, last_restart, has_running


def _readiness_gates(gates: list[Any], conditions: list[Any]) -> str:
    """READINESS GATES: how many of the pod's gates have their condition True (`<none>` without gates)."""
    if not gates:
        return "<none>"
    satisfied = 0
    for gate in gates:
        wanted = _dict(gate).get("conditionType")
        for condition in conditions:
            condition = _dict(condition)
            if condition.get("type") == wanted:
                satisfied += condition.get("status") == "True"
                break
    return f"{satisfied}/{len(gates)}"


def format_pod_table(
    pods: list[dict],
    now: datetime,
    *,
    wide: bool = False,
    all_namespaces: bool = False,
    no_headers: bool = False,
    show_labels: bool = False,
) -> str:
    """`kubectl get pods` output (newline-terminated), or '' when there are no pods; `show_labels`:
    the LABELS column last (`--show-labels`)."""
    headers = ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    if wide:
        headers += ["IP", "NODE", "NOMINATED NODE", "READINESS GATES"]
    if show_labels:
        headers.append("LABELS")
    if all_namespaces:
        headers.insert(0, "NAMESPACE")
    rows = []
    for pod in pods:
        row = pod_row(pod, now)
        cells = [row.name, row.ready, row.status, row.restarts, row.age]
        if wide:
            cells += [row.ip, row.node, row.nominated_node, row.readiness_gates]
        if show_labels:
            cells.append(label_text(pod))
        if all_namespaces:
            cells.insert(0, row.namespace)
        rows.append(cells)
    return _table(headers, rows, no_headers=no_headers)


def container_status(pod: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The status of the (init or app) container `name`; one with no restarts and no state yet when
    the pod's status does not list it."""
    status = _dict(pod.get("status"))
    for entry in _list(status.get("initContainerStatuses")) + _list(status.get("containerStatuses")):
        if _dict(entry).get("name") == name:
            return entry
    return {"name": name, "restartCount": 0, "state": {}}
