"""Real pods: runc containers monitored by conmon, sharing a pod's namespaces, on this machine.

Every test here runs real containers as root from the busybox image that
`scripts/build-busybox-image` makes from Debian's busybox-static, and checks afterwards that it
left no mount, cgroup, conmon process or runc container behind.
"""

from __future__ import annotations

import time

import pytest

from tests.real import Node, container, pod

pytestmark = pytest.mark.real


def test_two_containers_of_a_pod_share_localhost_and_hostname_and_each_is_pid_1(node):
    node.write(pod("duo",
                   container("server", "mkdir /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"),
                   container("client", "exec sleep 3600")))
    node.until(lambda: node.running("duo", "server") and node.running("duo", "client"), what="both running")
    code, body = node.until(lambda: (r := node.exec("duo", "client", "wget", "-q", "-O", "-",
                                                     "http://127.0.0.1:8080/")) and r[0] == 0 and r,
                            what="the server to answer on localhost")
    assert body == "duo\n"
    assert node.exec("duo", "client", "hostname") == (0, "duo\n")
    assert node.exec("duo", "server", "cat", "/proc/1/cmdline")[1].startswith("httpd")
    assert node.exec("duo", "client", "cat", "/proc/1/cmdline")[1].startswith("sleep")
    ps = node.exec("duo", "client", "ps", "-o", "comm")[1]
    assert "httpd" not in ps, "each container has its own PID namespace"


def test_share_process_namespace_lets_containers_see_each_other(node):
    node.write(pod("shared", container("a", "exec sleep 3601"), container("b", "exec sleep 3602"),
                   shareProcessNamespace=True))
    node.until(lambda: node.running("shared", "a") and node.running("shared", "b"), what="both running")
    ps = node.exec("shared", "a", "ps", "-o", "args")[1]
    assert "sleep 3601" in ps and "sleep 3602" in ps
    assert "catatonit" in node.exec("shared", "a", "cat", "/proc/1/cmdline")[1]


@pytest.mark.parametrize("policy", ["Always", "OnFailure", "Never"])
def test_a_container_that_exits_1_under_each_restart_policy(node, policy):
    node.write(pod("fails", container("app", "echo bye; exit 1"), restartPolicy=policy))
    if policy == "Never":
        node.until(lambda: node.status("fails").get("phase") == "Failed", what="the pod to fail")
        terminated = node.container("fails", "app")["state"]["terminated"]
        assert (terminated["exitCode"], terminated["reason"]) == (1, "Error")
        time.sleep(0.5)
        node.step()
        assert node.container("fails", "app")["restartCount"] == 0
    else:
        node.until(lambda: node.container("fails", "app").get("restartCount", 0) >= 1, what="a restart")
        last = node.container("fails", "app")["lastState"]["terminated"]
        assert (last["exitCode"], last["reason"]) == (1, "Error")


def test_kubelite_kill_crashes_a_container_and_the_restart_policy_acts(node):
    node.write(pod("victim", container("app", "exec sleep 3600")))
    node.until(lambda: node.running("victim", "app"), what="running")
    first = node.container_id("victim", "app")
    result = node.cli("kill", "victim", "-s", "KILL")
    assert result.returncode == 0, result.stderr
    node.until(lambda: node.running("victim", "app", restarts=1), what="the restart")
    status = node.container("victim", "app")
    assert (status["lastState"]["terminated"]["exitCode"], status["lastState"]["terminated"]["reason"]) == (137, "Error")
    assert node.container_id("victim", "app") != first


def test_an_oom_killed_container_is_reported_oomkilled_137(node):
    node.write(pod("hog", container("app", "exec dd if=/dev/zero of=/dev/null bs=64M count=1",
                                    resources={"limits": {"memory": "16Mi"}}), restartPolicy="Never"))
    node.until(lambda: "terminated" in node.container("hog", "app").get("state", {}), what="the OOM kill")
    terminated = node.container("hog", "app")["state"]["terminated"]
    assert (terminated["reason"], terminated["exitCode"]) == ("OOMKilled", 137)


