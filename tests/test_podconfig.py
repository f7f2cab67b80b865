"""ConfigMaps and Secrets as objects, and what pods take from them: pure rules, table-driven.

Validation (`kubelite.api.configobjects`, `volume_validation`) and resolution
(`kubelite.core.podconfig`): env from envFrom and valueFrom with the kubelet's messages, and the
files of configMap, secret and downwardAPI volumes.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from kubelite.api.configobjects import MAX_SIZE, ConfigObject, from_object
from kubelite.api.decode import decode_document
from kubelite.api.models import Pod
from kubelite.core import podconfig

FACTS = podconfig.PodFacts(uid="u-1", node_name="node1", pod_ip="10.0.0.7", host_ip="192.0.2.1",
                           node=podconfig.NodeAllocatable(cpu_millis=4000, memory_bytes=8 << 30))


def config(kind: str, name: str = "cfg", **fields: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": kind, "metadata": {"name": name}, **fields}


def accepted(doc: dict[str, Any]) -> ConfigObject:
    decoded = decode_document(doc, source="/m/cfg.yaml")
    assert decoded.errors == [] and decoded.config is not None, decoded.errors
    return decoded.config


def errors(doc: dict[str, Any]) -> list[str]:
    return [str(e) for e in decode_document(doc, source="/m/x.yaml").errors]


def pod(container: dict[str, Any] | None = None, **spec: Any) -> Pod:
    body = {"containers": [{"name": "app", "image": "busybox", **(container or {})}], **spec}
    decoded = decode_document({"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": "web", "labels": {"app": "web", "tier": "front"}, "annotations": {"note": 'say "hi"'}},
        "spec": body}, source="/m/web.yaml")
    assert decoded.errors == [], decoded.errors
    assert decoded.desired is not None
    return decoded.desired.pod


def lookup(*objects: ConfigObject) -> dict[tuple[str, str, str], ConfigObject]:
    return {o.key: o for o in objects}


# ------------------------------------------------------------------ the objects


def test_a_secret_is_stored_as_the_api_serves_it_string_data_folded_into_base64_data():
    secret = accepted(config("Secret", "db", data={"user": base64.b64encode(b"admin").decode()},
                             stringData={"password": "s3cret", "user": "root"}))
    assert secret.object["data"] == {"password": base64.b64encode(b"s3cret").decode(),
                                     "user": base64.b64encode(b"root").decode()}
    assert "stringData" not in secret.object and secret.object["type"] == "Opaque"
    assert secret.values == {"password": b"s3cret", "user": b"root"}
    again = from_object(secret.object)
    assert (again.values, again.hash, again.uid) == (secret.values, secret.hash, secret.uid)


def test_a_configmap_keeps_its_uid_across_edits_and_changes_its_hash():
    a = accepted(config("ConfigMap", data={"k": "1"}))
    b = accepted(config("ConfigMap", data={"k": "2"}))
    assert a.uid == b.uid and a.hash != b.hash


@pytest.mark.parametrize("doc, expected", [
    (config("ConfigMap", data={"bad key": "v"}), "data[bad key]: Invalid value: a valid config key"),
    (config("ConfigMap", data={"..hidden": "v"}), "data[..hidden]: Invalid value"),
    (config("ConfigMap", data={"k": "v"}, binaryData={"k": "dg=="}),
     "binaryData[k]: Invalid value: duplicate of key present in data"),
    (config("ConfigMap", binaryData={"k": "not base64!"}), "binaryData[k]: Invalid value: must be base64 data"),
    (config("ConfigMap", data={"big": "x" * MAX_SIZE}), "data: Too long: must have at most 1048576 bytes"),
    (config("Secret", data={"k": "%%%"}), "data[k]: Invalid value: must be base64 data"),
    (config("Secret", type="kubernetes.io/tls", stringData={"tls.crt": "c"}), "data[tls.key]: Required value"),
    (config("Secret", stringData={"big": "x" * (MAX_SIZE + 1)}), "data: Too long"),
    (config("ConfigMap", data={"k": 1}), "data.k: Invalid value: must be a string"),
    ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Not_A_Name"}}, "metadata.name: Invalid value"),
    ({"apiVersion": "apps/v1", "kind": "Secret", "metadata": {"name": "s"}}, "apiVersion: Unsupported value"),
])
def test_invalid_configmaps_and_secrets_are_refused_with_the_field_named(doc, expected):
    found = errors(doc)
    assert any(e.startswith(expected) for e in found), found


def test_a_configmap_just_under_one_mebibyte_is_accepted():
    accepted(config("ConfigMap", data={"big": "x" * (MAX_SIZE - 3)}))


def test_error_messages_never_hold_a_secret_value():
    found = errors(config("Secret", data={"k": "c2VjcmV0LXZhbHVl!!"}, type="kubernetes.io/tls"))
    assert found and not any("c2VjcmV0" in e for e in found)


@pytest.mark.parametrize("container, spec, expected", [
    ({"env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "spec.host"}}}]}, {},
     "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: Unsupported value"),
    ({"env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"},
                                          "secretKeyRef": {"name": "s", "key": "k"}}}]}, {},
     "spec.containers[0].env[0].valueFrom: Invalid value: may not have more than one field"),
    ({"envFrom": [{"prefix": "X=", "configMapRef": {"name": "c"}}]}, {},
     "spec.containers[0].envFrom[0].prefix: Invalid value"),
    ({"volumeMounts": [{"name": "v", "mountPath": "/d", "subPath": "/abs"}]}, {"volumes": [{"name": "v",
                                                                                           "emptyDir": {}}]},
     "spec.containers[0].volumeMounts[0].subPath: Invalid value: must be a relative path"),
    ({"volumeMounts": [{"name": "v", "mountPath": "/d", "subPath": "a/../../x"}]},
     {"volumes": [{"name": "v", "emptyDir": {}}]}, "spec.containers[0].volumeMounts[0].subPath: Invalid value: "
                                                  "must not contain '..'"),
    ({}, {"volumes": [{"name": "v", "hostPath": {"path": "/x", "type": "Dir"}}]},
     'spec.volumes[0].hostPath.type: Unsupported value'),
    ({}, {"volumes": [{"name": "v", "emptyDir": {"medium": "HugePages"}}]}, "spec.volumes[0].emptyDir.medium"),
    ({}, {"volumes": [{"name": "v", "emptyDir": {}, "secret": {"secretName": "s"}}]},
     "spec.volumes[0].secret: Forbidden: may not specify more than 1 volume type"),
    ({}, {"volumes": [{"name": "v", "persistentVolumeClaim": {"readOnly": True}}]},
     "spec.volumes[0].persistentVolumeClaim.claimName: Required value"),
    ({}, {"volumes": [{"name": "v", "configMap": {"name": "c", "items": [{"key": "k", "path": "..data"}]}}]},
     "spec.volumes[0].configMap.items[0].path: Invalid value: must not start with '..'"),
    ({}, {"volumes": [{"name": "v", "secret": {"secretName": "s", "defaultMode": 0o1777}}]},
     "spec.volumes[0].secret.defaultMode: Invalid value"),
    ({}, {"volumes": [{"name": "v", "downwardAPI": {"items": [{"path": "x", "fieldRef": {
        "fieldPath": "status.podIP"}}]}}]}, "spec.volumes[0].downwardAPI.items[0].fieldRef.fieldPath: Unsupported"),
])
def test_invalid_env_sources_and_volumes_are_refused(container, spec, expected):
    doc = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
           "spec": {"containers": [{"name": "app", "image": "busybox", **container}], **spec}}
    found = errors(doc)
    assert any(e.startswith(expected) for e in found), found


# ------------------------------------------------------------------ env


def env_of(container: dict[str, Any], *objects: ConfigObject, facts: podconfig.PodFacts = FACTS) -> dict[str, str]:
    p = pod(container)
    return podconfig.container_env(p, p.spec.containers[0], configs=lookup(*objects), facts=facts).env


CM = config("ConfigMap", "cfg", data={"mode": "fast", "level": "3", "1bad": "x"})
SECRET = config("Secret", "db", stringData={"password": "s3cret"})


def test_env_from_configmap_and_secret_keys_with_expansion_in_order():
    env = env_of({"env": [
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
        {"name": "URL", "value": "db://$(PASSWORD)@host/$(MODE)/$(UNKNOWN)/$$(MODE)"},
    ]}, accepted(CM), accepted(SECRET))
    assert env == {"MODE": "fast", "PASSWORD": "s3cret", "URL": "db://s3cret@host/fast/$(UNKNOWN)/$(MODE)"}


def test_env_from_skips_keys_that_are_not_variable_names_and_says_which():
    p = pod({"envFrom": [{"prefix": "CFG_", "configMapRef": {"name": "cfg"}}, {"secretRef": {"name": "db"}}]})
    resolved = podconfig.container_env(p, p.spec.containers[0], configs=lookup(accepted(CM), accepted(SECRET)),
                                       facts=FACTS)
    assert resolved.env == {"CFG_mode": "fast", "CFG_level": "3", "CFG_1bad": "x", "password": "s3cret"}
    p = pod({"envFrom": [{"configMapRef": {"name": "cfg"}}]})
    resolved = podconfig.container_env(p, p.spec.containers[0], configs=lookup(accepted(CM)), facts=FACTS)
    assert "1bad" not in resolved.env and resolved.env["mode"] == "fast"
    assert resolved.warnings == [("InvalidEnvironmentVariableNames", "Keys [1bad] from the EnvFrom configmap "
                                  "default/cfg were skipped since they are considered invalid environment "
                                  "variable names.")]


@pytest.mark.parametrize("container, message", [
    ({"env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k"}}}]},
     'configmap "nope" not found'),
    ({"env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "absent"}}}]},
     "couldn't find key absent in ConfigMap default/cfg"),
    ({"env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "db", "key": "user"}}}]},
     "couldn't find key user in Secret default/db"),
    ({"env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "other", "key": "user"}}}]},
     'secret "other" not found'),
    ({"envFrom": [{"secretRef": {"name": "other"}}]}, 'secret "other" not found'),
])
def test_a_missing_object_or_key_is_the_kubelets_message(container, message):
    with pytest.raises(podconfig.ConfigError, match=f"^{message}$"):
        env_of(container, accepted(CM), accepted(SECRET))


def test_optional_references_to_missing_objects_or_keys_are_left_out():
    env = env_of({"envFrom": [{"configMapRef": {"name": "nope", "optional": True}}], "env": [
        {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "absent", "optional": True}}},
        {"name": "B", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": True}}},
        {"name": "C", "value": "c"}]}, accepted(CM))
    assert env == {"C": "c"}


def test_field_refs_read_the_pod_and_its_status():
    fields = ["metadata.name", "metadata.namespace", "metadata.uid", "metadata.labels['app']",
              "metadata.annotations['note']", "metadata.labels['absent']", "spec.nodeName",
              "spec.serviceAccountName", "status.podIP", "status.hostIP", "metadata.labels"]
    env = env_of({"env": [{"name": f"F{i}", "valueFrom": {"fieldRef": {"fieldPath": f}}}
                          for i, f in enumerate(fields)]})
    assert list(env.values()) == ["web", "default", "u-1", "web", 'say "hi"', "", "node1", "", "10.0.0.7",
                                  "192.0.2.1", 'app="web"\ntier="front"']


@pytest.mark.parametrize("resources, ref, value", [
    ({"limits": {"cpu": "500m"}}, {"resource": "limits.cpu"}, "1"),
    ({"limits": {"cpu": "500m"}}, {"resource": "limits.cpu", "divisor": "1m"}, "500"),
    ({"limits": {"cpu": "1500m"}}, {"resource": "requests.cpu", "divisor": "1m"}, "1500"),
    ({}, {"resource": "limits.cpu"}, "4"),
    ({}, {"resource": "requests.cpu"}, "0"),
    ({"limits": {"memory": "64Mi"}}, {"resource": "limits.memory", "divisor": "1Mi"}, "64"),
    ({"requests": {"memory": "1000"}}, {"resource": "requests.memory", "divisor": "1k"}, "1"),
    ({}, {"resource": "limits.memory", "divisor": "1Gi"}, "8"),
])
def test_resource_field_refs_divide_and_round_up_as_the_kubelet(resources, ref, value):
    env = env_of({"resources": resources, "env": [{"name": "R", "valueFrom": {"resourceFieldRef": ref}}]})
    assert env == {"R": value}


# ------------------------------------------------------------------ volume files


def payload(volume: dict[str, Any], *objects: ConfigObject) -> dict[str, tuple[bytes, int]]:
    p = pod(None, volumes=[{"name": "v", **volume}])
    files = podconfig.volume_payload(p, p.spec.volumes[0], configs=lookup(*objects), facts=FACTS)
    return {path: (f.data, f.mode) for path, f in files.items()}


def test_a_configmap_volume_holds_every_key_with_the_default_mode_0644_binary_data_too():
    cm = accepted(config("ConfigMap", data={"a.conf": "x=1"}, binaryData={"blob": base64.b64encode(b"\0\1").decode()}))
    assert payload({"configMap": {"name": "cfg"}}, cm) == {"a.conf": (b"x=1", 0o644), "blob": (b"\0\1", 0o644)}


def test_items_pick_keys_to_paths_with_their_modes():
    cm = accepted(CM)
    files = payload({"configMap": {"name": "cfg", "defaultMode": 0o600, "items": [
        {"key": "mode", "path": "conf/mode.txt"}, {"key": "level", "path": "level", "mode": 0o400}]}}, cm)
    assert files == {"conf/mode.txt": (b"fast", 0o600), "level": (b"3", 0o400)}


@pytest.mark.parametrize("volume, message", [
    ({"configMap": {"name": "nope"}}, 'configmap "nope" not found'),
    ({"secret": {"secretName": "nope"}}, 'secret "nope" not found'),
    ({"configMap": {"name": "cfg", "items": [{"key": "absent", "path": "x"}]}},
     "configmap references non-existent config key: absent"),
    ({"secret": {"secretName": "db", "items": [{"key": "absent", "path": "x"}]}},
     "secret references non-existent secret key: absent"),
])
def test_volume_errors_are_the_kubelets(volume, message):
    with pytest.raises(podconfig.ConfigError, match=f"^{message}$"):
        payload(volume, accepted(CM), accepted(SECRET))


def test_optional_volumes_of_missing_objects_are_empty():
    assert payload({"configMap": {"name": "nope", "optional": True}}) == {}
    assert payload({"secret": {"secretName": "db", "optional": True,
                               "items": [{"key": "absent", "path": "x"}]}}, accepted(SECRET)) == {}


def test_downward_api_files_hold_labels_annotations_name_namespace_and_uid():
    files = payload({"downwardAPI": {"items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}, "mode": 0o400},
        {"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}},
        {"path": "uid", "fieldRef": {"fieldPath": "metadata.uid"}},
        {"path": "cpu", "resourceFieldRef": {"containerName": "app", "resource": "limits.cpu", "divisor": "1m"}},
    ]}})
    assert files == {"labels": (b'app="web"\ntier="front"', 0o644), "annotations": (b'note="say \\"hi\\""', 0o644),
                     "name": (b"web", 0o400), "ns": (b"default", 0o644), "uid": (b"u-1", 0o644),
                     "cpu": (b"4000", 0o644)}


def test_references_name_every_configmap_and_secret_a_pod_uses():
    p = pod({"envFrom": [{"configMapRef": {"name": "a"}}], "env": [
        {"name": "X", "valueFrom": {"secretKeyRef": {"name": "b", "key": "k"}}}]},
        volumes=[{"name": "v", "secret": {"secretName": "c"}}, {"name": "w", "configMap": {"name": "d"}}])
    assert podconfig.references(p) == {("ConfigMap", "default", "a"), ("Secret", "default", "b"),
                                       ("Secret", "default", "c"), ("ConfigMap", "default", "d")}
