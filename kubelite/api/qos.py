"""A pod's QoS class and the pod-level requests it is computed from — the one rule, pure.

Owns: `qos_class` (Kubernetes' `ComputePodQOS`, pkg/apis/core/v1/helper/qos, with the pod-level
branch `computePodLevelQOS` of 1.34), the API server's defaulting that QoS reads (a container's
request defaults to its limit; a pod-level request to the containers' aggregate request, else to the
pod-level limit) and the aggregate request of KEP-753 (app containers and sidecars together, or an
init container with the sidecars started before it, whichever is larger).

Only cpu and memory count, as in Kubernetes: a container that requests only `ephemeral-storage`
is BestEffort. Zero amounts count as unset.

Inputs are anything with `requests` and `limits` mappings of resource name to quantity
(`Resources`: the API's `ResourceRequirements`, or `Requirements` built from v1 JSON dicts), so both
the status and kubectl's printers use the same rule; standard library only, imported lazily by the
printers.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any, Iterable, Mapping, NamedTuple, Protocol, Sequence

from kubelite.api import quantity

#: The resources that decide QoS (`supportedQoSComputeResources`) and that a pod may set at pod level.
QOS_RESOURCES = ("cpu", "memory")
BEST_EFFORT, BURSTABLE, GUARANTEED = "BestEffort", "Burstable", "Guaranteed"


class Resources(Protocol):
    """One container's (or the pod's) `resources`: requests and limits, name → quantity (the API's
    `ResourceRequirements` is one)."""

    @property
    def requests(self) -> Mapping[str, Any]: ...

    @property
    def limits(self) -> Mapping[str, Any]: ...


class Requirements(NamedTuple):
    """`Resources` from plain mappings (v1 JSON)."""

    requests: Mapping[str, Any]
    limits: Mapping[str, Any]


class InitContainer(NamedTuple):
    requirements: Resources
    sidecar: bool   # restartPolicy: Always


def amount(value: Any) -> Fraction | None:
    """A quantity's exact value; None for a missing or invalid one."""
    if value is None:
        return None
    if isinstance(value, Fraction):
        return value
    try:
        return quantity.parse(value)
    except (ValueError, OverflowError, TypeError):
        return None


def container_request(requirements: Resources, name: str) -> Fraction | None:
    """A container's request after defaulting: as written, else its limit."""
    found = amount(requirements.requests.get(name))
    return found if found is not None else amount(requirements.limits.get(name))


def aggregate_request(name: str, init: Sequence[InitContainer], app: Iterable[Resources]) -> Fraction | None:
    """The containers' aggregate request of `name` (KEP-753); None when no container sets one."""
    app = list(app)
    if all(container_request(c, name) is None for c in [*(i.requirements for i in init), *app]):
        return None
    sidecars = Fraction(0)
    peak = Fraction(0)
    for container in init:
        request = container_request(container.requirements, name) or Fraction(0)
        if container.sidecar:
            sidecars += request
            peak = max(peak, sidecars)
        else:
            peak = max(peak, sidecars + request)
    total = sidecars + sum((container_request(c, name) or Fraction(0) for c in app), Fraction(0))
    return max(total, peak)


def pod_requests(pod: Resources, init: Sequence[InitContainer], app: Iterable[Resources]) -> dict[str, Fraction]:
    """Pod-level requests after defaulting: as written; else the containers' aggregate when one sets
    a request; else the pod-level limit. Only for the resources set at pod level."""
    app = list(app)
    found: dict[str, Fraction] = {}
    for name in QOS_RESOURCES:
        request = amount(pod.requests.get(name))
        if request is None and name in pod.limits:
            request = aggregate_request(name, init, app)
            if request is None:
                request = amount(pod.limits.get(name))
        if request is not None:
            found[name] = request
    return found


def uses_pod_level_resources(pod: Resources | None) -> bool:
    """`usesPodLevelResources`: the pod sets cpu or memory in `spec.resources`."""
    return pod is not None and any(name in values for values in (pod.requests, pod.limits) for name in QOS_RESOURCES)


def _positive(values: Mapping[str, Any]) -> dict[str, Fraction]:
    found = {name: amount(values.get(name)) for name in QOS_RESOURCES}
    return {name: value for name, value in found.items() if value is not None and value > 0}


def _pod_level_qos(requests: Mapping[str, Any], limits: Mapping[str, Any]) -> str:
    """`computePodLevelQOS`: from the pod-level cpu and memory alone (requests defaulted)."""
    requests, limits = _positive(requests), _positive(limits)
    if not requests and not limits:
        return BEST_EFFORT
    if len(limits) == len(QOS_RESOURCES) and requests == limits:
        return GUARANTEED
    return BURSTABLE


def _containers_qos(containers: Iterable[Resources]) -> str:
    """`ComputePodQOS` over every container: BestEffort without a positive cpu or memory request or
    limit; Guaranteed when every container limits both and requests what it limits (Kubernetes
    compares the sums, the same test once a request may not exceed its limit); else Burstable."""
    any_set = False
    guaranteed = True
    for container in containers:
        if not container.requests and not container.limits:   # the common case, kept cheap
            guaranteed = False
            continue
        for name in QOS_RESOURCES:
            limit = amount(container.limits.get(name))
            request = amount(container.requests[name]) if name in container.requests else limit
            limited = limit is not None and limit > 0
            any_set = any_set or limited or (request is not None and request > 0)
            guaranteed = guaranteed and limited and request == limit
        if any_set and not guaranteed:
            return BURSTABLE   # nothing later changes it
    if not any_set:
        return BEST_EFFORT
    return GUARANTEED if guaranteed else BURSTABLE


def qos_class(app: Sequence[Resources], init: Sequence[InitContainer] = (),
              pod: Resources | None = None) -> str:
    """Guaranteed, Burstable or BestEffort, from the app and init containers' resources and the
    pod's own `spec.resources` as written (None: none); from the pod level when that sets cpu or
    memory."""
    if pod is not None and uses_pod_level_resources(pod):
        return _pod_level_qos(pod_requests(pod, init, app), pod.limits)
    return _containers_qos([*app, *(container.requirements for container in init)])
