"""The relist between full ones: which passes ask the runtime to look at every process.

The first pass (and the first after a reload) relists in full, then once per relist period; the
passes between ask only for what gave a sign of change, and still see an exit that happened
between two of them. The runtime's side (the exit directory, the processes) is in
`tests/test_relist_real.py`.
"""

from __future__ import annotations

from typing import Any

from kubelite.core.types import ContainerState
from tests.helpers import pod_doc
from tests.simulated import simulated_node


def _recording(node: Any, monkeypatch) -> list[tuple[str, bool]]:
    calls: list[tuple[str, bool]] = []
    for name in ("list_sandboxes", "list_containers"):
        original = getattr(node.runtime, name)

        def recorded(*, full: bool = True, _name: str = name, _original: Any = original) -> Any:
            calls.append((_name, full))
            return _original(full=full)
        monkeypatch.setattr(node.runtime, name, recorded)
    return calls


def test_the_relist_is_full_at_the_first_pass_and_once_per_relist_period(tmp_path, monkeypatch):
    with simulated_node(tmp_path, relist_period_s=20.0) as node:
        calls = _recording(node, monkeypatch)
        node.write("web.yaml", pod_doc("web"))
        node.agent.run_once()
        assert calls[:2] == [("list_sandboxes", True), ("list_containers", True)]
        node.settle()
        calls.clear()
        node.advance(5)
        node.agent.run_once()
        assert calls and {full for _, full in calls} == {False}
        [c] = node.runtime.list_containers()
        node.runtime.exit_container(c.id, 3)   # between two passes, within the period
        calls.clear()
        node.agent.run_once()
        assert {full for _, full in calls} == {False}
        assert node.container("web")["restartCount"] == 1
        assert node.container("web")["lastState"]["terminated"]["exitCode"] == 3
        node.settle()
        calls.clear()
        node.advance(16)   # 21 s after the last full relist
        assert ("list_containers", True) in calls
        calls.clear()
        node.agent.run_once()
        assert {full for _, full in calls} == {False}, "the next full relist is a period away"


def test_a_restarted_agent_relists_in_full_first(tmp_path, monkeypatch):
    with simulated_node(tmp_path, relist_period_s=20.0) as node:
        node.write("web.yaml", pod_doc("web"))
        node.settle()
        node.restart_agent()
        calls = _recording(node, monkeypatch)
        node.agent.run_once()
        assert calls[:2] == [("list_sandboxes", True), ("list_containers", True)]
        assert [c.state for c in node.runtime.list_containers()] == [ContainerState.RUNNING]
