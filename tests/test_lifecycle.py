"""Lifecycle hooks and termination messages: the pure rules (plan, status, hooks) and the agent on
the fake runtime (frozen time, hooks run inline)."""

from __future__ import annotations

from typing import Any

import pytest

from kubelite.api.decode import DesiredPod, decode_document
from kubelite.core import hooks
from kubelite.core.plan import plan
from kubelite.core.status import message_budget, pod_status, truncate_message
from kubelite.core.types import PodRecord, PodWait, PostStart, StartError, StopReason, WaitReason
from kubelite.runtime.fake import Behavior
from tests.helpers import T0, at, exited, observed, pod_doc, running
from tests.simulated import simulated_node

EXEC_HOOK = {"exec": {"command": ["sh", "-c", "echo hi > /started"]}}


def with_hooks(doc: dict[str, Any], container: int = 0, **lifecycle: Any) -> dict[str, Any]:
    doc["spec"]["containers"][container]["lifecycle"] = lifecycle
    return doc


def decoded(doc: dict[str, Any]) -> DesiredPod:
    d = decode_document(doc, source="/manifests/p.yaml")
    assert d.desired is not None, d.errors
    return d.desired


def two_containers(**spec: Any) -> DesiredPod:
    return decoded(with_hooks(pod_doc("web", containers=["first", "second"], **spec), 0, postStart=EXEC_HOOK))


# ------------------------------------------------------------------ plan: postStart holds later starts

def test_containers_after_one_with_a_poststart_hook_wait_for_the_hook():
    d = two_containers()
    actions = plan(d, observed(d, sb=None), record=PodRecord(), backoff={}, now=at(0))
    assert actions.create_sandbox and [s.name for s in actions.to_start] == ["first"]


def test_while_a_poststart_hook_runs_no_other_container_starts_and_the_pod_is_not_stopped():
    d = two_containers()
    first = running(d, "first")
    actions = plan(d, observed(d, first), record=PodRecord(), backoff={}, now=at(1),
                   post_start={first.id: PostStart.RUNNING})
    assert actions.to_start == () and not actions.kill_pod and actions.to_kill == ()
    after = plan(d, observed(d, first), record=PodRecord(), backoff={}, now=at(2))   # the hook returned
    assert [s.name for s in after.to_start] == ["second"]


@pytest.mark.parametrize("case", ["new pod", "first crashed"])
def test_a_container_with_a_poststart_hook_that_waits_for_its_image_holds_the_ones_after_it(case):
    # the kubelet's startContainer blocks in the image step, then in the hook: "second" waits for both
    d = two_containers()
    obs = observed(d, sb=None) if case == "new pod" else observed(d, exited(d, "first", 1, finished=1))
    actions = plan(d, obs, record=PodRecord(), backoff={}, now=at(20), pulling=frozenset({"first"}))
    assert actions.to_start == () and actions.pull_held == ("first",)
    assert actions.create_sandbox == (case == "new pod")
    d_plain = decoded(pod_doc("web", containers=["first", "second"]))
    obs = observed(d_plain, sb=None) if case == "new pod" else observed(d_plain, exited(d_plain, "first", 1))
    plain = plan(d_plain, obs, record=PodRecord(), backoff={}, now=at(20), pulling=frozenset({"first"}))
    assert [s.name for s in plain.to_start] == ["second"], "without a hook the others go on"
    assert plain.pull_held == ("first",)


def test_a_pull_wait_in_force_still_names_the_pull_held_containers():
    d = two_containers()
    wait = PodWait(WaitReason.PULLING, at(3600))
    actions = plan(d, observed(d, sb=None), record=PodRecord(), backoff={}, now=at(5), waiting=wait,
                   pulling=frozenset({"first"}))
    assert actions.to_start == () and actions.waiting == wait and actions.pull_held == ("first",)


