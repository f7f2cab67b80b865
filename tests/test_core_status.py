"""pod_status(): container statuses, getPhase and conditions as the kubelet computes them."""

from __future__ import annotations

import pytest

from kubelite.api.models import PodStatus
from kubelite.core.status import phase, pod_status, qos_class
from kubelite.core.types import BackoffHold, PodRecord, StartError
from tests.helpers import at, desired, exited, observed, running, sandbox


def conditions(status) -> dict[str, str]:
    return {c["type"]: c["status"] for c in status["conditions"]}


def test_a_new_pod_is_pending_with_containercreating():
    d = desired()
    s = pod_status(d, observed(d, sb=None), record=PodRecord(), now=at(0))
    assert s["phase"] == "Pending"
    assert s["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}
    assert conditions(s) == {"PodReadyToStartContainers": "False", "Initialized": "True", "Ready": "False",
                             "ContainersReady": "False", "PodScheduled": "True"}
    PodStatus.model_validate(s)  # the dict is a valid v1 PodStatus


def test_a_running_pod_is_ready():
    d = desired()
    s = pod_status(d, observed(d, running(d, "app", started=1)), record=PodRecord(start_time=at(0)), now=at(2))
    assert s["phase"] == "Running" and s["startTime"] == "2026-11-28T06:00:00Z"
    cs = s["containerStatuses"][0]
    assert cs["ready"] and cs["started"] and cs["state"] == {"running": {"startedAt": "2026-11-28T06:00:01Z"}}
    assert cs["containerID"] == "fake://app-0"
    assert all(v == "True" for v in conditions(s).values())


def test_a_crash_looping_container_shows_waiting_crashloopbackoff_with_last_state():
    d = desired()
    hold = BackoffHold("app", at(30), 20, "back-off 20s restarting failed container=app pod=web_default(x)")
    obs = observed(d, exited(d, "app", 1, attempt=3, started=9, finished=10), exited(d, "app", 1, attempt=2))
    s = pod_status(d, obs, record=PodRecord(), now=at(12), holds=[hold])
    cs = s["containerStatuses"][0]
    assert cs["state"] == {"waiting": {"reason": "CrashLoopBackOff", "message": hold.message}}
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    assert cs["lastState"]["terminated"]["reason"] == "Error"
    assert cs["lastState"]["terminated"]["finishedAt"] == "2026-11-28T06:00:10Z"
    assert cs["restartCount"] == 3 and not cs["ready"]
    assert s["phase"] == "Running"  # Always: restarting counts as running


def test_last_state_is_the_previous_attempt_while_the_new_one_runs():
    d = desired()
    obs = observed(d, running(d, "app", attempt=1, started=5), exited(d, "app", 137, reason="OOMKilled"))
    cs = pod_status(d, obs, record=PodRecord(), now=at(6))["containerStatuses"][0]
    assert cs["restartCount"] == 1
    assert cs["lastState"]["terminated"]["reason"] == "OOMKilled"
    assert cs["lastState"]["terminated"]["exitCode"] == 137


@pytest.mark.parametrize("policy, codes, expected", [
    ("Never", [0], "Succeeded"), ("Never", [1], "Failed"), ("Never", [0, 1], "Failed"),
    ("OnFailure", [0], "Succeeded"), ("OnFailure", [0, 0], "Succeeded"),
    ("Always", [0], "Running"), ("Always", [1], "Running"),
])
def test_phase_of_a_pod_whose_containers_all_exited(policy, codes, expected):
    names = [f"c{i}" for i in range(len(codes))]
    d = desired(containers=names, restartPolicy=policy)
    obs = observed(d, *[exited(d, n, code) for n, code in zip(names, codes)])
    assert pod_status(d, obs, record=PodRecord(), now=at(5))["phase"] == expected


def test_completed_containers_show_terminated_completed():
    d = desired(restartPolicy="Never")
    cs = pod_status(d, observed(d, exited(d, "app", 0)), record=PodRecord(), now=at(5))["containerStatuses"][0]
    assert cs["state"]["terminated"]["reason"] == "Completed"


def test_an_initializing_pod_is_pending_and_app_containers_say_podinitializing():
    d = desired(init=["setup"])
    s = pod_status(d, observed(d, running(d, "setup")), record=PodRecord(), now=at(1))
    assert s["phase"] == "Pending"
    assert s["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"
    init = {c["type"]: c for c in s["conditions"]}["Initialized"]
    assert init["status"] == "False" and init["reason"] == "ContainersNotInitialized"
    assert init["message"] == "containers with incomplete status: [setup]"


def test_a_failed_init_container_under_never_fails_the_pod():
    d = desired(init=["setup"], restartPolicy="Never")
    s = pod_status(d, observed(d, exited(d, "setup", 1)), record=PodRecord(), now=at(1))
    assert s["phase"] == "Failed"


def test_a_failed_init_container_under_always_keeps_the_pod_pending():
    d = desired(init=["setup"])
    hold = BackoffHold("setup", at(20), 10, "back-off 10s restarting failed container=setup pod=web_default(x)")
    s = pod_status(d, observed(d, exited(d, "setup", 1)), record=PodRecord(), now=at(1), holds=[hold])
    assert s["phase"] == "Pending"
    assert s["initContainerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff"


def test_a_sidecar_counts_towards_readiness():
    d = desired(sidecars=["proxy"])
    s = pod_status(d, observed(d, running(d, "proxy"), running(d, "app")), record=PodRecord(), now=at(1))
    assert s["phase"] == "Running" and conditions(s)["Ready"] == "True"
    assert s["initContainerStatuses"][0]["ready"]


def test_a_start_error_is_the_waiting_reason():
    d = desired()
    s = pod_status(d, observed(d), record=PodRecord(), now=at(1),
                   start_errors={"app": StartError("CreateContainerError", "boom")})
    assert s["containerStatuses"][0]["state"] == {"waiting": {"reason": "CreateContainerError", "message": "boom"}}


def test_deadline_exceeded_is_a_pod_level_reason():
    d = desired(activeDeadlineSeconds=5)
    record = PodRecord(failed_reason="DeadlineExceeded", failed_message="m", terminal_phase="Failed")
    s = pod_status(d, observed(d, exited(d, "app", 137)), record=record, now=at(6))
    assert (s["phase"], s["reason"], s["message"]) == ("Failed", "DeadlineExceeded", "m")


def test_condition_transition_times_only_change_with_the_status():
    d = desired()
    first = pod_status(d, observed(d, running(d, "app")), record=PodRecord(), now=at(1))
    later = pod_status(d, observed(d, running(d, "app")), record=PodRecord(), now=at(9),
                       previous_conditions=first["conditions"])
    assert later["conditions"] == first["conditions"]
    crashed = pod_status(d, observed(d, exited(d, "app", 1)), record=PodRecord(), now=at(10),
                         previous_conditions=first["conditions"])
    ready = {c["type"]: c for c in crashed["conditions"]}["Ready"]
    assert ready["status"] == "False" and ready["lastTransitionTime"] == "2026-11-28T06:00:10Z"


@pytest.mark.parametrize("resources, expected", [
    ({}, "BestEffort"),
    ({"requests": {"cpu": "100m"}}, "Burstable"),
    ({"limits": {"cpu": "1", "memory": "64Mi"}}, "Guaranteed"),
    ({"limits": {"cpu": "1", "memory": "64Mi"}, "requests": {"cpu": "1000m", "memory": "64Mi"}}, "Guaranteed"),
    ({"limits": {"cpu": "1", "memory": "64Mi"}, "requests": {"cpu": "500m"}}, "Burstable"),
])
def test_qos_class(resources, expected):
    from tests.helpers import pod_doc
    from kubelite.api.decode import decode_document

    doc = pod_doc()
    doc["spec"]["containers"][0]["resources"] = resources
    assert qos_class(decode_document(doc, source="x").desired.pod) == expected


def test_getphase_counts_waiting_without_last_termination_as_pending():
    d = desired(containers=["a", "b"])
    statuses = [{"name": "a", "state": {"running": {}}, "lastState": {}},
                {"name": "b", "state": {"waiting": {"reason": "ContainerCreating"}}, "lastState": {}}]
    assert phase(d.pod, [], statuses, initialized=True) == "Pending"


def test_a_not_ready_sandbox_sets_podreadytostartcontainers_false():
    d = desired()
    s = pod_status(d, observed(d, exited(d, "app", 1), sb=sandbox(d, ready=False)), record=PodRecord(), now=at(1))
    assert conditions(s)["PodReadyToStartContainers"] == "False"
