"""Pod workers: the node state's lock, its write queue, the pool, and the agent syncing pods on workers.

The real-container side (many pods started and removed at once, nothing leaked) is
`test_workers_real.py`.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from kubelite.agent.statelock import StateLock, UnlockedRuntime
from kubelite.agent.workers import PodWorkers, default_size
from kubelite.core.types import BackoffEntry, ContainerState
from kubelite.errors import StoreError
from kubelite.store.reader import Reader
from kubelite.store.store import Store
from kubelite.store.writebehind import WriteBehind
from tests.helpers import at, pod_doc, running, desired
from tests.simulated import simulated_node


# ---------------------------------------------------------------------- the lock


def test_the_state_lock_knows_its_holder_and_lets_go_only_its_own_hold():
    lock = StateLock()
    assert not lock.held()
    with lock.released():   # not held: nothing to let go
        assert not lock.held()
    with lock:
        assert lock.held()
        seen = []
        other = threading.Thread(target=lambda: seen.append(lock.held()))
        other.start()
        other.join()
        assert seen == [False]
        with lock.released():
            assert not lock.held()
            taken = threading.Thread(target=lambda: lock.__enter__() and lock.__exit__())
            taken.start()
            taken.join(5)
            assert not taken.is_alive(), "another thread takes the lock while it is let go"
        assert lock.held()
    assert not lock.held()


def test_a_runtime_call_lets_the_lock_go_while_it_runs():
    lock = StateLock()
    held_inside: list[bool] = []
    inside = threading.Event()
    proceed = threading.Event()

    class SlowRuntime:
        name = "slow"

        def sandbox_ip(self, sandbox_id: str) -> str:
            held_inside.append(lock.held())
            return "10.0.0.1"

        def create_container(self, sandbox_id: str) -> str:
            inside.set()
            assert proceed.wait(5)
            return f"c-{sandbox_id}"

    runtime = UnlockedRuntime(SlowRuntime(), lock)  # type: ignore[arg-type]
    assert runtime.name == "slow"
    with lock:
        assert runtime.sandbox_ip("s1") == "10.0.0.1"
    assert held_inside == [True], "a call that answers from memory keeps the lock"
    result: list[str] = []

    def worker() -> None:
        with lock:
            result.append(runtime.create_container("s1"))
            result.append(str(lock.held()))

    thread = threading.Thread(target=worker)
    thread.start()
    assert inside.wait(5)
    with lock:   # taken while the worker's runtime call runs
        proceed.set()
    thread.join(5)
    assert result == ["c-s1", "True"]


# ---------------------------------------------------------------------- the write queue


def test_queued_writes_reach_the_database_only_when_flushed_in_order(tmp_path):
    store = Store(tmp_path)
    queue = WriteBehind(store)
    d = desired()
    c = running(d, "app", started=1)
    queue.put_container(d.uid, c)
    queue.put_container(d.uid, c.__class__(**{**c.__dict__, "state": ContainerState.EXITED, "exit_code": 2,
                                               "finished_at": at(2)}))
    queue.put_backoff(BackoffEntry("k", 10.0, at(1)))
    assert queue.pending() == 3
    assert store.execute_sql("SELECT count(*) FROM containers")[0][0] == 0
    queue.flush()
    assert queue.pending() == 0
    assert store.execute_sql("SELECT state, exit_code FROM containers") == [("exited", 2)]
    assert store.execute_sql("SELECT key FROM backoff") == [("k",)]
    store.close()


def test_resource_versions_continue_from_the_database_and_are_written_with_the_queue(tmp_path):
    store = Store(tmp_path)
    with store.transaction():
        assert store.next_resource_version() == 1
        store.next_resource_version()
    queue = WriteBehind(store)
    assert queue.next_resource_version() == 3
    queue.delete_pod("gone")   # a tombstone at the next version
    assert store.resource_version() == 2, "nothing written before the flush"
    queue.flush()
    assert store.resource_version() == 4
    assert Reader(tmp_path).meta("deleted/gone") == "4"
    again = WriteBehind(store)
    assert again.next_resource_version() == 5
    store.close()


def test_a_failed_flush_writes_nothing_keeps_the_writes_and_a_reset_starts_over_from_the_database(tmp_path):
    store = Store(tmp_path)
    queue = WriteBehind(store)
    queue.put_backoff(BackoffEntry("first", 10.0, at(1)))
    queue.next_resource_version()
    queue.put_container("uid", "not a container")   # type: ignore[arg-type]  — fails inside the transaction
    with pytest.raises(Exception):
        queue.flush()
    assert store.execute_sql("SELECT count(*) FROM backoff")[0][0] == 0, "rolled back with the failing write"
    assert queue.pending() == 2, "the writes wait for the next flush (a failure between passes loses nothing)"
    queue.put_backoff(BackoffEntry("second", 10.0, at(2)))
    assert [name for name, _, _ in queue.take()[0]] == ["put_backoff", "put_container", "put_backoff"]
    queue.put_container("uid", "not a container")   # type: ignore[arg-type]
    queue.reset()
    assert queue.pending() == 0 and queue.next_resource_version() == 1
    store.close()


# ---------------------------------------------------------------------- the pool


def test_a_pod_is_never_on_two_workers_and_the_pool_reports_what_its_syncs_asked():
    lock = StateLock()
    woken = []
    pool = PodWorkers(3, lock=lock, ended=lambda uid, wake, failed: woken.append((uid, failed)))
    release = threading.Event()
    running_now: list[str] = []
    overlap: list[str] = []

    def sync(uid: str, wake_s: float):
        def run():
            assert lock.held(), "a sync runs with the state lock held"
            if uid in running_now:
                overlap.append(uid)
            running_now.append(uid)
            with lock.released():
                assert release.wait(5)
            running_now.remove(uid)
            return at(wake_s)
        return run

    assert pool.dispatch("a", sync("a", 30))
    assert pool.dispatch("b", sync("b", 10))
    assert not pool.dispatch("a", sync("a", 1)), "a pod on a worker is not given to a second one"
    assert pool.busy() == {"a", "b"}
    release.set()
    assert pool.wait_idle(5)
    assert pool.busy() == frozenset() and overlap == [] and len(woken) == 2
    assert pool.take() == at(10)
    assert pool.take() is None
    pool.close()


def test_an_error_in_a_sync_is_raised_by_the_loop():
    pool = PodWorkers(1, lock=StateLock(), ended=lambda uid, wake, failed: None)

    def broken():
        raise ValueError("boom")
    pool.dispatch("a", broken)
    assert pool.wait_idle(5)
    with pytest.raises(ValueError, match="boom"):
        pool.take()
    assert not pool.busy()
    pool.close()
    assert not pool.dispatch("b", broken), "a closed pool takes no more syncs"


def test_the_default_pool_follows_the_cores_within_bounds():
    assert 2 <= default_size() <= 8
    with pytest.raises(ValueError):
        PodWorkers(0, lock=StateLock(), ended=lambda uid, wake, failed: None)


# ---------------------------------------------------------------------- the agent on workers


def test_pods_synced_on_workers_end_as_on_the_loop_and_only_the_loop_writes(tmp_path, monkeypatch):
    writers: set[str] = set()
    original = Store.transaction

    def watched(self):
        writers.add(threading.current_thread().name)
        return original(self)
    monkeypatch.setattr(Store, "transaction", watched)
    results = {}
    for workers in (0, 4):
        (tmp_path / f"w{workers}").mkdir()
        with simulated_node(tmp_path / f"w{workers}", pod_workers=workers) as node:
            for i in range(20):
                node.write(f"p{i:02d}.yaml", pod_doc(f"p{i:02d}", containers=["app", "side"]))
            node.settle()
            results[workers] = sorted((p["metadata"]["name"], p["status"]["phase"],
                                       [s["ready"] for s in p["status"]["containerStatuses"]]) for p in node.pods())
            assert len(node.runtime.list_containers()) == 40
            for path in node.manifests.glob("*.yaml"):
                path.unlink()
            node.agent.hint_manifests()
            node.advance(31)   # the grace period
            assert node.pods() == [] and node.runtime.list_containers() == []
    assert results[0] == results[4] and len(results[4]) == 20
    assert all(phase == "Running" for _, phase, _ in results[4])
    assert writers == {threading.main_thread().name}, "the database is written by the loop's thread only"


def test_a_pass_that_does_not_wait_leaves_the_syncs_to_the_workers_and_is_woken_by_them(tmp_path):
    with simulated_node(tmp_path, pod_workers=2) as node:
        for i in range(6):
            node.write(f"p{i}.yaml", pod_doc(f"p{i}"))
        node.agent.run_once(wait=False)
        assert node.agent.wake.wait(5), "a worker that ends wakes the loop"
        deadline = time.monotonic() + 10
        while len(node.pods()) < 6 or any(p["status"].get("phase") != "Running" for p in node.pods()):
            assert time.monotonic() < deadline, [p["status"] for p in node.pods()]
            node.agent.wake.wait(0.5)
            node.agent.run_once(wait=False)
        node.agent.close()
        assert not node.agent.workers.busy()


def test_a_crash_loop_and_its_backoff_are_the_same_on_workers(tmp_path):
    doc = pod_doc("crash")
    doc["metadata"]["annotations"] = {"fake.kubelite.io/app": "exit=1 after=1"}
    counts = {}
    for workers in (0, 3):
        (tmp_path / f"w{workers}").mkdir()
        with simulated_node(tmp_path / f"w{workers}", pod_workers=workers) as node:
            node.write("crash.yaml", doc)
            node.settle()
            for _ in range(12):
                node.advance(5)
            counts[workers] = (node.container("crash")["restartCount"],
                               [e["reason"] for e in node.events() if e["reason"] == "BackOff"][:1])
    assert counts[0] == counts[3] and counts[3][0] >= 3


def test_on_workers_only_pods_that_are_due_are_synced(tmp_path, monkeypatch):
    with simulated_node(tmp_path, pod_workers=2, relist_period_s=20.0) as node:
        for name in ("a", "b"):
            node.write(f"{name}.yaml", pod_doc(name))
        node.settle()
        synced: list[str] = []
        original = node.agent.executor.sync_pod

        def counting(uid, now, **kwargs):
            synced.append(node.agent.pods[uid].pod.metadata.name)
            return original(uid, now, **kwargs)
        monkeypatch.setattr(node.agent.executor, "sync_pod", counting)
        node.agent.run_once()
        assert synced == [], "running pods that nothing changed are not synced again"
        doc = pod_doc("a")
        doc["metadata"]["labels"] = {"tier": "web"}
        node.write("a.yaml", doc)
        node.settle()
        assert set(synced) == {"a"}, "the pod whose manifest changed is synced, the other is not"
        synced.clear()
        [b_uid] = [uid for uid, e in node.agent.pods.items() if e.pod.metadata.name == "b"]
        [c] = [c for c in node.runtime.list_containers() if c.uid == b_uid]
        node.runtime.exit_container(c.id, 1)   # the relist observes the exit: b is due
        node.settle()
        assert "b" in synced and "a" not in synced
        assert node.container("b")["restartCount"] == 1
        synced.clear()
        node.advance(21)   # a relist period (a pass, a manifest scan): nothing changed, nobody synced
        assert synced == []
        node.advance(40)   # the resync period, a minute: every pod once
        assert {"a", "b"} <= set(synced)



# ---------------------------------------------------------------------- races the loop and the workers must survive

EDITED = """apiVersion: v1
kind: Pod
metadata: {{name: p}}
spec:
  dnsPolicy: Default
  containers:
  - {{name: a, image: busybox:1.36, command: [sleep, "1000"]}}
  - {{name: {second}, image: busybox:1.36, command: [sleep, "1000"]}}
