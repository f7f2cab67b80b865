"""The relist between full ones on the real runtime: an exit file is seen at once, a death without
one (a container's process and its conmon both killed, a sandbox's infra process) at the next
full relist, and then stays seen.
"""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta

import pytest

from kubelite.core.types import ContainerState
from kubelite.runtime.protocol import SandboxState
from tests.real import Node, container, pod, wait_for

pytestmark = pytest.mark.real


def _listed(node: Node, cid: str, *, full: bool):
    return next(c for c in node.runtime.list_containers(full=full) if c.id == cid)


@pytest.fixture
def slow_relist(tmp_path, busybox):
    n = Node(tmp_path / "manifests", tmp_path / "state", tmp_path / "run", busybox,
             options={"relist_period_s": 4.0}).start()
    try:
        yield n
    finally:
        left = n.close()
        assert left == [], f"left behind: {left}"


def test_an_exit_between_two_passes_is_seen_by_the_relist_between_full_ones(slow_relist: Node, monkeypatch):
    node = slow_relist
    node.write(pod("web", container("app", "exec sleep 3600")))
    node.until(lambda: node.running("web", "app"), what="web running")
    cid = node.container_id("web", "app")
    record = node.runtime._containers[cid]
    fulls: list[bool] = []
    original = node.runtime.list_containers
    monkeypatch.setattr(node.runtime, "list_containers",
                        lambda *, full=True: (fulls.append(full), original(full=full))[1])
    node.agent.next_full_relist = node.agent.clock() + timedelta(seconds=60)   # no full relist in this test
    os.kill(record.pid, signal.SIGKILL)
    wait_for(lambda: (node.run_dir / "exits" / cid).exists(), what="conmon's exit file")
    node.step()
    assert fulls and not any(fulls)
    terminated = node.container("web", "app").get("lastState", {}).get("terminated") \
        or node.container("web", "app")["state"].get("terminated")
    assert terminated["exitCode"] == 137
    node.until(lambda: node.running("web", "app", restarts=1), what="the restart")


def test_a_death_without_an_exit_file_is_seen_at_the_next_full_relist(slow_relist: Node):
    node = slow_relist
    node.write(pod("web", container("app", "exec sleep 3600")))
    node.until(lambda: node.running("web", "app"), what="web running")
    cid = node.container_id("web", "app")
    record = node.runtime._containers[cid]
    [sandbox] = [s for s in node.runtime.list_sandboxes() if s.uid == record.uid]
    infra = node.runtime._sandboxes[sandbox.id]
    os.kill(record.conmon_pid, signal.SIGKILL)   # conmon first: nobody writes the exit file
    wait_for(lambda: not os.path.exists(f"/proc/{record.conmon_pid}/stat")
             or open(f"/proc/{record.conmon_pid}/stat").read().split(") ")[1][0] == "Z", what="conmon gone")
    os.kill(record.pid, signal.SIGKILL)
    os.kill(infra.pid, signal.SIGKILL)
    time.sleep(0.3)
    assert not (node.run_dir / "exits" / cid).exists()
    # between full relists: no sign, so as last seen
    assert _listed(node, cid, full=False).state is ContainerState.RUNNING
    assert next(s for s in node.runtime.list_sandboxes(full=False) if s.id == sandbox.id).state is SandboxState.READY
    # a full relist looks at the processes; the relists after it keep what it found
    assert wait_for(lambda: _listed(node, cid, full=True).state is ContainerState.UNKNOWN, what="the loss")
    assert _listed(node, cid, full=False).state is ContainerState.UNKNOWN
    assert next(s for s in node.runtime.list_sandboxes(full=True) if s.id == sandbox.id).state \
        is SandboxState.NOTREADY
    assert next(s for s in node.runtime.list_sandboxes(full=False) if s.id == sandbox.id).state \
        is SandboxState.NOTREADY
    # the agent's own full relist (one relist period, 4 s) finds them: a new sandbox, the container restarted
    node.until(lambda: node.running("web", "app", restarts=1), timeout=30, what="the restart in a new sandbox")
    assert [s.id for s in node.runtime.list_sandboxes() if s.uid == record.uid
            and s.state is SandboxState.READY] != [sandbox.id]
