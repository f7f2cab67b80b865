"""core.probes: the kubelet prober worker's rules as pure functions — thresholds, gating, targets, events."""

from __future__ import annotations

from dataclasses import replace

import pytest

from kubelite.api.decode import decode_document
from kubelite.core import probes
from kubelite.core.status import pod_status
from kubelite.core.types import PodRecord, ProbeOutcome, ProbeResult
from tests.helpers import at, observed, pod_doc, running

S, F, U = ProbeResult.SUCCESS, ProbeResult.FAILURE, ProbeResult.UNKNOWN


def pod_with(**container_fields):
    doc = pod_doc()
    doc["spec"]["containers"][0].update(container_fields)
    decoded = decode_document(doc, source="/m/web.yaml")
    assert decoded.desired is not None, decoded.errors
    return decoded.desired


def probe(**fields):
    return {"exec": {"command": ["true"]}, **fields}


def run(kind, spec, results, state=None):
    state = state or probes.initial_state(kind)
    seen = []
    for r in results:
        state = probes.observe(state, kind, spec, r)
        seen.append(state.result)
    return state, seen


def test_initial_results_are_the_kubelets():
    assert probes.initial_state("readiness").result is F
    assert probes.initial_state("liveness").result is S
    assert probes.initial_state("startup").result is U


def test_liveness_fails_only_after_failure_threshold_consecutive_failures_then_holds():
    spec = pod_with(livenessProbe=probe(failureThreshold=3)).pod.spec.containers[0].liveness_probe
    state, seen = run("liveness", spec, [F, F, S, F, F, F, S])
    assert seen == [S, S, S, S, S, F, F]  # a success in between starts the count again; then on hold
    assert state.on_hold


def test_readiness_needs_success_threshold_successes_and_never_holds():
    spec = pod_with(readinessProbe=probe(successThreshold=2, failureThreshold=1)).pod.spec.containers[0] \
        .readiness_probe
    state, seen = run("readiness", spec, [S, S, F, S, F, S, S])
    assert seen == [F, S, F, F, F, F, S]
    assert not state.on_hold


def test_a_probe_error_is_thrown_away():
    spec = pod_with(livenessProbe=probe(failureThreshold=2)).pod.spec.containers[0].liveness_probe
    _, seen = run("liveness", spec, [F, U, F])
    assert seen == [S, S, F]  # the error neither counts nor breaks the run of failures


def test_a_startup_probe_gates_liveness_and_readiness_until_it_succeeds():
    d = pod_with(startupProbe=probe(), livenessProbe=probe(), readinessProbe=probe())
    container = d.pod.spec.containers[0]
    c = running(d, "app", started=0)
    states = {k: probes.initial_state(k) for k in probes.KINDS}
    assert probes.active_kinds(container, c, states) == ["startup"]
    states["startup"] = probes.ProbeState(S, S, 1)
    assert probes.active_kinds(container, c, states) == ["liveness", "readiness"]
    states["liveness"] = probes.ProbeState(F, F, 0, on_hold=True)
    assert probes.active_kinds(container, c, states) == ["readiness"]
    assert probes.active_kinds(container, replace(c, kill_deadline=at(30)), states) == []


def test_a_run_counts_only_while_the_startup_gate_lets_its_kind_run():
    d = pod_with(startupProbe=probe(), livenessProbe=probe(), readinessProbe=probe())
    container = d.pod.spec.containers[0]
    states = {k: probes.initial_state(k) for k in probes.KINDS}
    assert [k for k in probes.KINDS if probes.counts(container, k, states)] == ["startup"]
    states["startup"] = probes.ProbeState(S, S, 1)
    assert [k for k in probes.KINDS if probes.counts(container, k, states)] == ["liveness", "readiness"]
    plain = pod_with(livenessProbe=probe()).pod.spec.containers[0]
    assert probes.counts(plain, "liveness", {}) and not probes.counts(plain, "startup", {})


def test_targets_resolve_named_ports_hosts_paths_and_the_first_run():
    d = pod_with(ports=[{"containerPort": 8080, "name": "http"}],
                 livenessProbe={"httpGet": {"port": "http", "path": "healthz", "scheme": "HTTPS",
                                            "httpHeaders": [{"name": "X-A", "value": "1"}]},
                                "initialDelaySeconds": 5, "periodSeconds": 2, "timeoutSeconds": 3},
                 readinessProbe={"tcpSocket": {"port": 9000, "host": "10.9.9.9"}})
    container = d.pod.spec.containers[0]
    c = running(d, "app", started=10)
    states = {"liveness": probes.initial_state("liveness"), "readiness": probes.initial_state("readiness")}
    live, ready = probes.targets(container, c, states)
    assert (live.action, live.scheme, live.host, live.port, live.path, live.headers) == \
        ("http", "https", "127.0.0.1", 8080, "/healthz", (("X-A", "1"),))
    assert (live.first_at, live.period_s, live.timeout_s) == (at(15), 2, 3)
    assert (ready.action, ready.host, ready.port, ready.first_at) == ("tcp", "10.9.9.9", 9000, at(10))
    live_on_pod_ip, _ = probes.targets(container, c, states, pod_ip="10.88.0.7")
    assert live_on_pod_ip.host == "10.88.0.7"


def test_grpc_probes_do_not_run():
    d = pod_with(readinessProbe={"grpc": {"port": 9000}})
    assert probes.probe_spec(d.pod.spec.containers[0], "readiness") is None


@pytest.mark.parametrize("outcome, expected", [
    (ProbeOutcome("c", "liveness", F, "HTTP probe failed with statuscode: 500"),
     ("Warning", "Unhealthy", "Liveness probe failed: HTTP probe failed with statuscode: 500")),
    (ProbeOutcome("c", "readiness", F, "dial tcp 127.0.0.1:80: connect: connection refused"),
     ("Warning", "Unhealthy", "Readiness probe failed: dial tcp 127.0.0.1:80: connect: connection refused")),
    (ProbeOutcome("c", "startup", U, "boom"), ("Warning", "Unhealthy", "Startup probe errored: boom")),
    (ProbeOutcome("c", "readiness", S, "Probe terminated redirects, Response body: ", warning=True),
     ("Warning", "ProbeWarning", "Readiness probe warning: Probe terminated redirects, Response body: ")),
    (ProbeOutcome("c", "readiness", S, "ok"), None),
])
def test_events_are_worded_as_the_kubelet_words_them(outcome, expected):
    assert probes.event(outcome) == expected


def test_readiness_and_startup_results_make_the_status():
    d = pod_with(startupProbe=probe(), readinessProbe=probe())
    c = running(d, "app", started=1)
    obs = observed(d, c)

    def status(results):
        s = pod_status(d, obs, record=PodRecord(start_time=at(0)), now=at(5), probes=results)
        cs = s["containerStatuses"][0]
        conditions = {x["type"]: x["status"] for x in s["conditions"]}
        return cs["started"], cs["ready"], conditions["ContainersReady"], conditions["Ready"], s["phase"]

    assert status({(c.id, "startup"): U, (c.id, "readiness"): F}) == (False, False, "False", "False", "Running")
    assert status({(c.id, "startup"): S, (c.id, "readiness"): F}) == (True, False, "False", "False", "Running")
    assert status({(c.id, "startup"): S, (c.id, "readiness"): S}) == (True, True, "True", "True", "Running")