"""


def agent_on(tmp_path, runtime, **config):
    from kubelite.agent.agent import Agent, AgentConfig

    manifests, root = tmp_path / "manifests", tmp_path / "state"
    manifests.mkdir(exist_ok=True)
    return Agent(store=Store(root), runtime=runtime, config=AgentConfig(
        manifests=manifests, root=root, node_name="n", image_pull_workers=config.pop("image_pull_workers", 0),
        pod_workers=2, **config))


def test_a_container_is_started_right_after_its_creation_without_waiting_for_the_state_lock(tmp_path, caplog):
    """A (re)start is `runc create` then `runc start`: the worker starts the container without
    taking the node state's lock between the two, so a pass (or another pod's sync) that took the
    lock meanwhile does not hold the start up; Created and Started are recorded after it, and
    Created's log line is written before the start, when it happened."""
    import logging

    from kubelite.runtime.fake import FakeRuntime

    holding, started = threading.Event(), threading.Event()
    seen: dict[str, bool] = {}
    holder: dict = {}
    caplog.set_level(logging.INFO, logger="kubelite.agent")

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records]

    class LockTakenDuringCreate(FakeRuntime):
        def create_container(self, sandbox_id, config):
            container_id = super().create_container(sandbox_id, config)

            def hold() -> None:   # as the loop's pass would: the lock taken while the runtime works
                with holder["agent"].state.lock:
                    holding.set()
                    seen["started while the lock was held"] = started.wait(2)
            holder["thread"] = threading.Thread(target=hold)
            holder["thread"].start()
            assert holding.wait(5)
            return container_id

        def start_container(self, container_id):
            seen["Created logged before the start"] = "pod default/p: Created: Created container: a" in lines()
            started.set()
            super().start_container(container_id)

    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "p.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  dnsPolicy: Default\n  containers:\n"
        "  - {name: a, image: 'busybox:1', command: [sleep, '1000']}\n")
    agent = holder["agent"] = agent_on(tmp_path, LockTakenDuringCreate())
    try:
        agent.run_once()
        assert seen == {"started while the lock was held": True, "Created logged before the start": True}
        assert lines().count("pod default/p: Created: Created container: a") == 1, lines()
        assert [c.state for _, c in agent.state.containers.values()] == [ContainerState.RUNNING]
        reader = Reader(tmp_path / "state")
        try:
            reasons = [e["reason"] for e in reader.events(None)]
        finally:
            reader.close()
        assert reasons.count("Created") == 1 and reasons.count("Started") == 1, reasons
    finally:
        if "thread" in holder:
            holder["thread"].join(5)
        agent.close()
        agent.store.close()


