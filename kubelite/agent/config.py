"""The agent's settings: what `kubelite serve` (or a test) chooses, frozen for the agent's life."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kubelite.agent import dns
from kubelite.core.types import BackoffPolicy


@dataclass(frozen=True)
class AgentConfig:
    manifests: Path
    root: Path
    node_name: str = "localhost"
    relist_period_s: float = 20.0
    backoff: BackoffPolicy = BackoffPolicy()
    node_ip: str | None = None          # status.hostIP, and podIP of hostNetwork pods
    image_pull_workers: int = 3           # pulls at once, beside the loop; 0: on the loop (simulated tests)
    pod_workers: int = 0                  # pods synced at once on workers (`agent.workers`); 0: on the loop
    image_gc_high_percent: int = 85       # the kubelet's --image-gc-high-threshold
    image_gc_low_percent: int = 80        # the kubelet's --image-gc-low-threshold
    image_gc_period_s: float = 300.0      # the kubelet's ImageGCPeriod
    resolv_conf: str = dns.DEFAULT_RESOLV_CONF   # the kubelet's --resolv-conf: what dnsPolicy Default reads
    seccomp_default: bool = False         # the kubelet's --seccomp-default: RuntimeDefault when nothing is set
    allowed_unsafe_sysctls: tuple[str, ...] = ()   # the kubelet's --allowed-unsafe-sysctls (names, `prefix*`)
    apparmor_enabled: bool | None = None  # None: as this host's kernel says
    kernel: tuple[int, ...] | None = None  # None: this host's (`uname -r`), for the safe sysctls
