"""Engine benchmark: `plan()` over 1,000 pods, and `Agent.run_once()` over 1,000 running pods.

Measures (wall clock, `time.perf_counter`; figures are printed, never asserted):

* plan pass — `core.plan.plan()` called once for each of 1,000 pods with 3 app containers, in a
  realistic mix (see `MIX`): most running and idle, some crash-looping (backoff entries; most held,
  some due to restart), some initializing, some terminating, a few new. Median and p95 over
  `PLAN_REPS` passes. Target: < 50 ms.
* agent first pass — one `run_once()` that scans 1,000 manifest files and creates all 1,000 pods
  (3,000 containers) on the `FakeRuntime`, with a real SQLite store in a temporary directory.
* agent steady pass — `run_once()` once all 1,000 pods run: a full runtime relist, then
  `sync_pod` for every pod with nothing to do, and garbage collection. The manual clock moves
  0.5 s between passes, so the periodic manifest rescan (every 20 s) is not part of it; median
  and p95 over `AGENT_PASSES` passes.
* agent pass with rescan — the same pass when the manifest directory is rescanned too, all 1,000
  files unchanged since the last scan (the daemon rescans every `relist_period_s`, 20 s by
  default, and on every inotify hint); `RESCAN_PASSES` passes.

Run: `bench/run`, or `.venv/bin/python -m bench.bench_engine` from the repository root.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from kubelite.agent.agent import Agent, AgentConfig
from kubelite.agent.workers import default_size
from kubelite.api.decode import DesiredPod
from kubelite.core import backoff as backoffs
from kubelite.core.plan import plan
from kubelite.core.types import BackoffEntry, ContainerState, ObservedContainer, ObservedPod, PodRecord
from kubelite.runtime.fake import FakeRuntime
from kubelite.store.store import Store
from tests.helpers import T0, desired, exited, observed, running

from bench.common import (ManualClock, Row, Summary, duration, print_table, record_summary, repeat, summarize, target,
                          timed)

PODS = 1000
CONTAINERS = ("app", "proxy", "logger")
PLAN_REPS = 50
PLAN_TARGET_S = 0.050
AGENT_PASSES = 12
RESCAN_PASSES = 3
#: "now" of the plan benchmark: an hour after every pod started.
NOW = T0 + timedelta(hours=1)

#: The share of each kind of pod in the plan benchmark, per 1,000 (sums to 1,000).
MIX: dict[str, int] = {
    "running": 780,            # 3 running containers, nothing to do
    "running-restarted": 60,   # running, with a previous exited attempt kept for lastState
    "crashloop-held": 60,      # one container exited 20 s ago, held by CrashLoopBackOff
    "crashloop-due": 20,       # one container's backoff has passed: restart it now
    "initializing": 30,        # an init container running
    "initialized": 10,         # the init container succeeded: start the 3 app containers
    "terminating": 20,         # manifest gone: SIGTERM the 3 running containers
    "stopping": 10,            # SIGTERM sent, grace period not over: wait
    "stopped": 5,              # terminating, everything exited: stop the sandbox
    "new": 5,                  # no sandbox yet: create one, start 3 containers
}


# ---------------------------------------------------------------------- plan() inputs


@dataclass(frozen=True)
class PlanInput:
    """One pod's arguments to `plan()`."""

    desired: DesiredPod
    observed: ObservedPod
    record: PodRecord


def _backoff_key(d: DesiredPod, container: str) -> str:
    meta = d.pod.metadata
    return backoffs.stable_key(pod_name=meta.name or "", namespace=meta.namespace, uid=d.uid, container=container,
                               spec_hash=d.container_hashes[container])


def _all_running(d: DesiredPod, *, attempt: int = 0) -> list[ObservedContainer]:
    return [running(d, n, attempt=attempt, cid=f"{d.uid}-{n}-{attempt}") for n in CONTAINERS]


def _crashloop(d: DesiredPod, backoff: dict[str, BackoffEntry], *, held: bool) -> ObservedPod:
    """`logger` crashed five times; its last exit 20 s ago is held (80 s) or 400 s ago is due (160 s)."""
    now_s = (NOW - T0).total_seconds()
    finished = now_s - (20 if held else 400)
    delay = 80.0 if held else 160.0
    key = _backoff_key(d, "logger")
    backoff[key] = BackoffEntry(key, delay, NOW - timedelta(seconds=(now_s - finished) + 40))
    crashes = [exited(d, "logger", 1, attempt=a, started=finished - 30 * (5 - a) - 5, finished=finished - 30 * (5 - a),
                      cid=f"{d.uid}-logger-{a}") for a in (4, 5)]
    return observed(d, *[running(d, n, cid=f"{d.uid}-{n}") for n in CONTAINERS[:2]], *crashes)


