"""plan(): the kubelet's computePodActions rules, table-driven, with explicit `now`."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from kubelite.core import backoff as backoffs
from kubelite.core.plan import plan, should_restart
from kubelite.core.types import (
    BackoffEntry, BackoffPolicy, ContainerState, PodRecord, PodWait, ProbeResult, StopReason, WaitReason,
)
from tests.helpers import at, desired, exited, observed, running, sandbox


def names(actions) -> list[str]:
    return [s.name for s in actions.to_start]


# ------------------------------------------------------------------ ShouldContainerBeRestarted

@pytest.mark.parametrize("policy, code, restart", [
    ("Always", 0, True), ("Always", 1, True), ("Always", 137, True),
    ("OnFailure", 0, False), ("OnFailure", 1, True), ("OnFailure", 143, True),
    ("Never", 0, False), ("Never", 1, False), ("Never", 137, False),
])
def test_an_exited_container_is_restarted_by_the_restart_policy(policy, code, restart):
    d = desired(restartPolicy=policy)
    assert should_restart(exited(d, "app", code), policy) is restart


@pytest.mark.parametrize("policy, code, starts", [
    ("Always", 0, ["app"]), ("Always", 1, ["app"]),
    ("OnFailure", 0, []), ("OnFailure", 1, ["app"]),
    ("Never", 0, []), ("Never", 1, []),
])
def test_plan_restarts_an_exited_container_per_policy_and_the_first_restart_is_immediate(policy, code, starts):
    d = desired(restartPolicy=policy)
    actions = plan(d, observed(d, exited(d, "app", code, finished=5)), record=PodRecord(), backoff={}, now=at(5))
    assert names(actions) == starts
    assert actions.backoff_holds == ()
    if starts:
        assert actions.to_start[0].attempt == 1
        assert [e.backoff_s for e in actions.backoff_updates] == [10.0]
    else:
        assert actions.kill_pod, "a pod with nothing left to run has its sandbox stopped"


def test_a_container_killed_for_a_changed_definition_restarts_even_under_never():
    d = desired(restartPolicy="Never")
    c = exited(d, "app", 143, stop_reason=StopReason.DEFINITION_CHANGED, spec_hash="old")
    assert should_restart(c, "Never")
    actions = plan(d, observed(d, c), record=PodRecord(), backoff={}, now=at(2))
    assert names(actions) == ["app"] and actions.backoff_holds == ()


def created(d, name: str, *, attempt: int = 0, spec_hash: str | None = None, sandbox_id: str = "sb"):
    c = running(d, name, attempt=attempt, spec_hash=spec_hash)
    return dataclasses.replace(c, state=ContainerState.CREATED, started_at=None, sandbox_id=sandbox_id)


@pytest.mark.parametrize("case, expected", [
    ("current", ("app", 0, "app-0")),                  # kubelite stopped between create and start: start it
    ("other sandbox", ("app", 1, None)),               # made in a sandbox that is gone: a new container
    ("changed spec", ("app", 1, None)),                # its definition changed meanwhile: a new container
    ("sandbox not ready", None),                       # a new sandbox first
])
def test_a_container_created_but_never_started_is_started_as_it_is(case, expected):
    d = desired()
    c = created(d, "app", spec_hash="old" if case == "changed spec" else None,
                sandbox_id="other" if case == "other sandbox" else "sb")
    sb = sandbox(d, ready=case != "sandbox not ready")
    actions = plan(d, observed(d, c, sb=sb), record=PodRecord(), backoff={}, now=at(5))
    if expected is None:
        assert actions.create_sandbox and [s.created_id for s in actions.to_start] == [None]
        return
    [start] = actions.to_start
    assert (start.name, start.attempt, start.created_id) == expected
    assert actions.backoff_holds == () and start.backoff_update is None


# ------------------------------------------------------------------ CrashLoopBackOff

def test_backoff_sequence_is_0_10_20_40_80_160_300_300_seconds():
    """Crash immediately after every start: the waits before restarts 1..8 follow the kubelet."""
    d = desired()
    policy = BackoffPolicy()
    store: dict[str, BackoffEntry] = {}
    now = at(0)
    waits = []
    attempt = 0
    finished = now
    for _ in range(8):
        c = exited(d, "app", 1, attempt=attempt, started=(finished - at(0)).total_seconds(),
                   finished=(finished - at(0)).total_seconds())
        actions = plan(d, observed(d, c), record=PodRecord(), backoff=store, now=finished, policy=policy)
        if actions.backoff_holds:
            hold = actions.backoff_holds[0]
            assert actions.next_wakeup == hold.until
            restart_at = hold.until
            actions = plan(d, observed(d, c), record=PodRecord(), backoff=store, now=restart_at, policy=policy)
        else:
            restart_at = finished
        assert names(actions) == ["app"]
        waits.append((restart_at - finished).total_seconds())
        for e in actions.backoff_updates:
            store[e.key] = e
        attempt += 1
        finished = restart_at  # it crashes at once
    assert waits == [0, 10, 20, 40, 80, 160, 300, 300]


def test_a_held_restart_says_crashloopbackoff_with_the_kubelet_message():
    d = desired()
    key = backoffs.stable_key(pod_name="web", namespace="default", uid=d.uid, container="app",
                              spec_hash=d.container_hashes["app"])
    entry = BackoffEntry(key, 20.0, at(100))
    actions = plan(d, observed(d, exited(d, "app", 1, attempt=3, finished=101)), record=PodRecord(),
                   backoff={key: entry}, now=at(105))
    assert actions.to_start == ()
    [hold] = actions.backoff_holds
    assert hold.until == at(121)
    assert hold.message == f"back-off 20s restarting failed container=app pod=web_default({d.uid})"
    assert not actions.kill_pod, "a held container keeps the pod alive"


def test_backoff_resets_after_ten_minutes_of_running():
    d = desired()
    key = backoffs.stable_key(pod_name="web", namespace="default", uid=d.uid, container="app",
                              spec_hash=d.container_hashes["app"])
    entry = BackoffEntry(key, 300.0, at(0))
    c = exited(d, "app", 1, attempt=7, started=0, finished=601)
    actions = plan(d, observed(d, c), record=PodRecord(), backoff={key: entry}, now=at(601))
    assert names(actions) == ["app"]
    assert [e.backoff_s for e in actions.backoff_updates] == [10.0]


def test_a_spec_edit_starts_a_fresh_backoff():
    d = desired()
    old_key = backoffs.stable_key(pod_name="web", namespace="default", uid=d.uid, container="app",
                                  spec_hash="previous-hash")
    actions = plan(d, observed(d, exited(d, "app", 1, finished=10)), record=PodRecord(),
                   backoff={old_key: BackoffEntry(old_key, 300.0, at(9))}, now=at(10))
    assert names(actions) == ["app"]


@pytest.mark.parametrize("initial, maximum, expected", [(1, 60, [0, 1, 2, 4, 8, 16, 32, 60, 60]),
                                                        (10, 30, [0, 10, 20, 30, 30])])
def test_backoff_delays_are_configurable(initial, maximum, expected):
    policy = BackoffPolicy(initial_s=initial, max_s=maximum)
    entry = None
    waits = []
    now = at(0)
    for _ in expected:
        until = backoffs.held_until(entry, finished_at=now, now=now, policy=policy)
        start = until or now
        waits.append((start - now).total_seconds())
        entry = backoffs.next_entry(entry, key="k", finished_at=now, now=start, policy=policy)
        now = start
    assert waits == expected


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (10, "10s"), (59, "59s"), (80, "1m20s"), (300, "5m0s"),
                                           (3600, "1h0m0s")])
def test_go_duration(seconds, text):
    assert backoffs.go_duration(seconds) == text


# ------------------------------------------------------------------ sandbox

def test_a_new_pod_gets_a_sandbox_and_all_app_containers():
    d = desired(containers=["a", "b", "c"])
    actions = plan(d, observed(d, sb=None), record=PodRecord(), backoff={}, now=at(0))
    assert actions.create_sandbox and actions.sandbox_attempt == 0
    assert names(actions) == ["a", "b", "c"]


def test_a_lost_sandbox_is_recreated_with_restart_counts_kept():
    d = desired()
    c = exited(d, "app", 137, attempt=4, reason="ContainerStatusUnknown")
    actions = plan(d, observed(d, c, sb=sandbox(d, ready=False, attempt=2)), record=PodRecord(), backoff={},
                   now=at(5))
    assert actions.create_sandbox and actions.sandbox_attempt == 3
    assert [(s.name, s.attempt) for s in actions.to_start] == [("app", 5)]


def test_never_policy_does_not_recreate_a_sandbox_for_a_pod_that_ran():
    d = desired(restartPolicy="Never")
    actions = plan(d, observed(d, exited(d, "app", 0), sb=sandbox(d, ready=False)), record=PodRecord(),
                   backoff={}, now=at(5))
    assert not actions.create_sandbox and actions.to_start == ()


def test_onfailure_sandbox_recreation_skips_containers_that_succeeded():
    d = desired(containers=["ok", "bad"], restartPolicy="OnFailure")
    obs = observed(d, exited(d, "ok", 0), exited(d, "bad", 1), sb=sandbox(d, ready=False))
    actions = plan(d, obs, record=PodRecord(), backoff={}, now=at(5))
    assert actions.create_sandbox and names(actions) == ["bad"]


def test_a_pod_level_change_stops_every_container_then_recreates_the_sandbox():
    d = desired(containers=["a", "b"])
    obs = observed(d, running(d, "a"), running(d, "b"), sb=sandbox(d, sandbox_hash="old"))
    actions = plan(d, obs, record=PodRecord(), backoff={}, now=at(5))
    assert {k.name for k in actions.to_kill} == {"a", "b"} and not actions.create_sandbox


# ------------------------------------------------------------------ updates

def test_a_changed_container_is_stopped_and_the_others_are_untouched():
    d = desired(containers=["a", "b", "c"])
    obs = observed(d, running(d, "a"), running(d, "b", spec_hash="old"), running(d, "c"))
    actions = plan(d, obs, record=PodRecord(), backoff={}, now=at(5))
    [kill] = actions.to_kill
    assert (kill.name, kill.signal, kill.grace_s) == ("b", "TERM", 30)
    assert kill.stop_reason is StopReason.DEFINITION_CHANGED
    assert kill.message == "Container b definition changed, will be restarted"
    assert actions.to_start == () and not actions.kill_pod


def test_a_container_removed_from_the_spec_is_stopped():
    d = desired(containers=["a"])
    obs = observed(d, running(d, "a"), running(d, "gone", spec_hash="x"))
    actions = plan(d, obs, record=PodRecord(), backoff={}, now=at(5))
    assert [(k.name, k.stop_reason) for k in actions.to_kill] == [("gone", StopReason.REMOVED)]


def test_a_liveness_failure_kills_and_the_exit_restarts_unless_never():
    d = desired()
    c = running(d, "app")
    actions = plan(d, observed(d, c), record=PodRecord(), backoff={}, now=at(5),
                   probes={(c.id, "liveness"): ProbeResult.FAILURE})
    [kill] = actions.to_kill
    assert kill.message == "Container app failed liveness probe, will be restarted"


# ------------------------------------------------------------------ termination

def test_termination_sends_term_then_kill_after_the_grace_period():
    d = desired(terminationGracePeriodSeconds=5)
    c = running(d, "app")
    record = PodRecord(terminating=True)
    first = plan(d, observed(d, c), record=record, backoff={}, now=at(10))
    [kill] = first.to_kill
    assert (kill.signal, kill.grace_s, kill.message) == ("TERM", 5, "Stopping container app")
    stopping = running(d, "app", kill_deadline=at(15), stop_reason=StopReason.POD_TERMINATION)
    waiting = plan(d, observed(d, stopping), record=record, backoff={}, now=at(12))
    assert waiting.to_kill == () and waiting.next_wakeup == at(15)
    late = plan(d, observed(d, stopping), record=record, backoff={}, now=at(15))
    assert [(k.signal, k.name) for k in late.to_kill] == [("KILL", "app")]


@pytest.mark.parametrize("grace, effective", [(0, 2), (1, 2), (2, 2), (30, 30)])
def test_the_grace_period_is_at_least_two_seconds(grace, effective):
    d = desired(terminationGracePeriodSeconds=grace)
    actions = plan(d, observed(d, running(d, "app")), record=PodRecord(terminating=True), backoff={}, now=at(1))
    assert actions.to_kill[0].grace_s == effective


def test_sidecars_stop_after_the_app_containers():
    d = desired(containers=["app"], sidecars=["proxy"])
    obs = observed(d, running(d, "proxy"), running(d, "app"))
    first = plan(d, obs, record=PodRecord(terminating=True), backoff={}, now=at(1))
    assert [k.name for k in first.to_kill] == ["app"]
    obs = observed(d, running(d, "proxy"), exited(d, "app", 143))
    second = plan(d, obs, record=PodRecord(terminating=True), backoff={}, now=at(2))
    assert [k.name for k in second.to_kill] == ["proxy"] and not second.pod_stopped
    done = plan(d, observed(d, exited(d, "proxy", 143), exited(d, "app", 143)), record=PodRecord(terminating=True),
                backoff={}, now=at(3))
    assert done.pod_stopped and done.kill_pod


def test_active_deadline_fails_the_pod_and_stops_it():
    d = desired(activeDeadlineSeconds=60)
    before = plan(d, observed(d, running(d, "app")), record=PodRecord(start_time=at(0)), backoff={}, now=at(59))
    assert before.fail_pod is None and before.next_wakeup == at(60)
    after = plan(d, observed(d, running(d, "app")), record=PodRecord(start_time=at(0)), backoff={}, now=at(60))
    assert after.fail_pod == ("DeadlineExceeded", "Pod was active on the node longer than the specified deadline")
    assert after.terminal_phase == "Failed" and [k.name for k in after.to_kill] == ["app"]


# ------------------------------------------------------------------ init containers and sidecars

def test_init_containers_run_one_at_a_time_in_order():
    d = desired(init=["one", "two"], containers=["app"])
    assert names(plan(d, observed(d, sb=None), record=PodRecord(), backoff={}, now=at(0))) == ["one"]
    assert names(plan(d, observed(d, running(d, "one")), record=PodRecord(), backoff={}, now=at(1))) == []
    assert names(plan(d, observed(d, exited(d, "one", 0)), record=PodRecord(), backoff={}, now=at(2))) == ["two"]
    done = observed(d, exited(d, "one", 0), exited(d, "two", 0))
    assert names(plan(d, done, record=PodRecord(), backoff={}, now=at(3))) == ["app"]


@pytest.mark.parametrize("policy", ["Always", "OnFailure"])
def test_a_failed_init_container_is_retried_with_backoff(policy):
    d = desired(init=["setup"], restartPolicy=policy)
    actions = plan(d, observed(d, exited(d, "setup", 1)), record=PodRecord(), backoff={}, now=at(2))
    assert [(s.name, s.attempt, s.init) for s in actions.to_start] == [("setup", 1, True)]
    assert actions.backoff_updates


def test_a_failed_init_container_under_never_fails_the_pod():
    d = desired(init=["setup"], restartPolicy="Never")
    actions = plan(d, observed(d, exited(d, "setup", 1)), record=PodRecord(), backoff={}, now=at(2))
    assert actions.to_start == () and actions.kill_pod


def test_a_sidecar_must_be_running_before_the_next_init_container_and_keeps_running():
    d = desired(sidecars=["proxy"], init=[], containers=["app"])
    assert names(plan(d, observed(d, sb=None), record=PodRecord(), backoff={}, now=at(0))) == ["proxy"]
    assert names(plan(d, observed(d, running(d, "proxy")), record=PodRecord(), backoff={}, now=at(1))) == ["app"]


def test_a_sidecar_is_restarted_whatever_the_pod_policy_while_the_app_runs():
    d = desired(sidecars=["proxy"], restartPolicy="Never")
    obs = observed(d, exited(d, "proxy", 1), running(d, "app"))
    actions = plan(d, obs, record=PodRecord(), backoff={}, now=at(5))
    assert names(actions) == ["proxy"]


def test_when_the_app_containers_are_done_the_sidecars_are_stopped_not_restarted():
    d = desired(sidecars=["proxy"], restartPolicy="Never")
    obs = observed(d, running(d, "proxy"), exited(d, "app", 0))
    actions = plan(d, obs, record=PodRecord(), backoff={}, now=at(5))
    assert actions.kill_pod and [k.name for k in actions.to_kill] == ["proxy"] and actions.to_start == ()


def test_regular_init_containers_never_rerun_once_app_containers_exist():
    d = desired(init=["setup"])
    obs = observed(d, running(d, "app"))  # the init container's record was garbage-collected
    assert plan(d, obs, record=PodRecord(), backoff={}, now=at(5)).idle


def test_plan_is_pure_the_same_inputs_give_the_same_actions():
    d = desired(containers=["a", "b"])
    obs = observed(d, exited(d, "a", 1, finished=3), running(d, "b"))
    first = plan(d, obs, record=PodRecord(), backoff={}, now=at(3))
    second = plan(d, obs, record=PodRecord(), backoff={}, now=at(3))
    assert first == second


def test_an_unknown_container_is_restarted():
    d = desired()
    c = running(d, "app")
    from dataclasses import replace
    unknown = replace(c, state=ContainerState.UNKNOWN)
    actions = plan(d, observed(d, unknown), record=PodRecord(), backoff={}, now=at(1) + timedelta(seconds=1))
    assert names(actions) == ["app"]


def test_once_the_old_sandboxs_containers_are_gone_it_is_stopped_with_the_new_one_created():
    # computePodActions: a new sandbox means KillPod (containers and sandbox), then CreateSandbox
    d = desired(containers=["a", "b"])
    obs = observed(d, exited(d, "a", 137), exited(d, "b", 137), sb=sandbox(d, sandbox_hash="old"))
    actions = plan(d, obs, record=PodRecord(), backoff={}, now=at(5))
    assert actions.stop_sandbox and actions.kill_pod
    assert actions.create_sandbox and actions.sandbox_attempt == 1 and names(actions) == ["a", "b"]


def test_a_pod_level_change_under_never_still_stops_the_old_sandbox():
    d = desired(restartPolicy="Never")
    obs = observed(d, exited(d, "app", 137), sb=sandbox(d, sandbox_hash="old"))
    actions = plan(d, obs, record=PodRecord(), backoff={}, now=at(5))
    assert actions.stop_sandbox and not actions.create_sandbox and actions.to_start == ()


def test_a_dead_sandbox_is_not_stopped_again():
    d = desired()
    obs = observed(d, exited(d, "app", 137), sb=sandbox(d, ready=False))
    actions = plan(d, obs, record=PodRecord(), backoff={}, now=at(5))
    assert not actions.stop_sandbox and actions.create_sandbox


# ---------------------------------------------------------------------- waits: every hold is plan()'s

def crashed_pod():
    """Two app containers: `a` crashed once (its first restart is due now), `b` runs."""
    d = desired(containers=["a", "b"])
    return d, observed(d, exited(d, "a", 1, finished=4), running(d, "b"))


@pytest.mark.parametrize("reason", list(WaitReason))
@pytest.mark.parametrize("case", ["new pod", "restart due"])
def test_a_wait_holds_every_start_and_the_sandbox_until_it_ends(reason, case):
    # held by ImagePullBackOff, ErrImagePull, a pull in progress, the sync-retry pause, a config wait
    d, obs = (desired(), observed(desired(), sb=None)) if case == "new pod" else crashed_pod()
    wait = PodWait(reason, at(30))
    held = plan(d, obs, record=PodRecord(), backoff={}, now=at(5), waiting=wait)
    assert held.to_start == () and held.backoff_updates == () and not held.create_sandbox
    assert held.waiting == wait and held.next_wakeup == at(30)
    assert not held.kill_pod, "a waiting pod is not stopped"
    over = plan(d, obs, record=PodRecord(), backoff={}, now=at(30), waiting=wait)
    assert names(over) == (["app"] if case == "new pod" else ["a"]) and over.waiting is None
    assert over.create_sandbox == (case == "new pod")


def test_a_wait_never_holds_a_kill_or_a_pod_failure():
    d = desired(activeDeadlineSeconds=10)
    c = running(d, "app")
    wait = PodWait(WaitReason.SYNC_ERROR, at(60))
    actions = plan(d, observed(d, c), record=PodRecord(start_time=at(0)), backoff={}, now=at(11), waiting=wait)
    assert actions.fail_pod is not None and [k.name for k in actions.to_kill] == ["app"]
    probed = plan(desired(), observed(desired(), running(desired(), "app")), record=PodRecord(), backoff={},
                  now=at(5), probes={("app-0", "liveness"): ProbeResult.FAILURE}, waiting=wait)
    assert [k.stop_reason for k in probed.to_kill] == [StopReason.LIVENESS]


def test_a_container_whose_image_is_being_pulled_waits_and_takes_no_backoff_step():
    d, obs = crashed_pod()
    key = backoffs.stable_key(pod_name="web", namespace="default", uid=d.uid, container="a",
                              spec_hash=d.container_hashes["a"])
    free = plan(d, obs, record=PodRecord(), backoff={}, now=at(5))
    assert names(free) == ["a"] and [e.key for e in free.backoff_updates] == [key]
    pulling = plan(d, obs, record=PodRecord(), backoff={}, now=at(5), pulling=frozenset({"a"}))
    assert pulling.to_start == () and pulling.backoff_updates == ()
    assert not pulling.kill_pod, "a container waiting for its image keeps the pod alive"


def test_a_new_pod_whose_image_is_being_pulled_gets_its_sandbox_and_starts_the_others():
    d = desired(containers=["a", "b"])
    actions = plan(d, observed(d, sb=None), record=PodRecord(), backoff={}, now=at(0), pulling=frozenset({"a"}))
    assert actions.create_sandbox and names(actions) == ["b"]


def test_a_container_held_by_its_pull_is_named_in_the_plan_and_only_while_it_would_start():
    d, obs = crashed_pod()
    assert plan(d, obs, record=PodRecord(), backoff={}, now=at(5), pulling=frozenset({"a"})).pull_held == ("a",)
    assert plan(d, obs, record=PodRecord(), backoff={}, now=at(5)).pull_held == ()
    stopping = plan(d, obs, record=PodRecord(terminating=True), backoff={}, now=at(5), pulling=frozenset({"a"}))
    assert stopping.pull_held == (), "a terminating pod starts nothing, so nothing waits for a pull"


def test_the_plan_is_immutable():
    d = desired()
    actions = plan(d, observed(d, sb=None), record=PodRecord(), backoff={}, now=at(0))
    assert isinstance(actions.to_start, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        actions.create_sandbox = False  # type: ignore[misc]
