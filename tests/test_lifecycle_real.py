"""Lifecycle on real containers: postStart and preStop hooks, termination messages, stdin and tty.

Each test runs busybox containers as root on its own state root (see tests/real.py) and checks
that nothing was left behind.
"""

from __future__ import annotations

import time

import pytest

from tests.real import container, pod

pytestmark = pytest.mark.real

#: A container that ends at once, exit 0, on SIGTERM (a shell as PID 1 ignores it otherwise).
LOOP = "trap 'exit 0' TERM; while true; do sleep 0.1; done"


def events(node, reason: str) -> list[tuple[str, str]]:
    assert reason.isalpha()
    rows = node.store.execute_sql(f"SELECT type, message FROM events WHERE reason='{reason}' ORDER BY id")
    return [(r[0], r[1]) for r in rows]


def test_poststart_hook_finishes_before_the_container_is_reported_running(node):
    hook = {"postStart": {"exec": {"command": ["sh", "-c", "sleep 1; echo hooked > /hooked"]}}}
    node.write(pod("post", container("app", LOOP, lifecycle=hook), container("after", LOOP)))
    seen_waiting = False
    deadline = time.monotonic() + 20
    while not node.running("post", "app"):
        assert time.monotonic() < deadline, "the container never became Running"
        node.step()
        state = node.container("post", "app").get("state", {})
        if state.get("waiting", {}).get("reason") == "ContainerCreating" and node.container("post", "app").get(
                "containerID"):
            seen_waiting = True   # created and started, its hook still running
            assert node.container("post", "after").get("containerID") is None, "the next container waits"
        time.sleep(0.05)
    assert seen_waiting, "the container was never shown waiting for its hook"
    assert node.exec("post", "app", "cat", "/hooked") == (0, "hooked\n"), "the hook's file exists once Running"
    node.until(lambda: node.running("post", "after"), what="the next container")
    assert events(node, "FailedPostStartHook") == []


def test_a_failing_poststart_hook_kills_and_restarts_the_container(node):
    hook = {"postStart": {"exec": {"command": ["sh", "-c", "echo boom; exit 3"]}}}
    node.write(pod("badhook", container("app", LOOP, lifecycle=hook)))
    seen: list[str] = []

    def restarted() -> bool:
        status = node.container("badhook", "app")
        waiting = status.get("state", {}).get("waiting") or {}
        if waiting.get("reason") == "PostStartHookError":
            seen.append(waiting["message"])
        return bool(seen) and status.get("restartCount", 0) >= 1

    node.until(restarted, timeout=30, what="PostStartHookError, then a restart")
    assert seen[0].startswith('Exec lifecycle hook ([sh -c echo boom; exit 3]) for Container "app" in Pod '
                              '"badhook_default(')
    assert "exited with 3" in seen[0] and seen[0].endswith('message: "boom\\n"')
    assert ("Warning", "PostStartHook failed") in events(node, "FailedPostStartHook")
    assert ("Normal", "FailedPostStartHook") in events(node, "Killing")
    describe = node.cli("describe", "pod", "badhook").stdout
    assert "FailedPostStartHook" in describe


def test_prestop_httpget_reaches_the_pod_before_sigterm_and_the_termination_message_shows_it(node):
    cgi = "#!/bin/sh\\necho seen > /tmp/prestop\\nprintf \"Content-Type: text/plain\\\\r\\\\n\\\\r\\\\nok\\\\n\"\\n"
    script = (f"mkdir -p /www/cgi-bin && printf '{cgi}' "
              "> /www/cgi-bin/hook && chmod +x /www/cgi-bin/hook && httpd -p 8080 -h /www && "
              "trap 'cat /tmp/prestop > /dev/termination-log 2>/dev/null; exit 0' TERM; "
              "while true; do sleep 0.1; done")
    hook = {"preStop": {"httpGet": {"path": "/cgi-bin/hook", "port": 8080}}}
    doc = pod("stopper", container("app", script, lifecycle=hook, env=[{"name": "V", "value": "1"}]),
              terminationGracePeriodSeconds=10)
    node.write(doc)
    node.until(lambda: node.running("stopper", "app"), what="running")
    node.until(lambda: node.exec("stopper", "app", "wget", "-q", "-O", "-", "http://127.0.0.1:8080/")[0] in (0, 1),
               what="httpd up")
    doc["spec"]["containers"][0]["env"][0]["value"] = "2"     # a container change: stopped and started again
    node.write(doc)
    node.until(lambda: node.running("stopper", "app", restarts=1), what="the restart")
    last = node.container("stopper", "app")["lastState"]["terminated"]
    assert (last["exitCode"], last.get("message")) == (0, "seen\n"), "the hook ran before SIGTERM"
    assert events(node, "FailedPreStopHook") == []


