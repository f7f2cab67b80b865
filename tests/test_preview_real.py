"""`kubelite diff` against real containers: the container diff says restarts is the one runc runs
anew, and the other keeps its container."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.real import container, pod

pytestmark = pytest.mark.real


def test_diff_predicts_a_restart_of_one_container_and_the_agent_does_just_that(node, tmp_path):
    doc = pod("preview-f17", container("app", "sleep 3600"), container("side", "sleep 3600"))
    node.write(doc)
    node.until(lambda: node.running("preview-f17", "app") and node.running("preview-f17", "side"),
               what="both containers running")
    before = {name: node.container_id("preview-f17", name) for name in ("app", "side")}

    edited = pod("preview-f17", container("app", "sleep 3601"), container("side", "sleep 3600"))
    draft = tmp_path / "preview-f17.yaml"
    draft.write_text(yaml.safe_dump(edited))
    out = node.cli("diff", "-f", str(draft), "-o", "json")
    assert out.returncode == 1, out.stderr
    predicted = json.loads(out.stdout)["pods"][0]
    assert predicted["effect"] == "restart"
    assert predicted["containers"] == [{"name": "app", "action": "restart", "fields": ["command"]}]
    text = node.cli("diff", "-f", str(draft))
    assert text.stdout.splitlines()[0] == "pod/preview-f17: restart container app (command changed)"

    node.write(edited)
    node.until(lambda: node.running("preview-f17", "app", restarts=1), what="app restarted with its new command")
    after = {name: node.container_id("preview-f17", name) for name in ("app", "side")}
    assert after["app"] != before["app"], "the container diff named is a new runc container"
    assert after["side"] == before["side"], "the other one was left running"
    assert node.running("preview-f17", "side", restarts=0)
    assert node.cli("diff", "-f", str(draft)).returncode == 0, "once applied, nothing is left to change"
