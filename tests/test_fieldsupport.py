"""The Pod field table: every field of Kubernetes 1.32 is implemented (with a test that exists),
warned about, or refused — and docs/manifests.md shows the same table."""

from __future__ import annotations

import copy
import logging
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubelite.api import fieldsupport, support
from kubelite.api.decode import decode_document
from kubelite.sources.manifests import read_file
from tests.simulated import simulated_node

TESTS = Path(__file__).resolve().parent
DOCS = TESTS.parent / "docs" / "manifests.md"
TEST_SOURCES = "\n".join(path.read_text() for path in sorted(TESTS.glob("test_*.py")))

#: Values for the warned fields kubelite's models carry (typed: any value would not do).
SAMPLES: dict[str, Any] = {
    "ObjectMeta.generateName": "web-",
    "ObjectMeta.resourceVersion": "42",
    "ObjectMeta.creationTimestamp": "2026-01-01T00:00:00Z",
    "ObjectMeta.deletionTimestamp": "2026-01-01T00:00:00Z",
    "PodSpec.serviceAccountName": "builder",
    "PodSpec.nodeName": "another-node",
    "PodSecurityContext.fsGroup": 2000,
    "PodSecurityContext.sysctls": [{"name": "net.ipv4.ping_group_range", "value": "0 0"}],
    "Container.terminationMessagePath": "/var/log/message",
    "Container.terminationMessagePolicy": "FallbackToLogsOnError",
    "Container.stdin": True,
    "Container.tty": True,
    "Probe.grpc": {"port": 9000},
    "Probe.terminationGracePeriodSeconds": 5,
    "Lifecycle.postStart": {"exec": {"command": ["true"]}},
    "LifecycleHandler.httpGet": {"port": 80},
    "LifecycleHandler.tcpSocket": {"port": 80},
    "LifecycleHandler.sleep": {"seconds": 1},
}
#: Handlers: a probe or hook holds exactly one, so the sample replaces the base one.
HANDLERS = {"exec", "httpGet", "tcpSocket", "grpc", "sleep"}


def base_pod() -> dict[str, Any]:
    """A valid pod with one of everything the table's types describe, each at its `PATHS` place."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}, "spec": {
        "securityContext": {},
        "volumes": [{"name": "v", "emptyDir": {}}],
        "containers": [{
            "name": "app", "image": "busybox:1.36", "ports": [{"containerPort": 80}],
            "env": [{"name": "X", "value": "y"}], "resources": {},
            "volumeMounts": [{"name": "v", "mountPath": "/v"}],
            "livenessProbe": {"exec": {"command": ["true"]}},
            "lifecycle": {"preStop": {"exec": {"command": ["true"]}}},
            "securityContext": {}}]}}


def concrete(path: str) -> str:
    return path.replace("[]", "[0]")


def place(doc: dict[str, Any], entry: fieldsupport.FieldSupport, value: Any) -> None:
    """Set `entry`'s field to `value` in `doc`, at the place `PATHS` gives its type."""
    target: Any = doc
    parent = fieldsupport.PATHS[entry.type]
    for step in re.findall(r"[^.\[\]]+|\[\]", parent):
        target = target[0] if step == "[]" else target.setdefault(step, {})
    if entry.type in ("Probe", "LifecycleHandler") and entry.field in HANDLERS:
        target.clear()
    target[entry.field] = value


def sample(entry: fieldsupport.FieldSupport) -> Any:
    key = f"{entry.type}.{entry.field}"
    model = support.MODEL_TYPES.get(entry.type)
    if model is not None and entry.field not in support.KNOWN_UNMODELLED[model]:
        assert key in SAMPLES, f"{key} is modelled: give it a typed sample value in SAMPLES"
        return SAMPLES[key]
    return SAMPLES.get(key, {"any": "value"})


ENTRIES = list(fieldsupport.FIELDS.values())