def test_a_prestop_httpget_that_reaches_nothing_is_a_warning_and_the_stop_goes_on(node):
    hook = {"preStop": {"httpGet": {"path": "/", "port": 9}}}
    path = node.write(pod("nohttp", container("app", LOOP, lifecycle=hook)))
    node.until(lambda: node.running("nohttp", "app"), what="running")
    path.unlink()
    node.agent.hint_manifests()
    node.until(lambda: not node.agent.pods, timeout=15, what="the pod to be gone")
    assert events(node, "FailedPreStopHook") == [("Warning", "PreStopHook failed")]


def test_termination_messages_from_the_file_and_from_the_log(node):
    node.write(pod("msgs",
                   container("file", "printf 'bye from file' > /dev/termination-log; exit 0"),
                   container("custom", "printf 'custom path' > /tmp/msg; exit 1", terminationMessagePath="/tmp/msg"),
                   container("nonroot", "printf 'written by 1000' > /dev/termination-log; exit 1",
                             securityContext={"runAsUser": 1000}),
                   container("fallback", "for i in $(seq 1 100); do echo line $i; done; exit 2",
                             terminationMessagePolicy="FallbackToLogsOnError"),
                   container("fileonly", "echo not a message; exit 2"),
                   container("success", "echo fine; exit 0", terminationMessagePolicy="FallbackToLogsOnError"),
                   restartPolicy="Never"))
    names = ("file", "custom", "nonroot", "fallback", "fileonly", "success")
    node.until(lambda: all("terminated" in node.container("msgs", n).get("state", {}) for n in names),
               timeout=30, what="every container to finish")
    message = {n: node.container("msgs", n)["state"]["terminated"].get("message") for n in names}
    assert message["file"] == "bye from file"
    assert message["custom"] == "custom path"
    assert message["nonroot"] == "written by 1000"
    assert message["fallback"] == "".join(f"line {i}\n" for i in range(21, 101)), "the last 80 lines"
    assert message["fileonly"] is None and message["success"] is None
    describe = node.cli("describe", "pod", "msgs").stdout
    assert any(line.split() == ["Message:", "bye", "from", "file"] for line in describe.splitlines()), describe
    as_yaml = node.cli("get", "pod", "msgs", "-o", "yaml").stdout
    assert "message: bye from file" in as_yaml


def test_a_long_log_falls_back_to_its_last_2_kib(node):
    node.write(pod("loud", container("app", "for i in $(seq 1 60); do echo $i-$(printf '%0100d' 0); done; exit 1",
                                     terminationMessagePolicy="FallbackToLogsOnError"), restartPolicy="Never"))
    node.until(lambda: "terminated" in node.container("loud", "app").get("state", {}), what="the exit")
    message = node.container("loud", "app")["state"]["terminated"]["message"]
    assert len(message.encode()) == 2048 and message.endswith(f"60-{'0' * 100}\n")


