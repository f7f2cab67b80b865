"""Tolerant where Kubernetes is: null is absent, a source-less volume is an emptyDir, a file with
other kinds runs its pods, warnings are Warning events with their own heading, and the dry run
completes init containers and checks image references as the real runtime does."""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubelite.api.decode import decode_document
from kubelite.cli import show
from kubelite.sources.manifests import read_file
from kubelite.store.reader import Reader
from tests.helpers import pod_doc
from tests.real import container, pod
from tests.simulated import simulated_node


@pytest.fixture
def env(tmp_path: Path):
    with simulated_node(tmp_path) as node:
        yield node


def decoded_pod(doc: dict[str, Any]):
    decoded = decode_document(doc, source="x")
    assert decoded.errors == [], [str(e) for e in decoded.errors]
    assert decoded.desired is not None
    return decoded


# ------------------------------------------------------------------ null is absent

def with_null(path: str) -> dict[str, Any]:
    """A valid pod whose field at `path` (dots; `0` for the first item) is null."""
    doc = pod_doc("web")
    doc["spec"]["volumes"] = [{"name": "v", "emptyDir": {}}]
    doc["spec"]["containers"][0]["volumeMounts"] = [{"name": "v", "mountPath": "/v"}]
    target: Any = doc
    *parents, last = path.split(".")
    for step in parents:
        target = target[int(step)] if step.isdigit() else target.setdefault(step, {})
    target[last] = None
    return doc


NULLS = [
    "metadata.labels", "metadata.annotations", "metadata.namespace", "metadata.uid",
    "spec.initContainers", "spec.volumes.0.emptyDir", "spec.securityContext", "spec.nodeSelector",
    "spec.hostNetwork", "spec.restartPolicy", "spec.terminationGracePeriodSeconds", "spec.tolerations",
    "spec.containers.0.command", "spec.containers.0.args", "spec.containers.0.env", "spec.containers.0.envFrom",
    "spec.containers.0.ports", "spec.containers.0.resources", "spec.containers.0.volumeMounts",
    "spec.containers.0.securityContext", "spec.containers.0.livenessProbe", "spec.containers.0.lifecycle",
    "spec.containers.0.imagePullPolicy", "spec.containers.0.workingDir", "spec.containers.0.stdin",
    "spec.containers.0.terminationMessagePath",
]


@pytest.mark.parametrize("path", NULLS)
def test_a_null_field_is_absent(path: str) -> None:
    decoded = decoded_pod(with_null(path))
    assert decoded.warnings == [], [str(w) for w in decoded.warnings]
    absent = copy.deepcopy(with_null(path))
    target: Any = absent
    *parents, last = path.split(".")
    for step in parents:
        target = target[int(step)] if step.isdigit() else target[step]
    del target[last]
    if path == "spec.volumes.0.emptyDir":
        target["emptyDir"] = {}
    assert decoded.desired.pod_hash == decoded_pod(absent).desired.pod_hash, "null reads as absent"


def test_defaults_still_apply_under_null_and_a_null_map_value_is_empty_text() -> None:
    doc = pod_doc("web")
    doc["metadata"]["labels"] = {"app": None}
    doc["spec"]["restartPolicy"] = None
    doc["spec"]["containers"][0]["imagePullPolicy"] = None
    pod = decoded_pod(doc).desired.pod
    assert pod.metadata.labels == {"app": ""}
    assert pod.spec.restart_policy == "Always" and pod.spec.termination_grace_period_seconds == 30
    assert pod.spec.containers[0].image_pull_policy == "IfNotPresent"


