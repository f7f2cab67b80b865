"""Projected and image volumes, subPathExpr and fsGroup ownership, without real containers.

Validation (Kubernetes' rules and kubelite's refusals), the files a projected volume holds,
`subPathExpr` expansion, the kubelet's `SetVolumeOwnership` on a directory (as root: chgrp), and
image volumes on the simulated node (pulled by their pullPolicy, ErrImagePull, kept by the image
GC). The mounts themselves are proven on real containers in test_volumes_real.py.
"""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from kubelite.api.configobjects import from_object
from kubelite.api.decode import decode_document
from kubelite.api.models import Pod
from kubelite.core import podconfig
from kubelite.runtime.volumes import VolumeHost, needs_ownership_change, set_volume_ownership
from tests.helpers import pod_doc
from tests.simulated import simulated_node

GID = 4321


def decoded(volumes: list[dict[str, Any]], mounts: list[dict[str, Any]] | None = None, **spec: Any):
    doc = pod_doc("p", volumes=volumes, **spec)
    doc["spec"]["containers"][0]["volumeMounts"] = mounts if mounts is not None else \
        [{"name": v["name"], "mountPath": f"/v/{v['name']}"} for v in volumes]
    return decode_document(doc, source="p.yaml")


def errors(volumes: list[dict[str, Any]], mounts: list[dict[str, Any]] | None = None, **spec: Any) -> list[str]:
    return [str(e) for e in decoded(volumes, mounts, **spec).errors]


KUBE_API_ACCESS = {"name": "kube-api-access-x2v9k", "projected": {"defaultMode": 420, "sources": [
    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1",
                                                                   "fieldPath": "metadata.namespace"}}]}}]}}


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize("volume, message", [
    ({"projected": {"sources": [{"configMap": {"name": "a"}}, {"secret": {"name": "b"}},
                                {"downwardAPI": {"items": [{"path": "n", "fieldRef": {
                                    "fieldPath": "metadata.name"}}]}}]}}, None),
    ({"projected": {"sources": [{"configMap": {"name": "a", "items": [{"key": "k", "path": "same"}]}},
                                {"secret": {"name": "b", "items": [{"key": "k", "path": "same"}]}}]}},
     "spec.volumes[0].projected: Invalid value: conflicting duplicate paths"),
    ({"projected": {"sources": [{"configMap": {"name": "a"}, "secret": {"name": "b"}}]}},
     "spec.volumes[0].projected.sources[0]: Forbidden: may not specify more than 1 volume type per source"),
    ({"projected": {"sources": [{"configMap": {"name": "a", "items": [{"key": "k", "path": "../x"}]}}]}},
     "spec.volumes[0].projected.sources[0].configMap.items[0].path: Invalid value: must not contain '..'"),
    ({"projected": {"sources": [{"secret": {"name": "a", "items": [{"key": "k", "path": "/abs"}]}}]}},
     "spec.volumes[0].projected.sources[0].secret.items[0].path: Invalid value: must be a relative path"),
    ({"projected": {"sources": [{"secret": {}}]}}, "spec.volumes[0].projected.sources[0].secret.name: Required value"),
    ({"projected": {"defaultMode": 512, "sources": []}},
     "spec.volumes[0].projected.defaultMode: Invalid value: must be a number between 0 and 0777 (octal), both "
     "inclusive"),
    ({"projected": {"sources": [{"downwardAPI": {"items": [{"path": "x", "fieldRef": {
        "fieldPath": "spec.nodeName"}}]}}]}},
     'spec.volumes[0].projected.sources[0].downwardAPI.items[0].fieldRef.fieldPath: Unsupported value: supported '
     'values: "metadata.name", "metadata.namespace", "metadata.uid", "metadata.labels", "metadata.annotations"'),
    ({"projected": {"sources": [{"serviceAccountToken": {"path": "token", "audience": "vault"}}]}},
     "spec.volumes[0].projected.sources[0].serviceAccountToken: Unsupported value: kubelite runs without an API "
     "server, so no service account token can be issued (only the kube-api-access volume that clusters inject is "
     "accepted, without its token)"),
    ({"projected": {"sources": [{"serviceAccountToken": {"path": "token", "expirationSeconds": 60}}]}},
     "spec.volumes[0].projected.sources[0].serviceAccountToken.expirationSeconds: Invalid value: may not specify a "
     "duration less than 10 minutes"),
    ({"projected": {"sources": [{"clusterTrustBundle": {"name": "b", "path": "ca.pem"}}]}},
     "spec.volumes[0].projected.sources[0].clusterTrustBundle: Unsupported value: kubelite runs without an API "
     "server, so there are no ClusterTrustBundles to project"),
    ({"image": {"reference": "busybox:1.36", "pullPolicy": "IfNotPresent"}}, None),
    ({"image": {}}, "spec.volumes[0].image.reference: Required value"),
    ({"image": {"reference": "busybox:1.36", "pullPolicy": "Sometimes"}},
     'spec.volumes[0].image.pullPolicy: Unsupported value: supported values: "Always", "IfNotPresent", "Never"'),
])
def test_projected_and_image_volumes_are_validated_as_kubernetes_validates_them(volume, message):
    found = errors([{"name": "v", **volume}])
    assert (message in found) if message else found == []