def test_a_manifest_edit_while_the_pod_is_on_a_worker_waits_for_the_sync_to_end(tmp_path):
    """The loop's pass runs while the pod's worker is in `create_container` (the lock let go) and
    the edit renames a container the worker is about to start: the sync ends with the version it
    planned with, and the edit is applied by the pass after it."""
    from kubelite.runtime.fake import FakeRuntime

    armed = {"on": True}
    holder: dict = {}

    class EditsDuringCreate(FakeRuntime):
        def create_container(self, sandbox_id, config):
            cid = super().create_container(sandbox_id, config)
            if armed.pop("on", False) and config.container.name == "a":
                (tmp_path / "manifests" / "p.yaml").write_text(EDITED.format(second="c"))
                holder["agent"].hint_manifests()
                holder["agent"].run_once(wait=False)   # the loop's pass, meanwhile
            return cid

    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "p.yaml").write_text(EDITED.format(second="b"))
    runtime = EditsDuringCreate()
    agent = holder["agent"] = agent_on(tmp_path, runtime)
    try:
        for _ in range(8):
            agent.run_once()   # raised AssertionError ("plan() started b, which is not in the spec")
        running = sorted(c.name for _, c in agent.state.containers.values() if c.running)
        assert running == ["a", "c"]
    finally:
        agent.close()
        agent.store.close()


