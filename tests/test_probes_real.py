"""Probes on real containers (root, runc, conmon, busybox): kubelite's own http/tcp client, its
sockets made inside the pod's network namespace (these pods have loopback only: nothing on the
host could answer), exec through `runc exec`.

The seed case first: an application that hangs while its container keeps running (its httpd is
stopped with SIGSTOP) is found by the liveness probe and restarted.
"""

from __future__ import annotations

import random
import socket
import subprocess
import threading
import time

import pytest

from tests.real import container, events, pod

pytestmark = pytest.mark.real


def port() -> int:
    return random.randint(20000, 40000)  # inside the pod's own namespace: any port is free


def http(p: int, path: str, **fields) -> dict:
    return {"httpGet": {"path": path, "port": p}, "periodSeconds": 1, "timeoutSeconds": 1, **fields}


def responder(p: int, status: str, headers: str = "") -> str:
    """A shell HTTP server on port `p` that answers every request with `status` (busybox nc)."""
    return (f"cat > /tmp/respond <<'EOF'\n#!/bin/sh\n"
            f"while read -r line; do [ ${{#line}} -le 1 ] && break; done\n"
            f"printf 'HTTP/1.1 {status}\\r\\n{headers}Content-Length: 0\\r\\nConnection: close\\r\\n\\r\\n'\nEOF\n"
            f"chmod +x /tmp/respond; trap 'exit 0' TERM; nc -ll -p {p} -e /tmp/respond & wait")


def test_a_hung_application_is_found_by_its_liveness_probe_and_restarted(node):
    p = port()
    script = ("mkdir -p /www; echo ok > /www/healthz; httpd -f -p {p} -h /www & echo $! > /tmp/httpd.pid; "
              "trap 'exit 0' TERM; wait").format(p=p)
    node.write(pod("hang", container("app", script, livenessProbe=http(p, "/healthz", failureThreshold=2,
                                                                      initialDelaySeconds=1))))
    # a bystander with the same probe on the same port (its own namespace): never disturbed
    node.write(pod("bystander", container("app", script, livenessProbe=http(p, "/healthz", initialDelaySeconds=1))))
    node.until(lambda: node.running("hang", "app") and node.running("bystander", "app"), what="the pods to run")
    bystander = node.container_id("bystander", "app")
    time.sleep(2.5)  # several probes pass meanwhile
    node.step()
    assert events(node, "Unhealthy") == [] and node.running("hang", "app")
    first = node.container_id("hang", "app")
    code, _ = node.exec("hang", "app", "sh", "-c", "kill -STOP $(cat /tmp/httpd.pid)")  # hangs; the container runs
    assert code == 0
    node.until(lambda: node.running("hang", "app", restarts=1), timeout=20, what="the liveness restart")
    assert node.container_id("hang", "app") != first
    assert events(node, "Killing") == ["Container app failed liveness probe, will be restarted"]
    assert events(node, "Unhealthy")[0] == (f'Liveness probe failed: Get "http://127.0.0.1:{p}/healthz": context '
                                            "deadline exceeded (Client.Timeout exceeded while awaiting headers)")
    assert node.container("hang", "app")["lastState"]["terminated"]["exitCode"] == 0
    time.sleep(2.5)  # the new container's httpd answers: no second restart
    node.step()
    assert node.running("hang", "app", restarts=1)
    assert node.running("bystander", "app", restarts=0) and node.container_id("bystander", "app") == bystander


def test_readiness_flips_ready_without_restarts(node):
    p = port()
    script = f"mkdir -p /www; trap 'exit 0' TERM; httpd -f -p {p} -h /www & wait"
    node.write(pod("ready", container("app", script, readinessProbe=http(p, "/ready", failureThreshold=1))))
    node.until(lambda: node.running("ready", "app"), what="the pod to run")
    time.sleep(1.5)
    node.step()
    assert node.container("ready", "app")["ready"] is False
    out = node.cli("get", "pods").stdout
    assert "ready   0/1     Running" in out, out
    assert "Readiness probe failed: HTTP probe failed with statuscode: 404" in events(node, "Unhealthy")
    node.exec("ready", "app", "sh", "-c", "echo yes > /www/ready")
    node.until(lambda: node.container("ready", "app").get("ready") is True, timeout=5, what="ready")
    conditions = {c["type"]: c["status"] for c in node.status("ready")["conditions"]}
    assert conditions["Ready"] == "True" and conditions["ContainersReady"] == "True"
    assert "ready   1/1     Running" in node.cli("get", "pods").stdout
    node.exec("ready", "app", "rm", "/www/ready")
    node.until(lambda: node.container("ready", "app").get("ready") is False, timeout=5, what="unready")
    assert node.running("ready", "app", restarts=0) and events(node, "Killing") == []
    described = node.cli("describe", "pod", "ready").stdout
    assert f"Readiness:      http-get http://:{p}/ready delay=0s timeout=1s period=1s #success=1 #failure=1" \
        in described, described
    assert "Readiness probe failed: HTTP probe failed with statuscode: 404" in described