@pytest.mark.parametrize("doc, data", [
    ({"kind": "ConfigMap", "metadata": {"name": "c", "labels": None}, "data": {"a": "1", "b": None},
      "binaryData": None}, {"a": b"1", "b": b""}),
    ({"kind": "Secret", "metadata": {"name": "s", "annotations": None}, "stringData": {"a": "1"}, "type": None,
      "data": None}, {"a": b"1"}),
])
def test_null_in_configmaps_and_secrets(doc: dict[str, Any], data: dict[str, bytes]) -> None:
    decoded = decode_document({"apiVersion": "v1", **doc}, source="x")
    assert decoded.errors == [] and decoded.warnings == [] and decoded.config is not None
    assert decoded.config.values == data


def test_a_null_item_of_a_list_stays_invalid() -> None:
    doc = pod_doc("web")
    doc["spec"]["containers"].append(None)
    assert [str(e) for e in decode_document(doc, source="x").errors] == \
        ["spec.containers[1]: Invalid value: must be a mapping"]


@pytest.mark.parametrize("volume", [
    {"name": "v"},
    {"name": "v", "emptyDir": None},
    {"name": "v", "emptyDir": {}},
    {"name": "v", "emptydir": {}},      # a typo: warned as unknown, then defaulted, as the API server does
], ids=["name-only", "emptyDir-null", "emptyDir-empty", "typo"])
def test_a_volume_without_a_source_is_an_empty_dir(volume: dict[str, Any]) -> None:
    doc = pod_doc("web", volumes=[volume])
    decoded = decoded_pod(doc)
    [v] = decoded.desired.pod.spec.volumes
    assert v.sources() == ["emptyDir"] and v.empty_dir.medium is None
    assert [str(w) for w in decoded.warnings] == \
        (["spec.volumes[0].emptydir: unknown field; ignored"] if "emptydir" in volume else [])


def test_a_volume_whose_only_source_is_refused_gets_one_error_naming_it() -> None:
    doc = pod_doc("web", volumes=[{"name": "data", "nfs": {"server": "nfs.example", "path": "/export"}}])
    errors = [str(e) for e in decode_document(doc, source="x").errors]
    assert len(errors) == 1 and errors[0].startswith(
        'spec.volumes[0].nfs: Unsupported value: "nfs": ')


# ------------------------------------------------------------------ files with other kinds

SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}
DEPLOYMENT = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api"}, "spec": {"replicas": 2}}
INGRESS = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web"}}
POLICY = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "deny"}}


def test_a_file_mixing_kinds_runs_its_pods_and_configuration_and_warns_once_per_other_document(tmp_path) -> None:
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"a": "1"}}
    path = tmp_path / "app.yaml"
    path.write_text(yaml.safe_dump_all([SERVICE, pod_doc("web"), DEPLOYMENT, config, INGRESS, pod_doc("worker"),
                                        POLICY]))
    result = read_file(path, root=tmp_path)
    assert result.ok
    assert [p.pod.metadata.name for p in result.pods] == ["web", "worker"]
    assert [c.name for c in result.configs] == ["settings"]
    assert [str(w) for w in result.warnings] == [
        "app.yaml: document 1 (Service/web): kind Service is not run by kubelite; ignored",
        "app.yaml: document 3 (Deployment/api): kind Deployment is not run by kubelite; ignored",
        "app.yaml: document 5 (Ingress/web): kind Ingress is not run by kubelite; ignored",
        "app.yaml: document 7 (NetworkPolicy/deny): kind NetworkPolicy is not run by kubelite; ignored",
    ]


def test_a_list_is_read_item_by_item(tmp_path) -> None:
    bad = pod_doc("bad")
    bad["spec"]["restartPolicy"] = "Sometimes"
    path = tmp_path / "list.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List",
                                    "items": [pod_doc("one"), SERVICE, pod_doc("two")]}))
    result = read_file(path, root=tmp_path)
    assert result.ok and [p.pod.metadata.name for p in result.pods] == ["one", "two"]
    assert [(w.field, w.object) for w in result.warnings] == [("items[1]", "Service/web")]
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "PodList", "items": [pod_doc("one"), bad]}))
    result = read_file(path, root=tmp_path)
    assert not result.ok
    assert [f"{e.field}: {e.message}" for e in result.errors] == [
        'items[1].spec.restartPolicy: Unsupported value: supported values: "Always", "OnFailure", "Never"']
    assert result.errors[0].line == path.read_text().splitlines().index("    restartPolicy: Sometimes") + 1