def test_a_running_poststart_hook_never_holds_a_stop():
    d = two_containers()
    first = running(d, "first")
    actions = plan(d, observed(d, first), record=PodRecord(terminating=True), backoff={}, now=at(1),
                   post_start={first.id: PostStart.RUNNING})
    assert [k.container_id for k in actions.to_kill] == [first.id]


@pytest.mark.parametrize("policy", ["Always", "OnFailure", "Never"])
def test_a_failed_poststart_hook_kills_the_container_and_the_restart_policy_decides(policy):
    d = two_containers(restartPolicy=policy)
    first, second = running(d, "first"), running(d, "second")
    actions = plan(d, observed(d, first, second), record=PodRecord(), backoff={}, now=at(1),
                   post_start={first.id: PostStart.FAILED})
    assert [(k.container_id, k.signal, k.stop_reason, k.message) for k in actions.to_kill] == [
        (first.id, "TERM", StopReason.POST_START_HOOK, "FailedPostStartHook")]
    killed = exited(d, "first", 143, finished=3, stop_reason=StopReason.POST_START_HOOK)
    after = plan(d, observed(d, killed, second), record=PodRecord(), backoff={}, now=at(3))
    assert [s.name for s in after.to_start] == ([] if policy == "Never" else ["first"])


# ------------------------------------------------------------------ status

def test_a_container_whose_poststart_hook_runs_is_containercreating_not_running():
    d = two_containers()
    first = running(d, "first")
    s = pod_status(d, observed(d, first), record=PodRecord(start_time=T0), now=at(1),
                   post_start={first.id: PostStart.RUNNING})
    status = s["containerStatuses"][0]
    assert status["state"] == {"waiting": {"reason": "ContainerCreating"}}
    assert (status["ready"], status["started"], s["phase"]) == (False, False, "Pending")
    done = pod_status(d, observed(d, first), record=PodRecord(start_time=T0), now=at(1))
    assert "running" in done["containerStatuses"][0]["state"]


