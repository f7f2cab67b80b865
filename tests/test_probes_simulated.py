"""Probes in the agent, on the fake runtime under frozen time: outcomes scripted per container
(`fake.kubelite.io/<container>: "liveness=fail-after:10"`), the kubelet's consequences exact."""

from __future__ import annotations

from typing import Any

from kubelite.agent.probing import LoopWake
from tests.helpers import pod_doc
from tests.simulated import simulated_node


def probed(name: str, script: str = "", **probes_: Any) -> dict[str, Any]:
    doc = pod_doc(name)
    doc["spec"]["containers"][0].update({"ports": [{"containerPort": 8080, "name": "http"}], **probes_})
    if script:
        doc["metadata"]["annotations"] = {"fake.kubelite.io/app": script}
    return doc


def http(**fields: Any) -> dict[str, Any]:
    return {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1, **fields}


def messages(node, reason: str) -> list[str]:
    return [e["message"] for e in node.events(reason)]


def test_a_failing_liveness_probe_kills_the_container_and_the_normal_backoff_restarts_it(tmp_path):
    with simulated_node(tmp_path) as node:
        node.write("web.yaml", probed("web", "liveness=fail-after:10", livenessProbe=http(failureThreshold=3)))
        node.settle()
        for _ in range(11):
            node.advance(1)
        assert node.container("web")["restartCount"] == 0 and not messages(node, "Killing")
        for _ in range(3):
            node.advance(1)
        assert messages(node, "Killing") == ["Container app failed liveness probe, will be restarted"]
        unhealthy = [e for e in node.events("Unhealthy")]
        assert unhealthy[0]["message"] == "Liveness probe failed: HTTP probe failed with statuscode: 500"
        assert unhealthy[0]["type"] == "Warning" and unhealthy[0]["count"] == 3
        status = node.container("web")
        assert status["restartCount"] == 1 and "running" in status["state"]  # the first restart is immediate
        assert status["lastState"]["terminated"]["exitCode"] == 143
        # the new container fails again after 10 s: this time CrashLoopBackOff holds it for 10 s
        for _ in range(14):
            node.advance(1)
        assert node.container("web")["state"]["waiting"]["reason"] == "CrashLoopBackOff"
        node.advance(10)
        assert node.container("web")["restartCount"] == 2


def test_readiness_flips_ready_without_restarts(tmp_path):
    with simulated_node(tmp_path) as node:
        node.write("web.yaml", probed("web", "readiness=ok-after:5", readinessProbe=http()))
        node.settle()
        assert node.row("web").ready == "0/1" and node.row("web").status == "Running"
        conditions = {c["type"]: c for c in node.pod("web")["status"]["conditions"]}
        assert conditions["Ready"]["status"] == "False"
        assert conditions["ContainersReady"]["message"] == "containers with unready status: [app]"
        for _ in range(6):
            node.advance(1)
        assert node.row("web").ready == "1/1"
        assert node.container("web")["ready"] is True and node.container("web")["restartCount"] == 0
        assert all("Readiness probe failed" in m for m in messages(node, "Unhealthy"))
        assert not messages(node, "Killing")


def test_a_readiness_probe_that_starts_failing_makes_the_pod_unready_and_nothing_restarts(tmp_path):
    with simulated_node(tmp_path) as node:
        node.write("web.yaml", probed("web", "readiness=fail-after:3",
                                      readinessProbe=http(failureThreshold=2)))
        node.settle()
        node.advance(1)
        assert node.row("web").ready == "1/1"
        for _ in range(5):
            node.advance(1)
        assert node.row("web").ready == "0/1" and node.container("web")["restartCount"] == 0


def test_a_startup_probe_holds_liveness_back_until_it_succeeds(tmp_path):
    with simulated_node(tmp_path) as node:
        # liveness would fail at once, but the startup probe succeeds only after 8 s
        node.write("web.yaml", probed("web", "startup=ok-after:8 liveness=fail",
                                      startupProbe=http(failureThreshold=20), livenessProbe=http(failureThreshold=2)))
        node.settle()
        for _ in range(7):
            node.advance(1)
            assert not messages(node, "Killing")
            assert node.container("web")["started"] is False
        node.advance(1)
        assert node.container("web")["started"] is True and not messages(node, "Killing")
        for _ in range(2):
            node.advance(1)
        assert messages(node, "Killing") == ["Container app failed liveness probe, will be restarted"]


