"""PersistentVolumeClaims on real containers: data that outlives its pod and kubelite, a pod that
waits for its claim. Root, runc, conmon and the busybox image; nothing may be left behind."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.real import container, pod, wait_for
from tests.test_recovery_real import Daemon

pytestmark = pytest.mark.real


def claim(name: str = "data") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}


def with_claim(name: str, script: str) -> dict[str, Any]:
    return pod(name, container("app", script, volumeMounts=[{"name": "store", "mountPath": "/data"}]),
               volumes=[{"name": "store", "persistentVolumeClaim": {"claimName": "data"}}])


def test_a_claim_s_data_survives_its_pod_being_deleted_and_recreated_and_a_kubelite_restart(tmp_path, busybox):
    daemon = Daemon(tmp_path, busybox)
    try:
        (daemon.manifests / "data.yaml").write_text(yaml.safe_dump(claim()))
        (daemon.manifests / "writer.yaml").write_text(yaml.safe_dump(with_claim(
            "writer", "echo written-by-the-first-pod > /data/note; exec sleep 3600")))
        daemon.start()
        wait_for(lambda: daemon.pods().get("writer", {}).get("status", {}).get("phase") == "Running", timeout=30,
                 what="the writer running")
        wait_for(lambda: daemon.cli("exec", "writer", "--", "cat", "/data/note").stdout == "written-by-the-first-pod\n",
                 what="the note written")
        (daemon.manifests / "writer.yaml").unlink()
        wait_for(lambda: "writer" not in daemon.pods(), timeout=30, what="the writer removed")
        daemon.stop()
        daemon.start()
        (daemon.manifests / "reader.yaml").write_text(yaml.safe_dump(with_claim(
            "reader", "cat /data/note; echo and-the-second > /data/more; exec sleep 3600")))
        wait_for(lambda: daemon.pods().get("reader", {}).get("status", {}).get("phase") == "Running", timeout=30,
                 what="the reader running")
        wait_for(lambda: daemon.cli("logs", "reader").stdout == "written-by-the-first-pod\n", what="the reader's log")
        out = daemon.cli("get", "pvc", "data", "-o", "json")
        volume = json.loads(out.stdout)["spec"]["volumeName"]
        assert (daemon.root / "volumes" / volume / "more").read_text() == "and-the-second\n"
    finally:
        left = daemon.cleanup()
    assert left == [], f"left behind: {left}"
    # the claim is gone with every manifest: its Retain volume keeps the data
    assert (daemon.root / "volumes" / volume / "note").read_text() == "written-by-the-first-pod\n"


def test_a_pod_whose_claim_is_missing_waits_in_container_creating_then_starts(node):
    node.write(with_claim("late", "echo started > /data/started; exec sleep 3600"))
    node.until(lambda: node.container("late", "app").get("state", {}).get("waiting", {}).get("message", "")
               .endswith('persistentvolumeclaim "data" not found'), what="the pod waiting for its claim")
    assert node.container("late", "app")["state"]["waiting"]["reason"] == "ContainerCreating"
    node.write(claim())
    node.until(lambda: node.running("late", "app"), timeout=30, what="the pod running")
    assert node.exec("late", "app", "cat", "/data/started") == (0, "started\n")
