"""The arithmetic of resource usage (`runtime.usage`), the sampler's windows (`runtime.stats`), the
metrics API's objects and `kubelite top`'s columns — without containers: files and clocks made here.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from kubelite.apiserver import metricsapi
from kubelite.kubectl import top
from kubelite.runtime import stats, usage
from kubelite.runtime.usage import Usage


@pytest.mark.parametrize("memory, inactive, expected", [
    (100 << 20, 30 << 20, 70 << 20),     # usage minus the inactive file cache
    (100 << 20, 0, 100 << 20),
    (10 << 20, 30 << 20, 0),             # floored at 0, as the kubelet does
    (0, 0, 0),
])
def test_the_working_set_is_usage_minus_inactive_file_floored_at_zero(memory, inactive, expected):
    assert usage.working_set(memory, inactive) == expected
    assert Usage(cpu_ns=0, memory_bytes=memory, inactive_file=inactive).working_set == expected


@pytest.mark.parametrize("before, after, seconds, expected", [
    (0, 1_000_000_000, 1.0, 1_000_000_000),         # one core busy for a second
    (5_000_000_000, 6_000_000_000, 4.0, 250_000_000),   # a quarter core
    (0, 3_000_000_000, 1.5, 2_000_000_000),         # two cores
    (7, 7, 2.0, 0),                                 # idle
    (1_000, 500, 1.0, None),                        # the counter went back: a new cgroup
    (0, 1_000, 0.0, None),                          # no window
    (0, 1_000, -1.0, None),
])
def test_cpu_is_a_rate_between_two_samples_in_nanocores(before, after, seconds, expected):
    assert usage.cpu_rate(before, after, seconds) == expected


def test_cgroup_v2_files_give_usec_as_ns_current_memory_and_inactive_file():
    reading = usage.cgroup_v2(cpu_stat="usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
                              memory_current="4096000\n", memory_stat="anon 100\ninactive_file 96000\nactive_file 5\n")
    assert reading == Usage(cpu_ns=1_500_000, memory_bytes=4_096_000, inactive_file=96_000)
    assert reading.working_set == 4_000_000


def test_cgroup_v1_files_give_ns_usage_in_bytes_and_the_hierarchical_inactive_file():
    reading = usage.cgroup_v1(cpuacct_usage="123456789\n", memory_usage="2000000\n",
                              memory_stat="inactive_file 10\ntotal_inactive_file 500000\n")
    assert reading == Usage(cpu_ns=123_456_789, memory_bytes=2_000_000, inactive_file=500_000)
    assert usage.cgroup_v1(cpuacct_usage="", memory_usage="garbage", memory_stat="").memory_bytes == 0


def test_the_host_counts_busy_ticks_and_memory_as_the_root_cgroup():
    proc_stat = "cpu  100 20 30 4000 50 6 4 2 9 0\ncpu0 50 10 15 2000 25 3 2 1 0 0\nintr 1\n"
    meminfo = "MemTotal:       8000 kB\nMemFree:        3000 kB\nInactive(file):  1000 kB\nCached: 7 kB\n"
    reading = usage.host(proc_stat=proc_stat, meminfo=meminfo, ticks_per_s=100)
    # user + nice + system + irq + softirq + steal = 162 ticks of 10 ms (idle, iowait and guest left out)
    assert reading.cpu_ns == 1_620_000_000
    assert reading.memory_bytes == 5000 * 1024 and reading.working_set == 4000 * 1024
    assert usage.memory_total(meminfo) == 8000 * 1024


def test_a_cgroup_is_read_from_v2_files_or_v1_controllers_and_is_none_when_gone(tmp_path: Path):
    v2 = tmp_path / "v2"
    (v2 / "inst/pod1/c1").mkdir(parents=True)
    (v2 / "cgroup.controllers").write_text("cpu memory\n")
    (v2 / "inst/pod1/c1/cpu.stat").write_text("usage_usec 2000\n")
    (v2 / "inst/pod1/c1/memory.current").write_text("8192\n")
    (v2 / "inst/pod1/c1/memory.stat").write_text("inactive_file 1024\n")
    assert stats.read_cgroup("/inst/pod1/c1", cgroup_root=v2) == Usage(2_000_000, 8192, 1024)
    assert stats.read_cgroup("/inst/pod1/gone", cgroup_root=v2) is None
    v1 = tmp_path / "v1"
    (v1 / "cpuacct/inst/pod1/c1").mkdir(parents=True)
    (v1 / "memory/inst/pod1/c1").mkdir(parents=True)
    (v1 / "cpuacct/inst/pod1/c1/cpuacct.usage").write_text("777\n")
    (v1 / "memory/inst/pod1/c1/memory.usage_in_bytes").write_text("4096\n")
    (v1 / "memory/inst/pod1/c1/memory.stat").write_text("total_inactive_file 4096\n")
    assert stats.read_cgroup("/inst/pod1/c1", cgroup_root=v1) == Usage(777, 4096, 4096)
    assert stats.read_cgroup("/inst/pod1/gone", cgroup_root=v1) is None


def _pod(name: str, uid: str, *containers: tuple[str, str, bool], namespace: str = "default") -> dict:
    return {"metadata": {"name": name, "namespace": namespace, "uid": uid, "labels": {"app": name}},
            "status": {"containerStatuses": [
                {"name": c, "containerID": cid, "state": {"running": {}} if running else {"waiting": {}}}
                for c, cid, running in containers]}}


def test_targets_are_the_running_containers_of_real_runtime_pods_bounded():
    pods = [_pod("web", "u1", ("app", "runc://abc", True), ("side", "runc://def", False)),
            _pod("sim", "u2", ("app", "fake://x", True)),
            _pod("bad", "../x", ("app", "runc://ghi", True)),
            {**_pod("gone", "u3", ("app", "runc://jkl", True)),
             "metadata": {"name": "gone", "uid": "u3", "deletionTimestamp": "2026-01-01T00:00:00Z"}}]
    found = stats.targets(pods, "kubelite-0123")
    assert found == [stats.Target("default", "web", "u1", "app", "/kubelite-0123/podu1/abc")]
    many = [_pod(f"p{i}", f"u{i}", ("app", f"runc://c{i}", True)) for i in range(10)]
    assert len(stats.targets(many, "i", limit=3)) == 3


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


def _sampler(time_: FakeTime, cpu_per_s: int = 250_000_000, **kw):
    reads: list[float] = []

    def reader(cgroups):
        reads.append(time_.now)
        counters = {c: Usage(int(time_.now * cpu_per_s), 10 << 20, 2 << 20) for c in cgroups}
        return stats.Reading(time_.now, datetime(2026, 1, 1, tzinfo=timezone.utc), Usage(0, 0, 0), counters)

    return stats.Sampler(reader=reader, sleep=time_.sleep, clock=time_.clock, **kw), reads


def test_the_first_window_reads_twice_a_short_window_apart_later_ones_reuse_a_kept_reading():
    t = FakeTime()
    sampler, reads = _sampler(t, min_window_s=1.0, max_window_s=60.0)
    first = sampler.window(["/c"])
    assert t.sleeps == [1.0] and reads == [100.0, 101.0]
    assert first.seconds == 1.0 and first.cpu("/c") == 250_000_000 and first.memory("/c") == 8 << 20
    t.now += 9.0
    second = sampler.window(["/c"])                   # the newest kept reading at least a second old
    assert t.sleeps == [1.0] and second.before.monotonic == 101.0 and second.seconds == 9.0
    assert second.cpu("/c") == 250_000_000
    t.now += 0.1
    third = sampler.window(["/c"])                    # a fresh reading is shared, its window is kept
    assert reads == [100.0, 101.0, 110.0] and third.before.monotonic == 101.0
    t.now += 0.5
    fourth = sampler.window(["/c"])                   # 0.6 s after the last: the one before that is the base
    assert fourth.before.monotonic == 101.0 and fourth.after.monotonic == 110.6
    assert fourth.cpu("/new") is None                 # a cgroup in neither reading has no rate


def test_old_readings_are_dropped_and_the_kept_ones_bounded():
    t = FakeTime()
    sampler, reads = _sampler(t, min_window_s=1.0, max_window_s=30.0, keep=3)
    sampler.window(["/c"])
    t.now += 100.0                                    # older than the longest window: read anew
    window = sampler.window(["/c"])
    assert window.seconds == pytest.approx(1.0) and t.sleeps == [1.0, 1.0]
    for _ in range(10):
        t.now += 2.0
        sampler.window(["/c"])
    assert len(sampler.readings) == 3


def test_a_partial_window_waits_only_for_what_is_left_of_it():
    t = FakeTime()
    sampler, reads = _sampler(t, min_window_s=1.0)
    sampler.window(["/c"])
    sampler.readings[:] = sampler.readings[-1:]        # one reading, at 101
    t.now += 0.4
    window = sampler.window(["/c"])
    assert t.sleeps[-1] == pytest.approx(0.6) and window.seconds == pytest.approx(1.0)


def _window(cpu_before: int, cpu_after: int, seconds: float) -> stats.Window:
    wall = datetime(2026, 12, 5, 23, 40, 1, tzinfo=timezone.utc)
    before = stats.Reading(10.0, wall, Usage(0, 0, 0), {"/i/podu1/abc": Usage(cpu_before, 0, 0)})
    after = stats.Reading(10.0 + seconds, wall, Usage(4_000_000_000, 3 << 30, 1 << 30),
                          {"/i/podu1/abc": Usage(cpu_after, 50 << 20, 10 << 20)})
    return stats.Window(before, after)


def test_pod_metrics_have_metrics_servers_shape():
    pod = _pod("web", "u1", ("app", "runc://abc", True))
    window = _window(1_000_000_000, 3_000_000_000, 4.0)
    item = metricsapi.pod_metrics(pod, stats.targets([pod], "i"), window)
    assert item == {"kind": "PodMetrics", "apiVersion": "metrics.k8s.io/v1beta1",
                    "metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2026-12-05T23:40:01Z",
                                 "labels": {"app": "web"}},
                    "timestamp": "2026-12-05T23:40:01Z", "window": "4s",
                    "containers": [{"name": "app", "usage": {"cpu": "500000000n", "memory": "40960Ki"}}]}
    # a container without a rate yet leaves its pod out, as metrics-server does
    assert metricsapi.pod_metrics(pod, stats.targets([pod], "other"), window) is None
    node = {"metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1"}}}
    assert metricsapi.node_metrics(node, window)["usage"] == {"cpu": "1000000000n", "memory": f"{2 << 20}Ki"}


@pytest.mark.parametrize("seconds, text", [(4.0, "4s"), (1.0004, "1s"), (15.25, "15.25s"), (1.0126, "1.013s")])
def test_the_window_is_printed_as_a_go_duration(seconds, text):
    assert metricsapi.duration(seconds) == text


def test_kubelite_top_prints_kubectls_columns():
    rows = [top.PodUsage("default", "web", "app", 250_000_000, 52 << 20),
            top.PodUsage("default", "web", "side", 1_500_000, 3 << 20),
            top.PodUsage("kube", "dns", "dns", 0, 1 << 19)]
    assert top.format_pod_top(rows) == (
        "NAME   CPU(cores)   MEMORY(bytes)   \n"
        "web    252m         55Mi            \n"     # containers summed, millicores rounded up as kubectl
        "dns    0m           0Mi             \n")
    assert top.format_pod_top(rows, containers=True, all_namespaces=True).splitlines() == [
        "NAMESPACE   POD   NAME   CPU(cores)   MEMORY(bytes)   ",
        "default     web   app    250m         52Mi            ",
        "default     web   side   2m           3Mi             ",
        "kube        dns   dns    0m           0Mi             "]
    node = top.format_node_top("n1", cpu=1_250_000_000, memory=2 << 30, cpu_capacity_millis=4000,
                               memory_capacity=8 << 30)
    assert node == ("NAME   CPU(cores)   CPU(%)   MEMORY(bytes)   MEMORY(%)   \n"
                    "n1     1250m        31%      2048Mi          25%         \n")
