"""ConfigMaps, Secrets and volumes on a simulated node: the agent's decisions, the store, the files.

The fake runtime mounts nothing (`host_changes=False`), so these tests see the files kubelite
writes for configMap, secret and downwardAPI volumes directly under the state root.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from pathlib import Path
from typing import Any

from kubelite.kubectl import describe as printers
from kubelite.store.reader import Reader
from tests.simulated import SimulatedNode, simulated_node

SECRET_VALUE = "hunter2-very-secret"


def configmap(name: str = "cfg", **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def secret(name: str = "db", **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data}


def pod(name: str = "web", container: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"containers": [{"name": "app", "image": "busybox:1.36", **(container or {})}], **spec}}


def waiting(node: SimulatedNode, name: str = "web") -> dict[str, Any]:
    return node.container(name)["state"].get("waiting", {})


def running(node: SimulatedNode, name: str = "web") -> bool:
    return "running" in node.container(name)["state"]


def last_config(node: SimulatedNode):
    cid = [cid for op, cid in node.runtime.calls if op == "create_container"][-1]
    return node.runtime.configs[cid]


def objects(node: SimulatedNode, kind: str) -> list[dict[str, Any]]:
    reader = Reader(node.root)
    try:
        return reader.config_objects(kind)
    finally:
        reader.close()


def volume_dir(node: SimulatedNode, plugin: str, volume: str, pod_name: str = "web") -> Path:
    uid = node.pod(pod_name)["metadata"]["uid"]
    return node.root / "pods" / uid / "volumes" / plugin / volume


ENV_FROM_CM = {"env": [{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}}]}


def test_a_pod_waits_with_create_container_config_error_and_starts_as_soon_as_the_configmap_appears(tmp_path):
    with simulated_node(tmp_path) as node:
        node.write("web.yaml", pod(container=ENV_FROM_CM))
        node.settle()
        assert waiting(node) == {"reason": "CreateContainerConfigError", "message": 'configmap "cfg" not found'}
        assert node.row("web").status == "CreateContainerConfigError"
        assert [e["message"] for e in node.events("Failed")] == ['Error: configmap "cfg" not found']
        node.write("cfg.yaml", configmap(other="x"))
        node.settle()
        assert waiting(node)["message"] == "couldn't find key mode in ConfigMap default/cfg"
        node.write("cfg.yaml", configmap(mode="fast"))
        node.settle()   # no time passes: the change itself lets the pod start
        assert running(node) and last_config(node).env == {"MODE": "fast"}


def test_env_is_resolved_when_the_container_is_created_and_an_edit_restarts_nothing(tmp_path):
    with simulated_node(tmp_path) as node:
        node.write("cfg.yaml", configmap(mode="fast"))
        mounts = [{"name": "conf", "mountPath": "/etc/app"}]
        node.write("web.yaml", pod(container={**ENV_FROM_CM, "volumeMounts": mounts},
                                   volumes=[{"name": "conf", "configMap": {"name": "cfg"}}]))
        node.settle()
        assert running(node)
        files = volume_dir(node, "kubernetes.io~configmap", "conf")
        assert (files / "mode").read_text() == "fast"
        first = (files / "..data").readlink()
        mounts = last_config(node).mounts
        assert [(m.container_path, m.host_path, m.read_only) for m in mounts] == [("/etc/app", str(files), True)]
        node.write("cfg.yaml", configmap(mode="slow", extra="1"))
        node.settle()
        assert node.creates() == 1 and last_config(node).env == {"MODE": "fast"}   # env kept, no restart
        assert (files / "mode").read_text() == "slow" and (files / "extra").read_text() == "1"
        assert (files / "..data").readlink() != first and not (files / first).exists()
        assert (files / "mode").readlink() == Path("..data/mode")
        node.write("cfg.yaml", configmap(mode="slow"))
        node.settle()
        assert not os.path.lexists(files / "extra")


def test_configmaps_and_secrets_are_stored_for_the_cli_and_the_api(tmp_path):
    with simulated_node(tmp_path) as node:
        node.write("objects.yaml", configmap(mode="fast"), secret(password=SECRET_VALUE))
        node.settle()
        [cm] = objects(node, "ConfigMap")
        [sec] = objects(node, "Secret")
        assert cm["data"] == {"mode": "fast"} and int(cm["metadata"]["resourceVersion"]) >= 1
        assert cm["metadata"]["creationTimestamp"].endswith("Z") and cm["metadata"]["uid"]
        assert sec["data"] == {"password": base64.b64encode(SECRET_VALUE.encode()).decode()}
        assert "stringData" not in sec
        row = node.store.execute_sql("SELECT kind, namespace, name, uid, source, resource_version "
                                     "FROM config_objects WHERE kind = 'ConfigMap'")[0]
        assert row[:4] == ("ConfigMap", "default", "cfg", cm["metadata"]["uid"])
        assert row[4] == str(node.manifests / "objects.yaml") and row[5] == int(cm["metadata"]["resourceVersion"])
        node.write("objects.yaml", configmap(mode="slow"), secret(password=SECRET_VALUE))
        node.settle()
        [cm2] = objects(node, "ConfigMap")
        # the node-wide resourceVersion sequence (shared with pods) only goes up
        assert int(cm2["metadata"]["resourceVersion"]) > int(cm["metadata"]["resourceVersion"])
        assert cm2["metadata"]["uid"] == cm["metadata"]["uid"]
        assert objects(node, "Secret") == [sec]   # unchanged: not written again


def test_an_invalid_edit_keeps_the_last_valid_configmap_and_says_why(tmp_path):
    with simulated_node(tmp_path) as node:
        node.write("cfg.yaml", configmap(mode="fast"))
        node.settle()
        node.write("cfg.yaml", {**configmap(mode="x"), "binaryData": {"mode": "eA=="}})
        node.settle()
        assert objects(node, "ConfigMap")[0]["data"] == {"mode": "fast"}
        problems = [p["text"] for p in node.store.problems()]
        assert problems == ["cfg.yaml: document 1, line 3: binaryData[mode]: Invalid value: duplicate of key "
                            "present in data"]
        node.write("cfg.yaml", configmap(big="x" * (1024 * 1024)))
        node.settle()
        assert objects(node, "ConfigMap")[0]["data"] == {"mode": "fast"}
        assert any("Too long: must have at most 1048576 bytes" in p["text"] for p in node.store.problems())
        (node.manifests / "cfg.yaml").unlink()
        node.agent.hint_manifests()
        node.settle()
        assert objects(node, "ConfigMap") == []


def test_the_first_file_wins_a_configmap_name(tmp_path):
    with simulated_node(tmp_path) as node:
        node.write("a.yaml", configmap(mode="a"))
        node.write("b.yaml", configmap(mode="b"))
        node.settle()
        assert objects(node, "ConfigMap")[0]["data"] == {"mode": "a"}
        assert [p["text"] for p in node.store.problems()] == [
            "b.yaml: ConfigMap default/cfg is already defined in a.yaml; this definition is ignored"]


def test_secret_values_never_reach_events_logs_describe_or_the_pod_object(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="kubelite")
    with simulated_node(tmp_path) as node:
        node.write("db.yaml", secret(password=SECRET_VALUE))
        node.write("web.yaml", pod(container={
            "envFrom": [{"secretRef": {"name": "db"}, "prefix": "DB_"}],
            "env": [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}],
            "volumeMounts": [{"name": "creds", "mountPath": "/creds"}]},
            volumes=[{"name": "creds", "secret": {"secretName": "db"}}]))
        node.settle()
        assert running(node)
        assert last_config(node).env == {"DB_password": SECRET_VALUE, "PW": SECRET_VALUE}
        assert (volume_dir(node, "kubernetes.io~secret", "creds") / "password").read_text() == SECRET_VALUE
        obj = node.pod("web")
        describe = printers.describe_pod(obj, node.events(), node.now())
        encoded = base64.b64encode(SECRET_VALUE.encode()).decode()
        for text in (json.dumps(obj), json.dumps(node.events()), describe, caplog.text):
            assert SECRET_VALUE not in text and encoded not in text
        assert "<set to the key 'password' in secret 'db'>" in describe


def test_env_from_keys_that_are_not_variable_names_are_skipped_with_an_event(tmp_path):
    with simulated_node(tmp_path) as node:
        node.write("cfg.yaml", configmap(**{"mode": "fast", "1st": "x"}))
        node.write("web.yaml", pod(container={"envFrom": [{"configMapRef": {"name": "cfg"}}]}))
        node.settle()
        assert running(node) and last_config(node).env == {"mode": "fast"}
        assert [e["message"] for e in node.events("InvalidEnvironmentVariableNames")] == [
            "Keys [1st] from the EnvFrom configmap default/cfg were skipped since they are considered invalid "
            "environment variable names."]


def test_a_hostpath_of_the_wrong_type_waits_in_container_creating_with_the_kubelets_message(tmp_path):
    target = tmp_path / "not-a-dir"
    target.write_text("file")
    with simulated_node(tmp_path) as node:
        node.write("web.yaml", pod(container={"volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                                   volumes=[{"name": "data", "hostPath": {"path": str(target), "type": "Directory"}}]))
        node.write("other.yaml", pod("other"))
        node.settle()
        message = (f'MountVolume.SetUp failed for volume "data" : hostPath type check failed: {target} '
                   "is not a directory")
        assert waiting(node) == {"reason": "ContainerCreating", "message": message}
        assert [e["message"] for e in node.events("FailedMount")] == [message]
        assert node.creates() == 1 and running(node, "other")   # the other pod is not disturbed
        target.unlink()
        target.mkdir()
        node.advance(10)
        assert running(node) and last_config(node).mounts[0].host_path == str(target)


def test_an_empty_dir_lives_across_container_restarts_and_goes_with_the_pod(tmp_path):
    with simulated_node(tmp_path) as node:
        node.write("web.yaml", pod(container={"volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]},
                                   volumes=[{"name": "scratch", "emptyDir": {}}]))
        node.settle()
        scratch = volume_dir(node, "kubernetes.io~empty-dir", "scratch")
        (scratch / "kept").write_text("1")
        cid = [cid for op, cid in node.runtime.calls if op == "create_container"][-1]
        node.runtime.exit_container(cid, 1)
        node.advance(11)
        assert node.creates() == 2 and (scratch / "kept").read_text() == "1"
        (node.manifests / "web.yaml").unlink()
        node.agent.hint_manifests()
        node.advance(3)
        assert node.pods() == [] and not scratch.exists()


def test_a_downward_api_volume_follows_label_edits_in_place(tmp_path):
    with simulated_node(tmp_path) as node:
        spec = {"volumes": [{"name": "info", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}}]}
        node.write("web.yaml", pod(container={"volumeMounts": [{"name": "info", "mountPath": "/info"}]}, **spec))
        node.settle()
        files = volume_dir(node, "kubernetes.io~downward-api", "info")
        assert (files / "labels").read_text() == 'app="web"' and (files / "name").read_text() == "web"
        doc = pod(container={"volumeMounts": [{"name": "info", "mountPath": "/info"}]}, **spec)
        doc["metadata"]["labels"]["tier"] = "front"
        node.write("web.yaml", doc)
        node.settle()
        assert (files / "labels").read_text() == 'app="web"\ntier="front"' and node.creates() == 1


def test_a_missing_configmap_volume_is_a_failed_mount_until_it_appears(tmp_path):
    with simulated_node(tmp_path) as node:
        node.write("web.yaml", pod(container={"volumeMounts": [{"name": "conf", "mountPath": "/conf"}]},
                                   volumes=[{"name": "conf", "configMap": {"name": "cfg"}}]))
        node.settle()
        assert waiting(node)["message"] == 'MountVolume.SetUp failed for volume "conf" : configmap "cfg" not found'
        node.write("cfg.yaml", configmap(mode="fast"))
        node.settle()
        assert running(node)


def test_configmaps_survive_an_agent_restart(tmp_path):
    with simulated_node(tmp_path) as node:
        node.write("cfg.yaml", configmap(mode="fast"))
        node.settle()
        node.restart_agent()
        assert set(node.agent.configs.entries) == {("ConfigMap", "default", "cfg")}
        node.write("web.yaml", pod(container=ENV_FROM_CM))
        node.settle()
        assert running(node) and last_config(node).env == {"MODE": "fast"}
        assert objects(node, "ConfigMap")[0]["metadata"]["resourceVersion"] == "1"


def test_a_pod_waiting_for_a_configmap_whose_manifest_is_invalid_says_why(tmp_path):
    with simulated_node(tmp_path) as node:
        node.write("cfg.yaml", configmap(mode="x" * (1024 * 1024)))
        node.write("web.yaml", pod(container=ENV_FROM_CM))
        node.write("other.yaml", pod("other"))
        node.settle()
        assert waiting(node)["reason"] == "CreateContainerConfigError"
        assert waiting(node)["message"] == (
            'configmap "cfg" not found (its manifest is invalid: cfg.yaml: document 1, line 2: data: Too long: '
            "must have at most 1048576 bytes)")
        assert running(node, "other")
        invalid = [e["message"] for e in node.events("InvalidManifest")]
        assert invalid == ["cfg.yaml: document 1, line 2: data: Too long: must have at most 1048576 bytes"]
        node.write("cfg.yaml", configmap(mode="fast"))
        node.settle()
        assert running(node) and last_config(node).env == {"MODE": "fast"}
