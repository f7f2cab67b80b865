"""The Pod API: defaulting, validation, unknown and unimplemented fields, spec hashes, UIDs."""

from __future__ import annotations

import copy
from fractions import Fraction

import pytest

from kubelite.api import quantity
from kubelite.api.decode import decode_document
from tests.helpers import pod_doc


def errors_of(doc) -> list[str]:
    return [str(e) for e in decode_document(doc, source="/m/web.yaml").errors]


def with_spec(**changes):
    doc = pod_doc()
    doc["spec"].update(changes)
    return doc


def with_container(**changes):
    doc = pod_doc()
    doc["spec"]["containers"][0].update(changes)
    return doc


def test_kubernetes_defaults_are_applied():
    pod = decode_document(pod_doc(), source="x").desired.pod
    assert pod.metadata.namespace == "default"
    assert pod.spec.restart_policy == "Always"
    assert pod.spec.termination_grace_period_seconds == 30
    c = pod.spec.containers[0]
    assert (c.termination_message_path, c.termination_message_policy) == ("/dev/termination-log", "File")


@pytest.mark.parametrize("image, policy", [("busybox", "Always"), ("busybox:latest", "Always"),
                                           ("busybox:1.36", "IfNotPresent"),
                                           ("registry.local:5000/team/app", "Always"),
                                           ("registry.local:5000/team/app:v2", "IfNotPresent"),
                                           ("busybox@sha256:" + "a" * 64, "IfNotPresent")])
def test_image_pull_policy_defaults_by_tag(image, policy):
    assert decode_document(with_container(image=image), source="x").desired.pod.spec.containers[0] \
        .image_pull_policy == policy


def test_probe_defaults():
    doc = with_container(livenessProbe={"exec": {"command": ["true"]}})
    probe = decode_document(doc, source="x").desired.pod.spec.containers[0].liveness_probe
    assert (probe.timeout_seconds, probe.period_seconds, probe.success_threshold, probe.failure_threshold,
            probe.initial_delay_seconds) == (1, 10, 1, 3, 0)


@pytest.mark.parametrize("doc, expected", [
    ({**pod_doc(), "metadata": {}}, "metadata.name: Required value"),
    ({**pod_doc(), "metadata": {"name": "Web_1"}}, "metadata.name: Invalid value: a lowercase RFC 1123 subdomain"),
    ({**pod_doc(), "metadata": {"name": "web", "namespace": "Prod"}}, "metadata.namespace: Invalid value"),
    (with_spec(containers=[]), "spec.containers: Required value"),
    (with_spec(restartPolicy="Sometimes"), 'spec.restartPolicy: Unsupported value: supported values: "Always"'),
    (with_spec(terminationGracePeriodSeconds=-1),
     "spec.terminationGracePeriodSeconds: Invalid value: must be greater than or equal to 0"),
    (with_spec(activeDeadlineSeconds=0), "spec.activeDeadlineSeconds: Invalid value"),
    (with_spec(containers=[{"name": "a", "image": "x"}, {"name": "a", "image": "y"}]),
     "spec.containers[1].name: Duplicate value"),
    (with_spec(initContainers=[{"name": "app", "image": "x"}]), "spec.containers[0].name: Duplicate value"),
    (with_container(image=""), "spec.containers[0].image: Required value"),
    (with_container(name="App"), "spec.containers[0].name: Invalid value"),
    (with_container(ports=[{"containerPort": 70000}]), "spec.containers[0].ports[0].containerPort: Invalid value"),
    (with_container(ports=[{"containerPort": "80"}]),
     "spec.containers[0].ports[0].containerPort: Invalid value: must be an integer"),
    (with_container(ports=[{"containerPort": 80, "protocol": "ICMP"}]),
     "spec.containers[0].ports[0].protocol: Unsupported value"),
    (with_container(imagePullPolicy="Sometimes"), "spec.containers[0].imagePullPolicy: Unsupported value"),
    (with_container(restartPolicy="Always"), "spec.containers[0].restartPolicy: Forbidden"),
    (with_container(resources={"limits": {"memory": "lots"}}),
     "spec.containers[0].resources.limits.memory: Invalid value"),
    (with_container(resources={"limits": {"cpu": "1"}, "requests": {"cpu": "2"}}),
     "spec.containers[0].resources.requests.cpu: Invalid value: must be less than or equal to the limit"),
    (with_container(livenessProbe={"periodSeconds": 5}), "spec.containers[0].livenessProbe: Required value"),
    (with_container(livenessProbe={"exec": {"command": ["true"]}, "successThreshold": 2}),
     "spec.containers[0].livenessProbe.successThreshold: Invalid value: must be 1"),
    (with_container(volumeMounts=[{"name": "data", "mountPath": "/data"}]),
     "spec.containers[0].volumeMounts[0].name: Not found"),
    (with_container(command="sh -c true"), "spec.containers[0].command: Invalid value: must be a list"),
    (with_spec(hostNetwork="yes"), "spec.hostNetwork: Invalid value: must be a boolean"),
])
def test_validation_errors_name_the_field(doc, expected):
    assert any(e.startswith(expected) for e in errors_of(doc)), errors_of(doc)