def test_a_startup_probe_keeps_liveness_from_killing_a_slow_starter(node):
    p = port()
    # the server listens only after 3 s; liveness alone (failureThreshold 1) would kill it at once
    script = f"mkdir -p /www; trap 'exit 0' TERM; sleep 3; httpd -f -p {p} -h /www & wait"
    tcp = {"tcpSocket": {"port": p}, "periodSeconds": 1, "timeoutSeconds": 1}
    node.write(pod("slow", container("app", script, startupProbe={**tcp, "failureThreshold": 10},
                                     livenessProbe={**tcp, "failureThreshold": 1})))
    node.until(lambda: node.running("slow", "app"), what="the pod to run")
    assert node.container("slow", "app")["started"] is False
    node.until(lambda: node.container("slow", "app").get("started") is True, timeout=10, what="started")
    time.sleep(2)
    node.step()
    assert node.running("slow", "app", restarts=0) and events(node, "Killing") == []
    assert any(m.startswith(f"Startup probe failed: dial tcp 127.0.0.1:{p}: connect: connection refused")
               for m in events(node, "Unhealthy"))


def test_http_tcp_and_exec_variants_give_the_kubelets_verdicts(node):
    err, moved, same, closed = port(), port() + 1, port() + 2, port() + 3
    ready = {"periodSeconds": 1, "timeoutSeconds": 1}
    node.write(pod("variants",
                   container("err", responder(err, "500 Internal Server Error"),
                             readinessProbe=http(err, "/")),
                   container("moved", responder(moved, "302 Found", "Location: http://elsewhere.invalid/\\r\\n"),
                             readinessProbe=http(moved, "/", failureThreshold=3)),
                   container("same", f"mkdir -p /www/sub; echo hi > /www/sub/index.html; trap 'exit 0' TERM; "
                                     f"httpd -f -p {same} -h /www & wait",
                             readinessProbe=http(same, "/sub", failureThreshold=3)),
                   container("closed", "trap 'exit 0' TERM; sleep 3600 & wait",
                             readinessProbe={"tcpSocket": {"port": closed}, **ready}),
                   container("execok", "trap 'exit 0' TERM; sleep 3600 & wait",
                             readinessProbe={"exec": {"command": ["true"]}, **ready}),
                   container("execfail", "trap 'exit 0' TERM; sleep 3600 & wait",
                             readinessProbe={"exec": {"command": ["sh", "-c", "echo not yet; exit 1"]}, **ready})))
    node.until(lambda: all(node.running("variants", c) for c in ("err", "moved", "same", "closed", "execok",
                                                                 "execfail")), what="the pod to run")

    def settled():
        ready_now = {c: node.container("variants", c).get("ready") for c in
                     ("err", "moved", "same", "closed", "execok", "execfail")}
        return ready_now if ready_now == {"err": False, "moved": True, "same": True, "closed": False,
                                          "execok": True, "execfail": False} else None

    node.until(settled, timeout=10, what="the probes' verdicts")
    time.sleep(1.5)
    node.step()
    unhealthy = set(events(node, "Unhealthy"))
    assert "Readiness probe failed: HTTP probe failed with statuscode: 500" in unhealthy
    assert f"Readiness probe failed: dial tcp 127.0.0.1:{closed}: connect: connection refused" in unhealthy
    assert "Readiness probe failed: not yet\n" in unhealthy
    assert events(node, "ProbeWarning")[0] == "Readiness probe warning: Probe terminated redirects, Response body: "
    assert not any("same" in m for m in unhealthy)
    assert all(node.container("variants", c)["restartCount"] == 0 for c in ("err", "moved", "same", "closed"))


def test_an_exec_probe_that_hangs_past_its_timeout_fails_and_is_killed(node):
    node.write(pod("hangs", container("app", "trap 'exit 0' TERM; sleep 3600 & wait", livenessProbe={
        "exec": {"command": ["sleep", "30"]}, "periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 1})))
    node.until(lambda: node.running("hangs", "app"), what="the pod to run")
    started = time.monotonic()
    node.until(lambda: node.running("hangs", "app", restarts=1), timeout=15, what="the liveness restart")
    assert time.monotonic() - started < 10
    assert 'Liveness probe failed: command "sleep 30" timed out' in events(node, "Unhealthy")
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout.splitlines()
    assert "sleep 30" not in ps  # the timed-out probe's process was killed


def test_the_prober_uses_one_thread_for_all_network_probes(node):
    p = port()
    script = f"mkdir -p /www; echo ok > /www/index.html; trap 'exit 0' TERM; httpd -f -p {p} -h /www & wait"
    for i in range(5):
        node.write(pod(f"many{i}", container("app", script, livenessProbe=http(p, "/"), readinessProbe=http(p, "/"))))
    node.until(lambda: all(node.container(f"many{i}", "app").get("ready") for i in range(5)), timeout=20,
               what="every pod ready")
    names = [t.name for t in threading.enumerate()]
    assert names.count("kubelite-prober") == 1
    assert not any(n.startswith("kubelite-exec-probe") for n in names)  # no exec probes: no exec threads


def test_a_host_network_pod_is_probed_from_the_host(node):
    with socket.socket() as s:  # a port free on the host's loopback right now
        s.bind(("127.0.0.1", 0))
        p = s.getsockname()[1]
    script = f"mkdir -p /www; echo ok > /www/index.html; trap 'exit 0' TERM; httpd -f -p 127.0.0.1:{p} -h /www & wait"
    node.write(pod("hostnet", container("app", script, readinessProbe=http(p, "/")), hostNetwork=True))
    node.until(lambda: node.container("hostnet", "app").get("ready") is True, timeout=15, what="ready")
    uid = next(iter(node.agent.pods))
    assert node.agent.probing.sent[uid][0] is None  # probed from the host: no namespace entered