@pytest.mark.parametrize("entry", ENTRIES, ids=[f"{e.type}.{e.field}" for e in ENTRIES])
def test_every_field_is_implemented_warned_or_refused(entry: fieldsupport.FieldSupport) -> None:
    if entry.status == fieldsupport.IMPLEMENTED:
        assert re.fullmatch(r"test_\w+", entry.note), entry.note
        assert re.search(rf"^(async )?def {entry.note}\(", TEST_SOURCES, re.M), f"{entry.note}: no such test in tests/"
        model = support.MODEL_TYPES[entry.type]
        assert entry.field not in support.KNOWN_UNMODELLED[model], "an implemented field is carried by its model"
        return
    doc = base_pod()
    place(doc, entry, sample(entry))
    decoded = decode_document(doc, source="x")
    where = concrete(entry.path)
    if entry.status == fieldsupport.WARNED:
        assert decoded.errors == [], [str(e) for e in decoded.errors]
        assert decoded.desired is not None
        assert f"{where}: {entry.note}" in [str(w) for w in decoded.warnings]
    else:
        assert decoded.desired is None
        assert f"{where}: {fieldsupport.refusal(entry)}" in [str(e) for e in decoded.errors]


@pytest.mark.parametrize("value", [None, False, "", [], {}])
def test_a_warned_field_at_its_zero_value_asks_for_nothing_and_gets_no_warning(value: Any) -> None:
    doc = base_pod()
    doc["spec"]["hostPID"] = value                                  # not modelled
    doc["spec"]["securityContext"]["supplementalGroupsPolicy"] = value
    doc["spec"]["containers"][0].setdefault("securityContext", {})["procMount"] = value
    if value in (None, ""):
        doc["spec"]["serviceAccountName"] = value                   # modelled
    decoded = decode_document(doc, source="x")
    assert decoded.desired is not None and decoded.warnings == []


def test_the_zero_value_test_s_fields_are_still_warned_when_set() -> None:
    doc = base_pod()
    doc["spec"]["hostPID"] = True
    doc["spec"]["securityContext"]["supplementalGroupsPolicy"] = "Strict"
    doc["spec"]["containers"][0].setdefault("securityContext", {})["procMount"] = "Unmasked"
    doc["spec"]["serviceAccountName"] = "builder"
    decoded = decode_document(doc, source="x")
    warned = {str(w).split(":")[0] for w in decoded.warnings}
    assert {"spec.hostPID", "spec.securityContext.supplementalGroupsPolicy",
            "spec.containers[0].securityContext.procMount", "spec.serviceAccountName"} <= warned, warned


def test_every_field_of_every_model_is_in_the_table() -> None:
    for name, model in support.MODEL_TYPES.items():
        wire = {info.alias or field for field, info in model.model_fields.items()}
        listed = {f.field for f in fieldsupport.FIELDS.values() if f.type == name}
        assert wire <= listed, f"{name}: fields missing from the table: {sorted(wire - listed)}"
        assert listed, name


def test_the_1_32_pod_spec_field_list_is_complete() -> None:
    """The PodSpec, Container and VolumeSource fields of Kubernetes 1.32 (k8s.io/api core/v1 types.go)."""
    pod_spec = """volumes initContainers containers ephemeralContainers restartPolicy terminationGracePeriodSeconds
        activeDeadlineSeconds dnsPolicy nodeSelector serviceAccountName serviceAccount automountServiceAccountToken
        nodeName hostNetwork hostPID hostIPC shareProcessNamespace securityContext imagePullSecrets hostname
        subdomain affinity schedulerName tolerations hostAliases priorityClassName priority dnsConfig readinessGates
        runtimeClassName enableServiceLinks preemptionPolicy overhead topologySpreadConstraints setHostnameAsFQDN os
        hostUsers schedulingGates resourceClaims resources"""
    container = """name image command args workingDir ports envFrom env resources resizePolicy restartPolicy
        volumeMounts volumeDevices livenessProbe readinessProbe startupProbe lifecycle terminationMessagePath
        terminationMessagePolicy imagePullPolicy securityContext stdin stdinOnce tty"""
    volume = """hostPath emptyDir gcePersistentDisk awsElasticBlockStore gitRepo secret nfs iscsi glusterfs
        persistentVolumeClaim rbd flexVolume cinder cephfs flocker downwardAPI fc azureFile configMap vsphereVolume
        quobyte azureDisk photonPersistentDisk projected portworxVolume scaleIO storageos csi ephemeral image"""
    for type_, names in (("PodSpec", pod_spec), ("Container", container), ("Volume", volume)):
        missing = [n for n in names.split() if fieldsupport.lookup(type_, n) is None]
        assert missing == [], f"{type_}: {missing}"
    assert set(fieldsupport.volume_types()) == set(volume.split())