def _stopping(d: DesiredPod) -> ObservedPod:
    deadline = NOW + timedelta(seconds=20)
    return observed(d, *[running(d, n, cid=f"{d.uid}-{n}", kill_deadline=deadline) for n in CONTAINERS])


def plan_input(kind: str, i: int, backoff: dict[str, BackoffEntry]) -> PlanInput:
    """Pod number `i` of the given kind, with what the runtime shows for it and what the agent remembers."""
    name = f"{kind}-{i:04d}"
    init = ["setup"] if kind in ("initializing", "initialized") else None
    d = desired(name, containers=list(CONTAINERS), init=init)
    started = PodRecord(start_time=T0)
    terminating = PodRecord(start_time=T0, terminating=True)
    if kind == "running":
        return PlanInput(d, observed(d, *_all_running(d)), started)
    if kind == "running-restarted":
        previous = exited(d, "app", 137, attempt=0, finished=100, reason="OOMKilled", cid=f"{d.uid}-app-0")
        now_running = [running(d, "app", attempt=1, started=110, cid=f"{d.uid}-app-1"),
                       *[running(d, n, cid=f"{d.uid}-{n}") for n in CONTAINERS[1:]]]
        return PlanInput(d, observed(d, previous, *now_running), started)
    if kind in ("crashloop-held", "crashloop-due"):
        return PlanInput(d, _crashloop(d, backoff, held=kind == "crashloop-held"), started)
    if kind == "initializing":
        return PlanInput(d, observed(d, running(d, "setup", cid=f"{d.uid}-setup")), started)
    if kind == "initialized":
        return PlanInput(d, observed(d, exited(d, "setup", 0, finished=5, cid=f"{d.uid}-setup")), started)
    if kind == "terminating":
        return PlanInput(d, observed(d, *_all_running(d)), terminating)
    if kind == "stopping":
        return PlanInput(d, _stopping(d), terminating)
    if kind == "stopped":
        return PlanInput(d, observed(d, *[exited(d, n, 143, cid=f"{d.uid}-{n}") for n in CONTAINERS]), terminating)
    if kind == "new":
        return PlanInput(d, observed(d, sb=None), PodRecord())
    raise ValueError(kind)


def plan_inputs() -> tuple[list[PlanInput], dict[str, BackoffEntry]]:
    """The 1,000 pods of `MIX` and the backoff table the agent would pass to every `plan()` call."""
    backoff: dict[str, BackoffEntry] = {}
    inputs = [plan_input(kind, i, backoff) for kind, count in MIX.items() for i in range(count)]
    return inputs, backoff


def plan_pass(inputs: list[PlanInput], backoff: dict[str, BackoffEntry]) -> int:
    """One `plan()` per pod, as `Agent.sync_pod` calls it; returns how many pods have something to do."""
    busy = 0
    for p in inputs:
        if not plan(p.desired, p.observed, record=p.record, backoff=backoff, now=NOW).idle:
            busy += 1
    return busy


def bench_plan() -> tuple[Summary, int, int]:
    inputs, backoff = plan_inputs()
    busy = plan_pass(inputs, backoff)  # warm-up, and a check that the mix does what it says
    return summarize(repeat(lambda: plan_pass(inputs, backoff), PLAN_REPS)), len(inputs), busy


# ---------------------------------------------------------------------- the agent


def manifest(i: int) -> str:
    """Pod number `i`: three long-running containers (the fake runtime runs them forever)."""
    containers = "".join(f"    - name: {n}\n      image: registry.local/bench/{n}:1.{i % 7}\n"
                         f"      resources:\n        requests: {{cpu: 10m, memory: 16Mi}}\n" for n in CONTAINERS)
    return (f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: pod-{i:04d}\n  namespace: default\n"
            f"  labels:\n    app: bench\n    shard: \"{i % 10}\"\nspec:\n  containers:\n{containers}")


def write_manifests(directory: Path, count: int, render: Callable[[int], str] = manifest) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (directory / f"pod-{i:04d}.yaml").write_text(render(i))


def settle(agent: Agent, clock: ManualClock, *, limit: int = 50) -> int:
    """Run passes until nothing is left to do now; returns how many it took."""
    for n in range(1, limit + 1):
        wake = agent.run_once()
        if wake is None or wake > clock():
            return n
    raise RuntimeError(f"the agent did not settle in {limit} passes")


@dataclass(frozen=True)
class AgentFigures:
    first_pass_s: float
    settle_passes: int
    steady: Summary
    rescan: Summary
    running: int


