"""`kubelite validate --kubernetes[=VERSION]`: manifests checked against the Kubernetes OpenAPI schema."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kubelite.cli.main import main
from kubelite.sources import kubeschema

#: The first example of the Kubernetes documentation's "Pods" page (pods/simple-pod.yaml).
SIMPLE_POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: nginx
spec:
  containers:
  - name: nginx
    image: nginx:1.14.2
    ports:
    - containerPort: 80
"""

CONFIGS = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: game-demo
data:
  player_initial_lives: "3"
  ui_properties_file_name: "user-interface.properties"
---
apiVersion: v1
kind: Secret
metadata:
  name: dotfile-secret
data:
  .secret-file: dmFsdWUtMg0KDQo=
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: myclaim
spec:
  accessModes:
    - ReadWriteOnce
  volumeMode: Filesystem
  resources:
    requests:
      storage: 8Gi
  storageClassName: slow
"""


def test_a_manifest_from_the_kubernetes_docs_passes(tmp_path, capsys):
    (tmp_path / "simple-pod.yaml").write_text(SIMPLE_POD)
    (tmp_path / "configs.yaml").write_text(CONFIGS)
    assert main(["validate", "--kubernetes", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "pod/nginx valid (simple-pod.yaml)" in captured.out
    assert "4 object(s) valid for Kubernetes 1.32" in captured.out


def test_each_problem_is_one_line_with_file_document_object_line_and_field(tmp_path, capsys):
    bad = tmp_path / "web.yaml"
    bad.write_text(SIMPLE_POD.replace("    image: nginx:1.14.2\n", "    image: nginx:1.14.2\n    imagePullPolice: Never\n")
                   .replace("containerPort: 80", 'containerPort: "80"'))
    assert main(["validate", "--kubernetes=1.32", str(bad)]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "Kubernetes 1.32 schema" in line]
    assert errors == [
        f"error: {bad}: document 1 (Pod/nginx), line 9: spec.containers[0].imagePullPolice: unknown field "
        "(Kubernetes 1.32 schema)",
        f"error: {bad}: document 1 (Pod/nginx), line 11: spec.containers[0].ports[0].containerPort: Invalid value: "
        "must be an integer, not text (Kubernetes 1.32 schema)",
    ]


def test_a_missing_required_field_is_named(tmp_path, capsys):
    bad = tmp_path / "nameless.yaml"
    bad.write_text(SIMPLE_POD.replace("  - name: nginx\n    image:", "  - image:"))
    assert main(["validate", "--kubernetes", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "document 1 (Pod/nginx), line 7: spec.containers[0].name: Required value (Kubernetes 1.32 schema)" in err


def test_configmaps_secrets_and_claims_are_checked_too(tmp_path, capsys):
    bad = tmp_path / "configs.yaml"
    bad.write_text(CONFIGS.replace('player_initial_lives: "3"', "player_initial_lives: 3")
                   .replace("data:\n  .secret-file", "dta:\n  .secret-file")
                   .replace("storageClassName: slow", "storageClass: slow"))
    assert main(["validate", "--kubernetes", str(tmp_path)]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if "schema)" in line]
    assert err == [
        "error: configs.yaml: document 1 (ConfigMap/game-demo), line 6: data.player_initial_lives: Invalid value: "
        "must be text, not an integer (Kubernetes 1.32 schema)",
        "error: configs.yaml: document 2 (Secret/dotfile-secret), line 13: dta: unknown field (Kubernetes 1.32 schema)",
        "error: configs.yaml: document 3 (PersistentVolumeClaim/myclaim), line 27: spec.storageClass: unknown field "
        "(Kubernetes 1.32 schema)",
    ]


def test_a_field_of_a_newer_version_fails_an_older_schema(tmp_path, capsys):
    """`hostUsers` (user namespaces) is in the Pod schema since 1.25, `resizePolicy` since 1.27."""
    pod = tmp_path / "pod.yaml"
    pod.write_text(SIMPLE_POD + "    resizePolicy:\n    - resourceName: cpu\n      restartPolicy: NotRequired\n")
    assert main(["validate", "--kubernetes=1.27", str(pod)]) == 0
    assert main(["validate", "--kubernetes=v1.26.3", str(pod)]) == 1
    assert "spec.containers[0].resizePolicy: unknown field (Kubernetes 1.26 schema)" in capsys.readouterr().err


def test_an_unknown_version_lists_the_available_ones(tmp_path, capsys):
    (tmp_path / "pod.yaml").write_text(SIMPLE_POD)
    assert main(["validate", "--kubernetes=1.99", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --kubernetes=1.99: no schema for Kubernetes 1.99 here; schemas available: ")
    assert "1.32" in err and "1.25" in err
    assert main(["validate", "--kubernetes=latest", str(tmp_path)]) == 1
    assert "not a Kubernetes version" in capsys.readouterr().err


def test_a_list_document_is_checked_item_by_item(tmp_path, capsys):
    listed = tmp_path / "list.yaml"
    listed.write_text("apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n"
                      "    name: a\n  data:\n    k: v\n- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n"
                      "    name: b\n  data:\n    k: [1]\n")
    assert main(["validate", "--kubernetes", str(listed)]) == 1
    err = capsys.readouterr().err
    assert "document 1 (ConfigMap/b), line 15: items[1].data.k: Invalid value: must be text, not a list" in err


def test_a_kind_without_a_schema_is_a_warning_not_an_error(tmp_path, capsys):
    (tmp_path / "pod.yaml").write_text(SIMPLE_POD)
    (tmp_path / "crd.yaml").write_text("apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n")
    main(["validate", "--kubernetes", str(tmp_path)])
    err = capsys.readouterr().err
    assert "crd.yaml: document 1 (Widget/w): not checked: Widget of apiVersion example.com/v1 is not a kind of " \
           "Kubernetes 1.32" in err
    assert "error: crd.yaml" not in err


def test_a_kind_kubernetes_does_not_have_is_an_error(tmp_path, capsys):
    (tmp_path / "pod.yaml").write_text(SIMPLE_POD.replace("kind: Pod", "kind: Pdo"))
    assert main(["validate", "--kubernetes", str(tmp_path)]) == 1
    assert "error: pod.yaml: document 1 (Pdo/nginx), line 2: kind: Kubernetes 1.32 has no kind Pdo in apiVersion " \
           "v1 (Kubernetes 1.32 schema)" in capsys.readouterr().err


def test_a_kind_name_never_leaves_the_schema_directory():
    schema = kubeschema.KubernetesSchema("1.32")
    for kind in ("../../../etc/passwd", "PodSpec", "pod"):   # a path, a definition that is no kind, wrong case
        problems, unchecked = schema.check_object({"apiVersion": "v1", "kind": kind})
        assert [path for path, _ in problems] == ["kind"] and unchecked is None
    assert schema.check_object({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                                "spec": {"selector": {}, "template": {}}}) == ([], None)


def test_validate_without_the_flag_does_not_load_the_schema_package(tmp_path):
    (tmp_path / "pod.yaml").write_text(SIMPLE_POD)
    code = ("import sys; from kubelite.cli.main import main; rc = main(['validate', sys.argv[1]]); "
            "assert 'kubernetes_validate' not in sys.modules and 'jsonschema' not in sys.modules; sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("text,expected", [("", "1.32"), ("1.30", "1.30"), ("v1.31.2", "1.31")])
def test_pick_version(text, expected):
    assert kubeschema.pick_version(text) == expected
