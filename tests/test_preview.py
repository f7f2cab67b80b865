"""`kubelite diff -f` and `kubelite sync --dry-run` on the simulated runtime's store: one test per
effect (create, restart, replace, delete, unchanged, ConfigMaps), the exit codes, JSON, invalid
files — and what diff predicted is what the agent then did."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from kubelite import layout
from kubelite.agent.agent import Agent, AgentConfig
from kubelite.cli.main import main
from kubelite.runtime.fake import Behavior, FakeRuntime
from kubelite.store.store import Store
from tests.helpers import pod_doc
from tests.test_gitsync import Remote

CONFIG = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app-config"}, "data": {"mode": "fast"}}


@pytest.fixture
def node(tmp_path, monkeypatch):
    """A manifests directory and a state root, with the agent on the simulated runtime run over them
    by `node.settle()`; a separate directory for the files to preview."""
    manifests, root, edits = tmp_path / "manifests", tmp_path / "state", tmp_path / "edits"
    manifests.mkdir()
    edits.mkdir()
    monkeypatch.setenv("KUBELITE_ROOT", str(root))
    monkeypatch.setenv("KUBELITE_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("KUBELITE_MANIFESTS", str(manifests))

    class Node:
        def __init__(self) -> None:
            self.manifests, self.root, self.edits = manifests, root, edits
            self.runtime = FakeRuntime()
            self.store = Store(root)
            self.agent = Agent(store=self.store, runtime=self.runtime,
                               config=AgentConfig(manifests=manifests, root=root))

        def settle(self) -> None:
            for _ in range(5):
                self.agent.run_once()

        def container_ids(self, pod: str) -> dict[str, str]:
            entry = next(e for e in self.agent.pods.values() if e.pod.metadata.name == pod and e.deleted_at is None)
            return {s["name"]: s.get("containerID", "") for s in entry.status.get("containerStatuses", [])}

    n = Node()
    yield n
    n.agent.close()
    n.store.close()


def write(path: Path, *docs) -> Path:
    path.write_text(yaml.safe_dump_all(docs))
    return path


def web(**changes) -> dict:
    doc = pod_doc("web", containers=["app", "log"])
    doc["spec"]["containers"][0]["env"] = [{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "app-config",
                                                                                              "key": "mode"}}}]
    doc["spec"]["volumes"] = [{"name": "conf", "configMap": {"name": "app-config"}}]
    doc["spec"]["containers"][1]["volumeMounts"] = [{"name": "conf", "mountPath": "/etc/conf"}]
    for change in changes.values():
        change(doc)
    return doc


def diff(*args: str, capsys) -> tuple[int, str, str]:
    code = main(["diff", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_an_identical_file_is_unchanged_and_exits_0(node, capsys):
    write(node.manifests / "web.yaml", web(), CONFIG)
    node.settle()
    code, out, err = diff("-f", str(write(node.edits / "web.yaml", web(), CONFIG)), capsys=capsys)
    assert (code, err) == (0, "")
    assert out == "pod/web: unchanged\nconfigmap/app-config: unchanged\n"


def test_an_image_change_restarts_that_container_only_and_diff_shows_the_field(node, capsys):
    write(node.manifests / "web.yaml", web(), CONFIG)
    node.settle()
    edited = web(image=lambda d: d["spec"]["containers"][0].update(image="busybox:1.37"))
    code, out, _ = diff("-f", str(write(node.edits / "web.yaml", edited, CONFIG)), capsys=capsys)
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == "pod/web: restart container app (image changed)"
    assert lines[1] == "--- pod/web (now: web.yaml)" and lines[2] == "+++ pod/web (after: web.yaml)"
    assert [line for line in lines if line[:1] in "+-" and not line.startswith(("---", "+++"))] == \
        ["-    image: busybox:1.36", "+    image: busybox:1.37"], "the diff holds the changed field only"
    assert lines[-1] == "configmap/app-config: unchanged"


def test_what_diff_predicts_is_what_the_agent_does(node, capsys):
    """restart container app: after the edit lands, app has a new container, log the same one."""
    write(node.manifests / "web.yaml", web(), CONFIG)
    node.settle()
    before = node.container_ids("web")
    assert all(before.values()) and set(before) == {"app", "log"}
    edited = web(env=lambda d: d["spec"]["containers"][0]["env"].append({"name": "X", "value": "1"}))
    code, out, _ = diff("-f", str(write(node.edits / "web.yaml", edited, CONFIG)), "-o", "json", capsys=capsys)
    assert code == 1
    pod = json.loads(out)["pods"][0]
    assert (pod["effect"], pod["containers"]) == ("restart", [{"name": "app", "action": "restart", "fields": ["env"]}])
    write(node.manifests / "web.yaml", edited, CONFIG)
    node.agent.hint_manifests()
    node.settle()
    after = node.container_ids("web")
    assert after["app"] != before["app"], "the restarted container is a new one"
    assert after["log"] == before["log"], "the other keeps running"
    assert main(["diff", "-f", str(node.edits / "web.yaml")]) == 0, "nothing is left to change"


def test_a_pod_level_change_replaces_the_pod_and_names_the_field(node, capsys):
    write(node.manifests / "web.yaml", web(), CONFIG)
    node.settle()
    edited = web(vol=lambda d: d["spec"]["volumes"].append({"name": "scratch", "emptyDir": {}}))
    code, out, _ = diff("-f", str(write(node.edits / "web.yaml", edited, CONFIG)), "-o", "json", capsys=capsys)
    assert code == 1
    pod = json.loads(out)["pods"][0]
    assert pod["effect"] == "replace" and pod["uid"]["before"] != pod["uid"]["after"]
    assert pod["summary"].startswith("replace pod (field spec.volumes[scratch] changed: the pod's sandbox must be "
                                     "made again; a new UID")
    assert "+  - name: scratch\n+    emptyDir: {}\n" in pod["diff"]


def test_create_and_delete_follow_the_files_apply_would_write(node, capsys):
    both = pod_doc("db")
    write(node.manifests / "pods.yaml", both, pod_doc("cache"))
    node.settle()
    code, out, _ = diff("-f", str(write(node.edits / "pods.yaml", both)), "-f",
                        str(write(node.edits / "new.yaml", pod_doc("queue"))), capsys=capsys)
    assert code == 1
    summary = [line for line in out.splitlines() if line.startswith("pod/")]
    assert summary == ["pod/cache: delete", "pod/db: unchanged", "pod/queue: create"]
    assert "-  name: cache" in out and "+  name: queue" in out


def test_a_directory_previews_each_manifest_file_and_other_pods_are_left_out(node, capsys):
    write(node.manifests / "web.yaml", web(), CONFIG)
    write(node.manifests / "other.yaml", pod_doc("other"))
    node.settle()
    edits = node.edits / "dir"
    edits.mkdir()
    write(edits / "web.yaml", web(labels=lambda d: d["metadata"].update(labels={"tier": "front"})), CONFIG)
    (edits / "README.md").write_text("not a manifest")
    code, out, _ = diff("-f", str(edits), capsys=capsys)
    assert code == 1
    assert out.splitlines()[0] == "pod/web: update in place, nothing restarts (metadata.labels changed)"
    assert "pod/other" not in out


def test_a_config_map_change_names_the_pods_that_use_it_and_how(node, capsys):
    write(node.manifests / "web.yaml", web(), CONFIG)
    node.settle()
    changed = copy.deepcopy(CONFIG)
    changed["data"] = {"mode": "slow", "extra": "1"}
    code, out, _ = diff("-f", str(write(node.edits / "web.yaml", web(), changed)), capsys=capsys)
    assert code == 1
    assert out.splitlines() == [
        "pod/web: unchanged",
        "configmap/app-config: update (added: extra; changed: mode)",
        "  pod/web: volume files change in place; env changes only when a container is created again",
    ]


def test_a_secret_change_shows_key_names_never_values(node, capsys):
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "stringData": {"password": "s3cret"}}
    write(node.manifests / "db.yaml", secret)
    node.settle()
    secret["stringData"]["password"] = "an0ther"
    code, out, _ = diff("-f", str(write(node.edits / "db.yaml", secret)), "-o", "json", capsys=capsys)
    assert code == 1 and "s3cret" not in out and "an0ther" not in out
    assert json.loads(out)["configs"][0]["keys"] == {"added": [], "changed": ["password"], "removed": []}


def test_an_invalid_file_is_reported_as_validate_does_and_not_previewed(node, capsys):
    write(node.manifests / "web.yaml", web(), CONFIG)
    node.settle()
    bad = node.edits / "web.yaml"
    bad.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {containers: []}\n")
    good = write(node.edits / "new.yaml", pod_doc("queue"))
    code, out, err = diff("-f", str(bad), "-f", str(good), capsys=capsys)
    assert code == 2
    assert err.splitlines() == [f"error: {bad}: document 1, line 4: spec.containers: Required value"]
    assert out == "pod/queue: create\n" + out.split("\n", 1)[1] and "pod/web" not in out


def test_errors_exit_2(node, capsys):
    code, _, err = diff("-f", str(node.edits / "missing.yaml"), capsys=capsys)
    assert code == 2 and "no such file" in err
    (node.edits / "web.txt").write_text("")
    code, _, err = diff("-f", str(node.edits / "web.txt"), capsys=capsys)
    assert code == 2 and "only *.yaml" in err


def test_a_pod_another_file_already_defines_is_an_error(node, capsys):
    write(node.manifests / "b.yaml", pod_doc("web"))
    node.settle()
    code, _, err = diff("-f", str(write(node.edits / "a.yaml", pod_doc("web"))), capsys=capsys)
    assert code == 2 and "pod default/web is already defined in a.yaml" in err


# ------------------------------------------------------------------ sync --dry-run


def test_sync_dry_run_previews_a_commit_without_applying_it(node, tmp_path, capsys):
    remote = Remote(tmp_path)
    node.manifests.rmdir()   # kubelite sync owns the manifests path as a symlink
    remote.commit({"pods/web.yaml": yaml.safe_dump(pod_doc("web", containers=["app", "log"])),
                   "pods/db.yaml": yaml.safe_dump(pod_doc("db"))})
    assert main(["sync", "--repo", str(remote.bare), "--ref", "main", "--path", "pods", "--once"]) == 0
    node.agent.hint_manifests()
    node.settle()
    before = node.container_ids("web")
    edited = pod_doc("web", containers=["app", "log"])
    edited["spec"]["containers"][1]["image"] = "busybox:1.37"
    head = remote.commit({"pods/web.yaml": yaml.safe_dump(edited), "pods/db.yaml": None,
                          "pods/queue.yaml": yaml.safe_dump(pod_doc("queue"))})
    live = node.manifests.resolve()
    capsys.readouterr()
    code = main(["sync", "--dry-run", "--repo", str(remote.bare), "--ref", "main", "--path", "pods"])
    out, err = capsys.readouterr()
    assert code == 1
    assert [line for line in out.splitlines() if line.startswith("pod/")] == [
        "pod/db: delete", "pod/queue: create", "pod/web: restart container log (image changed)"]
    assert f"commit {head}" in err
    assert node.manifests.resolve() == live, "nothing was applied"
    assert not list(layout.git_worktrees_dir(node.root).glob(f"{head}*")), "the live sync's tree is untouched"
    node.settle()
    assert node.container_ids("web") == before
    code = main(["sync", "--dry-run", "-o", "json", "--repo", str(remote.bare), "--ref", "main", "--path", "pods"])
    assert code == 1 and json.loads(capsys.readouterr().out)["changed"] is True


def test_sync_dry_run_of_an_invalid_commit_or_the_running_one(node, tmp_path, capsys):
    remote = Remote(tmp_path)
    node.manifests.rmdir()
    remote.commit({"web.yaml": yaml.safe_dump(pod_doc("web"))})
    assert main(["sync", "--repo", str(remote.bare), "--ref", "main", "--once"]) == 0
    node.agent.hint_manifests()
    node.settle()
    capsys.readouterr()
    assert main(["sync", "--dry-run", "--repo", str(remote.bare), "--ref", "main"]) == 0
    assert capsys.readouterr().out == "pod/web: unchanged\n"
    remote.commit({"broken.yaml": "apiVersion: v1\nkind: Pod\nmetadata: {name: b}\nspec: {containers: []}\n"})
    assert main(["sync", "--dry-run", "--repo", str(remote.bare), "--ref", "main"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "not applied: broken.yaml: document 1, line 4: spec.containers: Required value" in captured.err


def test_files_read_as_the_manifests_directory_get_the_uids_they_get_there(tmp_path):
    from kubelite.sources.manifests import read_file, scan

    there, here = tmp_path / "manifests", tmp_path / "draft"
    there.mkdir()
    here.mkdir()
    write(there / "web.yaml", pod_doc("web"))
    write(here / "web.yaml", pod_doc("web"))
    live = scan(there).files[str(there / "web.yaml")].pods[0]
    previewed = scan(here, read_as=there)
    assert list(previewed.files) == [str(there / "web.yaml")] and previewed.root == str(there)
    assert previewed.files[str(there / "web.yaml")].pods[0].uid == live.uid
    assert scan(here).files[str(here / "web.yaml")].pods[0].uid != live.uid, "the UID derives from the file"
    one = read_file(here / "web.yaml", source=str(there / "web.yaml"))
    assert one.path == str(there / "web.yaml") and one.pods[0].uid == live.uid


def test_a_crashing_container_restarts_with_its_fix_and_one_that_ended_for_good_is_not_run(node, capsys):
    node.runtime.script("crashy", "app", Behavior(exit_after_s=0, exit_code=1))
    node.runtime.script("done", "app", Behavior(exit_after_s=0, exit_code=0))
    write(node.manifests / "crashy.yaml", pod_doc("crashy"))
    write(node.manifests / "done.yaml", pod_doc("done", containers=["app", "side"], restartPolicy="OnFailure"))
    node.settle()
    crashy, done = pod_doc("crashy"), pod_doc("done", containers=["app", "side"], restartPolicy="OnFailure")
    for doc in (crashy, done):
        doc["spec"]["containers"][0]["command"] = ["sleep", "3600"]
    code, out, _ = diff("-f", str(write(node.edits / "crashy.yaml", crashy)), "-f",
                        str(write(node.edits / "done.yaml", done)), capsys=capsys)
    assert code == 1
    assert [line for line in out.splitlines() if line.startswith("pod/")] == [
        "pod/crashy: restart container app (command changed)",
        ("pod/done: update in place, nothing restarts (container app (command changed): exited, not run again by "
         "its restart policy)")]


def test_an_unchanged_claim_and_storage_class_read_back_from_the_store_are_unchanged(node, capsys):
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
             "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
    klass = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "fast"},
             "provisioner": "kubelite.io/local-path"}
    user = pod_doc("db")
    user["spec"]["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]
    write(node.manifests / "db.yaml", user, claim, klass)
    node.settle()
    code, out, _ = diff("-f", str(write(node.edits / "db.yaml", user, claim, klass)), capsys=capsys)
    assert code == 0
    assert out.splitlines() == ["pod/db: unchanged", "persistentvolumeclaim/data: unchanged",
                                "storageclass/fast: unchanged"]


def test_sync_dry_run_works_beside_a_running_sync(node, tmp_path, capsys):
    """The running sync holds the state root's sync lock and owns its repository: the preview needs
    neither."""
    from kubelite.sources.gitsync import hold_sync_lock

    remote = Remote(tmp_path)
    node.manifests.rmdir()
    remote.commit({"web.yaml": yaml.safe_dump(pod_doc("web"))})
    lock = hold_sync_lock(node.root)
    try:
        assert main(["sync", "--dry-run", "--repo", str(remote.bare), "--ref", "main"]) == 1
        assert capsys.readouterr().out.startswith("pod/web: create\n")
        assert not layout.git_repo_dir(node.root).exists(), "the running sync's repository is not made"
    finally:
        lock.close()


def summaries(capsys) -> list[str]:
    return [line for line in capsys.readouterr().out.splitlines() if line.startswith("pod/")]


def test_sync_dry_run_names_the_node_as_sync_does(node, tmp_path, capsys):
    """`{node}` in --path: --node-name, else the name serve recorded in the state root, else the host name."""
    import socket

    remote = Remote(tmp_path)
    with node.store.transaction():
        node.store.set_meta("node_name", "recorded-1")   # as serve --node-name recorded-1 does
    remote.commit({"nodes/n1/web.yaml": yaml.safe_dump(pod_doc("web")),
                   "nodes/recorded-1/db.yaml": yaml.safe_dump(pod_doc("db")),
                   f"nodes/{socket.gethostname().lower()}/host.yaml": yaml.safe_dump(pod_doc("host"))})
    common = ["--repo", str(remote.bare), "--ref", "main", "--path", "nodes/{node}"]
    assert main(["sync", "--dry-run", *common, "--node-name", "n1"]) == 1
    assert summaries(capsys) == ["pod/web: create"]
    assert main(["sync", "--dry-run", *common]) == 1
    assert summaries(capsys) == ["pod/db: create"]   # the agent recorded its node name
    with node.store.transaction():
        node.store.set_meta("node_name", "")   # none recorded
    assert main(["sync", "--dry-run", *common]) == 1
    assert summaries(capsys) == ["pod/host: create"]
    assert main(["sync", "--dry-run", *common[:-1], "nodes/{nodename}"]) == 2
    assert "error: --path: 'nodes/{nodename}': the only placeholder is {node}" in \
        capsys.readouterr().err


def test_a_container_between_its_exit_and_its_restart_is_restarted_by_a_change(node, capsys):
    """Which containers still run is the agent's rule (`should_restart` on the newest attempt), not
    the stored status: under restartPolicy Always a container that has just exited, its status still
    `terminated`, starts again — so a change to it restarts it, as the agent will do."""
    import sqlite3

    write(node.manifests / "web.yaml", pod_doc("web"))
    write(node.manifests / "job.yaml", pod_doc("job", restartPolicy="OnFailure"))
    node.settle()
    db = sqlite3.connect(node.root / layout.DB_NAME)
    try:   # both containers have just exited with 0, as the agent records it before its next pass
        with db:
            db.execute("UPDATE containers SET state = 'exited', exit_code = 0, finished_at = created_at")
            for uid, text in db.execute("SELECT uid, object FROM pods").fetchall():
                obj = json.loads(text)
                for status in obj["status"]["containerStatuses"]:
                    status["state"] = {"terminated": {"exitCode": 0, "reason": "Completed"}}
                db.execute("UPDATE pods SET object = ? WHERE uid = ?", (json.dumps(obj), uid))
    finally:
        db.close()
    web, job = pod_doc("web"), pod_doc("job", restartPolicy="OnFailure")
    for doc in (web, job):
        doc["spec"]["containers"][0]["image"] = "busybox:1.37"
    code, out, _ = diff("-f", str(write(node.edits / "web.yaml", web)), "-f", str(write(node.edits / "job.yaml", job)),
                        capsys=capsys)
    assert code == 1
    assert [line for line in out.splitlines() if line.startswith("pod/")] == [
        ("pod/job: update in place, nothing restarts (container app (image changed): exited, not run again by its "
         "restart policy)"),
        "pod/web: restart container app (image changed)"]
