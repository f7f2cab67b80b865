"""The containers' and the host's resource usage as the kernel counts it, for the metrics API,
`kubelite top` and `/metrics`.

Owns: where a running container's cgroup is (`/kubelite-<instance>/pod<uid>/<container id>`, the
runtime's layout, cgroup v2 or v1 controllers alike), reading its counters and the host's
(`/proc/stat`, `/proc/meminfo`) into `usage.Usage`, and the `Sampler`: readings kept in memory so
a CPU rate has a window. The arithmetic is `usage`'s. Reads only: never writes a cgroup.

The sampler reads on demand, never on a timer: an idle node pays nothing. A request is answered
over the window since the newest kept reading at least `min_window_s` old (a reading younger
than `max_window_s`); without one, it reads, waits out the short window and reads again (the
first `kubectl top` takes about a second). Bounded: at most `keep` readings of at most
`MAX_CGROUPS` cgroups each.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

from kubelite import layout
from kubelite.runtime import usage, view
from kubelite.runtime.usage import Usage

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC = Path("/proc")
#: The most cgroups one reading takes (the rest are left out of it).
MAX_CGROUPS = 4096
MIN_WINDOW_S = 1.0
MAX_WINDOW_S = 60.0
KEEP = 8
#: A reading this recent is reused rather than read again (concurrent requests share one).
FRESH_S = 0.2


@dataclass(frozen=True)
class Target:
    """One running container whose usage is read."""
    namespace: str
    pod: str
    uid: str
    container: str
    cgroup: str       # relative to the cgroup root, as the runtime made it


def pod_cgroup(instance: str, uid: str) -> str:
    return f"/{instance}/pod{layout.safe_name(uid)}"


def targets(pods: Iterable[dict[str, Any]], instance: str, *, limit: int = MAX_CGROUPS) -> list[Target]:
    """The running containers of real-runtime pods (`runc://` IDs), in the pods' order, at most `limit`."""
    found: list[Target] = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            continue
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            scheme, _, bare = str(status.get("containerID") or "").partition("://")
            if scheme != view.RUNC or "running" not in (status.get("state") or {}) or not layout.is_safe_name(bare):
                continue
            uid = str(meta.get("uid") or "")
            if not layout.is_safe_name(uid):
                continue
            found.append(Target(meta.get("namespace") or "default", meta.get("name") or "", uid,
                                status.get("name") or "", f"{pod_cgroup(instance, uid)}/{bare}"))
            if len(found) >= limit:
                return found
    return found


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def read_cgroup(relative: str, *, cgroup_root: Path = CGROUP_ROOT) -> Usage | None:
    """One cgroup's counters; None when it is gone (or was never made)."""
    rel = relative.strip("/")
    if (cgroup_root / "cgroup.controllers").exists():   # cgroup v2
        base = cgroup_root / rel
        cpu, current, stat = _read(base / "cpu.stat"), _read(base / "memory.current"), _read(base / "memory.stat")
        if cpu is None or current is None:
            return None
        return usage.cgroup_v2(cpu_stat=cpu, memory_current=current, memory_stat=stat or "")
    cpu = _read(cgroup_root / "cpuacct" / rel / "cpuacct.usage")
    memory = _read(cgroup_root / "memory" / rel / "memory.usage_in_bytes")
    if cpu is None or memory is None:
        return None
    return usage.cgroup_v1(cpuacct_usage=cpu, memory_usage=memory,
                           memory_stat=_read(cgroup_root / "memory" / rel / "memory.stat") or "")


def read_host(*, proc: Path = PROC) -> Usage:
    return usage.host(proc_stat=_read(proc / "stat") or "", meminfo=_read(proc / "meminfo") or "",
                      ticks_per_s=os.sysconf("SC_CLK_TCK"))


def host_memory_total(*, proc: Path = PROC) -> int:
    return usage.memory_total(_read(proc / "meminfo") or "")


@dataclass(frozen=True)
class Reading:
    """Counters read at one moment: the host's and each cgroup's (by relative path)."""
    monotonic: float
    wall: datetime
    host: Usage
    cgroups: dict[str, Usage]


def read(cgroups: Iterable[str]) -> Reading:
    found: dict[str, Usage] = {}
    for cgroup in cgroups:
        if len(found) >= MAX_CGROUPS:
            break
        counters = read_cgroup(cgroup)
        if counters is not None:
            found[cgroup] = counters
    return Reading(time.monotonic(), datetime.now(timezone.utc), read_host(), found)


@dataclass(frozen=True)
class Window:
    """Two readings: figures are CPU rates from `before` to `after` and memory at `after`."""
    before: Reading
    after: Reading

    @property
    def seconds(self) -> float:
        return self.after.monotonic - self.before.monotonic

    def cpu(self, cgroup: str) -> int | None:
        """nanocores over the window; None for a cgroup not in both readings (or made anew between)."""
        first, last = self.before.cgroups.get(cgroup), self.after.cgroups.get(cgroup)
        if first is None or last is None:
            return None
        return usage.cpu_rate(first.cpu_ns, last.cpu_ns, self.seconds)

    def memory(self, cgroup: str) -> int | None:
        last = self.after.cgroups.get(cgroup)
        return None if last is None else last.working_set

    def host_cpu(self) -> int | None:
        return usage.cpu_rate(self.before.host.cpu_ns, self.after.host.cpu_ns, self.seconds)


class Sampler:
    """Readings kept in memory (at most `keep`), so each answer has a window (see the module's text)."""

    def __init__(self, *, min_window_s: float = MIN_WINDOW_S, max_window_s: float = MAX_WINDOW_S, keep: int = KEEP,
                 reader: Callable[[Iterable[str]], Reading] = read, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.min_window_s, self.max_window_s, self.keep = min_window_s, max_window_s, max(2, keep)
        self._read, self._sleep, self._clock = reader, sleep, clock
        self._lock = threading.Lock()
        self.readings: list[Reading] = []

    def window(self, cgroups: list[str]) -> Window:
        with self._lock:
            now = self._clock()
            self.readings = [r for r in self.readings if now - r.monotonic <= self.max_window_s]
            newest = self.readings[-1] if self.readings else None
            if newest is not None and now - newest.monotonic < FRESH_S:
                after = newest
            else:
                after = self._take(cgroups)
            earlier = [r for r in self.readings if after.monotonic - r.monotonic >= self.min_window_s]
            if earlier:
                return Window(earlier[-1], after)
            before = self.readings[0]   # the oldest kept, perhaps `after` itself: wait out the rest of the window
            self._sleep(max(0.0, self.min_window_s - (self._clock() - before.monotonic)))
            return Window(before, self._take(cgroups))

    def _take(self, cgroups: list[str]) -> Reading:
        reading = self._read(cgroups)
        self.readings.append(reading)
        del self.readings[:-self.keep]
        return reading