def test_an_unsupported_volume_type_is_refused_by_name_with_the_supported_list() -> None:
    doc = base_pod()
    doc["spec"]["volumes"] = [{"name": "v", "awsElasticBlockStore": {"volumeID": "vol-1"}}]
    errors = [str(e) for e in decode_document(doc, source="x").errors]
    assert errors == ['spec.volumes[0].awsElasticBlockStore: Unsupported value: "awsElasticBlockStore": kubelite '
                      'runs on one machine and supports emptyDir, hostPath, configMap, secret, downwardAPI, '
                      'projected, persistentVolumeClaim, image (a cloud disk needs a cluster)']


def test_the_docs_show_the_table_generated_from_the_module() -> None:
    text = DOCS.read_text()
    begin, end = text.index(fieldsupport.BEGIN), text.index(fieldsupport.END)
    assert text[begin + len(fieldsupport.BEGIN):end].strip("\n") + "\n" == fieldsupport.markdown(), \
        "docs/manifests.md is out of date: run scripts/fieldtable"
    printed = subprocess.run([sys.executable, "-m", "kubelite.api.fieldsupport", "--markdown"], check=True,
                             capture_output=True, text=True, timeout=60).stdout
    assert printed == fieldsupport.markdown()


def test_status_is_the_agents_to_write() -> None:
    doc = base_pod()
    doc["status"] = {"phase": "Succeeded", "podIP": "10.0.0.9", "unknownThing": 1}
    decoded = decode_document(doc, source="x")
    assert decoded.errors == [] and decoded.warnings == []
    assert decoded.desired is not None and decoded.desired.pod.status is None


def test_a_warning_reaches_validate_the_daemon_log_and_a_warning_event(tmp_path: Path, capsys, caplog) -> None:
    doc = base_pod()
    doc["spec"]["hostIPC"] = True
    path = tmp_path / "web.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = read_file(path, root=tmp_path)
    assert result.ok and len(result.warnings) == 1
    expected = str(result.warnings[0])
    assert re.fullmatch(r"web\.yaml: document 1, line \d+: spec\.hostIPC: not implemented yet; ignored", expected)
    from kubelite.cli.manage import validate

    assert validate([str(path)]) == 0
    assert f"warning: {tmp_path}/{expected}" in capsys.readouterr().err.splitlines()
    caplog.set_level(logging.INFO, logger="kubelite")
    (tmp_path / "node").mkdir()
    with simulated_node(tmp_path / "node") as node:
        node.write("web.yaml", copy.deepcopy(doc))
        node.settle()
        assert node.row("web").status == "Running"
        events = node.events("ManifestWarning")
        assert [(e["type"], e["message"]) for e in events] == [("Warning", expected)]
    assert expected in [r.getMessage().removeprefix("manifest: ") for r in caplog.records
                        if r.levelname == "WARNING"]


def test_spec_hostname_is_the_sandboxs_hostname(tmp_path: Path) -> None:
    with simulated_node(tmp_path) as node:
        created = []
        run_sandbox = node.runtime.run_sandbox
        node.runtime.run_sandbox = lambda config: created.append(config) or run_sandbox(config)  # type: ignore
        node.write("web.yaml", {**base_pod(), "spec": {**base_pod()["spec"], "hostname": "db-0"}})
        node.write("api.yaml", {**base_pod(), "metadata": {"name": "api"}})
        node.settle()
        assert sorted((c.name, c.hostname) for c in created) == [("api", "api"), ("web", "db-0")]


