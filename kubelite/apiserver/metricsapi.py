"""The resource metrics API, `metrics.k8s.io/v1beta1`, as metrics-server serves it: what `kubectl top`
reads.

Owns: the group's discovery documents, the paths below `/apis/metrics.k8s.io/v1beta1` (`nodes`,
`nodes/<name>`, `pods` of every namespace, `namespaces/<ns>/pods`, `namespaces/<ns>/pods/<name>`,
with `labelSelector` and `fieldSelector` on pods), and the shape of PodMetrics and NodeMetrics:
CPU in nanocores over the sampler's window, memory as the working set in bytes (Ki when whole), `timestamp` the end of
the window and `window` its length, as metrics-server writes them. The figures come from the
runtime's `stats` (the pods' cgroups and the host), the pods from the store; get and list only.
A pod appears once each of its running containers has a rate (a container started inside the
window has none yet), as metrics-server leaves out pods with incomplete metrics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kubelite.apiserver import objects
from kubelite.kubectl import selectors
from kubelite.runtime import stats
from kubelite.store.reader import one_per_name

if TYPE_CHECKING:
    from kubelite.apiserver.server import ApiServer

GROUP = objects.METRICS
VERSION = "v1beta1"
GROUP_VERSION = f"{GROUP}/{VERSION}"
RESOURCES = objects.METRICS_RESOURCES   # in discovery, and what `kubectl auth can-i` answers for


class NotFound(Exception):
    """No such path, or no metrics for the object named (`kind`, `name`: for the Status)."""

    def __init__(self, message: str, kind: str | None = None, name: str | None = None) -> None:
        super().__init__(message)
        self.kind, self.name = kind, name


def api_group() -> dict[str, Any]:
    return objects.metrics_api_group()   # listed in /apis with the other groups


def api_resources() -> dict[str, Any]:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION, "resources": RESOURCES}


def duration(seconds: float) -> str:
    """A window as Go's time.Duration prints it (metav1.Duration in JSON): `1.004s`, `15s`."""
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return f"{text}s"


def rfc3339(moment: Any) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def cpu_quantity(nanocores: int) -> str:
    return f"{nanocores}n"


def memory_quantity(working_set: int) -> str:
    """Bytes as metrics-server's BinarySI quantity prints them: Ki when whole."""
    return f"{working_set // 1024}Ki" if working_set % 1024 == 0 else str(working_set)


def answer(api: ApiServer, parts: list[str], query: dict[str, str]) -> dict[str, Any]:
    """The object at `/apis/metrics.k8s.io/...` (`parts`: the path's segments). Raises NotFound,
    `selectors.SelectorError`."""
    rest = parts[2:]
    if not rest:
        return api_group() | {"kind": "APIGroup", "apiVersion": "v1"}
    if rest[0] != VERSION:
        raise NotFound("the server could not find the requested resource")
    rest = rest[1:]
    if not rest:
        return api_resources()
    if rest[0] == "nodes" and len(rest) <= 2:
        return _nodes(api, rest[1] if len(rest) == 2 else None, query)
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    if rest[0] == "pods" and len(rest) <= 2 and not (namespace is None and len(rest) == 2):
        return _pods(api, namespace, rest[1] if len(rest) == 2 else None, query)
    raise NotFound("the server could not find the requested resource")


def window(api: ApiServer) -> tuple[stats.Window, list[dict[str, Any]], list[stats.Target]]:
    """A window over every running container of the node (each reading holds them all, so a rate
    exists whichever request read first), the pods and their containers."""
    reader = api.reader()
    try:
        pods = one_per_name(reader.pods())
    finally:
        reader.close()
    found = stats.targets(pods, api.instance)
    return api.sampler.window([t.cgroup for t in found]), pods, found


def _pods(api: ApiServer, namespace: str | None, name: str | None, query: dict[str, str]) -> dict[str, Any]:
    match = selectors.matcher(query.get("labelSelector"), query.get("fieldSelector"), "pods")
    window_, every, found = window(api)
    pods = [p for p in every if match(p) and namespace in (None, p["metadata"].get("namespace", "default"))
            and name in (None, p["metadata"]["name"])]
    by_pod: dict[str, list[stats.Target]] = {}
    for target in found:
        by_pod.setdefault(target.uid, []).append(target)
    items = []
    for pod in pods:
        item = pod_metrics(pod, by_pod.get(pod["metadata"].get("uid", ""), []), window_)
        if item is not None:
            items.append(item)
    if name is not None:
        if not items:
            raise NotFound(f'podmetrics.{GROUP} "{name}" not found', kind=f"podmetrics.{GROUP}", name=name)
        return items[0]
    return {"kind": "PodMetricsList", "apiVersion": GROUP_VERSION, "metadata": {}, "items": items}


def pod_metrics(pod: dict[str, Any], found: list[stats.Target], window: stats.Window) -> dict[str, Any] | None:
    """One pod's PodMetrics, or None while a running container of it has no rate yet (or none runs)."""
    containers = []
    for target in found:
        cpu, memory = window.cpu(target.cgroup), window.memory(target.cgroup)
        if cpu is None or memory is None:
            return None
        containers.append({"name": target.container,
                           "usage": {"cpu": cpu_quantity(cpu), "memory": memory_quantity(memory)}})
    if not containers:
        return None
    meta = pod["metadata"]
    return {"kind": "PodMetrics", "apiVersion": GROUP_VERSION,
            "metadata": {"name": meta["name"], "namespace": meta.get("namespace", "default"),
                         "creationTimestamp": rfc3339(window.after.wall), "labels": meta.get("labels") or {}},
            "timestamp": rfc3339(window.after.wall), "window": duration(window.seconds), "containers": containers}


def _nodes(api: ApiServer, name: str | None, query: dict[str, str]) -> dict[str, Any]:
    node = api.node()
    match = selectors.matcher(query.get("labelSelector"), None, "nodes")
    if name is not None and name != api.node_name:
        raise NotFound(f'nodemetrics.{GROUP} "{name}" not found', kind=f"nodemetrics.{GROUP}", name=name)
    item = node_metrics(node, window(api)[0])
    if name is not None:
        if item is None:
            raise NotFound(f'nodemetrics.{GROUP} "{name}" not found', kind=f"nodemetrics.{GROUP}", name=name)
        return item
    items = [item] if item is not None and match(node) else []
    return {"kind": "NodeMetricsList", "apiVersion": GROUP_VERSION, "metadata": {}, "items": items}


def node_metrics(node: dict[str, Any], window: stats.Window) -> dict[str, Any] | None:
    cpu = window.host_cpu()
    if cpu is None:
        return None
    meta = node["metadata"]
    return {"kind": "NodeMetrics", "apiVersion": GROUP_VERSION,
            "metadata": {"name": meta["name"], "creationTimestamp": rfc3339(window.after.wall),
                         "labels": meta.get("labels") or {}},
            "timestamp": rfc3339(window.after.wall), "window": duration(window.seconds),
            "usage": {"cpu": cpu_quantity(cpu), "memory": memory_quantity(window.after.host.working_set)}}