def describe(env, name: str, capsys) -> str:
    reader = Reader(env.root)
    try:
        show.describe_pod(reader, argparse.Namespace(namespace=None, name=name))
    finally:
        reader.close()
    return capsys.readouterr().out


def test_pods_of_a_mixed_file_run_and_warnings_are_warning_events_under_their_own_heading(env, capsys) -> None:
    web = pod_doc("web")
    web["spec"]["nodeSelector"] = {"disk": "ssd"}
    env.write("app.yaml", SERVICE, web, pod_doc("worker"))
    env.settle()
    assert env.row("web").status == "Running" and env.row("worker").status == "Running"
    warnings = [(e["type"], e["involvedObject"]["name"], e["message"]) for e in env.events("ManifestWarning")]
    service = "app.yaml: document 1 (Service/web): kind Service is not run by kubelite; ignored"
    assert ("Warning", "web", service) in warnings and ("Warning", "worker", service) in warnings
    assert all(kind == "Warning" for kind, _, _ in warnings)
    out = describe(env, "web", capsys)
    assert "Manifest Warnings:" in out and service in out
    assert "spec.nodeSelector: kubelite runs every pod on this machine (no scheduling); ignored" in out
    assert "Manifest Errors:" not in out and "last valid version" not in out
    # an invalid edit: errors under their heading, with the note; the old version keeps running
    broken = pod_doc("web")
    broken["spec"]["restartPolicy"] = "Sometimes"
    env.write("app.yaml", SERVICE, broken, pod_doc("worker"))
    env.settle()
    out = describe(env, "web", capsys)
    assert "Manifest Errors:" in out and "(the last valid version of the manifest keeps running)" in out
    assert "spec.restartPolicy: Unsupported value" in out.split("Manifest Errors:")[1]


def test_a_file_without_pods_warns_with_an_event_naming_the_file(env) -> None:
    env.write("service.yaml", SERVICE)
    env.settle()
    events = [(e["type"], e["involvedObject"]["kind"], e["involvedObject"]["name"], e["message"])
              for e in env.events("ManifestWarning")]
    assert events == [("Warning", "Manifest", "service.yaml",
                       "service.yaml: document 1 (Service/web): kind Service is not run by kubelite; ignored")]
    assert env.pods() == []


def test_a_pod_that_loses_its_name_to_another_file_is_an_error_without_the_kept_note(env, capsys) -> None:
    env.write("a.yaml", pod_doc("web"))
    env.write("b.yaml", pod_doc("web"), pod_doc("other"))
    env.settle()
    out = describe(env, "other", capsys)
    assert "Manifest Errors:" in out and "pod default/web is already defined in a.yaml" in out
    assert "last valid version" not in out


# ------------------------------------------------------------------ manifests as people write them

EXAMPLES = Path(__file__).resolve().parent / "example_manifests"


