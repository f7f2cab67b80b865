"""The node state: the one in-memory copy of what the node knows, and the one writer of the store."""

from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path

from kubelite.agent.config import AgentConfig
from kubelite.agent.nodestate import NodeState, PodEntry
from kubelite.cli import sync as cli_sync
from kubelite.core.types import BackoffEntry, ContainerState, StartError
from kubelite.sources.gitsync import SyncResult, SyncStatus
from kubelite.store.reader import Reader
from kubelite.store.store import Store
from tests.helpers import at, desired, running

PACKAGE = Path(__file__).resolve().parent.parent / "kubelite"
#: The store's writing methods: only the node state calls them (and the store itself).
WRITES = {"put_pod", "delete_pod", "put_sandbox", "delete_sandbox", "put_container", "delete_container",
          "put_backoff", "delete_backoff", "put_start_error", "record_event", "set_meta", "replace_problems",
          "prune_events", "next_resource_version", "put_config_object", "delete_config_object",
          "put_persistent_volume", "delete_persistent_volume"}
WRITER = PACKAGE / "agent" / "nodestate.py"


def store_writes(path: Path, base: Path = PACKAGE) -> list[str]:
    """The store's writes in a module: `<something named store>.<write>(...)`, a write on a name
    bound to `Store(...)` or on `Store(...)` itself, and `getattr(<any>, "<write>")`. (That only the
    node state and its openers import the store at all is the layering test's rule.)"""
    tree = ast.parse(path.read_text())
    opened = {ast.unparse(t) for node in ast.walk(tree) if isinstance(node, (ast.Assign, ast.AnnAssign))
              and isinstance(node.value, ast.Call) and ast.unparse(node.value.func).split(".")[-1] == "Store"
              for t in (node.targets if isinstance(node, ast.Assign) else [node.target])}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Attribute) and node.func.attr in WRITES:
            receiver = ast.unparse(node.func.value)
            if receiver.split(".")[-1] == "store" or receiver in opened or (
                    isinstance(node.func.value, ast.Call)
                    and ast.unparse(node.func.value.func).split(".")[-1] == "Store"):
                found.append(f"{path.relative_to(base)}:{node.lineno}: {receiver}.{node.func.attr}")
        elif ast.unparse(node.func) == "getattr" and len(node.args) >= 2 \
                and isinstance(node.args[1], ast.Constant) and node.args[1].value in WRITES:
            found.append(f"{path.relative_to(base)}:{node.lineno}: getattr({ast.unparse(node.args[0])}, "
                         f"{node.args[1].value!r})")
    return found


def test_only_the_node_state_writes_the_store():
    writers = [w for path in sorted(PACKAGE.rglob("*.py"))
               if path != WRITER and PACKAGE / "store" not in path.parents for w in store_writes(path)]
    assert writers == []
    assert store_writes(WRITER), "the check finds the node state's own writes (it can fail)"


def test_the_check_catches_a_second_writer(tmp_path):
    rogue = tmp_path / "rogue.py"
    rogue.write_text("def f(self, entry, store):\n    self.store.put_backoff(entry)\n    store.set_meta('k', 'v')\n"
                     "    self.state.put_backoff(entry)\n")
    assert store_writes(rogue, tmp_path) == ["rogue.py:2: self.store.put_backoff", "rogue.py:3: store.set_meta"]


def test_the_check_catches_a_writer_under_any_name(tmp_path):
    rogue = tmp_path / "rogue.py"
    rogue.write_text("from kubelite.store.store import Store\ndef f(root, entry):\n    db = Store(root)\n"
                     "    db.put_backoff(entry)\n    Store(root).set_meta('k', 'v')\n"
                     "    getattr(db, 'delete_pod')('uid')\n    db.get_meta('k')\n")
    assert store_writes(rogue, tmp_path) == ["rogue.py:4: db.put_backoff", "rogue.py:5: Store(root).set_meta",
                                             "rogue.py:6: getattr(db, 'delete_pod')"]


def sync_result(outcome: str) -> SyncResult:
    status = SyncStatus(repository="https://example.invalid/repo.git", ref="main", commit="abc123",
                        last_sync_at="2026-11-28T06:00:00+00:00")
    return SyncResult(outcome=outcome, commit="abc123", remote="abc123", message=f"commit abc123 {outcome}",
                      delay_s=30.0, status=status)


def test_sync_once_writes_its_result_as_the_agent_does(tmp_path):
    agent_root, cli_root = tmp_path / "agent", tmp_path / "cli"
    agent_root.mkdir()
    cli_root.mkdir()
    for outcome in ("applied", "unchanged", "failed"):
        state = NodeState(Store(agent_root), AgentConfig(manifests=tmp_path, root=agent_root, node_name="n"))
        with state.transaction():
            state.record_sync_result(sync_result(outcome), at(0))
        state.store.close()
        store = Store(cli_root)
        cli_sync._record(store, sync_result(outcome))
        store.close()

    def written(root: Path) -> tuple[str | None, list[tuple[str, str, str]]]:
        reader = Reader(root)
        return reader.meta("sync"), [(e["type"], e["reason"], e["message"]) for e in reader.events()]

    meta, events = written(agent_root)
    assert meta is not None and '"commit": "abc123"' in meta
    assert [reason for _, reason, _ in events] == ["SyncApplied", "SyncFailed"]
    assert written(cli_root) == (meta, events)