def test_a_failed_poststart_hook_shows_poststarthookerror_while_stopping_and_after():
    d = two_containers()
    first = running(d, "first")
    error = StartError("PostStartHookError", "Exec lifecycle hook ([sh]) ... failed")
    s = pod_status(d, observed(d, first), record=PodRecord(start_time=T0), now=at(1),
                   post_start={first.id: PostStart.FAILED}, start_errors={"first": error})
    assert s["containerStatuses"][0]["state"]["waiting"] == {"reason": "PostStartHookError",
                                                             "message": error.message}
    killed = exited(d, "first", 143, finished=2, stop_reason=StopReason.POST_START_HOOK)
    s = pod_status(d, observed(d, killed), record=PodRecord(start_time=T0), now=at(2), start_errors={"first": error})
    assert s["containerStatuses"][0]["state"]["waiting"]["reason"] == "PostStartHookError"
    assert s["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] == 143


def test_under_never_a_container_killed_by_its_poststart_hook_shows_terminated():
    d = two_containers(restartPolicy="Never")
    killed = exited(d, "first", 143, finished=2, stop_reason=StopReason.POST_START_HOOK)
    s = pod_status(d, observed(d, killed), record=PodRecord(start_time=T0), now=at(2),
                   start_errors={"first": StartError("PostStartHookError", "failed")})
    assert s["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 143


@pytest.mark.parametrize("containers, budget", [(1, 12288), (3, 4096), (5, 2457)])
def test_termination_messages_share_12_kib_per_pod(containers, budget):
    d = decoded(pod_doc("web", containers=[f"c{i}" for i in range(containers)]))
    assert message_budget(d.pod) == budget
    long = "x" * 5000
    c0 = exited(d, "c0", 1, message=long)
    s = pod_status(d, observed(d, c0), record=PodRecord(start_time=T0), now=at(2))
    assert s["containerStatuses"][0]["state"]["terminated"]["message"] == long[:budget]


def test_a_message_cut_inside_a_character_ends_with_a_replacement_character():
    assert truncate_message("aé", 2) == "a\ufffd"
    assert truncate_message("aé", 3) == "aé"


# ------------------------------------------------------------------ hook actions and messages

def test_an_httpget_hook_resolves_host_port_and_path_as_a_probe_does():
    doc = pod_doc("web")
    doc["spec"]["containers"][0]["ports"] = [{"name": "http", "containerPort": 8080}]
    get = {"httpGet": {"port": "http", "path": "hook", "httpHeaders": [{"name": "X-A", "value": "1"}]}}
    d = decoded(with_hooks(doc, postStart=get, preStop={"httpGet": {"port": "9090", "host": "10.0.0.9",
                                                                     "scheme": "HTTPS"}}))
    c = d.pod.spec.containers[0]
    post = hooks.hook_action(c, hooks.POST_START, container_id="c1", pod_ip="10.1.0.5", timeout_s=30, now=T0)
    assert post is not None and post.target is not None
    assert (post.target.host, post.target.port, post.target.path, post.target.headers, post.target.scheme) == (
        "10.1.0.5", 8080, "/hook", (("X-A", "1"),), "http")
    pre = hooks.hook_action(c, hooks.PRE_STOP, container_id="c1", pod_ip="10.1.0.5", timeout_s=2, now=T0)
    assert pre is not None and pre.target is not None
    assert (pre.target.host, pre.target.port, pre.target.scheme, pre.target.timeout_s) == ("10.0.0.9", 9090,
                                                                                          "https", 2)


def test_a_tcpsocket_hook_cannot_run_and_an_unknown_port_name_fails_the_hook():
    d = decoded(with_hooks(pod_doc("web"), postStart={"tcpSocket": {"port": 80}},
                           preStop={"httpGet": {"port": "nope"}}))
    c = d.pod.spec.containers[0]
    tcp = hooks.hook_action(c, hooks.POST_START, container_id="c", pod_ip=None, timeout_s=1, now=T0)
    assert tcp is not None and tcp.action == "invalid"
    assert hooks.failure_message(tcp, container="app", pod="p", error=tcp.error).startswith(
        "Cannot run handler: invalid handler: tcpSocket")
    named = hooks.hook_action(c, hooks.PRE_STOP, container_id="c", pod_ip=None, timeout_s=1, now=T0)
    assert named is not None and named.action == "invalid" and "couldn't find port: nope" in named.error


def test_an_exec_hook_failure_is_worded_as_the_kubelet_words_it():
    action = hooks.HookAction(hooks.POST_START, "exec", command=("sh", "-c", "exit 3"))
    message = hooks.failure_message(action, container="app", pod=hooks.pod_ref("web", "default", "u1"),
                                    error=hooks.exec_error(action.command, 3, "oops\n"), output="out\noops\n")
    assert message == ('Exec lifecycle hook ([sh -c exit 3]) for Container "app" in Pod "web_default(u1)" failed - '
                       "error: command 'sh -c exit 3' exited with 3: oops\n, message: \"out\\noops\\n\"")


# ------------------------------------------------------------------ the agent on the fake runtime

@pytest.fixture
def env(tmp_path):
    with simulated_node(tmp_path) as node:
        yield node


def test_poststart_runs_before_the_next_container_is_created(env):
    env.write("web.yaml", with_hooks(pod_doc("web", containers=["first", "second"]), 0, postStart=EXEC_HOOK))
    env.settle()
    ops = [op for op, _ in env.runtime.calls]
    assert ops.count("create_container") == 2
    second_create = [i for i, op in enumerate(ops) if op == "create_container"][1]
    assert ops.index("exec") < second_create
    assert env.row("web").status == "Running" and env.row("web").ready == "2/2"
    assert not any(e["reason"] == "FailedPostStartHook" for e in env.events())


def test_a_failing_poststart_hook_kills_the_container_and_it_goes_to_crashloopbackoff(env):
    env.runtime.script("web", "app", Behavior(exec_exit_code=3))
    env.write("web.yaml", with_hooks(pod_doc("web"), postStart={"exec": {"command": ["sh", "-c", "exit 3"]}}))
    env.settle()
    failed = env.events("FailedPostStartHook")
    assert failed and failed[0]["type"] == "Warning" and failed[0]["message"] == "PostStartHook failed"
    assert any(e["message"] == "FailedPostStartHook" for e in env.events("Killing"))
    status = env.container("web")
    assert status["restartCount"] >= 1
    waiting = status["state"]["waiting"]
    assert waiting["reason"] == "CrashLoopBackOff"
    assert status["lastState"]["terminated"]["exitCode"] == 143
    env.advance(10)
    status = env.container("web")
    assert status["restartCount"] >= 2


def test_a_failed_poststart_hook_under_never_leaves_the_pod_failed(env):
    env.runtime.script("job", "app", Behavior(exec_exit_code=1))
    env.write("job.yaml", with_hooks(pod_doc("job", restartPolicy="Never"),
                                     postStart={"exec": {"command": ["false"]}}))
    env.settle()
    assert env.pod("job")["status"]["phase"] == "Failed"
    assert env.container("job", "app")["state"]["terminated"]["exitCode"] == 143
    assert env.container("job", "app")["restartCount"] == 0


def test_a_failing_prestop_hook_is_a_warning_and_the_container_still_stops(env):
    env.runtime.script("web", "app", Behavior(exec_exit_code=2))
    path = env.write("web.yaml", with_hooks(pod_doc("web"), preStop={"exec": {"command": ["false"]}}))
    env.settle()
    path.unlink()
    env.agent.hint_manifests()
    env.settle()
    assert [e["message"] for e in env.events("FailedPreStopHook")] == ["PreStopHook failed"]
    assert env.pods() == []


def test_after_a_prestop_hook_the_container_has_at_least_two_seconds_before_sigkill(env):
    env.runtime.script("web", "app", Behavior(ignore_sigterm=True))
    doc = with_hooks(pod_doc("web"), preStop={"exec": {"command": ["true"]}})
    doc["spec"]["terminationGracePeriodSeconds"] = 1
    path = env.write("web.yaml", doc)
    env.settle()
    path.unlink()
    env.agent.hint_manifests()
    env.settle()
    env.advance(1.5)   # past the grace period: the 2 s after the hook are not over
    assert not [op for op, _ in env.runtime.calls if op == "signal_KILL"]
    env.advance(0.6)
    assert [op for op, _ in env.runtime.calls if op.startswith("signal_")] == ["signal_TERM", "signal_KILL"]


def test_the_kill_deadline_after_a_prestop_hook_keeps_the_rest_of_the_grace_period_and_two_seconds_at_least():
    deadline = hooks.pre_stop_deadline(T0, 30)
    assert deadline == at(32)
    assert hooks.deadline_after_pre_stop(deadline, at(5)) == at(30)    # the rest of the grace period
    assert hooks.deadline_after_pre_stop(deadline, at(29)) == at(31)   # 2 s at least
    assert hooks.deadline_after_pre_stop(deadline, at(30)) == at(32)   # the hook used it all


# ------------------------------------------------------------------ validation of lifecycle handlers

@pytest.mark.parametrize("lifecycle, error", [
    ({"postStart": {}}, "spec.containers[0].lifecycle.postStart: Required value: must specify a handler type"),
    ({"preStop": {"exec": {"command": ["true"]}, "sleep": {"seconds": 1}}},
     "spec.containers[0].lifecycle.preStop.sleep: Forbidden: may not specify more than 1 handler type"),
    ({"postStart": {"exec": {"command": []}}}, "spec.containers[0].lifecycle.postStart.exec.command: Required value"),
    ({"preStop": {"httpGet": {"port": 0}}},
     "spec.containers[0].lifecycle.preStop.httpGet.port: Invalid value: must be between 1 and 65535, inclusive"),
    ({"preStop": {"httpGet": {"port": "no_such-"}}},
     "spec.containers[0].lifecycle.preStop.httpGet.port: Invalid value"),
    ({"preStop": {"httpGet": {"port": 80, "scheme": "FTP"}}},
     "spec.containers[0].lifecycle.preStop.httpGet.scheme: Unsupported value"),
    ({"preStop": {"sleep": {"seconds": 31}}}, "spec.containers[0].lifecycle.preStop.sleep.seconds: Invalid value: "
                                             "must be non-negative and less than terminationGracePeriodSeconds (30)"),
    ({"preStop": {"sleep": {"seconds": 30}}}, None),
    ({"postStart": {"tcpSocket": {"port": 80}}}, None),
    ({"postStart": {"httpGet": {"port": "8080", "path": "/ready"}}}, None),
])
def test_lifecycle_handlers_are_validated_as_kubernetes_validates_them(lifecycle, error):
    d = decode_document(with_hooks(pod_doc("web"), **lifecycle), source="/manifests/p.yaml")
    messages = [str(e) for e in d.errors]
    if error is None:
        assert d.desired is not None, messages
    else:
        assert any(m.startswith(error) for m in messages), messages


def test_a_poststart_hook_is_no_longer_reported_as_not_implemented():
    d = decode_document(with_hooks(pod_doc("web"), postStart=EXEC_HOOK), source="/manifests/p.yaml")
    assert d.desired is not None and not any("postStart" in str(w) for w in d.warnings)


# ------------------------------------------------------------------ stdin and tty in the OCI spec and conmon's argv

@pytest.mark.parametrize("fields, terminal, flags", [
    ({}, False, []), ({"tty": True}, True, ["-t"]), ({"stdin": True}, False, ["-i", "--leave-stdin-open"]),
    ({"tty": True, "stdin": True}, True, ["-t", "-i", "--leave-stdin-open"]),
    ({"stdin": True, "stdinOnce": True}, False, ["-i"]), ({"tty": True, "stdin": True, "stdinOnce": True}, True,
                                                          ["-t", "-i"]),
])
def test_tty_makes_a_terminal_and_stdin_an_open_pipe(fields, terminal, flags):
    from kubelite.api.models import Container
    from kubelite.runtime import ocispec
    from tests.test_ocispec import CONMON, spec

    c = Container.model_validate({"name": "app", "image": "busybox:1.36", **fields})
    assert spec(c)["process"]["terminal"] is terminal
    argv = ocispec.conmon_argv(**CONMON, log_size_max=None, terminal=bool(c.tty), stdin=bool(c.stdin),
                               stdin_once=bool(c.stdin_once))
    assert argv[len(ocispec.conmon_argv(**CONMON, log_size_max=None)):] == flags


# ------------------------------------------------------------------ reading a termination message

def cri(*lines: str, stream: str = "stdout") -> str:
    return "".join(f"2026-11-28T06:00:0{i % 10}.000000000+00:00 {stream} F {text}\n" for i, text in enumerate(lines))


def test_the_message_is_the_last_4_kib_of_the_file_and_the_file_is_writable_by_anyone(tmp_path):
    from kubelite.runtime import termination

    path = tmp_path / termination.FILE_NAME
    termination.create_file(path)
    assert path.stat().st_mode & 0o777 == 0o666 and path.read_bytes() == b""
    path.write_text("a" * 10 + "b" * 4096)
    assert termination.read_message(path, policy="File", exit_code=1, log_path=None) == "b" * 4096


@pytest.mark.parametrize("policy, code, written, expected", [
    ("File", 1, "", ""),                                     # File: the log is never read
    ("FallbackToLogsOnError", 0, "", ""),                    # success: no fallback
    ("FallbackToLogsOnError", 2, "", "one\ntwo\n"),          # failure, empty file: the log's tail
    ("FallbackToLogsOnError", 2, "from file", "from file"),  # the file wins when written
])
def test_fallback_to_logs_only_when_the_container_failed_and_wrote_no_message(tmp_path, policy, code, written,
                                                                              expected):
    from kubelite.runtime import termination

    path, log = tmp_path / "termination-log", tmp_path / "0.log"
    path.write_text(written)
    log.write_text(cri("one", "two"))
    assert termination.read_message(path, policy=policy, exit_code=code, log_path=log) == expected


def test_the_log_fallback_keeps_80_lines_and_2_kib_and_joins_partial_records(tmp_path):
    from kubelite.runtime import termination

    log = tmp_path / "0.log"
    log.write_text(cri(*[f"l{i}" for i in range(100)]) +
                   "2026-11-28T06:00:01.000000000+00:00 stderr P half \n"
                   "2026-11-28T06:00:01.100000000+00:00 stderr F line\n")
    tail = termination.log_tail(log)
    assert tail.splitlines() == [f"l{i}" for i in range(21, 100)] + ["half line"]
    log.write_text(cri(*["x" * 100 for _ in range(50)]))
    assert len(termination.log_tail(log).encode()) == 2048


def test_a_planted_symlink_is_not_followed(tmp_path):
    from kubelite.runtime import termination

    secret = tmp_path / "secret"
    secret.write_text("host secret")
    link = tmp_path / "termination-log"
    link.symlink_to(secret)
    assert termination.read_message(link, policy="File", exit_code=1, log_path=None) == ""


def test_the_log_fallback_reads_further_back_only_when_the_end_holds_too_little(tmp_path):
    from kubelite.runtime import termination

    log = tmp_path / "0.log"
    huge = "y" * 200_000      # one record longer than the first read: the second read finds it
    log.write_text(cri("before", huge[:100_000]) + cri("z" * 10))
    assert termination.log_tail(log).endswith("y" * 100 + "\n" + "z" * 10 + "\n")


def test_a_sidecar_whose_poststart_hook_runs_holds_the_next_init_container_and_the_pod_is_not_initialized():
    doc = pod_doc("web", sidecars=["proxy"], init=[])
    doc["spec"]["initContainers"].append({"name": "setup", "image": "busybox:1.36"})
    doc["spec"]["initContainers"][0]["lifecycle"] = {"postStart": EXEC_HOOK}
    d = decoded(doc)
    proxy = running(d, "proxy")
    held = plan(d, observed(d, proxy), record=PodRecord(), backoff={}, now=at(1),
                post_start={proxy.id: PostStart.RUNNING})
    assert held.to_start == ()
    s = pod_status(d, observed(d, proxy), record=PodRecord(start_time=T0), now=at(1),
                   post_start={proxy.id: PostStart.RUNNING})
    assert {c["type"]: c["status"] for c in s["conditions"]}["Initialized"] == "False"
    released = plan(d, observed(d, proxy), record=PodRecord(), backoff={}, now=at(2))
    assert [a.name for a in released.to_start] == ["setup"]


def test_an_httpget_hook_is_never_sent_from_the_host_s_network_when_the_pod_s_is_gone():
    import http.server
    import threading

    from kubelite.agent.hooks import HookRunner, NoNetwork
    from kubelite.runtime.fake import FakeRuntime

    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            requests.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        doc = pod_doc("web")
        get = {"httpGet": {"host": "127.0.0.1", "port": server.server_address[1], "path": "/hook"}}
        c = decoded(with_hooks(doc, postStart=get)).pod.spec.containers[0]
        action = hooks.hook_action(c, hooks.POST_START, container_id="c1", pod_ip="10.1.0.5", timeout_s=5, now=T0)
        assert action is not None
        runner = HookRunner(FakeRuntime(), wake=lambda: None, user_agent="kube-lifecycle/1.32")
        runner._run_post_start("u1", "c1", "app", "default/web", action, NoNetwork("pod sandbox s1 is not running"))
        [outcome] = runner.finished()
        assert "the pod's network namespace is not available: pod sandbox s1 is not running" in outcome.failure
        assert requests == []
        runner._run_post_start("u1", "c1", "app", "default/web", action, None)   # hostNetwork: the host's
        [outcome] = runner.finished()
        assert outcome.failure == "" and requests == ["/hook"]
    finally:
        server.shutdown()
        server.server_close()