def test_a_failed_write_between_passes_loses_none_of_the_workers_writes(tmp_path):
    from contextlib import contextmanager

    from kubelite.runtime.fake import FakeRuntime

    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "p.yaml").write_text(EDITED.format(second="b"))
    agent = agent_on(tmp_path, FakeRuntime())
    store = agent.store
    try:
        agent.run_once(wait=False)   # the daemon's way: the syncs end after the pass's write
        assert agent.workers.wait_idle(10)
        assert agent.state.store.pending() > 0
        real = store.transaction
        failures = [StoreError("database is locked")]

        @contextmanager
        def flaky():
            if failures:
                raise failures.pop()
            with real() as s:
                yield s
        store.transaction = flaky
        agent.wake.take()
        with pytest.raises(StoreError):
            agent.absorb_probe_outcomes()   # the daemon's wait_for_work swallows this
        agent.run_once()
        agent.run_once()
        assert store.execute_sql("SELECT count(*) FROM containers")[0][0] == len(agent.state.containers) == 2
        assert store.execute_sql("SELECT count(*) FROM sandboxes")[0][0] == len(agent.state.sandboxes) == 1
        phase = store.execute_sql("SELECT json_extract(object, '$.status.phase') FROM pods")[0][0]
        assert phase == next(iter(agent.pods.values())).status["phase"] == "Running"
    finally:
        agent.close()
        store.close()


