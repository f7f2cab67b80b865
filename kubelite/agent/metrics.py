"""The agent's Prometheus metrics: what the loop measures about itself while it runs.

Owns: the histograms of pod start latency, pod sync duration and relist duration, and the
container restart counter, in `prometheus_client`'s default registry (beside its process and
Python collectors); `kubelite serve` exposes them at `/metrics`. The loop calls the small
functions here; they only measure and count, and never change what the agent decides.
Named after the kubelet's own metrics (`kubelet_pod_start_duration_seconds`,
`kubelet_pod_worker_duration_seconds`, `kubelet_pleg_relist_duration_seconds`).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Iterator

from prometheus_client import Counter, Histogram

#: The kubelet's pod start buckets (seconds).
_START_BUCKETS = (0.5, 1, 2, 3, 4, 5, 6, 8, 10, 20, 30, 45, 60, 120, 180, 240, 300, 360, 480, 600, 900, 1200,
                  1800, 2700, 3600)
_SYNC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

POD_START = Histogram("kubelite_pod_start_duration_seconds",
                      "From kubelite seeing a pod for the first time to the pod running.", buckets=_START_BUCKETS)
POD_SYNC = Histogram("kubelite_pod_sync_duration_seconds",
                     "How long one sync of one pod takes (plan and carry out).", buckets=_SYNC_BUCKETS)
RELIST = Histogram("kubelite_relist_duration_seconds",
                   "How long a relist of the runtime's sandboxes and containers takes.", buckets=_SYNC_BUCKETS)
RESTARTS = Counter("kubelite_container_restarts_total", "Container restarts seen by this kubelite.",
                   ["namespace", "pod", "container"])


@contextmanager
def timed(histogram: Histogram) -> Iterator[None]:
    """Observe the wall time of the block (perf_counter: a frozen test clock does not stop it)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        histogram.observe(time.perf_counter() - started)


def pod_status_changed(key: str, created_at: datetime, old: dict[str, Any], new: dict[str, Any],
                       now: datetime) -> None:
    """Count restarts and the pod's first start from a status change of pod `key` (namespace/name)."""
    if old.get("phase") != "Running" and new.get("phase") == "Running" and not _ever_ran(old):
        POD_START.observe(max(0.0, (now - created_at).total_seconds()))
    before = _restart_counts(old)
    namespace, _, pod = key.partition("/")
    for name, count in _restart_counts(new).items():
        delta = count - before.get(name, 0)
        if delta > 0 and name in before:
            RESTARTS.labels(namespace, pod, name).inc(delta)


def _ever_ran(status: dict[str, Any]) -> bool:
    return any(s.get("restartCount", 0) or "running" in s.get("state", {}) or "terminated" in s.get("state", {})
               for s in status.get("containerStatuses", []))


def _restart_counts(status: dict[str, Any]) -> dict[str, int]:
    return {s["name"]: int(s.get("restartCount", 0))
            for s in status.get("initContainerStatuses", []) + status.get("containerStatuses", [])}