@pytest.mark.parametrize("doc, expected", [
    ({"apiVersion": "v2", "kind": "Pod", "metadata": {"name": "x"}}, "apiVersion: Unsupported value"),
    ({"apiVersion": "v1", "kind": 7, "metadata": {"name": "x"}}, "kind: Invalid value"),
    ({"metadata": {"name": "x"}}, "kind: Required value"),
    (["a", "list"], "not a Kubernetes object"),
])
def test_wrong_kinds_are_errors(doc, expected):
    assert errors_of(doc)[0].startswith(expected)


@pytest.mark.parametrize("doc, kind", [
    ({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}}, "Deployment"),
    ({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}}, "Service"),
    ({"apiVersion": "v1", "kind": "PodList", "items": []}, "PodList"),
    ({"apiVersion": "v1", "kind": "Pod\nX"}, '"Pod\\nX"'),
])
def test_other_kinds_are_ignored_with_one_warning_naming_the_kind(doc, kind):
    decoded = decode_document(doc, source="x")
    assert decoded.errors == [] and decoded.desired is None and decoded.config is None and decoded.ignored
    assert [str(w) for w in decoded.warnings] == [f"kind {kind} is not run by kubelite; ignored"]


def test_errors_never_echo_field_values():
    secret = "s3cr3t-value-do-not-print"
    for doc in (with_container(image=" " + secret), with_spec(restartPolicy=secret),
                {**pod_doc(), "metadata": {"name": secret.upper()}}, with_container(ports=[{"containerPort": secret}])):
        assert secret not in " ".join(errors_of(doc)).lower()


def test_unknown_fields_are_warnings_that_name_them_and_are_dropped():
    doc = with_container(imagePullPolicey="Always")
    doc["spec"]["nodeSelector"] = {"disk": "ssd"}
    decoded = decode_document(doc, source="x")
    assert decoded.errors == []
    warnings = [str(w) for w in decoded.warnings]
    assert "spec.containers[0].imagePullPolicey: unknown field; ignored" in warnings
    assert "spec.nodeSelector: kubelite runs every pod on this machine (no scheduling); ignored" in warnings
    assert "imagePullPolicey" not in decoded.desired.pod.model_dump_json(by_alias=True)


def test_known_but_unimplemented_fields_are_reported():
    doc = with_container(livenessProbe={"exec": {"command": ["true"]}}, ports=[{"containerPort": 80, "hostPort": 8080}])
    warnings = [str(w) for w in decode_document(doc, source="x").warnings]
    assert not any("livenessProbe" in w for w in warnings)  # probes are implemented
    assert not any("hostPort" in w for w in warnings)   # implemented: pod networking


