"""Image pulls driven by imagePullPolicy, on the simulated node: events, statuses, the image backoff,
pulls that run beside the loop and are shared, and the image GC's choice of what is in use.

The fake runtime plays the registry (`registry`, `pull_errors`, `pull_gate`); the real registry
client is proven in test_registry.py and the real node in test_registry_real.py.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from kubelite.agent.agent import Agent
from kubelite.core.types import WaitReason
from kubelite.errors import StoreError
from tests.helpers import pod_doc
from tests.simulated import simulated_node


@pytest.fixture
def env(tmp_path: Path):
    with simulated_node(tmp_path) as node:
        yield node


def with_image(name: str, image: str, policy: str | None = None) -> dict:
    doc = pod_doc(name)
    doc["spec"]["containers"][0]["image"] = image
    if policy:
        doc["spec"]["containers"][0]["imagePullPolicy"] = policy
    return doc


def config_map(value: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "default"},
            "data": {"k": value}}


def pulls(env) -> list[str]:
    return [image for op, image in env.runtime.calls if op == "pull"]


def threaded(env, workers: int = 2) -> Agent:
    """The node's agent again, with pulls on worker threads as `serve` runs them."""
    from dataclasses import replace

    env.store.close()
    from kubelite.store.store import Store

    env.store = Store(env.root)
    env.agent = Agent(store=env.store, runtime=env.runtime,
                      config=replace(env.agent.config, image_pull_workers=workers))
    return env.agent


def wait(predicate, what: str) -> None:
    deadline = time.monotonic() + 10
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


# ------------------------------------------------------------------ policies


def test_latest_is_pulled_with_pulling_and_pulled_events_then_created_and_started(env):
    env.write("p.yaml", with_image("p", "busybox"))        # no tag: Always, as Kubernetes defaults it
    env.settle()
    assert env.row("p").status == "Running"
    assert pulls(env) == ["busybox"]
    assert [e["reason"] for e in env.events()] == ["Scheduled", "MissingClusterDNS", "Pulling", "Pulled", "Created",
                                                   "Started"]
    pulling, pulled = env.events("Pulling")[0], env.events("Pulled")[0]
    assert pulling["message"] == 'Pulling image "busybox"'
    assert pulled["message"].startswith('Successfully pulled image "busybox" in ')
    assert "including waiting). Image size: 1024 bytes." in pulled["message"]


@pytest.mark.parametrize("image, policy, present, pulled, status", [
    ("busybox:1.36", "IfNotPresent", True, False, "Running"),
    ("busybox:1.36", "IfNotPresent", False, True, "Running"),
    ("busybox:1.36", "Always", True, True, "Running"),
    ("busybox:1.36", "Never", True, False, "Running"),
    ("busybox:1.36", "Never", False, False, "ErrImageNeverPull"),
    ("busybox:1.36", None, True, False, "Running"),                 # a tag: IfNotPresent
    ("busybox:latest", None, True, True, "Running"),                # latest: Always
    ("busybox@sha256:" + "a" * 64, None, True, False, "Running"),   # a digest: IfNotPresent
])
def test_pull_policies(env, image, policy, present, pulled, status):
    if not present:
        env.runtime.missing_images.add(image)
        env.runtime.registry.add(image)
    env.write("p.yaml", with_image("p", image, policy))
    env.settle()
    assert env.row("p").status == status
    assert pulls(env) == ([image] if pulled else [])
    if present and not pulled:
        assert env.events("Pulled")[0]["message"] == f'Container image "{image}" already present on machine'


def test_always_pulls_again_for_each_restart(env):
    from kubelite.runtime.fake import Behavior

    env.runtime.script("p", "app", Behavior(exit_after_s=5, exit_code=1), Behavior())
    env.write("p.yaml", with_image("p", "busybox:1.36", "Always"))
    env.settle()
    env.advance(5)    # exits; the first restart is immediate
    assert env.container("p")["restartCount"] == 1
    assert pulls(env) == ["busybox:1.36", "busybox:1.36"]


# ------------------------------------------------------------------ failures and backoff


def test_a_failed_pull_gives_failed_events_errimagepull_then_imagepullbackoff(env):
    env.runtime.missing_images.add("registry.example/app:v1")
    env.runtime.pull_errors["registry.example/app:v1"] = "cannot reach the registry registry.example: refused"
    env.write("p.yaml", with_image("p", "registry.example/app:v1"))
    env.settle()
    state = env.container("p")["state"]["waiting"]
    assert state == {"reason": "ErrImagePull", "message": 'Failed to pull image "registry.example/app:v1": '
                     "cannot reach the registry registry.example: refused"}
    assert [e["message"] for e in env.events("Failed")] == [
        'Failed to pull image "registry.example/app:v1": cannot reach the registry registry.example: refused',
        "Error: ErrImagePull"]
    env.advance(1)
    assert env.row("p").status == "ImagePullBackOff"
    assert env.events("BackOff")[0]["message"] == 'Back-off pulling image "registry.example/app:v1"'
    assert env.events("Failed")[-1]["message"] == "Error: ImagePullBackOff"


def test_the_image_backoff_doubles_from_10s_to_300s(env):
    env.runtime.missing_images.add("app:v1")
    env.write("p.yaml", with_image("p", "app:v1"))
    env.settle()
    attempts = [0.0]
    t = 0.0
    while t < 1300:
        env.advance(1)
        t += 1
        if len(pulls(env)) > len(attempts):
            attempts.append(t)
    gaps = [b - a for a, b in zip(attempts, attempts[1:])]
    assert gaps[:6] == [10, 20, 40, 80, 160, 300]
    assert set(gaps[6:]) == {300}