def test_a_pull_that_ends_while_the_sandbox_is_made_does_not_leave_the_pod_waiting_an_hour(tmp_path):
    import time as clock

    from kubelite.runtime.fake import FakeRuntime

    big_gate = threading.Event()
    seen = {"sandboxes": 0}
    holder: dict = {}

    class PullEndsDuringSandbox(FakeRuntime):
        def pull_image(self, image):
            if image == "big:1":
                big_gate.wait(30)
            return super().pull_image(image)

        def run_sandbox(self, config):
            sid = super().run_sandbox(config)
            seen["sandboxes"] += 1
            if seen["sandboxes"] == 2:   # the pod's new sandbox, made with the state lock let go
                big_gate.set()
                deadline = clock.monotonic() + 5
                while ("big:1" in self.missing_images or holder["agent"].pulls.busy()) \
                        and clock.monotonic() < deadline:
                    clock.sleep(0.02)
                holder["agent"].run_once(wait=False)   # the loop's pass meanwhile records the pull's end
            return sid

    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "p.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  dnsPolicy: Default\n  containers:\n"
        "  - {name: a, image: 'big:1', command: [sleep, '1000']}\n"
        "  - {name: b, image: 'small:1', command: [sleep, '1000']}\n")
    runtime = PullEndsDuringSandbox()
    runtime.missing_images |= {"big:1", "small:1"}
    runtime.registry |= {"big:1", "small:1"}
    agent = holder["agent"] = agent_on(tmp_path, runtime, image_pull_workers=2)
    try:
        agent.run_once()   # sandbox 1; both pulls start; small ends at once
        deadline = clock.monotonic() + 5
        while "small:1" in runtime.missing_images and clock.monotonic() < deadline:
            clock.sleep(0.02)
        clock.sleep(0.1)
        FakeRuntime.stop_sandbox(runtime, next(iter(runtime._sandboxes)))   # dies while big:1 is pulled
        for _ in range(6):
            agent.run_once()
        entry = next(iter(agent.pods.values()))
        assert entry.waiting is None or entry.waiting.until - agent.clock() < timedelta(minutes=5), entry.waiting
        assert sorted(c.name for _, c in agent.state.containers.values() if c.running) == ["a", "b"]
    finally:
        big_gate.set()
        agent.close()
        agent.store.close()


def test_a_sync_that_ends_wakes_the_loop_only_when_a_pass_is_needed(tmp_path):
    from kubelite.runtime.fake import FakeRuntime

    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "p.yaml").write_text(EDITED.format(second="b"))
    agent = agent_on(tmp_path, FakeRuntime())
    try:
        for _ in range(3):
            agent.run_once()
        [uid] = list(agent.pods)
        far = agent.clock() + timedelta(hours=1)
        agent.planned_wake = far
        agent.wake.clear()
        agent._sync_ended(uid, None, False)
        assert not agent.wake.is_set(), "an idle pod's resync needs no pass"
        agent._sync_ended(uid, far + timedelta(minutes=1), False)
        assert not agent.wake.is_set(), "nor one that asks for a time after the loop wakes anyway"
        for case in ("earlier", "failed", "touched", "deferred", "wrote"):
            agent.wake.clear()
            wake = agent.clock() if case == "earlier" else None
            if case == "touched":
                agent.state.touch(uid)
            if case == "deferred":
                agent.deferred.add(uid)
            if case == "wrote":
                agent.state.store.put_backoff(BackoffEntry("k", 10.0, at(1)))
            agent._sync_ended(uid, wake, case == "failed")
            assert agent.wake.is_set(), case
            agent.state.take_touched()
            agent.deferred.clear()
            agent.state.flush()
    finally:
        agent.close()
        agent.store.close()