def test_a_startup_probe_that_never_succeeds_restarts_the_container(tmp_path):
    with simulated_node(tmp_path) as node:
        node.write("web.yaml", probed("web", "startup=fail", startupProbe=http(failureThreshold=3)))
        node.settle()
        for _ in range(4):
            node.advance(1)
        assert messages(node, "Killing") == ["Container app failed startup probe, will be restarted"]
        assert node.container("web")["restartCount"] == 1


def test_under_restart_policy_never_a_liveness_failure_stops_the_container_for_good(tmp_path):
    with simulated_node(tmp_path) as node:
        doc = probed("web", "liveness=fail", livenessProbe=http(failureThreshold=1))
        doc["spec"]["restartPolicy"] = "Never"
        node.write("web.yaml", doc)
        node.settle()
        for _ in range(3):
            node.advance(1)
        assert messages(node, "Killing") == ["Container app failed liveness probe"]
        assert node.pod("web")["status"]["phase"] == "Failed"
        assert node.container("web")["restartCount"] == 0


def test_tcp_and_exec_failures_are_worded_like_the_real_ones(tmp_path):
    with simulated_node(tmp_path) as node:
        node.write("web.yaml", probed("web", "readiness=fail", readinessProbe={
            "tcpSocket": {"port": 8080}, "periodSeconds": 1}))
        node.settle()
        node.advance(1)
        ip = node.pod("web")["status"]["podIP"]   # the simulated pod network's address, from the first probe on
        assert messages(node, "Unhealthy") == [f"Readiness probe failed: dial tcp {ip}:8080: connect: "
                                               "connection refused"]


def test_a_restart_of_kubelite_restarts_no_container_and_probes_start_from_their_initial_results(tmp_path):
    with simulated_node(tmp_path) as node:
        node.write("web.yaml", probed("web", livenessProbe=http(), readinessProbe=http()))
        node.settle()
        node.advance(1)
        assert node.row("web").ready == "1/1"
        node.restart_agent()
        node.settle()
        assert node.row("web").ready == "0/1"   # readiness starts as Failure, as the kubelet's
        node.advance(1)
        assert node.row("web").ready == "1/1"
        assert node.container("web")["restartCount"] == 0 and not messages(node, "Killing")


def test_a_deleted_pod_stops_its_probes(tmp_path):
    with simulated_node(tmp_path) as node:
        path = node.write("web.yaml", probed("web", readinessProbe=http()))
        node.settle()
        node.advance(1)
        assert node.agent.probing.sent
        path.unlink()
        node.agent.hint_manifests()
        node.advance(3)
        assert not node.agent.probing.sent and not node.agent.probing.states
        assert node.agent.probing.prober.next_due() is None


def test_the_loop_wake_tells_probe_runs_apart_from_other_work():
    wake = LoopWake()
    wake.set_for_probes()
    assert wake.is_set() and wake.take() is False and not wake.is_set()
    wake.set_for_probes()
    wake.set()
    assert wake.take() is True
    assert wake.take() is False


def test_between_passes_runs_that_change_nothing_are_absorbed_and_a_change_asks_for_a_pass(tmp_path):
    with simulated_node(tmp_path) as node:
        node.write("web.yaml", probed("web", "readiness=ok-after:3", readinessProbe=http()))
        node.settle()
        node.clock.tick(1)
        node.agent.wake.clear()
        assert node.agent.absorb_probe_outcomes() is False  # a failure, as before: only its event
        assert messages(node, "Unhealthy") == ["Readiness probe failed: HTTP probe failed with statuscode: 500"]
        assert node.row("web").ready == "0/1"
        node.clock.tick(2)
        assert node.agent.absorb_probe_outcomes() is True   # the result turned: a pass is due
        node.settle()
        assert node.row("web").ready == "1/1"
        node.agent.hint_manifests()
        assert node.agent.absorb_probe_outcomes() is True   # anything else woke the loop


def test_a_startup_probe_run_queued_behind_its_success_does_not_count(tmp_path):
    # the kubelet stops running the startup probe once it has succeeded: a slow pass that lets a
    # success and then a failure queue up must not turn the container into a startup failure
    with simulated_node(tmp_path) as node:
        node.write("web.yaml", probed("web", "startup=fail-after:2",
                                      startupProbe=http(failureThreshold=1, initialDelaySeconds=1),
                                      readinessProbe=http()))
        node.settle()
        assert node.container("web")["started"] is False
        node.clock.tick(2)          # one pass late: runs at 1 s (success) and 2 s (failure) wait together
        node.settle()
        assert not messages(node, "Killing") and not messages(node, "Unhealthy")
        status = node.container("web")
        assert status["started"] is True and status["restartCount"] == 0 and "running" in status["state"]
        node.advance(1)
        assert node.row("web").ready == "1/1" and not messages(node, "Killing")
