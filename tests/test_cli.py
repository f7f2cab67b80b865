"""The command line: validate, apply, delete, get, describe, version, errors — and `serve` for real.

Most commands run in-process through `main()`; `serve` and `get pods -w` run as real processes
(a daemon with the simulated runtime, its watcher and its signal handling).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from kubelite.agent.agent import Agent, AgentConfig
from kubelite.cli.main import main
from kubelite.runtime.fake import Behavior, FakeRuntime
from kubelite.store.store import Store
from tests.helpers import pod_doc

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    root = tmp_path / "state"
    monkeypatch.setenv("KUBELITE_ROOT", str(root))
    monkeypatch.setenv("KUBELITE_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("KUBELITE_MANIFESTS", str(manifests))
    return manifests, root


def write(path: Path, *docs) -> Path:
    path.write_text(yaml.safe_dump_all(docs))
    return path


def populate(manifests: Path, root: Path, *docs, runtime: FakeRuntime | None = None) -> None:
    """Run the agent in-process until the pods of `docs` run, then leave the state for the CLI."""
    for doc in docs:
        write(manifests / f"{doc['metadata']['name']}.yaml", doc)
    store = Store(root)
    agent = Agent(store=store, runtime=runtime or FakeRuntime(), config=AgentConfig(manifests=manifests, root=root))
    for _ in range(5):
        agent.run_once()
    store.close()


# ------------------------------------------------------------------ validate

def test_validate_accepts_the_example_manifests(capsys):
    assert main(["validate", str(REPO / "manifests")]) == 0
    out = capsys.readouterr().out
    assert "pod/web valid" in out and "pod/hello valid" in out and "pod/crashy valid" in out


def test_validate_reports_each_error_on_one_line_and_exits_1(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  terminationGracePeriodSeconds: -5\n"
                   "  containers:\n  - name: app\n    image: busybox\n  - name: app\n    image: busybox\n")
    assert main(["validate", str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: {bad}: document 1, line 6: spec.terminationGracePeriodSeconds: Invalid value: "
        "must be greater than or equal to 0",
        f"error: {bad}: document 1, line 10: spec.containers[1].name: Duplicate value: container names must be "
        "unique across init and app containers",
    ]


def test_validate_a_directory_reports_duplicates_across_files(tmp_path, capsys):
    write(tmp_path / "a.yaml", pod_doc("web"))
    write(tmp_path / "b.yaml", pod_doc("web"))
    assert main(["validate", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "b.yaml" in captured.err and "already defined" in captured.err
    assert "pod/web valid (a.yaml)" in captured.out


def test_validate_warns_about_unknown_fields_but_passes(tmp_path, capsys):
    doc = pod_doc("web")
    doc["spec"]["containers"][0]["imagePullPolciy"] = "Never"
    assert main(["validate", str(write(tmp_path / "web.yaml", doc))]) == 0
    assert "spec.containers[0].imagePullPolciy: unknown field; ignored" in capsys.readouterr().err


# ------------------------------------------------------------------ apply and delete

def test_apply_validates_then_writes_into_the_manifests_directory(dirs, tmp_path, capsys):
    manifests, _ = dirs
    src = write(tmp_path / "web.yaml", pod_doc("web"))
    assert main(["apply", "-f", str(src)]) == 0
    assert (manifests / "web.yaml").read_text() == src.read_text()
    assert main(["apply", "-f", str(src)]) == 0
    doc = pod_doc("web")
    doc["spec"]["containers"][0]["image"] = "busybox:1.37"
    write(src, doc)
    assert main(["apply", "-f", str(src)]) == 0
    assert capsys.readouterr().out.splitlines() == ["pod/web created", "pod/web unchanged", "pod/web configured"]
    assert sorted(os.listdir(manifests)) == ["web.yaml"], "no temporary file is left behind"


def test_apply_of_an_invalid_file_changes_nothing(dirs, tmp_path, capsys):
    manifests, _ = dirs
    good = write(manifests / "web.yaml", pod_doc("web"))
    before = good.read_text()
    bad = tmp_path / "web.yaml"
    bad.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {containers: []}\n")
    assert main(["apply", "-f", str(bad)]) == 1
    assert good.read_text() == before
    assert "spec.containers: Required value" in capsys.readouterr().err


def test_apply_refuses_a_pod_that_another_file_defines(dirs, tmp_path, capsys):
    manifests, _ = dirs
    write(manifests / "original.yaml", pod_doc("web"))
    assert main(["apply", "-f", str(write(tmp_path / "copy.yaml", pod_doc("web")))]) == 1
    assert "already defined in" in capsys.readouterr().err
    assert not (manifests / "copy.yaml").exists()


def test_delete_pod_removes_its_manifest(dirs, capsys):
    manifests, _ = dirs
    write(manifests / "web.yaml", pod_doc("web"))
    assert main(["delete", "pod", "web"]) == 0
    assert not (manifests / "web.yaml").exists()
    assert capsys.readouterr().out == 'pod "web" deleted\n'
    assert main(["delete", "pod", "web"]) == 1
    assert capsys.readouterr().err == 'Error from server (NotFound): pods "web" not found\n'


def test_delete_never_rewrites_a_file_that_defines_other_pods(dirs, capsys):
    manifests, _ = dirs
    both = write(manifests / "both.yaml", pod_doc("a"), pod_doc("b"))
    assert main(["delete", "pod", "a"]) == 1
    assert both.exists() and "edit that file" in capsys.readouterr().err


def test_delete_f_removes_the_pods_of_a_file(dirs, tmp_path):
    manifests, _ = dirs
    write(manifests / "both.yaml", pod_doc("a"), pod_doc("b"))
    assert main(["delete", "-f", str(write(tmp_path / "x.yaml", pod_doc("a"), pod_doc("b")))]) == 0
    assert not (manifests / "both.yaml").exists()


# ------------------------------------------------------------------ get and describe

def test_get_pods_without_any_state(dirs, capsys):
    assert main(["get", "pods"]) == 0
    assert capsys.readouterr().err == "No resources found in default namespace.\n"


def test_get_pods_json_is_a_podlist_with_complete_status(dirs, capsys):
    manifests, root = dirs
    populate(manifests, root, pod_doc("web"), pod_doc("db", namespace="data"))
    assert main(["get", "pods", "-o", "json"]) == 0
    podlist = json.loads(capsys.readouterr().out)
    assert podlist["kind"] == "PodList" and podlist["apiVersion"] == "v1"
    [pod] = podlist["items"]
    assert pod["metadata"]["name"] == "web" and pod["status"]["phase"] == "Running"
    assert {c["type"] for c in pod["status"]["conditions"]} >= {"Ready", "Initialized", "ContainersReady"}
    assert pod["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
    assert main(["get", "pods", "-A", "-o", "name"]) == 0
    assert capsys.readouterr().out == "pod/db\npod/web\n"


def test_get_pods_table_and_a_single_pod(dirs, capsys):
    manifests, root = dirs
    runtime = FakeRuntime()
    runtime.script("crashy", "app", Behavior(exit_after_s=0, exit_code=1))
    populate(manifests, root, pod_doc("web"), pod_doc("crashy"), runtime=runtime)
    assert main(["get", "pods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert lines[1].split()[:3] == ["crashy", "0/1", "CrashLoopBackOff"]
    assert lines[2].split()[:4] == ["web", "1/1", "Running", "0"]
    assert main(["get", "pod", "nope"]) == 1
    assert capsys.readouterr().err == 'Error from server (NotFound): pods "nope" not found\n'
    assert main(["get", "pods", "web", "-o", "yaml"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["kind"] == "Pod"


def test_describe_pod_and_get_events(dirs, capsys):
    manifests, root = dirs
    populate(manifests, root, pod_doc("web"))
    assert main(["describe", "pod", "web"]) == 0
    out = capsys.readouterr().out
    assert "Name:         web" in out and "Status:       Running" in out
    assert "Started container app" in out and f"Source:       {manifests / 'web.yaml'}" in out
    assert main(["get", "events"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert any("pod/web" in line and "Started" in line for line in table)


def test_an_invalid_edit_is_shown_where_the_user_looks(dirs, capsys):
    manifests, root = dirs
    populate(manifests, root, pod_doc("web"))
    (manifests / "web.yaml").write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {containers: 5}\n")
    populate(manifests, root)
    assert main(["get", "pods"]) == 0
    captured = capsys.readouterr()
    assert "web" in captured.out and "Running" in captured.out
    assert "Warning: manifest web.yaml: document 1, line 4: spec.containers" in captured.err
    assert main(["describe", "pod", "web"]) == 0
    assert "the last valid version of the manifest keeps running" in capsys.readouterr().out


# ------------------------------------------------------------------ errors and version

def test_errors_are_one_line_and_tracebacks_need_debug(dirs, capsys):
    assert main(["apply", "-f", "/nonexistent/web.yaml"]) == 1
    err = capsys.readouterr().err
    assert err == "error: /nonexistent/web.yaml: no such file\n"
    with pytest.raises(Exception):
        main(["--debug", "apply", "-f", "/nonexistent/web.yaml"])


def test_version(capsys):
    assert main(["version"]) == 0
    assert capsys.readouterr().out.startswith("kubelite v")


# ------------------------------------------------------------------ serve, for real

def kubelite(*args: str, env: dict[str, str], timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubelite.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


def wait_for(predicate, *, timeout: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def daemon(tmp_path):
    manifests = tmp_path / "manifests"
    shutil.copytree(REPO / "manifests", manifests)
    env = {**os.environ, "KUBELITE_ROOT": str(tmp_path / "state"), "KUBELITE_RUN_DIR": str(tmp_path / "run"),
           "PYTHONPATH": str(REPO)}
    env.pop("KUBELITE_MANIFESTS", None)
    log = open(tmp_path / "serve.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "kubelite.cli.main", "serve", "--runtime", "fake",
                             "--manifests", str(manifests)], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        yield proc, manifests, env, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def statuses(env) -> dict[str, str]:
    out = kubelite("get", "pods", "--no-headers", env=env).stdout
    return {line.split()[0]: line.split()[2] for line in out.splitlines() if line.strip()}


def test_serve_with_the_fake_runtime_runs_the_example_manifests(daemon):
    proc, manifests, env, log = daemon
    wait_for(lambda: statuses(env).get("web") == "Running" and statuses(env).get("hello") == "Running",
             what="the example pods to run")
    assert set(statuses(env)) == {"web", "hello", "crashy", "configured"}

    # the watcher sees a new file, an edit saved by rename, and a deletion
    write(manifests / "extra.yaml", pod_doc("extra"))
    wait_for(lambda: statuses(env).get("extra") == "Running", what="a new manifest to run")
    (manifests / "web.yaml").unlink()
    wait_for(lambda: "web" not in statuses(env), what="a deleted manifest's pod to go")

    # a second daemon on the same state is refused with one clear line
    second = kubelite("serve", "--runtime", "fake", "--manifests", str(manifests), env=env)
    assert second.returncode == 1 and "is already serving" in second.stderr

    # SIGTERM stops it cleanly
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    log.seek(0)
    text = log.read()
    assert "received SIGTERM; stopping" in text and "Traceback" not in text
    assert "pod default/extra: Started: Started container app" in text


def test_get_pods_watch_prints_changes(daemon):
    proc, manifests, env, log = daemon
    wait_for(lambda: statuses(env).get("web") == "Running", what="web to run")
    watch = subprocess.Popen([sys.executable, "-m", "kubelite.cli.main", "get", "pods", "-w"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        time.sleep(1.0)
        write(manifests / "late.yaml", pod_doc("late"))
        time.sleep(3.0)
    finally:
        watch.send_signal(signal.SIGINT)
        out, _ = watch.communicate(timeout=10)
    lines = out.splitlines()
    assert lines[0].split()[0] == "NAME"
    assert any(line.startswith("late") for line in lines[1:]), out


# ------------------------------------------------------------------ ConfigMaps and Secrets

CONFIG_DOCS = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app-config"},
                "data": {"mode": "fast"}, "binaryData": {"blob": "AAEC"}},
               {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
                "stringData": {"password": "s3cret-value", "user": "admin"}}]


def test_get_and_describe_configmaps_and_secrets_as_kubectl_without_secret_values(dirs, capsys):
    manifests, root = dirs
    write(manifests / "objects.yaml", *CONFIG_DOCS)
    populate(manifests, root)
    capsys.readouterr()
    assert main(["get", "configmaps"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "DATA", "AGE"] and lines[1].split()[:2] == ["app-config", "2"]
    assert main(["get", "secrets", "-A"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAMESPACE", "NAME", "TYPE", "DATA", "AGE"]
    assert lines[1].split()[:4] == ["default", "db", "Opaque", "2"]
    assert main(["describe", "secret", "db"]) == 0
    out = capsys.readouterr().out
    assert "Type:  Opaque" in out and "password:  12 bytes" in out and "user:      5 bytes" in out
    assert "s3cret" not in out and "czNjcmV0" not in out
    assert main(["describe", "cm", "app-config"]) == 0
    out = capsys.readouterr().out
    assert "mode:\n----\nfast\n" in out and "blob: 3 bytes" in out
    assert main(["get", "cm", "app-config", "-o", "json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["kind"] == "ConfigMap" and obj["data"] == {"mode": "fast"} and obj["metadata"]["uid"]
    assert main(["get", "secret", "nope"]) == 1
    assert capsys.readouterr().err.strip() == 'Error from server (NotFound): secrets "nope" not found'


CLAIM_DOCS = [{"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
               "spec": {"accessModes": ["ReadWriteOnce", "ReadOnlyMany"],
                        "resources": {"requests": {"storage": "2Gi"}}}},
              {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "later"},
               "spec": {"accessModes": ["ReadWriteOncePod"], "storageClassName": "fast",
                        "resources": {"requests": {"storage": "1Gi"}}}}]


def test_get_and_describe_pvc_pv_and_storageclasses_with_kubectl_s_columns(dirs, capsys):
    manifests, root = dirs
    write(manifests / "claims.yaml", *CLAIM_DOCS)
    populate(manifests, root, pod_doc("web", volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]))
    capsys.readouterr()
    assert main(["get", "pvc"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS", "MODES", "STORAGECLASS",
                                "VOLUMEATTRIBUTESCLASS", "AGE"]
    data = lines[1].split()
    assert data[:2] == ["data", "Bound"] and data[2].startswith("pvc-") and data[3:7] == [
        "2Gi", "RWO,ROX", "local-path", "<unset>"]
    assert lines[2].split()[:4] == ["later", "Pending", "fast", "<unset>"]
    volume = data[2]
    assert main(["get", "pv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["NAME", "CAPACITY", "ACCESS", "MODES", "RECLAIM"]
    assert lines[1].split()[:7] == [volume, "2Gi", "RWO,ROX", "Retain", "Bound", "default/data", "local-path"]
    assert main(["get", "storageclass"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:6] == ["local-path", "(default)", "kubelite.io/local-path", "Retain", "Immediate",
                                    "false"]
    assert main(["describe", "pvc", "data"]) == 0
    out = capsys.readouterr().out
    for line in ("Name:          data", "StorageClass:  local-path", "Status:        Bound", f"Volume:        {volume}",
                 "Finalizers:    [kubernetes.io/pvc-protection]", "Capacity:      2Gi", "Access Modes:  RWO,ROX",
                 "VolumeMode:    Filesystem", "Used By:       web"):
        assert line in out.splitlines(), (line, out)
    assert "ProvisioningSucceeded" in out
    assert main(["describe", "pvc", "later"]) == 0
    out = capsys.readouterr().out
    assert "Status:        Pending" in out and 'storageclass.storage.k8s.io "fast" not found' in out
    assert main(["get", "pvc", "data", "-o", "json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["status"]["phase"] == "Bound" and obj["spec"]["volumeName"] == volume
    assert main(["get", "pvc", "nope"]) == 1
    assert capsys.readouterr().err.strip() == 'Error from server (NotFound): persistentvolumeclaims "nope" not found'


def test_validate_and_apply_name_configmaps_and_secrets(dirs, tmp_path, capsys):
    manifests, _ = dirs
    source = write(tmp_path / "objects.yaml", *CONFIG_DOCS)
    assert main(["validate", str(source)]) == 0
    assert capsys.readouterr().out.splitlines() == [f"configmap/app-config valid ({source})",
                                                    f"secret/db valid ({source})"]
    assert main(["apply", "-f", str(source)]) == 0
    assert capsys.readouterr().out.splitlines() == ["configmap/app-config created", "secret/db created"]


@pytest.mark.parametrize("argv, container, command", [
    (["exec", "web", "-c", "app", "--", "cat", "/x"], "app", ["cat", "/x"]),
    (["exec", "-c", "app", "web", "--", "cat", "/x"], "app", ["cat", "/x"]),
    (["exec", "web", "-i", "-t", "-c", "app", "--", "sh", "-c", "ls -l -- /"], "app", ["sh", "-c", "ls -l -- /"]),
    (["exec", "web", "--", "ls", "-c", "--", "x"], None, ["ls", "-c", "--", "x"]),
])
def test_exec_options_may_follow_the_pod_and_everything_after_dashes_is_the_command(argv, container, command):
    from kubelite.cli.main import _parse
    args = _parse(argv)
    assert (args.pod, args.container, args.command_args) == ("web", container, command)
