"""A simulated node for tests: the agent on the fake runtime, a real SQLite file, frozen time.

Driven step by step with `run_once()` (no watcher thread, no sleeping): time moves only when a
test moves it. What the CLI would print is read back through the CLI's own read path.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator

import yaml
from freezegun import freeze_time

from kubelite.agent.agent import Agent, AgentConfig
from kubelite.kubectl import pods as printers
from kubelite.runtime.fake import FakeRuntime
from kubelite.store.reader import Reader
from kubelite.store.store import Store
from tests.helpers import T0, TEST_POD_WORKERS


@dataclass
class SimulatedNode:
    manifests: Path
    root: Path
    runtime: FakeRuntime
    store: Store
    agent: Agent
    clock: Any

    def write(self, name: str, *docs: dict[str, Any]) -> Path:
        path = self.manifests / name
        path.write_text(yaml.safe_dump_all(docs))
        self.agent.hint_manifests()
        return path

    def settle(self) -> Any:
        """Run passes until nothing is left to do now; return the next wake-up time."""
        for _ in range(200):
            wake = self.agent.run_once()
            if wake is None or wake > self.now():
                return wake
        raise AssertionError("the agent did not settle")

    def advance(self, seconds: float) -> None:
        self.clock.tick(timedelta(seconds=seconds))
        self.settle()

    def now(self):
        return self.runtime.clock()

    def restart_agent(self) -> None:
        self.agent.close()
        self.store.close()
        self.store = Store(self.root)
        self.agent = Agent(store=self.store, runtime=self.runtime, config=self.agent.config)

    def pods(self) -> list[dict[str, Any]]:
        reader = Reader(self.root)
        try:
            return reader.pods()
        finally:
            reader.close()

    def pod(self, name: str) -> dict[str, Any]:
        found = [p for p in self.pods() if p["metadata"]["name"] == name]
        assert found, f"no pod {name}"
        return found[0]

    def row(self, name: str) -> printers.PodRow:
        return printers.pod_row(self.pod(name), self.now())

    def container(self, pod: str, name: str = "app") -> dict[str, Any]:
        status = self.pod(pod)["status"]
        for s in status.get("initContainerStatuses", []) + status["containerStatuses"]:
            if s["name"] == name:
                return s
        raise KeyError(name)

    def events(self, reason: str | None = None) -> list[dict[str, Any]]:
        reader = Reader(self.root)
        try:
            return [e for e in reader.events(None) if reason is None or e["reason"] == reason]
        finally:
            reader.close()

    def creates(self) -> int:
        return sum(1 for op, _ in self.runtime.calls if op == "create_container")

    def containers(self) -> dict[str, dict[str, Any]]:
        """Pod name → its first app container's status, as the CLI reads it."""
        return {p["metadata"]["name"]: p["status"]["containerStatuses"][0] for p in self.pods()
                if p.get("status", {}).get("containerStatuses")}


@contextmanager
def simulated_node(tmp_path: Path, **options: Any) -> Iterator[SimulatedNode]:
    """A node with an empty manifests directory at `tmp_path/manifests`, its state in `tmp_path/state`;
    `options`: more AgentConfig fields (serve's flags)."""
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    root = tmp_path / "state"
    with freeze_time(T0) as clock:
        runtime = FakeRuntime()
        store = Store(root)
        agent = Agent(store=store, runtime=runtime,
                      config=AgentConfig(manifests=manifests, root=root, node_name="node1",
                                         image_pull_workers=0, **{"pod_workers": TEST_POD_WORKERS, **options}))
        node = SimulatedNode(manifests, root, runtime, store, agent, clock)
        try:
            yield node
        finally:
            node.agent.close()
            node.store.close()