def test_manifests_in_the_style_of_the_public_examples_validate_and_run(env, capsys) -> None:
    from kubelite.cli.manage import validate

    assert validate([str(EXAMPLES)]) == 0
    out, err = capsys.readouterr()
    assert sorted(out.splitlines()) == ["configmap/web-settings valid (chart-output.yaml)",
                                        "pod/cache valid (guestbook.yaml)", "pod/web valid (chart-output.yaml)",
                                        "pod/worker valid (exported-list.yaml)"]
    assert err.splitlines() == [
        "warning: chart-output.yaml: document 1 (NetworkPolicy/web-allow): kind NetworkPolicy is not run by "
        "kubelite; ignored",
        "warning: chart-output.yaml: document 4 (Ingress/web): kind Ingress is not run by kubelite; ignored",
        "warning: guestbook.yaml: document 1 (Service/cache): kind Service is not run by kubelite; ignored",
        "warning: guestbook.yaml: document 3 (Deployment/frontend): kind Deployment is not run by kubelite; ignored",
    ]
    for example in sorted(EXAMPLES.iterdir()):
        (env.manifests / example.name).write_text(example.read_text())
    env.agent.hint_manifests()
    env.settle()
    assert {name: env.row(name).status for name in ("cache", "web", "worker")} == \
        {"cache": "Running", "web": "Running", "worker": "Running"}
    assert env.container("web", "prepare")["state"]["terminated"]["reason"] == "Completed"
    volumes = {v["name"]: v for v in env.pod("web")["spec"]["volumes"]}
    assert volumes["work"] == {"name": "work", "emptyDir": {}}


# ------------------------------------------------------------------ the dry run

def test_the_dry_run_completes_init_containers_unless_annotated(env) -> None:
    env.write("init.yaml", pod_doc("init", init=["setup", "migrate"]))
    failing = pod_doc("failing", init=["setup"], restartPolicy="Never")
    failing["metadata"]["annotations"] = {"fake.kubelite.io/setup": "exit=3"}
    env.write("failing.yaml", failing)
    env.settle()
    row = env.row("init")
    assert (row.status, row.ready) == ("Running", "1/1")
    setup = env.container("init", "setup")["state"]["terminated"]
    assert (setup["exitCode"], setup["reason"]) == (0, "Completed")
    assert env.row("failing").status == "Init:Error"
    assert env.container("failing", "setup")["state"]["terminated"]["exitCode"] == 3


def test_the_dry_run_refuses_an_image_reference_as_the_real_pull_does(env) -> None:
    from kubelite.runtime.images import normalize_reference
    from kubelite.errors import KubeliteError

    doc = pod_doc("private")
    doc["spec"]["containers"][0]["image"] = "<your-private-image>"
    env.write("private.yaml", doc)
    env.settle()
    env.advance(1)
    waiting = env.container("private")["state"]["waiting"]
    assert waiting["reason"] in ("ErrImagePull", "ImagePullBackOff")
    with pytest.raises(KubeliteError) as real:
        normalize_reference("<your-private-image>")
    failed = [e["message"] for e in env.events("Failed")]
    assert f'Failed to pull image "<your-private-image>": {real.value}' in failed
    assert not [e for e in env.events("Pulled") if "<your-private-image>" in e["message"]]


# ------------------------------------------------------------------ real containers

@pytest.mark.real
def test_a_file_with_a_service_and_two_pods_runs_the_pods_on_real_containers(node) -> None:
    first = pod("mixed-a", container("app", "exec sleep 3600", command=None, args=None, env=None))
    first["spec"]["containers"][0]["command"] = ["sh", "-c", "exec sleep 3600"]
    first["metadata"]["labels"] = None
    second = pod("mixed-b", container("app", "exec sleep 3600"), volumes=[{"name": "scratch"}])
    second["spec"]["containers"][0]["volumeMounts"] = [{"name": "scratch", "mountPath": "/scratch"}]
    (node.manifests / "mixed.yaml").write_text(yaml.safe_dump_all([SERVICE, first, second]))
    node.agent.hint_manifests()
    node.until(lambda: node.running("mixed-a", "app") and node.running("mixed-b", "app"), timeout=30,
               what="both pods running")
    assert node.exec("mixed-b", "app", "sh", "-c", "echo ok > /scratch/f && cat /scratch/f") == (0, "ok\n")
    reader = Reader(node.root)
    try:
        events = [e for e in reader.events(None) if e["reason"] == "ManifestWarning"]
    finally:
        reader.close()
    assert {e["type"] for e in events} == {"Warning"}
    assert any("(Service/web): kind Service is not run by kubelite; ignored" in e["message"] for e in events)