def test_an_image_that_appears_in_the_registry_later_runs_after_the_backoff(env):
    env.runtime.missing_images.add("app:v1")
    env.write("p.yaml", with_image("p", "app:v1"))
    env.settle()
    assert env.row("p").status == "ErrImagePull"
    assert "not found" in env.container("p")["state"]["waiting"]["message"]
    env.advance(1)
    assert env.row("p").status == "ImagePullBackOff"
    env.runtime.registry.add("app:v1")      # pushed now
    env.advance(5)
    assert env.row("p").status == "ImagePullBackOff", "still backing off"
    env.advance(5)
    assert env.row("p").status == "Running"
    assert pulls(env) == ["app:v1", "app:v1"]


# ------------------------------------------------------------------ beside the loop


def test_while_an_image_is_pulled_the_pod_is_containercreating_and_other_pods_go_on(env):
    agent = threaded(env)
    gate = env.runtime.pull_gate = threading.Event()
    env.write("slow.yaml", with_image("slow", "big:v1", "Always"))
    env.write("quick.yaml", with_image("quick", "busybox:1.36"))
    env.settle()
    assert env.row("quick").status == "Running", "a pull does not hold up the loop"
    assert env.container("slow")["state"] == {"waiting": {"reason": "ContainerCreating"}}
    assert env.events("Pulling")[0]["message"] == 'Pulling image "big:v1"'
    gate.set()
    wait(lambda: not agent.pulls.busy(), "the pull to end")
    env.settle()
    assert env.row("slow").status == "Running"


def test_two_pods_that_need_one_image_share_one_pull(env):
    agent = threaded(env)
    gate = env.runtime.pull_gate = threading.Event()
    env.write("a.yaml", with_image("a", "shared:v1", "Always"))
    env.write("b.yaml", with_image("b", "shared:v1", "Always"))
    env.settle()
    assert agent.pulls.busy() == {"shared:v1"}
    gate.set()
    wait(lambda: not agent.pulls.busy(), "the pull to end")
    env.settle()
    assert env.row("a").status == env.row("b").status == "Running"
    assert pulls(env) == ["shared:v1"]
    assert len(env.events("Pulled")) == 2


def test_a_pod_deleted_while_its_image_is_pulled_goes_away(env):
    agent = threaded(env)
    gate = env.runtime.pull_gate = threading.Event()
    path = env.write("p.yaml", with_image("p", "big:v1", "Always"))
    env.settle()
    path.unlink()
    env.agent.hint_manifests()
    env.settle()
    assert env.pods() == []
    gate.set()
    wait(lambda: not agent.pulls.busy(), "the pull to end")
    env.settle()
    assert agent.pull_waiters == {}


def test_containers_after_one_with_a_poststart_hook_wait_for_its_pull_even_when_the_pod_is_woken(env):
    agent = threaded(env)
    gate = env.runtime.pull_gate = threading.Event()
    doc = pod_doc("p", containers=["b", "c"])
    b, c = doc["spec"]["containers"]
    b["image"], b["imagePullPolicy"] = "big:v1", "Always"
    b["lifecycle"] = {"postStart": {"exec": {"command": ["true"]}}}
    c["env"] = [{"name": "K", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}}]
    env.write("p.yaml", doc, config_map("1"))
    env.settle()
    env.write("p.yaml", doc, config_map("2"))   # a changed ConfigMap ends the pod's wait while b's image is pulled
    env.settle()
    assert [op for op, _ in env.runtime.calls if op == "create_container"] == [], "c started before b"
    [entry] = agent.pods.values()
    assert entry.waiting is not None and entry.waiting.reason is WaitReason.PULLING, "the pod still waits for its pull"
    gate.set()
    wait(lambda: not agent.pulls.busy(), "the pull to end")
    env.settle()
    assert env.row("p").status == "Running"


def test_a_pull_is_not_made_twice_when_a_write_fails_after_it(env):
    doc = with_image("p", "busybox:1.36", "Always")
    original, failed = env.store.record_event, []

    def record_event(**kw):
        if kw["reason"] == "Pulled" and not failed:
            failed.append(kw)
            raise StoreError("disk full")
        return original(**kw)

    env.store.record_event = record_event
    env.write("p.yaml", doc)
    for _ in range(20):
        try:
            wake = env.agent.run_once()
        except StoreError:
            continue   # the agent reloads its state from the store, as after any failed write
        if wake is None or wake > env.now():
            break
    assert failed and pulls(env) == ["busybox:1.36"]
    assert env.row("p").status == "Running"


# ------------------------------------------------------------------ image GC


def test_image_gc_is_asked_with_every_image_a_pod_names_and_at_its_period(env):
    asked: list[tuple[set[str], int, int]] = []
    env.runtime.remove_unused_images = lambda in_use, high_percent, low_percent: \
        asked.append((set(in_use), high_percent, low_percent)) or []
    env.write("a.yaml", with_image("a", "one:v1"))
    env.write("b.yaml", with_image("b", "two:v1"))
    env.settle()
    env.advance(301)
    assert asked[-1] == ({"one:v1", "two:v1"}, 85, 80)
    count = len(asked)
    env.advance(100)
    assert len(asked) == count, "not before the period is over"


@pytest.mark.parametrize("seconds, shown", [(0.0004, "0ms"), (0.5, "500ms"), (1.2345, "1.234s"), (2.0, "2s"),
                                            (75.5, "1m15.5s"), (3605.0, "1h0m5s")])
def test_pull_durations_are_printed_as_the_kubelet_prints_them(seconds, shown):
    from kubelite.agent.starting import _seconds

    assert _seconds(seconds) == shown