def test_the_node_state_writes_through_and_loads_back_what_it_wrote(tmp_path):
    store = Store(tmp_path)
    state = NodeState(store, AgentConfig(manifests=tmp_path / "manifests", root=tmp_path, node_name="n"))
    d = desired()
    c = running(d, "app", started=1)
    with state.transaction():
        state.write_meta()
        state.add_pod(PodEntry(d, "/manifests/web.yaml", at(0)))
        state.observe(d.uid, c)
        state.set_start_error(d.uid, "app", StartError("RunContainerError", "boom"))
        state.observe(d.uid, replace(c, state=ContainerState.EXITED, exit_code=1, finished_at=at(2)))
    again = NodeState(store, AgentConfig(manifests=tmp_path / "manifests", root=tmp_path, node_name="n"))
    again.load()
    assert list(again.pods) == [d.uid] and again.pods[d.uid].key == "default/web"
    [(uid, seen)] = again.containers.values()
    assert uid == d.uid and seen.state is ContainerState.EXITED and seen.exit_code == 1
    assert again.start_errors_of(d.uid) == {"app": StartError("RunContainerError", "boom")}
    assert again.observed(d.uid).containers == (seen,)
    with again.transaction():
        again.set_start_error(d.uid, "app", None)
        again.forget_container(c.id, delete=True)
        again.remove_pod(d.uid)
    third = NodeState(store, AgentConfig(manifests=tmp_path / "manifests", root=tmp_path, node_name="n"))
    third.load()
    assert third.pods == {} and third.containers == {} and third.start_errors == {}
    store.close()


#: A pod's memory (`PodEntry`) and the node's per-container memory: changed only by the node state's methods.
POD_FIELDS = {"desired", "source", "commit", "record", "deleted_at", "status", "holds", "waiting", "pulling",
              "fresh_pulls"}
NODE_MEMORY = {"post_start", "image_backoff", "backoff", "start_errors", "pods", "containers", "sandboxes"}


def memory_writes(path: Path, base: Path = PACKAGE) -> list[str]:
    """Assignments to a pod entry's fields, and item writes or pops on the node's shared maps, in a module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
        for target in targets:
            if isinstance(target, ast.Attribute) and target.attr in POD_FIELDS and "entry" in ast.unparse(target.value):
                found.append(f"{path.relative_to(base)}:{node.lineno}: {ast.unparse(target)}")
            if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Attribute) \
                    and target.value.attr in NODE_MEMORY:
                found.append(f"{path.relative_to(base)}:{node.lineno}: {ast.unparse(target)}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in ("pop", "setdefault", "clear", "update", "add") \
                and isinstance(node.func.value, ast.Attribute) \
                and (node.func.value.attr in NODE_MEMORY - {"pods"} or node.func.value.attr in ("pulling", "fresh_pulls")):
            found.append(f"{path.relative_to(base)}:{node.lineno}: {ast.unparse(node.func)}")
    return found


def test_only_the_node_state_changes_what_the_node_remembers():
    changes = [w for path in sorted((PACKAGE / "agent").glob("*.py")) if path != WRITER for w in memory_writes(path)]
    assert changes == []
    assert memory_writes(WRITER), "the check finds the node state's own changes (it can fail)"


def test_the_check_catches_a_change_behind_the_node_states_back(tmp_path):
    rogue = tmp_path / "rogue.py"
    rogue.write_text("def f(self, entry, now):\n    entry.waiting = None\n    self.state.post_start['c'] = 1\n"
                     "    self.state.image_backoff.pop('k', None)\n    entry.pulling.setdefault('i', set())\n"
                     "    self.state.set_wait(entry, None)\n")
    assert memory_writes(rogue, tmp_path) == [
        "rogue.py:2: entry.waiting", "rogue.py:3: self.state.post_start['c']",
        "rogue.py:4: self.state.image_backoff.pop", "rogue.py:5: entry.pulling.setdefault"]


def test_the_node_state_takes_its_settings_from_the_agent(tmp_path):
    from kubelite.agent.agent import Agent
    from kubelite.runtime.fake import FakeRuntime

    store = Store(tmp_path / "state")
    config = AgentConfig(manifests=tmp_path / "manifests", root=tmp_path / "state", node_name="one",
                         kernel=(6, 1), apparmor_enabled=False)
    agent = Agent(store=store, runtime=FakeRuntime(), config=config)
    assert agent.state.node_name == "one" and agent.state.manifests == tmp_path / "manifests"
    agent.config = replace(config, node_name="two", manifests=tmp_path / "elsewhere")
    assert agent.state.node_name == "two" and agent.state.manifests == tmp_path / "elsewhere"
    assert agent.executor.config is agent.config
    store.close()


def test_a_removed_pod_leaves_no_image_backoff_behind(tmp_path):
    store = Store(tmp_path)
    state = NodeState(store, AgentConfig(manifests=tmp_path / "manifests", root=tmp_path, node_name="n"))
    d, other = desired(), desired("other")
    with state.transaction():
        state.add_pod(PodEntry(d, "/manifests/web.yaml", at(0)))
        state.add_pod(PodEntry(other, "/manifests/other.yaml", at(0)))
        for uid in (d.uid, other.uid):
            state.set_image_backoff(f"{uid}_big:v1", BackoffEntry(f"{uid}_big:v1", 10.0, at(1)))
        state.remove_pod(d.uid)
    assert list(state.image_backoff) == [f"{other.uid}_big:v1"]
    store.close()