def test_tty_gives_a_terminal_and_stdin_stays_open(node):
    node.write(pod("term",
                   container("tty", "if test -t 0 && test -t 1; then echo tty-yes; else echo tty-no; fi; "
                                    "exec sleep 3600", tty=True, stdin=True),
                   container("stdin", "timeout 2 cat; echo cat-exit-$?; exec sleep 3600", stdin=True),
                   container("plain", "timeout 2 cat; echo cat-exit-$?; test -t 0 || echo no-tty; exec sleep 3600")))
    node.until(lambda: all(node.running("term", c) for c in ("tty", "stdin", "plain")), what="all running")
    logs = {c: "" for c in ("tty", "stdin", "plain")}

    def logged() -> bool:
        for c in logs:
            logs[c] = node.cli("logs", "term", "-c", c).stdout
        return "tty-" in logs["tty"] and "cat-exit" in logs["stdin"] and "no-tty" in logs["plain"]

    node.until(logged, timeout=20, what="the three containers' logs")
    assert "tty-yes" in logs["tty"], logs["tty"]
    assert "cat-exit-0" not in logs["stdin"] and "cat-exit-" in logs["stdin"], "cat blocked on an open stdin"
    assert "cat-exit-0" in logs["plain"], "without stdin, cat reads EOF at once"
    assert node.exec("term", "tty", "echo", "exec works") == (0, "exec works\n"), "exec (and probes) need no terminal"


def test_kubectl_shows_termination_messages_through_the_api(tmp_path, busybox):
    from tests.apinode import require_kubectl, wait_for
    from tests.test_apiserver_real import Served

    require_kubectl()
    served = Served(tmp_path, busybox)
    try:
        served.node.write(pod("said", container("file", "printf 'done: 42 rows' > /dev/termination-log; exit 0"),
                              container("logs", "echo first; echo last words; exit 7",
                                        terminationMessagePolicy="FallbackToLogsOnError"),
                              restartPolicy="Never"))
        path = "jsonpath={.status.containerStatuses[*].state.terminated.message}"
        wait_for(lambda: "last words" in served.kubectl("get", "pod", "said", "-o", path).stdout, timeout=30,
                 what="both messages through the API")
        described = served.kubectl("describe", "pod", "said").stdout
        assert [line.split(None, 1)[1] for line in described.splitlines()
                if line.strip().startswith("Message:")][:2] == ["done: 42 rows", "first"]
        assert "last words" in described
    finally:
        assert served.close() == []


def test_poststart_httpget_reaches_its_server_any_status_will_do_and_https_falls_back_to_http(node):
    import http.server
    import threading

    from tests.helpers import free_port

    seen: list[tuple[str, str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:   # noqa: N802 — the stdlib's name
            seen.append((self.path, self.headers.get("User-Agent", ""), self.headers.get("X-Hook", "")))
            self.send_response(500)   # the kubelet does not look at a hook's status code
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        plain = {"postStart": {"httpGet": {"host": "127.0.0.1", "port": port, "path": "/started",
                                           "httpHeaders": [{"name": "X-Hook", "value": "yes"}]}}}
        tls = {"postStart": {"httpGet": {"host": "127.0.0.1", "port": port, "path": "/tls", "scheme": "HTTPS"}}}
        node.write(pod("webhook", container("plain", LOOP, lifecycle=plain), container("tls", LOOP, lifecycle=tls),
                       hostNetwork=True))
        node.until(lambda: node.running("webhook", "plain") and node.running("webhook", "tls"), what="both running")
    finally:
        server.shutdown()
        server.server_close()
    assert ("/started", seen[0][1], "yes") == seen[0] and seen[0][1].startswith("kube-lifecycle/")
    assert [s[0] for s in seen] == ["/started", "/tls"]
    assert events(node, "LifecycleHTTPFallback") == [
        ("Warning", f"request to HTTPS lifecycle hook 127.0.0.1:{port} got HTTP response, retry with HTTP succeeded")]
    assert events(node, "FailedPostStartHook") == []


def test_a_prestop_sleep_delays_sigterm_within_the_grace_period(node):
    hook = {"preStop": {"sleep": {"seconds": 1}}}
    path = node.write(pod("sleepy", container("app", LOOP, lifecycle=hook), terminationGracePeriodSeconds=10))
    node.until(lambda: node.running("sleepy", "app"), what="running")
    path.unlink()
    node.agent.hint_manifests()
    started = time.monotonic()
    node.until(lambda: not node.agent.pods, timeout=15, what="the pod to be gone")
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 5, f"took {elapsed:.1f}s: the sleep (1 s), then TERM ends it at once"
    assert events(node, "FailedPreStopHook") == []
