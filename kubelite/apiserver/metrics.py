"""`/metrics`: the Prometheus text exposition of this node.

Owns: the collector that reads the store at scrape time (pods by phase, watch clients) and the
exposition of it together with `prometheus_client`'s default registry, where the agent's
histograms and counters (`kubelite.agent.metrics`) and the process and Python collectors live.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from kubelite.store.reader import Reader

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


def node_registry(open_reader: Callable[[], Reader], watchers: Callable[[], int]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(open_reader, watchers))
    return registry