def test_a_container_that_ignores_sigterm_is_killed_after_its_grace_period(node):
    path = node.write(pod("stubborn", container("app", "trap '' TERM; touch /trapped; while true; do sleep 1; done")))
    node.until(lambda: node.running("stubborn", "app"), what="running")
    # SIGTERM before the shell has run `trap` (runc's init still starting it, on a loaded machine)
    # ends the process at once: wait until the trap is set
    node.until(lambda: node.exec("stubborn", "app", "test", "-e", "/trapped")[0] == 0, what="the trap set")
    path.unlink()
    node.agent.hint_manifests()
    started = time.monotonic()
    node.until(lambda: not node.agent.pods, timeout=15, what="the pod to be gone")
    elapsed = time.monotonic() - started
    assert 1.8 <= elapsed < 6, f"stopped after {elapsed:.1f}s; the grace period is 2s"


def test_logs_and_previous_logs(node):
    node.write(pod("talker", container("app", 'echo "out $(cat /proc/uptime)"; echo err >&2; sleep 0.3; exit 3'),
                   restartPolicy="OnFailure"))
    node.until(lambda: node.container("talker", "app").get("restartCount", 0) >= 1, what="one restart")
    node.until(lambda: "out" in node.cli("logs", "talker").stdout, what="the current log")
    current = node.cli("logs", "talker").stdout
    previous = node.cli("logs", "talker", "--previous")
    assert previous.returncode == 0, previous.stderr
    assert previous.stdout.splitlines()[0].startswith("out ") and "err" in previous.stdout
    assert previous.stdout != current or current.count("out") == 1
    tail = node.cli("logs", "talker", "--previous", "--tail", "1", "--timestamps").stdout
    assert tail.count("\n") == 1 and tail[:4].isdigit() and "Z " in tail


def test_exec_runs_in_the_container_and_propagates_the_exit_code(node):
    node.write(pod("shell", container("app", "echo ready > /tmp/mark; exec sleep 3600")))
    node.until(lambda: node.running("shell", "app"), what="running")
    node.until(lambda: node.exec("shell", "app", "cat", "/tmp/mark")[0] == 0, what="the marker file")
    result = node.cli("exec", "shell", "--", "sh", "-c", "cat /tmp/mark; exit 4")
    assert (result.returncode, result.stdout) == (4, "ready\n")


def test_two_instances_never_see_each_others_pods(tmp_path, busybox):
    a = Node(tmp_path / "a" / "m", tmp_path / "a" / "state", tmp_path / "a" / "run", busybox).start()
    b = Node(tmp_path / "b" / "m", tmp_path / "b" / "state", tmp_path / "b" / "run", busybox).start()
    try:
        a.write(pod("same", container("app", "exec sleep 3600")))
        b.write(pod("same", container("app", "exec sleep 3600")))
        a.until(lambda: a.running("same", "app"), what="a's pod")
        b.until(lambda: b.running("same", "app"), what="b's pod")
        ids_a = {c.id for c in a.runtime.list_containers()}
        ids_b = {c.id for c in b.runtime.list_containers()}
        assert ids_a and ids_b and not ids_a & ids_b
        assert a.runtime.instance != b.runtime.instance
    finally:
        assert a.close() == [] and b.close() == []