@pytest.mark.parametrize("key", [
    "container.apparmor.security.beta.kubernetes.io/app", "seccomp.security.alpha.kubernetes.io/pod",
    "container.seccomp.security.alpha.kubernetes.io/app"])
def test_annotations_the_kubelet_acts_on_are_warned_about(key: str) -> None:
    doc = base_pod()
    doc["metadata"]["annotations"] = {key: "runtime/default", "example.com/note": "x"}
    decoded = decode_document(doc, source="x")
    assert decoded.desired is not None
    assert [str(w) for w in decoded.warnings] == [
        f"metadata.annotations[{key}]: {fieldsupport.annotation_support(key)[1]}"]


@pytest.mark.parametrize("kind, name, warned", [
    ("limits", "cpu", False), ("requests", "memory", False), ("requests", "ephemeral-storage", False),
    ("limits", "ephemeral-storage", True), ("limits", "hugepages-2Mi", True), ("requests", "hugepages-1Gi", True),
    ("limits", "nvidia.com/gpu", True), ("requests", "example.com/dongle", True)])
def test_resources_other_than_cpu_and_memory_are_warned_about(kind: str, name: str, warned: bool) -> None:
    doc = base_pod()
    doc["spec"]["containers"][0]["resources"] = {kind: {name: "1"}}
    decoded = decode_document(doc, source="x")
    assert decoded.desired is not None
    expected = [f"spec.containers[0].resources.{kind}[{name}]: {fieldsupport.resource_note(name, kind)}"]
    assert [str(w) for w in decoded.warnings] == (expected if warned else [])


def test_every_warned_or_refused_field_reaches_validate_the_daemon_log_and_an_event(tmp_path: Path, capsys,
                                                                                      caplog) -> None:
    """One pod per field that is not implemented, all in one directory: `kubelite validate` prints
    each warning and error, the daemon logs each, and each is a Warning event."""
    from kubelite.cli.manage import validate

    (tmp_path / "node").mkdir()
    expected: dict[str, tuple[str, str]] = {}   # file → (status, the line about the field)
    with simulated_node(tmp_path / "node") as node:
        for i, entry in enumerate(e for e in ENTRIES if e.status != fieldsupport.IMPLEMENTED):
            doc = base_pod()
            doc["metadata"]["name"] = f"field-{i}"
            place(doc, entry, sample(entry))
            name = f"{i:03d}-{entry.type}-{entry.field}.yaml"
            (node.manifests / name).write_text(yaml.safe_dump(doc))
            message = entry.note if entry.status == fieldsupport.WARNED else fieldsupport.refusal(entry)
            expected[name] = (entry.status, f"{concrete(entry.path)}: {message}")
        assert validate([str(node.manifests)]) == 1   # the refused fields fail the directory
        printed = capsys.readouterr().err.splitlines()
        caplog.set_level(logging.INFO, logger="kubelite")
        node.agent.hint_manifests()
        node.settle()
        logged = [r.getMessage() for r in caplog.records if r.name.startswith("kubelite")]
        events = node.events()
        running = {p["metadata"]["name"] for p in node.pods()}
    for name, (status, line) in expected.items():
        word = "warning" if status == fieldsupport.WARNED else "error"
        assert any(p.startswith(f"{word}: {name}: document 1, line ") and p.endswith(line) for p in printed), line
        assert any(m.startswith(f"manifest: {name}: ") and m.endswith(line) for m in logged), line
        reason = "ManifestWarning" if status == fieldsupport.WARNED else "InvalidManifest"
        assert any(e["type"] == "Warning" and e["reason"] == reason and e["message"].startswith(f"{name}: ")
                   and e["message"].endswith(line) for e in events), line
    warned = sum(1 for status, _ in expected.values() if status == fieldsupport.WARNED)
    assert len(running) == warned, "a pod with a warned field runs; one with a refused field does not"
