"""`/metrics`: the Prometheus text exposition of this node.

Owns: the collectors that read at scrape time — the store (pods by phase, watch clients) and the
containers' and host's usage counters (`runtime.stats`) under the kubelet's resource metrics names
(`container_cpu_usage_seconds_total`, `container_memory_working_set_bytes` with `container`, `pod`
and `namespace` labels; the same for `pod_` from the pod's cgroup and `node_` from the host) — and
the exposition of them together with `prometheus_client`'s default registry, where the agent's
histograms and counters (`kubelite.agent.metrics`) and the process and Python collectors live.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from kubelite.runtime import stats
from kubelite.store.reader import Reader, one_per_name

PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")
CONTENT_TYPE = CONTENT_TYPE_LATEST


class NodeCollector(Collector):
    """Gauges read from the store on each scrape."""

    def __init__(self, open_reader: Callable[[], Reader], watchers: Callable[[], int]) -> None:
        self.open_reader, self.watchers = open_reader, watchers

    def collect(self) -> Iterator[Any]:
        reader = self.open_reader()
        try:
            pods = reader.pods()
        finally:
            reader.close()
        by_phase = dict.fromkeys(PHASES, 0)
        running = 0
        for pod in pods:
            status = pod.get("status", {})
            phase = status.get("phase") or "Pending"
            by_phase[phase] = by_phase.get(phase, 0) + 1
            running += sum(1 for s in status.get("containerStatuses", []) if "running" in s.get("state", {}))
        family = GaugeMetricFamily("kubelite_pods", "Pods on this node by phase.", labels=["phase"])
        for phase, count in by_phase.items():
            family.add_metric([phase], count)
        yield family
        yield GaugeMetricFamily("kubelite_running_containers", "Containers in the running state.", value=running)
        yield GaugeMetricFamily("kubelite_api_watches", "Open watch requests.", value=self.watchers())


def exposition(node: CollectorRegistry) -> bytes:
    """The default registry (agent metrics, process, Python) followed by the node's gauges."""
    return generate_latest(REGISTRY) + generate_latest(node)


class UsageCollector(Collector):
    """CPU time and working set of the running containers, their pods and the node, read from the
    cgroups and /proc on each scrape (counters need no window: Prometheus takes the rate)."""

    def __init__(self, open_reader: Callable[[], Reader], instance: str) -> None:
        self.open_reader, self.instance = open_reader, instance

    def collect(self) -> Iterator[Any]:
        reader = self.open_reader()
        try:
            pods = one_per_name(reader.pods())
        finally:
            reader.close()
        labels = ["container", "pod", "namespace"]
        cpu = CounterMetricFamily("container_cpu_usage_seconds_total",
                                  "Cumulative CPU time the container used, in seconds.", labels=labels)
        memory = GaugeMetricFamily("container_memory_working_set_bytes",
                                   "The container's working set: memory in use minus inactive file cache.",
                                   labels=labels)
        pod_cpu = CounterMetricFamily("pod_cpu_usage_seconds_total", "Cumulative CPU time the pod used, in seconds.",
                                      labels=labels[1:])
        pod_memory = GaugeMetricFamily("pod_memory_working_set_bytes", "The pod's working set in bytes.",
                                       labels=labels[1:])
        pods_seen: set[tuple[str, str, str]] = set()
        for target in stats.targets(pods, self.instance):
            counters = stats.read_cgroup(target.cgroup)
            if counters is not None:
                cpu.add_metric([target.container, target.pod, target.namespace], counters.cpu_ns / 1e9)
                memory.add_metric([target.container, target.pod, target.namespace], counters.working_set)
            pods_seen.add((target.uid, target.pod, target.namespace))
        for uid, pod, namespace in sorted(pods_seen, key=lambda p: (p[2], p[1])):
            counters = stats.read_cgroup(stats.pod_cgroup(self.instance, uid))
            if counters is not None:
                pod_cpu.add_metric([pod, namespace], counters.cpu_ns / 1e9)
                pod_memory.add_metric([pod, namespace], counters.working_set)
        host = stats.read_host()
        yield from (cpu, memory, pod_cpu, pod_memory)
        yield CounterMetricFamily("node_cpu_usage_seconds_total", "Cumulative CPU time the node used (all cores, "
                                  "not idle or iowait), in seconds.", value=host.cpu_ns / 1e9)
        yield GaugeMetricFamily("node_memory_working_set_bytes", "The node's working set in bytes.",
                                value=host.working_set)


def node_registry(open_reader: Callable[[], Reader], watchers: Callable[[], int], *,
                  instance: str | None = None) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(open_reader, watchers))
    if instance is not None:
        registry.register(UsageCollector(open_reader, instance))
    return registry