def test_logs_follow_prints_lines_as_they_come_until_the_container_exits(node):
    node.write(pod("ticker", container("app", "for i in 1 2 3; do echo tick $i; sleep 0.4; done"),
                   restartPolicy="Never"))
    node.until(lambda: node.running("ticker", "app"), what="running")
    import subprocess
    import sys
    follow = subprocess.Popen([sys.executable, "-m", "kubelite.cli.main", "logs", "-f", "ticker"], env=node.env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    node.until(lambda: node.status("ticker").get("phase") == "Succeeded", what="the container to finish")
    out, err = follow.communicate(timeout=15)
    assert follow.returncode == 0, err
    assert out.splitlines() == ["tick 1", "tick 2", "tick 3"]


def test_image_commands_and_an_image_in_use_is_not_removed(node):
    listed = node.cli("image", "ls").stdout
    assert "docker.io/library/busybox:latest" in listed
    node.write(pod("user", container("app", "exec sleep 3600")))
    node.until(lambda: node.running("user", "app"), what="running")
    refused = node.cli("image", "rm", "busybox")
    assert refused.returncode == 1 and "in use by pod default/user" in refused.stderr


def test_the_pod_shares_dev_shm_and_security_settings_apply(node):
    node.write(pod("sec",
                   container("writer", "echo shared > /dev/shm/note; exec sleep 3600",
                             securityContext={"runAsUser": 1000, "allowPrivilegeEscalation": False}),
                   container("reader", "exec sleep 3600"),
                   container("admin", "exec sleep 3600", securityContext={"privileged": True})))
    node.until(lambda: all(node.running("sec", c) for c in ("writer", "reader", "admin")), what="all running")
    node.until(lambda: node.exec("sec", "reader", "cat", "/dev/shm/note") == (0, "shared\n"), what="the shm file")
    assert node.exec("sec", "writer", "id", "-u") == (0, "1000\n")
    status = node.exec("sec", "writer", "cat", "/proc/self/status")[1]
    assert "NoNewPrivs:\t1" in status
    bounding = int(next(line for line in status.splitlines() if line.startswith("CapBnd:")).split()[1], 16)
    assert not bounding & (1 << 25), "CAP_SYS_TIME: a container must never set the host clock"
    admin = node.exec("sec", "admin", "cat", "/proc/self/status")[1]
    admin_bounding = int(next(line for line in admin.splitlines() if line.startswith("CapBnd:")).split()[1], 16)
    assert admin_bounding & (1 << 25), "privileged gets every capability the host has"


def test_prestop_runs_before_sigterm_and_a_failing_hook_is_reported(node):
    hook = {"preStop": {"exec": {"command": ["sh", "-c", "sleep 1; exit 3"]}}}
    path = node.write(pod("hooked", container("app", "trap 'exit 0' TERM; while true; do sleep 0.1; done",
                                              lifecycle=hook), terminationGracePeriodSeconds=10))
    node.until(lambda: node.running("hooked", "app"), what="running")
    path.unlink()
    node.agent.hint_manifests()
    started = time.monotonic()
    node.until(lambda: not node.agent.pods, timeout=15, what="the pod to be gone")
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 5, f"took {elapsed:.1f}s: the hook (1 s) runs first, then TERM ends it at once"
    messages = [row[0] for row in node.store.execute_sql("SELECT message FROM events WHERE reason='FailedPreStopHook'")]
    assert messages == ["PreStopHook failed"]   # as the kubelet: the hook's output stays out of events


def test_a_container_whose_record_was_never_written_is_removed_at_the_next_start(tmp_path, busybox):
    """kubelite killed between `runc create` and writing the container's record: the next start of
    the runtime deletes the runc container (and its cgroup) instead of leaving it behind."""
    import subprocess

    from kubelite.api.models import Container
    from kubelite.runtime.images import ImageStore
    from kubelite.runtime.oci import OCIRuntime
    from kubelite.runtime.protocol import ContainerConfig, SandboxConfig
    from tests.real import leftovers

    root, run = tmp_path / "state", tmp_path / "run"
    images = ImageStore(root)
    images.load(busybox)
    runtime = OCIRuntime(root=root, run_dir=run, images=images)
    sandbox = runtime.run_sandbox(SandboxConfig(uid="u1", name="p", namespace="default", attempt=0,
                                                sandbox_hash="h", hostname="p", log_directory=str(tmp_path / "logs")))
    app = Container.model_validate({"name": "app", "image": "busybox:latest", "command": ["sleep", "600"]})
    cid = runtime.create_container(sandbox, ContainerConfig(uid="u1", pod_name="p", namespace="default", container=app,
                                                            attempt=0, spec_hash="x",
                                                            log_path=str(tmp_path / "logs" / "app.log")))
    (run / "containers" / cid / "record.json").unlink()   # as if kubelite had died before writing it
    runtime.close()

    again = OCIRuntime(root=root, run_dir=run, images=images)
    listed = subprocess.run([again.bin["runc"], "--root", str(run / "runc"), "list", "-q"], capture_output=True,
                            text=True).stdout.split()
    assert cid not in listed and not (run / "containers" / cid).exists()
    assert cid not in {c.id for c in again.list_containers()}
    again.stop_sandbox(sandbox)
    again.remove_sandbox(sandbox)
    again.close()
    assert leftovers(root, run, again.instance) == []