def test_the_injected_kube_api_access_volume_runs_with_a_warning_not_a_refusal():
    result = decoded([KUBE_API_ACCESS], [{"name": KUBE_API_ACCESS["name"], "readOnly": True,
                                          "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}])
    assert result.errors == []
    assert [str(w) for w in result.warnings] == [
        "spec.volumes[0].projected.sources[0].serviceAccountToken: no token is written: kubelite runs without an "
        "API server to issue one; the volume holds namespace, and ca.crt when a ConfigMap kube-root-ca.crt exists"]
    altered = {**KUBE_API_ACCESS, "projected": {"sources": KUBE_API_ACCESS["projected"]["sources"][:2]}}
    assert errors([altered])[0].startswith("spec.volumes[0].projected.sources[0].serviceAccountToken: Unsupported")


def test_image_volume_pull_policy_defaults_as_a_containers():
    for reference, policy in (("busybox", "Always"), ("busybox:latest", "Always"), ("busybox:1.36", "IfNotPresent"),
                              ("busybox@sha256:" + "a" * 64, "IfNotPresent")):
        pod = decoded([{"name": "v", "image": {"reference": reference}}]).desired.pod
        assert pod.spec.volumes[0].image.pull_policy == policy


@pytest.mark.parametrize("mount, message", [
    ({"subPathExpr": "$(POD_NAME)"}, None),
    ({"subPathExpr": "logs/$(POD_NAME)", "subPath": "x"},
     "spec.containers[0].volumeMounts[0].subPathExpr: Invalid value: subPathExpr and subPath are mutually exclusive"),
    ({"subPathExpr": "/$(POD_NAME)"},
     "spec.containers[0].volumeMounts[0].subPathExpr: Invalid value: must be a relative path"),
    ({"subPathExpr": "../$(POD_NAME)"},
     "spec.containers[0].volumeMounts[0].subPathExpr: Invalid value: must not contain '..'"),
])
def test_sub_path_expr_is_validated(mount, message):
    found = errors([{"name": "v", "emptyDir": {}}], [{"name": "v", "mountPath": "/v", **mount}])
    assert found == ([message] if message else [])


@pytest.mark.parametrize("group, message", [(0, None), (2147483647, None), (-1, "Invalid value: must be between 0 "
                                                                          "and 2147483647, inclusive"),
                                            (2147483648, "Invalid value: must be between 0 and 2147483647, inclusive")])
def test_fs_group_must_be_a_valid_group_id(group, message):
    found = errors([], securityContext={"fsGroup": group})
    assert found == ([f"spec.securityContext.fsGroup: {message}"] if message else [])


@pytest.mark.parametrize("policy, ok", [("OnRootMismatch", True), ("Always", True), ("Sometimes", False)])
def test_fs_group_change_policy_is_validated(policy, ok):
    found = errors([], securityContext={"fsGroup": GID, "fsGroupChangePolicy": policy})
    assert found == ([] if ok else ['spec.securityContext.fsGroupChangePolicy: Unsupported value: supported values: '
                                    '"OnRootMismatch", "Always"'])


def test_implemented_volume_fields_are_no_longer_reported_as_not_implemented():
    result = decoded([{"name": "v", "projected": {"sources": []}}, {"name": "i", "image": {"reference": "a:1"}}],
                     [{"name": "v", "mountPath": "/v", "subPathExpr": "$(HOSTNAME)"}],
                     securityContext={"fsGroup": GID, "fsGroupChangePolicy": "OnRootMismatch"})
    assert result.errors == [] and result.warnings == []


# ------------------------------------------------------------------ the files of a projected volume


def configs(*objects: dict[str, Any]) -> dict:
    found = {}
    for obj in objects:
        config = from_object(obj)
        found[config.key] = config
    return found


def cm(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"},
            "data": data}


def secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "default"},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


FACTS = podconfig.PodFacts(uid="u-1", node_name="node")


def test_a_projected_volume_merges_its_sources_with_items_modes_and_default_mode():
    pod = decoded([{"name": "all", "projected": {"defaultMode": 0o440, "sources": [
        {"configMap": {"name": "app", "items": [{"key": "conf", "path": "etc/app.conf", "mode": 0o600}]}},
        {"secret": {"name": "creds"}},
        {"downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}]}}],
                  ).desired.pod
    pod.metadata.labels = {"app": "web"}
    files = podconfig.volume_payload(pod, pod.spec.volumes[0], facts=FACTS, configs=configs(
        cm("app", {"conf": "a=1\n", "other": "x"}), secret("creds", {"user": "u", "password": "p"})))
    assert files == {"etc/app.conf": podconfig.FileProjection(b"a=1\n", 0o600),
                     "user": podconfig.FileProjection(b"u", 0o440),
                     "password": podconfig.FileProjection(b"p", 0o440),
                     "labels": podconfig.FileProjection(b'app="web"', 0o440)}
    assert podconfig.references(pod) == {("ConfigMap", "default", "app"), ("Secret", "default", "creds")}


def test_a_missing_source_is_the_kubelets_error_unless_optional():
    pod = decoded([{"name": "v", "projected": {"sources": [{"secret": {"name": "gone"}},
                                                           {"configMap": {"name": "maybe", "optional": True}}]}}]
                  ).desired.pod
    with pytest.raises(podconfig.ConfigError, match='^secret "gone" not found$'):
        podconfig.volume_payload(pod, pod.spec.volumes[0], facts=FACTS, configs={})
    files = podconfig.volume_payload(pod, pod.spec.volumes[0], facts=FACTS, configs=configs(secret("gone", {"a": "1"})))
    assert set(files) == {"a"}


def test_the_kube_api_access_volume_holds_the_namespace_and_the_ca_when_there_is_one():
    pod = decoded([KUBE_API_ACCESS]).desired.pod
    files = podconfig.volume_payload(pod, pod.spec.volumes[0], facts=FACTS, configs={})
    assert files == {"namespace": podconfig.FileProjection(b"default", 420)}
    files = podconfig.volume_payload(pod, pod.spec.volumes[0], facts=FACTS,
                                     configs=configs(cm("kube-root-ca.crt", {"ca.crt": "PEM"})))
    assert set(files) == {"namespace", "ca.crt"} and "token" not in files


# ------------------------------------------------------------------ subPathExpr


@pytest.mark.parametrize("expr, env, result", [
    ("$(POD_NAME)", {"POD_NAME": "web-1"}, "web-1"),
    ("logs/$(NS)/$(POD_NAME).d", {"POD_NAME": "web-1", "NS": "prod"}, "logs/prod/web-1.d"),
    ("cost$$/$(A)", {"A": "a"}, "cost$/a"),
    ("$(POD_NAME)/$(NOPE)/$(EMPTY)", {"POD_NAME": "x", "EMPTY": ""}, "missing value for EMPTY, NOPE"),
    ("$(P)", {"P": "/etc"}, "error SubPath `/etc` must not be an absolute path"),
    ("a/$(P)", {"P": "../../etc"}, "unable to provision SubPath `a/../../etc`: must not contain '..'"),
])
def test_sub_path_expr_expands_from_the_containers_env_with_the_kubelets_errors(expr, env, result):
    try:
        assert podconfig.sub_path_from_expr(expr, env) == result
    except podconfig.ConfigError as exc:
        assert str(exc) == result


def test_sub_path_expr_reads_downward_api_variables_through_the_agents_settings(tmp_path):
    from kubelite.agent.configs import Configs
    from kubelite.store.store import Store

    doc = pod_doc("web-7", volumes=[{"name": "logs", "emptyDir": {}}])
    doc["spec"]["containers"][0]["env"] = [{"name": "POD_NAME", "valueFrom": {"fieldRef": {
        "fieldPath": "metadata.name"}}}]
    doc["spec"]["containers"][0]["volumeMounts"] = [{"name": "logs", "mountPath": "/logs",
                                                     "subPathExpr": "pods/$(POD_NAME)"}]
    pod = decode_document(doc, source="p.yaml").desired.pod
    store = Store(tmp_path)
    try:
        config = Configs(store, VolumeHost(tmp_path, host_changes=False), "node")
        config.set_up_volumes("u1", pod, {})
        _env, mounts = config.container_settings("u1", pod, pod.spec.containers[0], {})
    finally:
        store.close()
    volume = tmp_path / "pods" / "u1" / "volumes" / "kubernetes.io~empty-dir" / "logs"
    assert mounts[0].host_path == str(volume / "pods" / "web-7") and (volume / "pods" / "web-7").is_dir()


# ------------------------------------------------------------------ fsGroup


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chgrp to another group needs root")


def tree(base: Path) -> Path:
    (base / "sub").mkdir(parents=True)
    (base / "sub" / "f").write_text("x")
    (base / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(base / "run.sh", 0o700)
    os.chmod(base / "sub" / "f", 0o600)
    os.chmod(base / "sub", 0o700)
    os.symlink("/etc/hostname", base / "link")
    return base


@needs_root
def test_set_volume_ownership_gives_group_and_group_bits_as_the_kubelet(tmp_path):
    root = tree(tmp_path / "vol")
    before = os.stat("/etc/hostname")
    assert set_volume_ownership(root, GID, read_only=False)
    modes = {p: (stat.S_IMODE(os.lstat(root / p).st_mode), os.lstat(root / p).st_gid)
             for p in ("sub", "sub/f", "run.sh")}
    assert modes == {"sub": (0o2770, GID), "sub/f": (0o660, GID), "run.sh": (0o760, GID)}
    assert os.lstat(root / "link").st_gid == GID
    after = os.stat("/etc/hostname")
    assert (after.st_gid, after.st_mode) == (before.st_gid, before.st_mode), "a symlink is never followed"
    ro = tree(tmp_path / "ro")
    set_volume_ownership(ro, GID, read_only=True)
    assert stat.S_IMODE(os.stat(ro / "sub" / "f").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(ro / "sub").st_mode) == 0o2750


@needs_root
def test_on_root_mismatch_skips_a_volume_whose_root_is_right_already(tmp_path):
    root = tree(tmp_path / "vol")
    assert set_volume_ownership(root, GID, read_only=False, policy="OnRootMismatch")
    assert not needs_ownership_change(root, GID, read_only=False)
    os.chown(root / "sub" / "f", -1, 0)   # a file the application gave another group
    assert not set_volume_ownership(root, GID, read_only=False, policy="OnRootMismatch")
    assert os.stat(root / "sub" / "f").st_gid == 0, "skipped: the root matched"
    assert set_volume_ownership(root, GID, read_only=False, policy="Always")
    assert os.stat(root / "sub" / "f").st_gid == GID
    os.chown(root, -1, 0)
    assert set_volume_ownership(root, GID + 1, read_only=False, policy="OnRootMismatch")
    assert os.stat(root / "sub" / "f").st_gid == GID + 1


@needs_root
def test_projected_files_get_the_fs_group_before_the_swap_and_are_not_rewritten_after_a_restart(tmp_path):
    host = VolumeHost(tmp_path, host_changes=False)
    target = tmp_path / "v"
    target.mkdir()
    payload = {"a": (b"1", 0o600), "d/b": (b"2", 0o644)}
    assert host.write_projection(target, payload, fs_group=GID)
    data = target / os.readlink(target / "..data")
    assert (os.stat(data / "a").st_gid, stat.S_IMODE(os.stat(data / "a").st_mode)) == (GID, 0o640)
    assert stat.S_IMODE(os.stat(data / "d").st_mode) == 0o2755 and os.stat(data / "d").st_gid == GID
    assert os.lstat(target / "a").st_gid == GID and os.lstat(target / "..data").st_gid == GID
    assert os.stat(target).st_gid == GID
    assert not VolumeHost(tmp_path, host_changes=False).write_projection(target, payload, fs_group=GID)


@needs_root
def test_an_empty_dir_gets_the_fs_group_once_when_it_is_set_up(tmp_path):
    pod: Pod = decoded([{"name": "data", "emptyDir": {}}], securityContext={"fsGroup": GID}).desired.pod
    assert os.stat(VolumeHost(tmp_path / "dry", host_changes=False).set_up("u0", pod, {})["data"]).st_gid != GID
    host = VolumeHost(tmp_path, host_changes=True)   # a disk emptyDir: nothing is mounted
    path = Path(host.set_up("u1", pod, {})["data"])
    assert (os.stat(path).st_gid, stat.S_IMODE(os.stat(path).st_mode)) == (GID, 0o2777)
    (path / "mine").write_text("x")
    os.chown(path / "mine", -1, 0)
    host.set_up("u1", pod, {})   # a container restart sets the volumes up again: not walked again
    assert os.stat(path / "mine").st_gid == 0


# ------------------------------------------------------------------ image volumes on the simulated node


@pytest.fixture
def env(tmp_path: Path):
    with simulated_node(tmp_path) as node:
        yield node


def image_pod(name: str, reference: str, **image: Any) -> dict[str, Any]:
    doc = pod_doc(name, volumes=[{"name": "models", "image": {"reference": reference, **image}}])
    doc["spec"]["containers"][0]["volumeMounts"] = [{"name": "models", "mountPath": "/models"}]
    return doc


def test_an_image_volume_is_pulled_by_its_policy_and_mounted_read_only(env):
    env.runtime.missing_images.add("registry.example/models:v2")
    env.runtime.registry.add("registry.example/models:v2")
    env.write("p.yaml", image_pod("p", "registry.example/models:v2"))
    env.settle()
    assert [image for op, image in env.runtime.calls if op == "pull"] == ["registry.example/models:v2"]
    assert env.container("p")["state"].get("running") is not None
    config = next(c for c in env.runtime.configs.values() if c.container.name == "app")
    (mount,) = config.mounts
    assert (mount.container_path, mount.read_only) == ("/models", True)
    assert mount.host_path.endswith("/volumes/kubernetes.io~image/models")
    assert any(e["message"].startswith('Successfully pulled image "registry.example/models:v2"')
               for e in env.events("Pulled"))


def test_an_image_volume_that_cannot_be_pulled_holds_the_container_in_err_image_pull(env):
    env.runtime.missing_images.add("registry.example/models:v2")
    env.runtime.pull_errors["registry.example/models:v2"] = "cannot reach the registry registry.example: refused"
    env.write("p.yaml", image_pod("p", "registry.example/models:v2"))
    env.settle()
    assert env.container("p")["state"]["waiting"] == {
        "reason": "ErrImagePull",
        "message": 'Failed to pull image "registry.example/models:v2": cannot reach the registry registry.example: '
                   "refused"}
    assert env.creates() == 0
    env.advance(1)
    assert env.row("p").status == "ImagePullBackOff"


def test_an_image_volume_with_pull_policy_never_and_no_image_waits_with_err_image_never_pull(env):
    env.runtime.missing_images.add("models:v2")
    env.write("p.yaml", image_pod("p", "models:v2", pullPolicy="Never"))
    env.settle()
    assert env.container("p")["state"]["waiting"]["reason"] == "ErrImageNeverPull"


def test_always_pulls_the_container_image_and_the_volume_image_once_each_per_start(env):
    doc = image_pod("p", "models:latest")
    doc["spec"]["containers"][0]["image"] = "app:latest"
    env.write("p.yaml", doc)
    env.settle()
    assert [image for op, image in env.runtime.calls if op == "pull"] == ["app:latest", "models:latest"]
    assert env.creates() == 1


def test_the_image_gc_keeps_an_image_a_pod_mounts_as_a_volume(env):
    asked: list[set[str]] = []
    env.runtime.remove_unused_images = lambda in_use, high_percent, low_percent: asked.append(set(in_use)) or []
    env.write("p.yaml", image_pod("p", "models:v2"))
    env.settle()
    env.advance(301)
    assert "models:v2" in asked[-1] and "busybox:1.36" in asked[-1]


# ------------------------------------------------------------------ describe


def test_describe_shows_projected_and_image_volumes_as_kubectl_does():
    from tests.test_printers import NOW, described_pod
    from kubelite.kubectl.describe import describe_pod

    pod = described_pod()
    pod["spec"]["volumes"] = [KUBE_API_ACCESS, {"name": "models", "image": {"reference": "models:v2",
                                                                             "pullPolicy": "IfNotPresent"}}]
    text = describe_pod(pod, [], NOW)
    lines = [line.rstrip() for line in text[text.index("Volumes:"):].splitlines()][:11]
    assert lines == [
        "Volumes:",
        "  kube-api-access-x2v9k:",
        "    Type:                    Projected (a volume that contains injected data from multiple sources)",
        "    TokenExpirationSeconds:  3607",
        "    ConfigMapName:           kube-root-ca.crt",
        "    ConfigMapOptional:       <nil>",
        "    DownwardAPI:             true",
        "  models:",
        "    Type:        Image (a container image or OCI artifact)",   # a line without a tab ends a column
        "    Reference:   models:v2",
        "    PullPolicy:  IfNotPresent"]


@needs_root
def test_the_persistent_volume_hook_honours_on_root_mismatch(tmp_path):
    pod: Pod = decoded([], securityContext={"fsGroup": GID, "fsGroupChangePolicy": "OnRootMismatch"}).desired.pod
    claim = tree(tmp_path / "claim")
    host = VolumeHost(tmp_path, host_changes=True)
    assert host.own_persistent(claim, pod, read_only=False)
    os.chown(claim / "sub" / "f", -1, 0)
    assert not host.own_persistent(claim, pod, read_only=False), "the root is right: not walked again"
    assert os.stat(claim / "sub" / "f").st_gid == 0
    pod.spec.security_context.fs_group_change_policy = "Always"
    assert host.own_persistent(claim, pod, read_only=False)
    assert os.stat(claim / "sub" / "f").st_gid == GID
    assert not VolumeHost(tmp_path, host_changes=False).own_persistent(claim, pod, read_only=False)


@needs_root
def test_a_claim_volume_gets_the_pods_fs_group_once_per_pod(tmp_path):
    pod: Pod = decoded([{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
                       securityContext={"fsGroup": GID}).desired.pod
    claim = tree(tmp_path / "claim")
    host = VolumeHost(tmp_path, host_changes=True)
    host.set_up("u1", pod, {}, claims={"data": str(claim)})
    assert os.stat(claim / "sub" / "f").st_gid == GID
    os.chown(claim / "sub" / "f", -1, 0)
    host.set_up("u1", pod, {}, claims={"data": str(claim)})   # a container restart: not walked again
    assert os.stat(claim / "sub" / "f").st_gid == 0
    host.tear_down("u1")
    host.set_up("u1", pod, {}, claims={"data": str(claim)})   # the pod set up anew: owned again (Always)
    assert os.stat(claim / "sub" / "f").st_gid == GID


@needs_root
def test_a_downward_api_volume_written_on_the_disk_before_is_not_hidden_under_a_new_tmpfs(tmp_path):
    from kubelite.runtime import linux

    pod: Pod = decoded([{"name": "info", "downwardAPI": {"items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}]).desired.pod
    host = VolumeHost(tmp_path, host_changes=True)
    old = host.volume_dir("u-old", pod.spec.volumes[0])
    old.mkdir(parents=True)
    host.write_projection(old, {"labels": (b'app="a"\n', 0o644)})   # as a kubelite without the tmpfs left it
    try:
        assert host.set_up("u-old", pod, {"info": {"labels": (b'app="b"\n', 0o644)}})["info"] == str(old)
        assert not linux.is_mountpoint(old), "the running containers' bind mounts would no longer see edits"
        assert (old / "labels").read_bytes() == b'app="b"\n'
        fresh = Path(host.set_up("u-new", pod, {"info": {"labels": (b'app="c"\n', 0o644)}})["info"])
        assert linux.is_mountpoint(fresh) and (fresh / "labels").read_bytes() == b'app="c"\n'
    finally:
        host.tear_down("u-old")
        host.tear_down("u-new")
    assert not old.exists()


@needs_root
def test_the_fs_group_walk_follows_no_symlinked_directory_and_enters_no_other_mount(tmp_path):
    from kubelite.runtime import linux

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f").write_text("x")
    root = tree(tmp_path / "vol")
    os.symlink(outside, root / "dirlink")
    mounted = root / "mnt"
    mounted.mkdir()
    linux.mount_volume_tmpfs(mounted, mode="0755")
    try:
        (mounted / "g").write_text("y")
        before = {p: os.stat(p).st_gid for p in (outside, outside / "f", mounted / "g")}
        assert set_volume_ownership(root, GID, read_only=False)
        assert {p: os.stat(p).st_gid for p in before} == before
        assert os.lstat(root / "dirlink").st_gid == GID and os.stat(root / "sub" / "f").st_gid == GID
    finally:
        linux.unmount(mounted)


@needs_root
def test_a_slow_fs_group_walk_is_logged_with_the_time_it_took(tmp_path, caplog, monkeypatch):
    from kubelite.runtime import volumes

    root = tree(tmp_path / "vol")
    monkeypatch.setattr(volumes, "SLOW_OWNERSHIP_S", 0.0)
    with caplog.at_level("WARNING", logger="kubelite.volumes"):
        set_volume_ownership(root, GID, read_only=False)
    [record] = [r for r in caplog.records if "Setting volume ownership" in r.getMessage()]
    assert str(root) in record.getMessage() and "files and directories" in record.getMessage()
    caplog.clear()
    monkeypatch.setattr(volumes, "SLOW_OWNERSHIP_S", 60.0)
    with caplog.at_level("WARNING", logger="kubelite.volumes"):
        set_volume_ownership(root, GID, read_only=False)
    assert not [r for r in caplog.records if "Setting volume ownership" in r.getMessage()]