def _steady_passes(agent: Agent, clock: ManualClock, passes: int) -> list[float]:
    """Passes with nothing to do and no manifest rescan (the clock stays inside the relist period)."""
    scan_due = agent.next_manifest_scan
    samples = []
    for _ in range(passes):
        clock.advance(0.5)
        samples.append(timed(agent.run_once))
    if agent.next_manifest_scan != scan_due:
        raise RuntimeError("a steady pass rescanned the manifests: the clock moved too far")
    return samples


def _rescan_passes(agent: Agent, clock: ManualClock, passes: int) -> list[float]:
    samples = []
    for _ in range(passes):
        clock.advance(0.5)
        agent.hint_manifests()
        samples.append(timed(agent.run_once))
    return samples


def bench_agent(workdir: Path, workers: int = 0) -> AgentFigures:
    manifests, root = workdir / "manifests", workdir / "root"
    write_manifests(manifests, PODS)
    clock = ManualClock(datetime.now(timezone.utc).replace(microsecond=0))
    runtime = FakeRuntime(clock=clock)
    store = Store(root)
    try:
        agent = Agent(store=store, runtime=runtime, clock=clock,
                      config=AgentConfig(manifests=manifests, root=root, node_name="bench", pod_workers=workers))
        first = timed(agent.run_once)
        passes = 1 + settle(agent, clock)
        running_now = sum(c.state is ContainerState.RUNNING for c in runtime.list_containers())
        if running_now != PODS * len(CONTAINERS):
            raise RuntimeError(f"expected {PODS * len(CONTAINERS)} running containers, found {running_now}")
        agent.run_once()  # warm-up
        steady = summarize(_steady_passes(agent, clock, AGENT_PASSES))
        rescan = summarize(_rescan_passes(agent, clock, RESCAN_PASSES))
        agent.close()
        return AgentFigures(first, passes, steady, rescan, running_now)
    finally:
        store.close()


# ---------------------------------------------------------------------- report


def rows(plan_summary: Summary, planned: int, busy: int, agent: AgentFigures, on_workers: AgentFigures,
         workers: int) -> list[Row]:
    per_pod_us = plan_summary.median_s / planned * 1e6
    return [
        Row.of(f"plan() pass, {planned} pods x 3 containers", plan_summary,
               target(PLAN_TARGET_S, plan_summary.median_s),
               f"{per_pod_us:.1f} us/pod; {busy} pods with work; n={plan_summary.n}"),
        Row(f"run_once() first pass, creates {PODS} pods", duration(agent.first_pass_s), "-", "-",
            f"{agent.running} containers started; settled after {agent.settle_passes} passes; n=1"),
        Row.of(f"run_once() steady, {PODS} pods running", agent.steady, "-",
               f"relist + {PODS} idle sync_pod; n={agent.steady.n}"),
        Row.of("run_once() steady + manifest rescan", agent.rescan, "-",
               f"{PODS} files unchanged; every 20 s and per hint; n={agent.rescan.n}"),
        Row(f"run_once() first pass on {workers} pod workers, {PODS} pods", duration(on_workers.first_pass_s), "-",
            "-", f"waits for the workers' syncs; settled after {on_workers.settle_passes} passes; n=1"),
        Row.of(f"run_once() steady on pod workers, {PODS} pods running", on_workers.steady, "-",
               f"relist; only pods that are due are synced (none here); n={on_workers.steady.n}"),
    ]


def main() -> None:
    plan_summary, planned, busy = bench_plan()
    with tempfile.TemporaryDirectory(prefix="kubelite-bench-") as tmp:
        agent = bench_agent(Path(tmp))
    workers = default_size()
    with tempfile.TemporaryDirectory(prefix="kubelite-bench-") as tmp:
        on_workers = bench_agent(Path(tmp), workers)
    print_table("bench_engine: core.plan and Agent.run_once (FakeRuntime, SQLite in a temp dir)",
                rows(plan_summary, planned, busy, agent, on_workers, workers),
                notes=["wall clock (perf_counter); figures are measured, never asserted",
                       "logging unconfigured (WARNING): the daemon also writes an INFO line per event",
                       "plan mix per 1000 pods: " + ", ".join(f"{k} {v}" for k, v in MIX.items())])
    record_summary("engine", [
        Row.of(f"6. plan() pass, {planned} pods (FakeRuntime)", plan_summary,
               target(PLAN_TARGET_S, plan_summary.median_s),
               f"{plan_summary.median_s / planned * 1e6:.1f} us/pod; in-process, no reference"),
        Row.of(f"6. run_once() full relist + sync, {PODS} pods running", agent.steady, "-",
               f"{agent.steady.median_s / PODS * 1e6:.0f} us/pod; FakeRuntime, SQLite; no reference"),
        Row.of(f"6. run_once() on pod workers, {PODS} pods running", on_workers.steady, "-",
               f"relist, due pods only ({workers} workers); FakeRuntime, SQLite"),
    ])


if __name__ == "__main__":
    main()
