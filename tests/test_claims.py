"""PersistentVolumeClaims on a simulated node: validation, binding, waiting pods, reclaim, the store.

The fake runtime mounts nothing, so the tests see the claims' directories under the state root.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

from kubelite.api.decode import decode_document
from kubelite.store.reader import Reader
from tests.simulated import SimulatedNode, simulated_node


def claim(name: str = "data", *, modes: tuple[str, ...] = ("ReadWriteOnce",), storage: Any = "1Gi",
          **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"accessModes": list(modes), **spec}
    if storage is not None:
        body["resources"] = {"requests": {"storage": storage}}
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name}, "spec": body}


def storage_class(name: str, **fields: Any) -> dict[str, Any]:
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": name},
            "provisioner": "rancher.io/local-path", **fields}


def pod(name: str = "web", claim_name: str = "data", **source: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "app", "image": "busybox:1.36",
                                     "volumeMounts": [{"name": "store", "mountPath": "/data"}]}],
                     "volumes": [{"name": "store", "persistentVolumeClaim": {"claimName": claim_name, **source}}]}}


def errors(doc: dict[str, Any]) -> list[str]:
    return [str(issue) for issue in decode_document(doc, source="x.yaml").errors]


def claims(node: SimulatedNode) -> list[dict[str, Any]]:
    reader = Reader(node.root)
    try:
        return reader.config_objects("PersistentVolumeClaim")
    finally:
        reader.close()


def volumes(node: SimulatedNode) -> list[dict[str, Any]]:
    reader = Reader(node.root)
    try:
        return reader.persistent_volumes()
    finally:
        reader.close()


def waiting(node: SimulatedNode, name: str = "web") -> dict[str, Any]:
    return node.container(name)["state"].get("waiting", {})


def running(node: SimulatedNode, name: str = "web") -> bool:
    return "running" in node.container(name)["state"]


def mount_source(node: SimulatedNode, name: str = "web") -> tuple[str, bool]:
    uid = node.pod(name)["metadata"]["uid"]
    cid = [cid for op, cid in node.runtime.calls if op == "create_container"
           and node.runtime.configs[cid].uid == uid][-1]
    mount = node.runtime.configs[cid].mounts[0]
    return mount.host_path, mount.read_only


# ------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(("doc", "expected"), [
    (claim(modes=()), ["spec.accessModes: Required value: at least 1 access mode is required"]),
    (claim(modes=("ReadWriteSometimes",)), ['spec.accessModes: Unsupported value: supported values: "ReadOnlyMany", '
                                           '"ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"']),
    (claim(modes=("ReadWriteOncePod", "ReadOnlyMany")),
     ["spec.accessModes: Forbidden: may not use ReadWriteOncePod with other access modes"]),
    (claim(storage=None), ["spec.resources[storage]: Required value"]),
    (claim(storage="0"), ["spec.resources[storage]: Invalid value: must be greater than zero"]),
    (claim(storage="lots"), ["spec.resources[storage]: Invalid value: must be a quantity such as 1Gi"]),
    (claim(volumeMode="Block"), ['spec.volumeMode: Unsupported value: "Block": kubelite provides a claim as a '
                                 'directory on this machine, never a raw block device; use "Filesystem"']),
    (claim(storageClassName=""), ['spec.storageClassName: Invalid value: "" asks for a pre-created volume without a '
                                  'class; kubelite provisions every claim: omit the field or name a class '
                                  '("local-path")']),
    (claim(volumeName="pv-1"), ["spec.volumeName: Forbidden: binding to a pre-created PersistentVolume is not "
                                "supported: kubelite provisions each claim a volume of its own"]),
    (claim(selector={"matchLabels": {"a": "b"}}), ["spec.selector: Forbidden: a selector picks among pre-created "
                                                   "volumes; kubelite provisions each claim a volume of its own"]),
    (claim(dataSource={"kind": "PersistentVolumeClaim", "name": "x"}),
     ["spec.dataSource: Forbidden: kubelite cannot fill a new volume from a snapshot, another claim or a populator"]),
    (storage_class("fast", provisioner="ebs.csi.aws.com"),
     ['provisioner: Unsupported value: kubelite provisions directories on this machine only; supported values: '
      '"kubelite.io/local-path", "rancher.io/local-path"']),
    (storage_class("fast", reclaimPolicy="Recycle"), ['reclaimPolicy: Unsupported value: supported values: "Delete", '
                                                      '"Retain"']),
    ({**claim(), "apiVersion": "storage.k8s.io/v1"}, ['apiVersion: Unsupported value: supported values: "v1"']),
    (pod(claim_name=""), ["spec.volumes[0].persistentVolumeClaim.claimName: Required value"]),
])
def test_claims_and_classes_are_validated_as_kubernetes_does_with_kubelite_s_refusals_said_plainly(doc, expected):
    assert errors(doc) == expected


@pytest.mark.parametrize("modes", [("ReadWriteOnce",), ("ReadOnlyMany",), ("ReadWriteMany",), ("ReadWriteOncePod",),
                                   ("ReadWriteOnce", "ReadOnlyMany")])
def test_every_access_mode_is_fine_on_one_node(modes):
    decoded = decode_document(claim(modes=modes), source="x.yaml")
    assert decoded.errors == [] and decoded.config is not None
    assert decoded.config.object["spec"]["storageClassName"] == "local-path"
    assert decoded.config.object["spec"]["volumeMode"] == "Filesystem"


def test_a_claim_s_uid_does_not_depend_on_the_file_that_holds_it():
    a = decode_document(claim(), source="a.yaml").config
    b = decode_document(claim(), source="b.yaml").config
    assert a is not None and b is not None and a.uid == b.uid


# ------------------------------------------------------------------------------ on a node


def test_a_claim_is_bound_to_a_directory_under_the_state_root_and_a_pod_mounts_it(tmp_path):
    with simulated_node(tmp_path) as node:
        node.write("data.yaml", claim())
        node.write("web.yaml", pod())
        node.settle()
        [pvc] = claims(node)
        uid = pvc["metadata"]["uid"]
        assert pvc["status"] == {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}}
        assert pvc["spec"]["volumeName"] == f"pvc-{uid}"
        path = node.root / "volumes" / f"pvc-{uid}"
        assert stat.S_IMODE(path.stat().st_mode) == 0o777
        assert stat.S_IMODE((node.root / "volumes").stat().st_mode) == 0o700
        [pv] = volumes(node)
        assert pv["metadata"]["name"] == f"pvc-{uid}" and pv["status"] == {"phase": "Bound"}
        assert pv["spec"]["claimRef"]["name"] == "data" and pv["spec"]["local"] == {"path": str(path)}
        assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
        assert running(node) and mount_source(node) == (str(path), False)
        assert [e["message"] for e in node.events("ProvisioningSucceeded")] == [
            f"Successfully provisioned volume pvc-{uid}"]


def test_read_only_claim_volume_is_mounted_read_only(tmp_path):
    with simulated_node(tmp_path) as node:
        node.write("data.yaml", claim(), pod(readOnly=True))
        node.settle()
        assert running(node) and mount_source(node)[1] is True


def test_a_pod_whose_claim_is_missing_waits_with_the_kubelet_message_and_starts_when_it_appears(tmp_path):
    with simulated_node(tmp_path) as node:
        node.write("web.yaml", pod())
        node.settle()
        message = 'MountVolume.SetUp failed for volume "store" : persistentvolumeclaim "data" not found'
        assert waiting(node) == {"reason": "ContainerCreating", "message": message}
        assert node.row("web").status == "ContainerCreating"
        assert message in [e["message"] for e in node.events("FailedMount")]
        node.write("data.yaml", claim())
        node.settle()   # no time passes: the claim itself lets the pod start
        assert running(node)


def test_a_claim_of_an_unknown_class_stays_pending_and_its_pod_waits_until_the_class_is_declared(tmp_path):
    with simulated_node(tmp_path) as node:
        node.write("data.yaml", claim(storageClassName="fast"), pod())
        node.settle()
        [pvc] = claims(node)
        assert pvc["status"] == {"phase": "Pending"} and "volumeName" not in pvc["spec"]
        assert [e["message"] for e in node.events("ProvisioningFailed")] == [
            'storageclass.storage.k8s.io "fast" not found']
        assert waiting(node)["message"] == ('MountVolume.SetUp failed for volume "store" : persistentvolumeclaim '
                                            '"data" is not bound: storageclass.storage.k8s.io "fast" not found')
        node.write("fast.yaml", storage_class("fast", reclaimPolicy="Delete"))
        node.settle()
        assert running(node)
        assert [pv["spec"]["persistentVolumeReclaimPolicy"] for pv in volumes(node)] == ["Delete"]


def test_data_outlives_the_pod_and_a_restart_and_a_retained_volume_is_released_then_bound_again(tmp_path):
    with simulated_node(tmp_path) as node:
        node.write("data.yaml", claim())
        node.write("web.yaml", pod())
        node.settle()
        path = Path(mount_source(node)[0])
        (path / "kept").write_text("42")
        (node.manifests / "web.yaml").unlink()
        node.agent.hint_manifests()
        node.settle()
        node.advance(31)
        node.settle()
        assert [p["metadata"]["name"] for p in node.pods()] == []
        node.restart_agent()
        node.write("web.yaml", pod())
        node.settle()
        assert mount_source(node)[0] == str(path) and (path / "kept").read_text() == "42"
        # the claim goes while its pod still refers to it: protected, then released and kept
        (node.manifests / "data.yaml").unlink()
        node.agent.hint_manifests()
        node.settle()
        assert [pv["status"]["phase"] for pv in volumes(node)] == ["Bound"]
        (node.manifests / "web.yaml").unlink()
        node.agent.hint_manifests()
        node.settle()
        node.advance(31)
        node.settle()
        assert [pv["status"]["phase"] for pv in volumes(node)] == ["Released"]
        assert (path / "kept").read_text() == "42"
        assert any(str(path) in e["message"] for e in node.events("VolumeReleased"))
        node.write("data.yaml", claim())
        node.settle()
        assert [pv["status"]["phase"] for pv in volumes(node)] == ["Bound"]
        assert claims(node)[0]["status"]["phase"] == "Bound"


def test_a_delete_class_removes_the_directory_once_the_claim_and_its_pods_are_gone(tmp_path):
    with simulated_node(tmp_path) as node:
        node.write("data.yaml", storage_class("scratch", reclaimPolicy="Delete"), claim(storageClassName="scratch"))
        node.settle()
        [pv] = volumes(node)
        path = Path(pv["spec"]["local"]["path"])
        assert path.is_dir()
        node.write("data.yaml", storage_class("scratch", reclaimPolicy="Delete"))
        node.settle()
        assert volumes(node) == [] and not path.exists()
        assert [e["reason"] for e in node.events("VolumeDeleted")] == ["VolumeDeleted"]


def test_a_volume_keeps_its_class_s_reclaim_policy_and_its_binding_when_the_class_changes_or_goes(tmp_path):
    with simulated_node(tmp_path) as node:
        node.write("class.yaml", storage_class("scratch", reclaimPolicy="Retain"))
        node.write("data.yaml", claim(storageClassName="scratch"))
        node.settle()
        node.write("class.yaml", storage_class("scratch", reclaimPolicy="Delete"))
        node.settle()
        (node.manifests / "class.yaml").unlink()
        node.agent.hint_manifests()
        node.settle()
        assert claims(node)[0]["status"]["phase"] == "Bound"
        [pv] = volumes(node)
        assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
        (node.manifests / "data.yaml").unlink()
        node.agent.hint_manifests()
        node.settle()
        assert [v["status"]["phase"] for v in volumes(node)] == ["Released"]
        assert Path(pv["spec"]["local"]["path"]).is_dir()


def test_read_write_once_pod_is_held_by_one_pod_and_the_other_waits(tmp_path):
    with simulated_node(tmp_path) as node:
        node.write("data.yaml", claim(modes=("ReadWriteOncePod",)))
        node.write("a.yaml", pod("a"))
        node.settle()
        node.write("b.yaml", pod("b"))
        node.settle()
        assert running(node, "a")
        assert waiting(node, "b")["message"] == (
            'MountVolume.SetUp failed for volume "store" : persistentvolumeclaim "data" has the ReadWriteOncePod '
            "access mode and is in use by pod default/a")
        (node.manifests / "a.yaml").unlink()
        node.agent.hint_manifests()
        node.settle()
        node.advance(31)
        node.settle()
        node.advance(11)
        node.settle()
        assert running(node, "b")


def test_an_invalid_claim_says_why_its_pod_waits(tmp_path):
    with simulated_node(tmp_path) as node:
        node.write("data.yaml", claim(volumeMode="Block"))
        node.write("web.yaml", pod())
        node.settle()
        message = waiting(node)["message"]
        assert message.startswith('MountVolume.SetUp failed for volume "store" : persistentvolumeclaim "data" not '
                                  "found (its manifest is invalid: data.yaml: document 1")
        assert "spec.volumeMode" in message


def test_the_claims_and_volumes_survive_a_database_rebuild(tmp_path):
    with simulated_node(tmp_path) as node:
        node.write("data.yaml", claim(), pod())
        node.settle()
        first = volumes(node)[0]["spec"]["local"]["path"]
        node.agent.store.close()
        os.remove(node.root / "kubelite.db")
        node.restart_agent()
        node.settle()
        assert volumes(node)[0]["spec"]["local"]["path"] == first
        assert running(node) and mount_source(node)[0] == first


def test_a_second_claim_with_the_same_uid_is_refused_and_never_shares_or_deletes_the_first_s_data(tmp_path):
    with simulated_node(tmp_path) as node:
        node.write("class.yaml", storage_class("scratch", reclaimPolicy="Delete"))
        first = claim(storageClassName="scratch")
        first["metadata"].update(namespace="team-a", uid="copied-uid")
        second = claim("other", storageClassName="scratch")
        second["metadata"].update(namespace="team-b", uid="copied-uid")
        node.write("a.yaml", first)
        node.write("b.yaml", second)
        web = pod("web", claim_name="other")
        web["metadata"]["namespace"] = "team-b"
        node.write("web.yaml", web)
        node.settle()
        problems = [str(p) for p in node.agent.problems]
        assert any("metadata.uid: Duplicate value: PersistentVolumeClaim team-a/data already has this uid; "
                   "PersistentVolumeClaim team-b/other is ignored" in p for p in problems), problems
        assert waiting(node)["message"].startswith(
            'MountVolume.SetUp failed for volume "store" : persistentvolumeclaim "other" not found')
        [pv] = volumes(node)
        assert pv["spec"]["claimRef"]["namespace"] == "team-a"
        data = Path(pv["spec"]["local"]["path"])
        (data / "precious").write_text("team-a")
        # team-a's claim goes: its volume is deleted (class Delete); team-b's claim gets a volume of its own
        (node.manifests / "a.yaml").unlink()
        node.agent.hint_manifests()
        node.settle()
        assert running(node)
        [pv] = volumes(node)
        assert pv["spec"]["claimRef"]["namespace"] == "team-b"
        assert not (data / "precious").exists()


def test_a_retained_volume_is_not_taken_over_by_a_claim_of_another_namespace_with_its_uid(tmp_path):
    with simulated_node(tmp_path) as node:
        first = claim()
        first["metadata"].update(namespace="team-a", uid="copied-uid")
        node.write("a.yaml", first)
        node.settle()
        [pv] = volumes(node)
        data = Path(pv["spec"]["local"]["path"])
        (data / "precious").write_text("team-a")
        (node.manifests / "a.yaml").unlink()
        node.agent.hint_manifests()
        node.settle()
        assert [v["status"]["phase"] for v in volumes(node)] == ["Released"]
        second = claim()
        second["metadata"].update(namespace="team-b", uid="copied-uid")
        node.write("b.yaml", second)
        web = pod("web")
        web["metadata"]["namespace"] = "team-b"
        node.write("web.yaml", web)
        node.settle()
        [status] = [c["status"] for c in claims(node)]
        assert status["phase"] == "Pending"
        assert [v["status"]["phase"] for v in volumes(node)] == ["Released"]
        assert "belongs to claim team-a/data" in waiting(node)["message"]
        assert any("belongs to claim team-a/data" in e["message"] for e in node.events("ProvisioningFailed"))
        assert (data / "precious").read_text() == "team-a"


def test_read_write_once_pod_is_still_held_after_a_restart(tmp_path):
    with simulated_node(tmp_path) as node:
        node.write("data.yaml", claim(modes=("ReadWriteOncePod",)))
        node.write("a.yaml", pod("a"))
        node.settle()
        assert running(node, "a")
        node.restart_agent()
        node.settle()
        node.write("b.yaml", pod("b"))
        node.settle()
        assert running(node, "a")
        assert waiting(node, "b")["message"].endswith(
            'persistentvolumeclaim "data" has the ReadWriteOncePod access mode and is in use by pod default/a')


def test_a_claim_s_directory_follows_the_state_root_not_the_path_stored_with_it(tmp_path):
    with simulated_node(tmp_path) as node:
        node.write("data.yaml", claim(), pod())
        node.settle()
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        node.store.close()
        with sqlite3.connect(node.root / "kubelite.db") as db:
            db.execute("UPDATE persistent_volumes SET path = ?", (str(elsewhere),))
        db.close()
        node.restart_agent()
        node.write("web.yaml", pod("web2"))
        node.settle()
        assert mount_source(node, "web2")[0] == str(node.root / "volumes" / volumes(node)[0]["metadata"]["name"])
