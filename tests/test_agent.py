"""The agent end to end on the fake runtime: real manifest files, a real SQLite file, frozen time.

Driven step by step with `run_once()` (no watcher thread, no sleeping): time moves only when a
test moves it. What the CLI would print is read back through the CLI's own read path.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from freezegun import freeze_time

from kubelite.agent.agent import Agent, AgentConfig
from kubelite.runtime.fake import Behavior, FakeRuntime
from kubelite.store.reader import Reader
from kubelite.store.store import Store
from tests.helpers import T0, pod_doc
from tests.simulated import simulated_node


@pytest.fixture
def env(tmp_path: Path):
    with simulated_node(tmp_path) as node:
        yield node


# ------------------------------------------------------------------ basics

def test_a_manifest_becomes_a_running_pod(env):
    env.write("web.yaml", pod_doc("web"))
    env.settle()
    row = env.row("web")
    assert (row.ready, row.status, row.restarts) == ("1/1", "Running", "0")
    pod = env.pod("web")
    assert pod["spec"]["nodeName"] == "node1"
    assert pod["metadata"]["annotations"]["kubernetes.io/config.source"] == "file"
    # no cluster DNS on this node: ClusterFirst falls back to the host's resolver, as the kubelet says
    assert [e["reason"] for e in env.events()] == ["Scheduled", "MissingClusterDNS", "Pulled", "Created", "Started"]


@pytest.mark.parametrize("policy, code, restarts, status", [
    ("Always", 0, 1, "Running"), ("Always", 1, 1, "Running"),
    ("OnFailure", 0, 0, "Completed"), ("OnFailure", 1, 1, "Running"),
    ("Never", 0, 0, "Completed"), ("Never", 1, 0, "Error"),
])
def test_every_restart_policy_and_exit_code(env, policy, code, restarts, status):
    env.runtime.script("job", "app", Behavior(exit_after_s=5, exit_code=code), Behavior())
    env.write("job.yaml", pod_doc("job", restartPolicy=policy))
    env.settle()
    env.advance(5)
    row = env.row("job")
    assert row.status == status
    assert env.container("job")["restartCount"] == restarts
    phase = env.pod("job")["status"]["phase"]
    if restarts:
        assert phase == "Running"
        assert env.container("job")["lastState"]["terminated"]["exitCode"] == code
    else:
        assert phase == ("Succeeded" if code == 0 else "Failed")


def test_crashloopbackoff_waits_0_10_20_40_80_160_300_300_seconds(env):
    env.runtime.script("crashy", "app", Behavior(exit_after_s=0, exit_code=1))
    started_at = []
    original = env.runtime.start_container

    def recording_start(container_id: str) -> None:
        original(container_id)
        started_at.append(env.now())

    env.runtime.start_container = recording_start  # type: ignore[method-assign]
    env.write("crashy.yaml", pod_doc("crashy"))
    while len(started_at) < 9:
        wake = env.settle()
        assert wake is not None
        env.clock.move_to(wake)
    waits = [(b - a).total_seconds() for a, b in zip(started_at, started_at[1:])]
    assert waits == [0, 10, 20, 40, 80, 160, 300, 300]
    row = env.row("crashy")
    assert row.status in ("CrashLoopBackOff", "Error", "Running")


def test_crash_loop_status_and_message_as_kubectl_shows_them(env):
    env.runtime.script("crashy", "app", Behavior(exit_after_s=0, exit_code=1))
    env.write("crashy.yaml", pod_doc("crashy"))
    env.settle()                 # start, exit, immediate restart, exit, hold 10 s
    env.advance(10)              # restart, exit, hold 20 s
    env.advance(3)
    state = env.container("crashy")["state"]
    uid = env.pod("crashy")["metadata"]["uid"]
    assert state["waiting"] == {"reason": "CrashLoopBackOff",
                                "message": f"back-off 20s restarting failed container=app pod=crashy_default({uid})"}
    row = env.row("crashy")
    assert (row.status, row.restarts, row.ready) == ("CrashLoopBackOff", "2 (3s ago)", "0/1")
    backoff = env.events("BackOff")
    assert backoff and backoff[0]["type"] == "Warning" and backoff[0]["count"] == 2
    assert backoff[0]["message"] == f"Back-off restarting failed container app in pod crashy_default({uid})"


def test_backoff_resets_after_ten_minutes_of_running(env):
    env.runtime.script("app", "app", Behavior(exit_after_s=0, exit_code=1), Behavior(exit_after_s=0, exit_code=1),
                       Behavior(exit_after_s=601, exit_code=1), Behavior())
    env.write("app.yaml", pod_doc("app"))
    env.settle()                     # attempt 0 fails; attempt 1 starts at once and fails: hold 10 s
    env.advance(10)                  # attempt 2 runs for 601 s
    assert env.container("app", "app")["restartCount"] == 2
    env.advance(601)                 # it fails: the restart is immediate again
    assert env.container("app", "app")["restartCount"] == 3
    assert env.container("app", "app")["state"].get("running")


def test_oom_kill_is_reported_as_oomkilled_137(env):
    env.runtime.script("hog", "app", Behavior(oom_after_s=2), Behavior())
    env.write("hog.yaml", pod_doc("hog"))
    env.settle()
    env.advance(2)
    last = env.container("hog")["lastState"]["terminated"]
    assert (last["reason"], last["exitCode"]) == ("OOMKilled", 137)
    assert env.container("hog")["restartCount"] == 1


# ------------------------------------------------------------------ init containers and sidecars

def test_init_containers_then_sidecar_then_app(env):
    env.runtime.script("p", "one", Behavior(exit_after_s=1))
    env.runtime.script("p", "two", Behavior(exit_after_s=1))
    doc = pod_doc("p", init=["one", "two"])
    doc["spec"]["initContainers"].append({"name": "proxy", "image": "busybox:1.36", "restartPolicy": "Always"})
    env.write("p.yaml", doc)
    env.settle()
    assert env.row("p").status == "Init:0/3"
    env.advance(1)
    assert env.row("p").status == "Init:1/3"
    env.advance(1)
    row = env.row("p")
    assert (row.status, row.ready) == ("Running", "2/2")
    order = [e["involvedObject"]["fieldPath"] for e in env.events("Started")]
    assert order == ["spec.initContainers{one}", "spec.initContainers{two}", "spec.initContainers{proxy}",
                     "spec.containers{app}"]


def test_a_failing_init_container_keeps_the_pod_pending_with_backoff(env):
    env.runtime.script("p", "setup", Behavior(exit_after_s=0, exit_code=2))
    env.write("p.yaml", pod_doc("p", init=["setup"]))
    env.settle()
    row = env.row("p")
    assert row.status == "Init:CrashLoopBackOff" and env.pod("p")["status"]["phase"] == "Pending"


def test_a_failing_init_container_under_never_fails_the_pod(env):
    env.runtime.script("p", "setup", Behavior(exit_after_s=0, exit_code=2))
    env.write("p.yaml", pod_doc("p", init=["setup"], restartPolicy="Never"))
    env.settle()
    assert env.row("p").status == "Init:Error" and env.pod("p")["status"]["phase"] == "Failed"
    assert env.creates() == 1


# ------------------------------------------------------------------ updates and deletion

def test_rewriting_identical_content_does_nothing(env):
    path = env.write("web.yaml", pod_doc("web"))
    env.settle()
    before = list(env.runtime.calls)
    path.write_text(path.read_text())
    env.agent.hint_manifests()
    env.settle()
    assert env.runtime.calls == before


def test_a_change_to_one_container_restarts_only_that_container(env):
    doc = pod_doc("trio", containers=["a", "b", "c"])
    env.write("trio.yaml", doc)
    env.settle()
    uid = env.pod("trio")["metadata"]["uid"]
    doc["spec"]["containers"][1]["image"] = "busybox:1.37"
    env.write("trio.yaml", doc)
    env.settle()
    pod = env.pod("trio")
    assert pod["metadata"]["uid"] == uid
    counts = {s["name"]: s["restartCount"] for s in pod["status"]["containerStatuses"]}
    assert counts == {"a": 0, "b": 1, "c": 0}
    assert env.container("trio", "b")["image"] == "busybox:1.37"
    killing = env.events("Killing")
    assert [e["message"] for e in killing] == ["Container b definition changed, will be restarted"]
    assert env.creates() == 4


def test_a_pod_level_change_replaces_the_pod(env):
    doc = pod_doc("web")
    env.write("web.yaml", doc)
    env.settle()
    old_uid = env.pod("web")["metadata"]["uid"]
    doc["spec"]["hostname"] = "other"
    env.write("web.yaml", doc)
    env.settle()
    pods = env.pods()
    assert len(pods) == 1 and pods[0]["metadata"]["uid"] != old_uid
    assert env.row("web").status == "Running" and env.container("web")["restartCount"] == 0


def test_a_label_change_restarts_nothing(env):
    doc = pod_doc("web")
    env.write("web.yaml", doc)
    env.settle()
    creates = env.creates()
    doc["metadata"]["labels"] = {"tier": "front"}
    env.write("web.yaml", doc)
    env.settle()
    assert env.creates() == creates and env.pod("web")["metadata"]["labels"] == {"tier": "front"}


def test_deleting_the_file_terminates_the_pod_gracefully_and_removes_it(env):
    env.runtime.script("web", "app", Behavior(ignore_sigterm=True))
    path = env.write("web.yaml", pod_doc("web", terminationGracePeriodSeconds=5))
    env.settle()
    path.unlink()
    env.agent.hint_manifests()
    env.settle()
    assert env.row("web").status == "Terminating"
    env.advance(4)
    assert env.pods(), "still within the grace period"
    env.advance(1)
    assert env.pods() == []
    ops = [op for op, _ in env.runtime.calls]
    assert ops.index("signal_TERM") < ops.index("signal_KILL")
    assert env.runtime.list_containers() == [] and env.runtime.list_sandboxes() == []


def test_a_container_that_handles_sigterm_stops_without_sigkill(env):
    path = env.write("web.yaml", pod_doc("web"))
    env.settle()
    path.unlink()
    env.agent.hint_manifests()
    env.settle()
    assert env.pods() == []
    assert "signal_KILL" not in [op for op, _ in env.runtime.calls]


def test_active_deadline_fails_the_pod(env):
    env.write("job.yaml", pod_doc("job", activeDeadlineSeconds=30))
    env.settle()
    env.advance(30)
    env.advance(2)
    pod = env.pod("job")
    assert (pod["status"]["phase"], pod["status"]["reason"]) == ("Failed", "DeadlineExceeded")
    assert env.row("job").status == "Error"  # kubectl: the terminated container's reason wins over status.reason
    assert env.events("DeadlineExceeded")


# ------------------------------------------------------------------ bad input

def test_an_invalid_edit_keeps_the_last_valid_version_running(env):
    path = env.write("web.yaml", pod_doc("web"))
    env.settle()
    uid = env.pod("web")["metadata"]["uid"]
    path.write_text("apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers: [{name: Bad_Name}]\n")
    env.agent.hint_manifests()
    env.settle()
    assert env.pod("web")["metadata"]["uid"] == uid and env.row("web").status == "Running"
    reader = Reader(env.root)
    problems = reader.problems()
    reader.close()
    assert any("web.yaml" in p["text"] and "spec.containers[0].name" in p["text"] for p in problems)
    assert env.events("InvalidManifest")


def test_a_broken_file_does_not_disturb_the_other_pods(env):
    env.write("a.yaml", pod_doc("a"))
    env.settle()
    creates = env.creates()
    (env.manifests / "junk.yaml").write_bytes(b"\x00\xff\xfe binary junk")
    (env.manifests / "b.yaml").write_text("{ not: [valid yaml")
    env.agent.hint_manifests()
    env.settle()
    assert env.row("a").status == "Running" and env.creates() == creates
    assert [p["metadata"]["name"] for p in env.pods()] == ["a"]


def test_a_duplicate_pod_in_a_later_file_is_reported_and_not_run(env):
    env.write("a.yaml", pod_doc("web"))
    env.write("b.yaml", pod_doc("web", containers=["other"]))
    env.settle()
    assert len(env.pods()) == 1 and env.container("web", "app")
    reader = Reader(env.root)
    assert any("b.yaml" in p["text"] and "already defined" in p["text"] for p in reader.problems())
    reader.close()


# ------------------------------------------------------------------ restarts of kubelite

def test_a_restarted_agent_adopts_running_containers_and_records_exits_that_happened_meanwhile(env):
    env.runtime.script("a", "app", Behavior(exit_after_s=30, exit_code=3), Behavior())
    env.write("a.yaml", pod_doc("a"))
    env.write("b.yaml", pod_doc("b"))
    env.settle()
    creates = env.creates()
    env.clock.tick(timedelta(seconds=40))    # kubelite is down while a's container exits
    env.restart_agent()
    env.settle()
    assert env.creates() == creates + 1, "only the container that exited was restarted"
    last = env.container("a")["lastState"]["terminated"]
    assert (last["exitCode"], last["finishedAt"]) == (3, "2026-11-28T06:00:30Z")
    assert env.container("a")["restartCount"] == 1 and env.container("b")["restartCount"] == 0


def test_after_a_reboot_pods_come_back_with_restart_counts_kept(env):
    env.runtime.script("a", "app", Behavior(exit_after_s=1, exit_code=1), Behavior())
    env.write("a.yaml", pod_doc("a"))
    env.settle()
    env.advance(1)
    assert env.container("a")["restartCount"] == 1
    env.runtime.reboot()
    env.restart_agent()
    env.advance(1)
    env.advance(10)
    status = env.container("a")
    assert status["restartCount"] >= 2 and status["state"].get("running")
    assert env.events("SandboxChanged")


def test_the_store_keeps_desired_and_observed_state_in_sqlite(env):
    env.write("a.yaml", pod_doc("a"))
    env.settle()
    rows = env.store.execute_sql("SELECT name, state FROM containers")
    assert [(r[0], r[1]) for r in rows] == [("app", "running")]
    manifest = json.loads(env.store.execute_sql("SELECT manifest FROM pods")[0][0])
    assert manifest["metadata"]["name"] == "a"


def test_start_failures_show_runcontainererror_then_back_off(env):
    env.runtime.script("p", "app", Behavior(fail_start="exec: not found"))
    env.write("p.yaml", pod_doc("p"))
    env.settle()
    state = env.container("p")["state"]
    assert state["waiting"]["reason"] in ("RunContainerError", "CrashLoopBackOff")
    failed = env.events("Failed")
    assert failed and failed[0]["message"] == "Error: exec: not found"


def test_a_missing_image_with_pull_policy_never(env):
    env.runtime.missing_images.add("busybox:1.36")
    doc = pod_doc("p")
    doc["spec"]["containers"][0]["imagePullPolicy"] = "Never"
    env.write("p.yaml", doc)
    env.settle()
    assert env.row("p").status == "ErrImageNeverPull"


def test_adding_and_removing_an_app_container_touches_only_that_container(env):
    doc = pod_doc("p", containers=["a"])
    env.write("p.yaml", doc)
    env.settle()
    uid = env.pod("p")["metadata"]["uid"]
    doc["spec"]["containers"].append({"name": "b", "image": "busybox:1.36"})
    env.write("p.yaml", doc)
    env.settle()
    assert env.pod("p")["metadata"]["uid"] == uid and env.row("p").ready == "2/2"
    doc["spec"]["containers"].pop(0)
    env.write("p.yaml", doc)
    env.settle()
    assert [s["name"] for s in env.pod("p")["status"]["containerStatuses"]] == ["b"]
    assert env.container("p", "b")["restartCount"] == 0
    assert not any(c.state.value == "running" and c.name == "a" for c in env.runtime.list_containers())


def test_an_explicit_uid_keeps_the_pod_and_recreates_its_sandbox_on_a_pod_level_change(env):
    doc = pod_doc("p")
    doc["metadata"]["uid"] = "fixed-uid"
    env.write("p.yaml", doc)
    env.settle()
    doc["spec"]["hostname"] = "renamed"
    env.write("p.yaml", doc)
    env.settle()
    pod = env.pod("p")
    assert pod["metadata"]["uid"] == "fixed-uid" and env.row("p").status == "Running"
    assert len(env.runtime.list_sandboxes()) >= 1 and env.events("SandboxChanged")


def test_terminating_pods_show_terminating_and_a_replacement_waits_for_them(env):
    env.runtime.script("web", "app", Behavior(ignore_sigterm=True))
    doc = pod_doc("web", terminationGracePeriodSeconds=10)
    env.write("web.yaml", doc)
    env.settle()
    doc["spec"]["hostname"] = "other"          # pod-level: a new uid replaces the old pod
    env.write("web.yaml", doc)
    env.settle()
    assert env.row("web").status == "Terminating"
    assert len([c for c in env.runtime.list_containers() if c.state.value == "running"]) == 1
    env.advance(10)
    assert env.row("web").status == "Running"
    assert len(env.pods()) == 1


CORPUS = Path(__file__).resolve().parent / "bad_manifests"


def test_the_bad_manifest_corpus_is_reported_and_leaves_the_other_pods_untouched(env, tmp_path, caplog):
    import logging
    import shutil

    caplog.set_level(logging.INFO, logger="kubelite")
    env.write("good.yaml", pod_doc("good"))
    env.settle()
    calls = list(env.runtime.calls)
    bad = sorted(p.name for p in CORPUS.iterdir() if p.name not in ("unknown-field-typo.yaml", "wrong-kind.yaml"))
    for name in bad:
        shutil.copy(CORPUS / name, env.manifests / name)
    with open(env.manifests / "huge.yaml", "wb") as f:           # 20 MiB: refused unread
        f.truncate(20 * 1024 * 1024)
    outside = tmp_path / "outside.yaml"
    outside.write_text(yaml.safe_dump(pod_doc("outside")))
    (env.manifests / "escape.yaml").symlink_to(outside)             # a symlink out of the directory
    env.write("zz-duplicate.yaml", pod_doc("good"))                  # the same pod in a later file
    env.agent.hint_manifests()
    env.settle()
    env.advance(30)                                                 # and through a full relist
    assert env.runtime.calls == calls, "the good pod was not touched"
    assert [p["metadata"]["name"] for p in env.pods()] == ["good"] and env.row("good").status == "Running"
    reader = Reader(env.root)
    problems = [p for p in reader.problems() if p["severity"] != "Warning"]
    events = reader.events(None)
    reader.close()
    reported = {Path(p["file"]).name for p in problems}
    expected = set(bad) | {"huge.yaml", "escape.yaml", "zz-duplicate.yaml"}
    assert expected <= reported, expected - reported
    logged = "\n".join(r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    for name in expected:
        assert name in logged, f"{name} not in the daemon's log"
    assert {e["involvedObject"]["name"] for e in events if e["reason"] == "InvalidManifest"} >= expected - {
        "zz-duplicate.yaml"}
    for p in problems:
        assert "canary" not in p["text"].lower(), "a message echoed file content"


def test_prestop_runs_before_sigterm(env):
    doc = pod_doc("web")
    doc["spec"]["containers"][0]["lifecycle"] = {"preStop": {"exec": {"command": ["sh", "-c", "sleep 1"]}}}
    path = env.write("web.yaml", doc)
    env.settle()
    path.unlink()
    env.agent.hint_manifests()
    env.settle()                 # the hook runs on a helper thread; SIGTERM follows it
    import time as real_time
    deadline = real_time.monotonic() + 5
    while env.pods() and real_time.monotonic() < deadline:
        real_time.sleep(0.01)
        env.settle()
    ops = [op for op, _ in env.runtime.calls]
    assert ops.index("exec") < ops.index("signal_TERM")
    assert env.pods() == []


def test_a_directory_that_cannot_be_listed_keeps_every_pod(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "a.yaml").write_text(yaml.safe_dump(pod_doc("a")))
    link = tmp_path / "manifests"
    link.symlink_to(real)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with freeze_time(T0):
        store = Store(tmp_path / "state")
        agent = Agent(store=store, runtime=FakeRuntime(), config=AgentConfig(manifests=link, root=tmp_path / "state"))
        agent.run_once()
        agent.run_once()
        assert [e.key for e in agent.pods.values()] == ["default/a"]
        link.unlink()
        link.symlink_to(fifo)            # the path exists but is no directory: a listing error
        agent.hint_manifests()
        agent.run_once()
        assert [e.key for e in agent.pods.values() if e.deleted_at is None] == ["default/a"]
        assert any("not a directory" in text for text in agent.problems)
        link.unlink()                    # the path is gone: the node is emptied, as with the kubelet
        agent.hint_manifests()
        for _ in range(3):
            agent.run_once()
        assert agent.pods == {}
        store.close()


def test_a_missing_image_gives_errimagepull_then_imagepullbackoff(env):
    env.runtime.missing_images.add("busybox:1.36")
    env.write("p.yaml", pod_doc("p"))
    env.settle()
    assert env.row("p").status == "ErrImagePull"
    env.advance(1)
    assert env.row("p").status == "ImagePullBackOff"
    assert env.container("p")["state"]["waiting"]["message"] == 'Back-off pulling image "busybox:1.36"'
    env.advance(9)                       # 10 s: tried again, still missing; the backoff doubles to 20 s
    assert env.row("p").status == "ErrImagePull"
    env.advance(1)
    assert env.row("p").status == "ImagePullBackOff"
    env.runtime.missing_images.clear()  # the image is loaded
    env.advance(10)
    assert env.row("p").status == "ImagePullBackOff", "still backing off"
    env.advance(10)
    assert env.row("p").status == "Running"
