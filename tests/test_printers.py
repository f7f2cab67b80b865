"""Tests for kubelite.kubectl: kubectl-identical pod/event tables and describe output."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from kubelite.kubectl.common import age, human_duration, parse_time
from kubelite.kubectl.describe import describe_pod
from kubelite.kubectl.events import format_event_table
from kubelite.kubectl.pods import PodRow, format_pod_table, pod_row

NOW = datetime(2026, 11, 28, 6, 0, 0, tzinfo=timezone.utc)
YEAR = 365 * 24 * 3600


def ts(seconds_ago: float) -> str:
    """An RFC 3339 timestamp `seconds_ago` before NOW."""
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def running(ready: bool = True, restarts: int = 0, last_finished_ago: float | None = None,
            name: str = "app", started: bool = True) -> dict[str, Any]:
    status: dict[str, Any] = {
        "name": name, "ready": ready, "started": started, "restartCount": restarts,
        "state": {"running": {"startedAt": ts(60)}}, "lastState": {},
    }
    if last_finished_ago is not None:
        status["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error",
                                              "finishedAt": ts(last_finished_ago)}}
    return status


def waiting(reason: str, name: str = "app", restarts: int = 0,
            last_finished_ago: float | None = None) -> dict[str, Any]:
    status = running(ready=False, restarts=restarts, last_finished_ago=last_finished_ago,
                     name=name, started=False)
    status["state"] = {"waiting": {"reason": reason}}
    return status


def terminated(exit_code: int, reason: str | None = None, signal: int | None = None,
               name: str = "app") -> dict[str, Any]:
    status = running(ready=False, name=name, started=False)
    state: dict[str, Any] = {"exitCode": exit_code, "startedAt": ts(120), "finishedAt": ts(90)}
    if reason is not None:
        state["reason"] = reason
    if signal is not None:
        state["signal"] = signal
    status["state"] = {"terminated": state}
    return status


def make_pod(name: str = "web", *, containers: int = 1, statuses: list[dict] | None = None,
             init: list[dict] | None = None, init_statuses: list[dict] | None = None,
             phase: str = "Running", conditions: list[dict] | None = None,
             **status_extra: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}",
                     "creationTimestamp": ts(600)},
        "spec": {"containers": [{"name": f"c{i}", "image": "nginx"} for i in range(containers)],
                 "initContainers": init or [], "restartPolicy": "Always", "nodeName": "node1"},
        "status": {"phase": phase, "conditions": conditions or [],
                   "containerStatuses": statuses or [], "initContainerStatuses": init_statuses or [],
                   **status_extra},
    }


READY = [{"type": "Ready", "status": "True"}]
NOT_READY = [{"type": "Ready", "status": "False"}]
TWO_INITS = [{"name": "init-a", "image": "busybox"}, {"name": "init-b", "image": "busybox"}]
SIDECAR = [{"name": "proxy", "image": "envoy", "restartPolicy": "Always"}]


# ------------------------------------------------------------------------ human_duration


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (119, "119s"), (125, "2m5s"), (303, "5m3s"), (720, "12m"), (10740, "179m"),
        (11400, "3h10m"), (72000, "20h"), (187200, "2d4h"), (864000, "10d"),
        (0, "0s"), (-0.5, "0s"), (-1, "0s"), (-1.5, "0s"), (-2, "<invalid>"), (59, "59s"),
        (60, "60s"), (120, "2m"), (599, "9m59s"), (600, "10m"), (10799, "179m"),
        (10800, "3h"), (28799, "7h59m"), (28800, "8h"), (172799, "47h"), (172800, "2d"),
        (691199, "7d23h"), (691200, "8d"), (2 * YEAR - 1, "729d"), (2 * YEAR, "2y"),
        (2 * YEAR + 86400, "2y1d"), (8 * YEAR - 1, "7y364d"), (8 * YEAR, "8y"), (20 * YEAR, "20y"),
        (59.9, "59s"),
    ],
)
def test_human_duration_matches_apimachinery(seconds: float, expected: str) -> None:
    assert human_duration(seconds) == expected


# ----------------------------------------------------------------------- parse_time / age


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-28T06:00:00Z", datetime(2026, 11, 28, 6, 0, tzinfo=timezone.utc)),
        ("2026-11-28T06:00:00.123456789Z", datetime(2026, 11, 28, 6, 0, 0, 123456, tzinfo=timezone.utc)),
        ("2026-11-28T08:00:00+02:00", datetime(2026, 11, 28, 6, 0, tzinfo=timezone.utc)),
        ("2026-11-28t06:00:00z", datetime(2026, 11, 28, 6, 0, tzinfo=timezone.utc)),
        (None, None), ("", None), ("not a time", None),
    ],
)
def test_parse_time_returns_aware_utc_or_none(text: str | None, expected: datetime | None) -> None:
    parsed = parse_time(text)
    assert parsed == expected
    if parsed is not None:
        assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [(ts(12), "12s"), (ts(303), "5m3s"), (None, "<unknown>"), ("garbage", "<unknown>"), (ts(-5), "<invalid>")],
)
def test_age_translates_timestamp_since(stamp: str | None, expected: str) -> None:
    assert age(stamp, NOW) == expected


# ------------------------------------------------------------------------------- pod_row


@pytest.mark.parametrize(
    ("pod", "ready", "status", "restarts"),
    [
        pytest.param(make_pod(statuses=[running()], conditions=READY), "1/1", "Running", "0",
                     id="running-ready"),
        pytest.param(make_pod(containers=2, statuses=[
            running(name="c0"), waiting("CrashLoopBackOff", name="c1", restarts=3, last_finished_ago=12)]),
            "1/2", "CrashLoopBackOff", "3 (12s ago)", id="one-of-two-crashlooping"),
        pytest.param(make_pod(phase="Succeeded", statuses=[terminated(0, "Completed")]),
                     "0/1", "Completed", "0", id="completed"),
        pytest.param(make_pod(phase="Pending", init=TWO_INITS, init_statuses=[
            running(ready=False, name="init-a"), waiting("PodInitializing", name="init-b")],
            statuses=[waiting("PodInitializing", name="c0")]),
            "0/1", "Init:0/2", "0", id="init-first-running"),
        pytest.param(make_pod(phase="Pending", init=TWO_INITS, init_statuses=[
            terminated(0, "Completed", name="init-a"),
            waiting("CrashLoopBackOff", name="init-b", restarts=3, last_finished_ago=12)],
            statuses=[waiting("PodInitializing", name="c0")]),
            "0/1", "Init:CrashLoopBackOff", "3 (12s ago)", id="init-crashloop"),
        pytest.param(make_pod(phase="Failed", init=TWO_INITS, init_statuses=[
            terminated(1, "Error", name="init-a")]), "0/1", "Init:Error", "0", id="init-error"),
        pytest.param(make_pod(phase="Pending", init=TWO_INITS, init_statuses=[
            terminated(3, name="init-a")]), "0/1", "Init:ExitCode:3", "0", id="init-exit-code"),
        pytest.param(make_pod(phase="Pending", init=TWO_INITS, init_statuses=[
            terminated(137, signal=9, name="init-a")]), "0/1", "Init:Signal:9", "0", id="init-signal"),
        pytest.param(make_pod(phase="Pending", init=TWO_INITS, init_statuses=[
            terminated(0, "Completed", name="init-a"), terminated(0, "Completed", name="init-b")],
            statuses=[waiting("PodInitializing", name="c0")]),
            "0/1", "PodInitializing", "0", id="init-done-app-initializing"),
        pytest.param(make_pod(phase="Pending", statuses=[waiting("ContainerCreating")]),
                     "0/1", "ContainerCreating", "0", id="container-creating"),
        pytest.param(make_pod(phase="Failed", statuses=[terminated(137, signal=9)]),
                     "0/1", "Signal:9", "0", id="terminated-signal-without-reason"),
        pytest.param(make_pod(phase="Failed", statuses=[terminated(2)]),
                     "0/1", "ExitCode:2", "0", id="terminated-exit-code-without-reason"),
        pytest.param(make_pod(init=SIDECAR, init_statuses=[
            running(name="proxy", restarts=2, last_finished_ago=30)],
            statuses=[running(name="c0", restarts=1, last_finished_ago=45)], conditions=READY),
            "2/2", "Running", "3 (30s ago)", id="sidecar-counted-in-ready-and-restarts"),
        pytest.param(make_pod(init=SIDECAR, init_statuses=[
            running(name="proxy", ready=False, started=True)],
            statuses=[running(name="c0")], conditions=READY),
            "1/2", "Running", "0", id="started-unready-sidecar-not-ready"),
        pytest.param(make_pod(phase="Pending", init=SIDECAR, init_statuses=[
            running(name="proxy", ready=False, started=False)],
            statuses=[waiting("PodInitializing", name="c0")]),
            "0/2", "Init:0/1", "0", id="unstarted-sidecar-initializing"),
        pytest.param(make_pod(containers=2, statuses=[terminated(0, "Completed", name="c0"),
                                                      running(name="c1")], conditions=NOT_READY),
                     "1/2", "NotReady", "0", id="completed-with-running-not-ready"),
        pytest.param(make_pod(containers=2, statuses=[terminated(0, "Completed", name="c0"),
                                                      running(name="c1")], conditions=READY),
                     "1/2", "Running", "0", id="completed-with-running-ready"),
        pytest.param(make_pod(phase="Failed", reason="DeadlineExceeded"),
                     "0/1", "DeadlineExceeded", "0", id="status-reason-overrides-phase"),
        pytest.param(dict(make_pod(statuses=[running()]),
                          metadata={"name": "web", "deletionTimestamp": ts(5), "creationTimestamp": ts(600)}),
                     "1/1", "Terminating", "0", id="deletion-timestamp-terminating"),
        pytest.param(dict(make_pod(phase="Succeeded", statuses=[terminated(0, "Completed")]),
                          metadata={"name": "web", "deletionTimestamp": ts(5)}),
                     "0/1", "Completed", "0", id="deleting-terminal-pod-keeps-status"),
        pytest.param(dict(make_pod(reason="NodeLost", statuses=[running()]),
                          metadata={"name": "web", "deletionTimestamp": ts(5)}),
                     "1/1", "Unknown", "0", id="deleting-node-lost-unknown"),
        pytest.param(make_pod(phase="Pending", conditions=[
            {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]),
            "0/1", "SchedulingGated", "0", id="scheduling-gated"),
        pytest.param(make_pod(statuses=[running(restarts=2)], conditions=READY),
                     "1/1", "Running", "2", id="restarts-without-last-termination-time"),
        pytest.param({"metadata": {"name": "bare"}, "spec": {"containers": [{"name": "c"}]}},
                     "0/1", "", "0", id="missing-status"),
        pytest.param({}, "0/0", "", "0", id="empty-dict"),
    ],
)
def test_pod_row_status_ready_restarts(pod: dict, ready: str, status: str, restarts: str) -> None:
    row = pod_row(pod, NOW)
    assert (row.ready, row.status, row.restarts) == (ready, status, restarts)


def test_pod_row_wide_cells_and_defaults() -> None:
    pod = make_pod(statuses=[running()], conditions=READY + [{"type": "example.com/gate", "status": "True"}],
                   podIP="10.0.0.7", podIPs=[{"ip": "10.0.0.7"}])
    pod["spec"]["readinessGates"] = [{"conditionType": "example.com/gate"}, {"conditionType": "other"}]
    assert pod_row(pod, NOW) == PodRow(
        name="web", namespace="default", ready="1/1", status="Running", restarts="0", age="10m",
        ip="10.0.0.7", node="node1", nominated_node="<none>", readiness_gates="1/2",
    )


def test_pod_row_missing_fields_render_none() -> None:
    row = pod_row({"metadata": {"name": "x"}}, NOW)
    assert (row.age, row.ip, row.node, row.nominated_node, row.readiness_gates) == (
        "<unknown>", "<none>", "<none>", "<none>", "<none>")


# ---------------------------------------------------------------------------- pod tables

TWO_PODS = [
    make_pod("web", statuses=[running()], conditions=READY, podIP="10.0.0.5"),
    make_pod("batch-job-with-long-name", containers=2, phase="Running", statuses=[
        running(name="c0"), waiting("CrashLoopBackOff", name="c1", restarts=3, last_finished_ago=12)]),
]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        pytest.param({}, (
            "NAME                       READY   STATUS             RESTARTS      AGE\n"
            "web                        1/1     Running            0             10m\n"
            "batch-job-with-long-name   1/2     CrashLoopBackOff   3 (12s ago)   10m\n"), id="default"),
        pytest.param({"no_headers": True}, (
            "web                        1/1   Running            0             10m\n"
            "batch-job-with-long-name   1/2   CrashLoopBackOff   3 (12s ago)   10m\n"), id="no-headers"),
        pytest.param({"wide": True}, (
            "NAME                       READY   STATUS             RESTARTS      AGE   IP         NODE    "
            "NOMINATED NODE   READINESS GATES\n"
            "web                        1/1     Running            0             10m   10.0.0.5   node1   "
            "<none>           <none>\n"
            "batch-job-with-long-name   1/2     CrashLoopBackOff   3 (12s ago)   10m   <none>     node1   "
            "<none>           <none>\n"), id="wide"),
        pytest.param({"all_namespaces": True}, (
            "NAMESPACE   NAME                       READY   STATUS             RESTARTS      AGE\n"
            "default     web                        1/1     Running            0             10m\n"
            "default     batch-job-with-long-name   1/2     CrashLoopBackOff   3 (12s ago)   10m\n"),
            id="all-namespaces"),
    ],
)
def test_format_pod_table_layout(options: dict[str, bool], expected: str) -> None:
    assert format_pod_table(TWO_PODS, NOW, **options) == expected


def test_format_pod_table_wide_all_namespaces_header() -> None:
    header = format_pod_table(TWO_PODS[:1], NOW, wide=True, all_namespaces=True).splitlines()[0]
    assert header.split() == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE",
                              "NOMINATED", "NODE", "READINESS", "GATES"]


@pytest.mark.parametrize("options", [{}, {"wide": True}, {"no_headers": True}])
def test_format_pod_table_empty_is_empty_string(options: dict[str, bool]) -> None:
    assert format_pod_table([], NOW, **options) == ""


def test_format_pod_table_has_no_trailing_spaces() -> None:
    for line in format_pod_table(TWO_PODS, NOW, wide=True).splitlines():
        assert line == line.rstrip()


# -------------------------------------------------------------------------- event tables


def event(reason: str, message: str, *, last_ago: float, first_ago: float | None = None, count: int = 1,
          kind: str = "Normal", name: str = "web", namespace: str = "default",
          field_path: str | None = None, component: str = "kubelet") -> dict[str, Any]:
    involved: dict[str, Any] = {"kind": "Pod", "name": name, "namespace": namespace, "uid": f"uid-{name}"}
    if field_path:
        involved["fieldPath"] = field_path
    return {
        "metadata": {"name": f"{name}.{reason.lower()}", "namespace": namespace},
        "involvedObject": involved, "reason": reason, "message": message, "type": kind, "count": count,
        "firstTimestamp": ts(first_ago if first_ago is not None else last_ago), "lastTimestamp": ts(last_ago),
        "source": {"component": component, "host": "node1"},
    }


EVENTS = [
    event("Scheduled", "Successfully assigned default/web to node1", last_ago=600,
          component="default-scheduler"),
    event("BackOff", "Back-off restarting failed container", last_ago=12, first_ago=120, count=3,
          kind="Warning", field_path="spec.containers{c1}"),
]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        pytest.param({}, (
            "LAST SEEN   TYPE      REASON      OBJECT    MESSAGE\n"
            "10m         Normal    Scheduled   pod/web   Successfully assigned default/web to node1\n"
            "12s         Warning   BackOff     pod/web   Back-off restarting failed container\n"), id="default"),
        pytest.param({"all_namespaces": True}, (
            "NAMESPACE   LAST SEEN   TYPE      REASON      OBJECT    MESSAGE\n"
            "default     10m         Normal    Scheduled   pod/web   Successfully assigned default/web to node1\n"
            "default     12s         Warning   BackOff     pod/web   Back-off restarting failed container\n"),
            id="all-namespaces"),
    ],
)
def test_format_event_table_layout(options: dict[str, bool], expected: str) -> None:
    assert format_event_table(EVENTS, NOW, **options) == expected


def test_format_event_table_keeps_caller_order_and_cuts_multiline_messages() -> None:
    events = [EVENTS[1], event("Failed", "line one\nline two", last_ago=5)]
    lines = format_event_table(events, NOW).splitlines()
    assert [line.split()[2] for line in lines[1:]] == ["BackOff", "Failed"]
    assert lines[2].endswith("line one...")


def test_format_event_table_empty_is_empty_string() -> None:
    assert format_event_table([], NOW) == ""


# -------------------------------------------------------------------------- describe_pod


def described_pod() -> dict[str, Any]:
    pod = make_pod("web", init=[{"name": "setup", "image": "busybox", "command": ["sh", "-c", "true"]}],
                   init_statuses=[terminated(0, "Completed", name="setup")],
                   statuses=[running(name="c0", restarts=1, last_finished_ago=30)],
                   conditions=[{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
                   podIP="10.0.0.5", podIPs=[{"ip": "10.0.0.5"}], hostIP="192.168.1.10", startTime=ts(600))
    pod["metadata"]["labels"] = {"tier": "fe", "app": "web"}
    pod["metadata"]["annotations"] = {"kubelite.io/hash": "abc"}
    pod["status"]["containerStatuses"][0].update(containerID="containerd://123", imageID="nginx@sha256:1")
    pod["spec"]["containers"][0].update(
        ports=[{"containerPort": 8080, "protocol": "TCP"}],
        resources={"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "250m", "memory": "64Mi"}},
        livenessProbe={"exec": {"command": ["cat", "/tmp/healthy"]}, "initialDelaySeconds": 5, "periodSeconds": 5},
        readinessProbe={"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"}},
        startupProbe={"tcpSocket": {"port": 8080}},
        env=[{"name": "MODE", "value": "prod"},
             {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
    )
    return pod


DESCRIBE_EVENTS = [
    event("Pulled", 'Container image "nginx" already present on machine', last_ago=12, first_ago=120,
          count=3, field_path="spec.containers{c0}"),
    event("Scheduled", "Successfully assigned default/web to node1", last_ago=600,
          component="default-scheduler"),
]


def test_describe_pod_header_lines() -> None:
    text = describe_pod(described_pod(), [], NOW, extra={"Source": "/etc/kubelite/web.yaml"})
    lines = text.splitlines()
    assert lines[:11] == [
        "Name:         web",
        "Namespace:    default",
        "Priority:     0",
        "Node:         node1/192.168.1.10",
        "Start Time:   Sat, 28 Nov 2026 05:50:00 +0000",
        "Labels:       app=web",
        "              tier=fe",
        "Annotations:  kubelite.io/hash: abc",
        "Status:       Running",
        "Source:       /etc/kubelite/web.yaml",
        "IP:           10.0.0.5",
    ]
    assert text.endswith("Events:          <none>\n")


@pytest.mark.parametrize(
    "line",
    [
        "IPs:",
        "  IP:  10.0.0.5",
        "Init Containers:",
        "  setup:",
        "    State:          Terminated",
        "      Reason:       Completed",
        "      Exit Code:    0",
        "Containers:",
        "  c0:",
        "    Container ID:   containerd://123",
        "    Port:           8080/TCP",
        "    Host Port:      0/TCP",
        "    State:          Running",
        "    Last State:     Terminated",
        "    Ready:          True",
        "    Restart Count:  1",
        "    Liveness:   exec [cat /tmp/healthy] delay=5s timeout=1s period=5s #success=1 #failure=3",
        "    Readiness:  http-get http://:8080/healthz delay=0s timeout=1s period=10s #success=1 #failure=3",
        "    Startup:    tcp-socket :8080 delay=0s timeout=1s period=10s #success=1 #failure=3",
        "      MODE:      prod",
        "      POD_NAME:  web (v1:metadata.name)",
        "    Mounts:         <none>",
        "    Mounts:      <none>",
        "Conditions:",
        "  Type           Status",
        "  Initialized    True ",
        "Volumes:         <none>",
        "QoS Class:       Burstable",
        "Node-Selectors:  <none>",
        "Tolerations:     <none>",
    ],
)
def test_describe_pod_contains_kubectl_line(line: str) -> None:
    assert line in describe_pod(described_pod(), [], NOW).splitlines()


def test_describe_pod_events_table() -> None:
    text = describe_pod(described_pod(), DESCRIBE_EVENTS, NOW)
    assert text.endswith(
        "Events:\n"
        "  Type    Reason     Age               From               Message\n"
        "  ----    ------     ----              ----               -------\n"
        "  Normal  Scheduled  10m               default-scheduler  Successfully assigned default/web to node1\n"
        "  Normal  Pulled     12s (x3 over 2m)  kubelet            "
        'Container image "nginx" already present on machine\n'
    )


def test_describe_pod_terminating_and_reason_lines() -> None:
    pod = make_pod(phase="Running", reason="Evicted", message="low on memory")
    pod["metadata"].update(deletionTimestamp=ts(30), deletionGracePeriodSeconds=30)
    lines = describe_pod(pod, [], NOW, extra={"Manifest Error": "bad\nyaml"}).splitlines()
    assert "Status:                    Terminating (lasts 30s)" in lines
    assert "Termination Grace Period:  30s" in lines
    assert "Reason:                    Evicted" in lines
    assert "Message:                   low on memory" in lines
    assert "Manifest Error:            bad" in lines
    assert "                           yaml" in lines


@pytest.mark.parametrize(
    ("resources", "qos"),
    [
        ([{}], "BestEffort"),
        ([{"requests": {"cpu": "100m"}}], "Burstable"),
        ([{"limits": {"cpu": "1", "memory": "1Gi"}}], "Guaranteed"),
        ([{"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m", "memory": "1024Mi"}}],
         "Guaranteed"),
        ([{"limits": {"cpu": "1", "memory": "1Gi"}}, {}], "Burstable"),
        ([{"limits": {"cpu": "1"}}], "Burstable"),
        ([{"requests": {"ephemeral-storage": "1Gi"}}], "BestEffort"),
    ],
)
def test_describe_pod_qos_class(resources: list[dict], qos: str) -> None:
    pod = make_pod(containers=len(resources))
    for container, requirement in zip(pod["spec"]["containers"], resources):
        container["resources"] = requirement
    qos_lines = [line.split() for line in describe_pod(pod, [], NOW).splitlines() if line.startswith("QoS")]
    assert qos_lines == [["QoS", "Class:", qos]]


def test_describe_pod_survives_empty_dict() -> None:
    text = describe_pod({}, [], NOW)
    assert "Containers: <none>" in text.splitlines()
    assert text.endswith("Events:          <none>\n")