def test_grpc_probes_are_reported_as_not_run():
    doc = with_container(readinessProbe={"grpc": {"port": 9000}})
    warnings = [str(w) for w in decode_document(doc, source="x").warnings]
    assert "spec.containers[0].readinessProbe.grpc: not implemented yet; the probe does not run" in warnings


def test_configmaps_are_accepted_as_configuration_objects_not_pods():
    decoded = decode_document({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}, source="x")
    assert decoded.errors == [] and decoded.warnings == [] and decoded.desired is None
    assert decoded.config is not None and decoded.config.key == ("ConfigMap", "default", "c")


def test_identical_content_gives_identical_hashes_and_uid():
    a = decode_document(pod_doc(), source="/m/web.yaml").desired
    reordered = {"spec": pod_doc()["spec"], "metadata": pod_doc()["metadata"], "kind": "Pod", "apiVersion": "v1"}
    b = decode_document(reordered, source="/m/web.yaml").desired
    assert (a.uid, a.pod_hash, a.sandbox_hash, a.container_hashes) == \
        (b.uid, b.pod_hash, b.sandbox_hash, b.container_hashes)


def test_a_container_edit_changes_only_that_container_hash_and_keeps_the_uid():
    base = pod_doc(containers=["a", "b"])
    edited = copy.deepcopy(base)
    edited["spec"]["containers"][1]["image"] = "busybox:1.37"
    a = decode_document(base, source="/m/web.yaml").desired
    b = decode_document(edited, source="/m/web.yaml").desired
    assert a.uid == b.uid and a.sandbox_hash == b.sandbox_hash and a.pod_hash != b.pod_hash
    assert a.container_hashes["a"] == b.container_hashes["a"]
    assert a.container_hashes["b"] != b.container_hashes["b"]


@pytest.mark.parametrize("change", [{"hostNetwork": True}, {"hostname": "other"},
                                    {"initContainers": [{"name": "i", "image": "x"}]}])
def test_a_pod_level_edit_changes_the_sandbox_hash_and_the_uid(change):
    a = decode_document(pod_doc(), source="/m/web.yaml").desired
    b = decode_document(with_spec(**change), source="/m/web.yaml").desired
    assert a.sandbox_hash != b.sandbox_hash and a.uid != b.uid


@pytest.mark.parametrize("change", [{"restartPolicy": "Never"}, {"terminationGracePeriodSeconds": 5},
                                    {"activeDeadlineSeconds": 100}])
def test_policy_fields_change_neither_sandbox_nor_uid(change):
    a = decode_document(pod_doc(), source="/m/web.yaml").desired
    b = decode_document(with_spec(**change), source="/m/web.yaml").desired
    assert (a.uid, a.sandbox_hash) == (b.uid, b.sandbox_hash) and a.pod_hash != b.pod_hash


def test_an_explicit_uid_is_kept():
    doc = pod_doc()
    doc["metadata"]["uid"] = "1234"
    assert decode_document(doc, source="x").desired.uid == "1234"


@pytest.mark.parametrize("text, value", [("500m", Fraction(1, 2)), ("2", 2), ("1.5", Fraction(3, 2)),
                                         ("64Mi", 64 * 2**20), ("1G", 10**9), ("1e3", 1000), (3, 3),
                                         ("0.1", Fraction(1, 10)), ("100k", 100_000)])
def test_quantities(text, value):
    assert quantity.parse(text) == value


@pytest.mark.parametrize("text", ["", "lots", "1.2.3", "5 Mi", "Mi", "1Z", True])
def test_bad_quantities(text):
    with pytest.raises(ValueError):
        quantity.parse(text)


def test_cpu_and_memory_conversions():
    assert quantity.cpu_millis("250m") == 250 and quantity.cpu_millis("1.5") == 1500
    assert quantity.cpu_millis("0.0001") == 1  # rounded up, as MilliValue does
    assert quantity.bytes_("64Mi") == 67108864
