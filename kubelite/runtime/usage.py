"""Resource usage arithmetic: counters read from cgroup and /proc files, turned into the figures
the kubelet reports (the metrics API, `kubectl top`, cAdvisor's metrics).

Owns: parsing the files' text (`cpu.stat`, `memory.stat`, `cpuacct.usage`, `/proc/stat`,
`/proc/meminfo`) into a `Usage`, the working set as the kubelet computes it (memory in use minus
the inactive file cache, never below 0), and CPU as a rate between two samples (nanocores: CPU
nanoseconds per second of the window). Pure: text and numbers in, numbers out; reading the files
is `runtime.stats`. Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass

NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class Usage:
    """One reading of a cgroup (or the host): cumulative CPU time and memory at that moment."""
    cpu_ns: int             # CPU time used since the cgroup was made (the host: since boot)
    memory_bytes: int       # memory charged: cgroup v2 memory.current, v1 memory.usage_in_bytes
    inactive_file: int      # the inactive file cache in it (reclaimable first)

    @property
    def working_set(self) -> int:
        return working_set(self.memory_bytes, self.inactive_file)


def working_set(memory_bytes: int, inactive_file: int) -> int:
    """The kubelet's working set (cAdvisor's `container_memory_working_set_bytes`): usage minus
    the inactive file cache, floored at 0 — what the kernel cannot reclaim without pressure."""
    return max(0, memory_bytes - inactive_file)


def cpu_rate(before_ns: int, after_ns: int, seconds: float) -> int | None:
    """CPU used over a window, in nanocores (1e9 = one core busy all the time); None when the
    window is empty or the counter went back (the cgroup was made anew between the samples)."""
    if seconds <= 0 or after_ns < before_ns:
        return None
    return round((after_ns - before_ns) / seconds)


def flat_keyed(text: str) -> dict[str, int]:
    """`key value` lines (cpu.stat, memory.stat, /proc/meminfo with its `kB`): the integer values."""
    found: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.replace(":", " ").split()
        if len(parts) >= 2:
            try:
                found[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return found


def cgroup_v2(*, cpu_stat: str, memory_current: str, memory_stat: str) -> Usage:
    """A cgroup v2 reading: `cpu.stat` usage_usec, `memory.current`, `memory.stat` inactive_file."""
    return Usage(cpu_ns=flat_keyed(cpu_stat).get("usage_usec", 0) * 1000,
                 memory_bytes=_integer(memory_current),
                 inactive_file=flat_keyed(memory_stat).get("inactive_file", 0))


def cgroup_v1(*, cpuacct_usage: str, memory_usage: str, memory_stat: str) -> Usage:
    """A cgroup v1 reading: `cpuacct.usage` (ns), `memory.usage_in_bytes`, and `memory.stat`'s
    total_inactive_file (the cgroup and those below it, as cAdvisor reads it)."""
    stat = flat_keyed(memory_stat)
    return Usage(cpu_ns=_integer(cpuacct_usage), memory_bytes=_integer(memory_usage),
                 inactive_file=stat.get("total_inactive_file", stat.get("inactive_file", 0)))


def host(*, proc_stat: str, meminfo: str, ticks_per_s: int) -> Usage:
    """The host: CPU time every core spent on anything but idle and iowait (/proc/stat's first
    line, in clock ticks), and memory in use as the root cgroup counts it (MemTotal - MemFree,
    page cache included) with the inactive file cache beside it (/proc/meminfo, kB)."""
    busy = 0
    for line in proc_stat.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            ticks = [int(v) for v in fields[1:9]] + [0] * 8
            user, nice, system, _idle, _iowait, irq, softirq, steal = ticks[:8]
            busy = user + nice + system + irq + softirq + steal   # guest time is inside user already
            break
    info = flat_keyed(meminfo)
    total, free = info.get("MemTotal", 0) * 1024, info.get("MemFree", 0) * 1024
    return Usage(cpu_ns=busy * NS_PER_S // max(1, ticks_per_s), memory_bytes=max(0, total - free),
                 inactive_file=info.get("Inactive(file)", 0) * 1024)


def memory_total(meminfo: str) -> int:
    """MemTotal in bytes."""
    return flat_keyed(meminfo).get("MemTotal", 0) * 1024


def _integer(text: str) -> int:
    try:
        return int(text.strip() or 0)
    except ValueError:
        return 0
