"""Git sync of a kustomization (issue 17): a directory with a kustomization.yaml is rendered with
`kubectl kustomize`, checked that it builds only from the commit, bounded, and its output applied
all or nothing; `--path` may name the node (`nodes/{node}`).

Repositories live in tmp_path (see tests/test_gitsync.py); kubectl is the machine's (scripts/test
installs Debian's kubernetes-client where none is). The kustomizations use only what Debian's
kubectl 1.20 (kustomize v2.0.3) supports: `bases` for directories, `resources` for files,
`commonLabels`, `patchesStrategicMerge`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from kubelite import layout
from kubelite.errors import SyncError
from kubelite.sources import gitsync, kustomize
from kubelite.sources.manifests import scan
from tests.helpers import pod_doc
from tests.test_gitsync import Clock, Remote, engine, worktrees

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is installed by scripts/test")

BASE = {
    "base/kustomization.yaml": "resources:\n- common.yaml\n- settings.yaml\n",
    "base/common.yaml": yaml.safe_dump(pod_doc("common")),
    "base/settings.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  greeting: hello\n",
}


def overlay(node: str, *, extra: str = "") -> dict[str, str]:
    worker = pod_doc(f"worker-{node}")
    return {
        f"nodes/{node}/kustomization.yaml": "bases:\n- ../../base\nresources:\n- worker.yaml\n"
                                            f"commonLabels:\n  node: {node}\n" + extra,
        f"nodes/{node}/worker.yaml": yaml.safe_dump(worker),
    }


def rendered(link: Path) -> dict[str, dict]:
    """kind/name → object, as the daemon reads the manifests path now."""
    snapshot = scan(link)
    assert not snapshot.problems
    found = {}
    for result in snapshot.files.values():
        assert result.ok, result.errors
        for pod in result.pods:
            found[f"Pod/{pod.pod.metadata.name}"] = pod.pod
        for config in result.configs:
            found[f"{config.kind}/{config.name}"] = config
    return found


@pytest.fixture
def remote(tmp_path):
    return Remote(tmp_path)


@pytest.fixture
def clock():
    return Clock()


def test_a_kustomization_is_rendered_and_its_output_applied(tmp_path, remote, clock):
    sha = remote.commit({**BASE, **overlay("n1")})
    sync = engine(tmp_path, remote.bare, clock, path="nodes/n1")
    result = sync.sync_once()
    assert result.outcome == "applied", result.message
    link = tmp_path / "etc" / "manifests"
    objects = rendered(link)
    assert sorted(objects) == ["ConfigMap/settings", "Pod/common", "Pod/worker-n1"]
    assert objects["Pod/worker-n1"].metadata.labels == {"node": "n1"}
    out = tmp_path / "state" / "git" / "rendered" / sha / "nodes" / "n1"   # the output of this path of the commit
    assert os.path.realpath(link) == str(out)
    assert sorted(os.listdir(out)) == [layout.GIT_RENDERED_FILE]
    assert os.stat(out / layout.GIT_RENDERED_FILE).st_mode & 0o777 == 0o600   # may hold Secrets
    assert gitsync.commit_of(link, tmp_path / "state") == sha
    assert sync.live_commit() == sha and result.status.commit == sha and result.status.path == "nodes/n1"

    clock.tick(30)
    assert sync.sync_once().outcome == "unchanged"
    base = {"base/settings.yaml": BASE["base/settings.yaml"].replace("hello", "bonjour")}
    second = remote.commit(base)
    clock.tick(30)
    result = sync.sync_once()
    assert result.outcome == "applied" and result.commit == second
    assert rendered(link)["ConfigMap/settings"].values == {"greeting": b"bonjour"}
    assert worktrees(tmp_path) == [second]
    assert os.listdir(tmp_path / "state" / "git" / "rendered") == [second], "the previous output is removed"


def test_sync_path_names_the_node(tmp_path, remote, clock):
    remote.commit({**BASE, **overlay("n1"), **overlay("n2")})
    one = engine(tmp_path / "a", remote.bare, clock, path="nodes/{node}", node="n1")
    two = engine(tmp_path / "b", remote.bare, clock, path="nodes/{node}", node="n2")
    assert one.sync_once().outcome == two.sync_once().outcome == "applied"
    assert one.status.path == "nodes/n1"
    assert "Pod/worker-n1" in rendered(tmp_path / "a" / "etc" / "manifests")
    assert sorted(rendered(tmp_path / "b" / "etc" / "manifests")) == ["ConfigMap/settings", "Pod/common",
                                                                       "Pod/worker-n2"]


@pytest.mark.parametrize("path,node,message", [
    ("nodes/{node}", None, "cannot be a directory name"),
    ("nodes/{node}", "a/b", "cannot be a directory name"),
    ("nodes/{nodename}", "n1", "the only placeholder is {node}"),
])
def test_a_node_path_that_cannot_be_expanded_is_refused(path, node, message):
    with pytest.raises(SyncError, match=message.replace("{", r"\{").replace("}", r"\}")):
        gitsync.expand_path(path, node)


def test_a_commit_that_does_not_build_keeps_the_previous_one(tmp_path, remote, clock):
    good = remote.commit({**BASE, **overlay("n1")})
    sync = engine(tmp_path, remote.bare, clock, path="nodes/n1")
    assert sync.sync_once().outcome == "applied"
    bad = remote.commit({"nodes/n1/kustomization.yaml": "bases:\n- ../../base\nresources:\n- missing.yaml\n"})
    clock.tick(30)
    result = sync.sync_once()
    assert result.outcome == "rejected" and result.commit == good and result.remote == bad
    assert result.message.startswith(f"commit {bad[:12]} not applied: nodes/n1/kustomization.yaml: resources[0]: ")
    assert "missing.yaml" in result.message and "is not a file or directory of this commit" in result.message
    assert "Pod/worker-n1" in rendered(tmp_path / "etc" / "manifests")
    assert worktrees(tmp_path) == [good]
    assert os.listdir(tmp_path / "state" / "git" / "rendered") == [good], "nothing of the refused commit is left"


def test_kustomize_own_errors_reject_the_commit(tmp_path, remote, clock):
    remote.commit({**BASE, **overlay("n1", extra="patchesStrategicMerge:\n- patch.yaml\n"),
                   "nodes/n1/patch.yaml": "apiVersion: v1\nkind: Pod\nmetadata:\n  name: nowhere\n"})
    result = engine(tmp_path, remote.bare, clock, path="nodes/n1").sync_once()
    assert result.outcome == "rejected"
    assert "not applied: nodes/n1: kustomize failed: " in result.message and "nowhere" in result.message


def test_an_invalid_rendered_document_is_named_by_its_object(tmp_path, remote, clock):
    broken = pod_doc("worker-n1")
    del broken["spec"]["containers"][0]["name"]
    files = {**BASE, **overlay("n1"), "nodes/n1/worker.yaml": yaml.safe_dump(broken)}
    remote.commit(files)
    result = engine(tmp_path, remote.bare, clock, path="nodes/n1").sync_once()
    assert result.outcome == "rejected"
    assert "nodes/n1 (kustomize output): document 3 (Pod/worker-n1): spec.containers[0].name: Required value" \
        in result.message
    assert not os.path.lexists(tmp_path / "etc" / "manifests")


@pytest.mark.parametrize("entry,why", [
    ("https://github.com/example/fleet//base?ref=v1", "remote base 'https://github.com/example/fleet//base?ref=v1' "
                                                      "refused"),
    ("github.com/example/fleet/base", "remote base"),
    ("../" * 16 + "etc", "leads outside the repository"),
    ("/etc/kubelite", "absolute path '/etc/kubelite' refused"),
    ("outside", "leads outside the repository"),          # a symlink in the repository to a directory outside
])
def test_a_base_outside_the_commit_is_refused_before_kustomize_runs(tmp_path, remote, clock, monkeypatch, entry,
                                                                    why):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "kustomization.yaml").write_text("resources: []\n")
    os.symlink(elsewhere, remote.work / "outside")
    remote.commit({**BASE, **overlay("n1"), "nodes/n1/kustomization.yaml": f"bases:\n- {entry}\n"})
    if entry == "outside":
        remote.commit({"nodes/n1/kustomization.yaml": "bases:\n- ../../outside\n"})
    ran = []
    monkeypatch.setattr(kustomize, "render", lambda *a, **k: ran.append(a) or b"")
    result = engine(tmp_path, remote.bare, clock, path="nodes/n1").sync_once()
    assert result.outcome == "rejected" and why in result.message, result.message
    assert "nodes/n1/kustomization.yaml: bases[0]" in result.message
    assert ran == []


def test_a_patch_file_outside_the_commit_is_refused(tmp_path):
    tree = tmp_path / "tree"
    (tree / "app").mkdir(parents=True)
    (tree / "app" / "kustomization.yaml").write_text("resources: []\npatches:\n- path: ../../secret.yaml\n")
    with pytest.raises(kustomize.KustomizeError, match=r"app/kustomization.yaml: patches\[0\].path: "
                                                       "'../../secret.yaml' is not a file"):
        kustomize.check_references(tree, tree / "app")
    (tmp_path / "secret.yaml").write_text("x: 1\n")
    with pytest.raises(kustomize.KustomizeError, match="leads outside the repository"):
        kustomize.check_references(tree, tree / "app")
    (tree / "app" / "kustomization.yaml").write_text("patchesStrategicMerge:\n- /etc/kubelite:x\n")
    with pytest.raises(kustomize.KustomizeError, match="absolute path '/etc/kubelite:x' refused"):
        kustomize.check_references(tree, tree / "app")
    (tree / "app" / "kustomization.yaml").write_text("patchesStrategicMerge:\n- |\n  kind: Pod\n  metadata: {}\n"
                                                      "- '{\"kind\": \"Pod\"}'\n")
    kustomize.check_references(tree, tree / "app")   # patches written in place name no file
    (tree / "app" / "kustomization.yaml").write_text("helmCharts:\n- name: x\n")
    with pytest.raises(kustomize.KustomizeError, match="Helm charts are not rendered"):
        kustomize.check_references(tree, tree / "app")


def test_rendering_is_bounded_in_time_and_output(tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    slow = tmp_path / "slow-kubectl"
    slow.write_text("#!/bin/sh\nsleep 30\n")
    slow.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(kustomize.KustomizeError, match="kustomize took longer than 0.5 s; refused"):
        kustomize.render(app, workdir=work, timeout_s=0.5, kubectl=str(slow))
    loud = tmp_path / "loud-kubectl"
    loud.write_text("#!/bin/sh\nexec yes kind: Pod\n")
    loud.chmod(0o755)
    with pytest.raises(kustomize.KustomizeError, match="kustomize printed more than 1 MiB; refused"):
        kustomize.render(app, workdir=work, max_bytes=1024 * 1024, kubectl=str(loud))


def test_rendering_runs_without_network_as_root(tmp_path):
    """kubectl runs in a network namespace of its own: only a loopback that is down."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root (CI runs as root)")
    app = tmp_path / "app"
    app.mkdir()
    probe = tmp_path / "probe-kubectl"
    probe.write_text("#!/bin/sh\ncat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '; echo HOME=$HOME\n")
    probe.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    assert kustomize.isolated()
    out = kustomize.render(app, workdir=work, kubectl=str(probe)).decode()
    assert out.split() == ["lo", f"HOME={work}"]


def test_hand_edits_of_the_output_are_put_back(tmp_path, remote, clock):
    remote.commit({**BASE, **overlay("n1")})
    sync = engine(tmp_path, remote.bare, clock, path="nodes/n1")
    assert sync.sync_once().outcome == "applied"
    link = tmp_path / "etc" / "manifests"
    output = link / layout.GIT_RENDERED_FILE
    original = output.read_bytes()
    output.write_bytes(original.replace(b"hello", b"tampered"))
    (link / "extra.yaml").write_text(yaml.safe_dump(pod_doc("extra")))
    clock.tick(30)
    result = sync.sync_once()
    assert result.outcome == "drift"
    assert result.drift == ["kustomize output: extra.yaml (added)",
                            f"kustomize output: {layout.GIT_RENDERED_FILE} (modified)"]
    assert output.read_bytes() == original and sorted(os.listdir(link)) == [layout.GIT_RENDERED_FILE]
    again = engine(tmp_path, remote.bare, clock, path="nodes/n1")   # a restart: the output is rendered anew
    clock.tick(30)
    assert again.sync_once().outcome == "unchanged"
    shutil.rmtree(os.path.realpath(link))                            # the whole output directory removed
    clock.tick(30)
    result = again.sync_once()
    assert result.outcome == "drift" and result.drift == [f"kustomize output: {layout.GIT_RENDERED_FILE} (deleted)"]
    assert output.read_bytes() == original


def test_without_kubectl_the_pass_fails_and_backs_off(tmp_path, remote, clock, monkeypatch):
    remote.commit({**BASE, **overlay("n1")})
    git_dir = os.path.dirname(shutil.which("git"))
    bare_path = tmp_path / "bin"
    bare_path.mkdir()
    os.symlink(os.path.join(git_dir, "git"), bare_path / "git")
    monkeypatch.setenv("PATH", str(bare_path))
    result = engine(tmp_path, remote.bare, clock, path="nodes/n1").sync_once()
    assert result.outcome == "failed" and "needs kubectl" in result.message and result.delay_s == 1.0


def test_a_plain_directory_beside_kustomizations_is_read_as_before(tmp_path, remote, clock):
    remote.commit({**BASE, **overlay("n1"), "plain/web.yaml": yaml.safe_dump(pod_doc("web"))})
    sync = engine(tmp_path, remote.bare, clock, path="plain")
    assert sync.sync_once().outcome == "applied"
    assert sorted(rendered(tmp_path / "etc" / "manifests")) == ["Pod/web"]
    assert not (tmp_path / "state" / "git" / "rendered").exists()


def test_kubelite_sync_takes_the_node_name(tmp_path, remote, monkeypatch, capsys):
    from kubelite.cli.main import main

    sha = remote.commit({**BASE, **overlay("n1"), **overlay("n2")})
    link = tmp_path / "etc" / "manifests"
    args = ["sync", "--repo", str(remote.bare), "--ref", "main", "--path", "nodes/{node}", "--once",
            "--root", str(tmp_path / "state"), "--manifests", str(link)]
    assert main([*args, "--node-name", "n2"]) == 0
    assert "Pod/worker-n2" in rendered(link) and gitsync.commit_of(link, tmp_path / "state") == sha
    assert main(["get", "sync", "-o", "json", "--root", str(tmp_path / "state")]) == 0
    assert '"path": "nodes/n2"' in capsys.readouterr().out


def test_validate_renders_a_kustomization_as_the_sync_does(tmp_path, remote, capsys):
    from kubelite.cli.main import main

    for name, text in {**BASE, **overlay("n1")}.items():
        (remote.work / name).parent.mkdir(parents=True, exist_ok=True)
        (remote.work / name).write_text(text)
    overlay_dir = remote.work / "nodes" / "n1"
    assert main(["validate", "--kubernetes", str(overlay_dir)]) == 0
    out = capsys.readouterr().out
    assert f"pod/worker-n1 valid ({overlay_dir}, kustomize output)" in out
    assert "3 object(s) valid for Kubernetes 1.32" in out

    broken = pod_doc("worker-n1")
    broken["spec"]["containers"][0]["imagePullPolice"] = "Never"
    (overlay_dir / "worker.yaml").write_text(yaml.safe_dump(broken))
    assert main(["validate", "--kubernetes", str(overlay_dir)]) == 1
    assert f"error: {overlay_dir} (kustomize output): document 3 (Pod/worker-n1): " \
           "spec.containers[0].imagePullPolice: unknown field (Kubernetes 1.32 schema)" in capsys.readouterr().err

    (overlay_dir / "kustomization.yaml").write_text("bases:\n- github.com/example/fleet/base\n")
    assert main(["validate", str(overlay_dir)]) == 1
    assert "nodes/n1/kustomization.yaml: bases[0]: remote base 'github.com/example/fleet/base' refused" \
        in capsys.readouterr().err


def test_a_rendering_that_fails_while_putting_back_the_output_fails_the_pass(tmp_path, remote, clock):
    """kustomize failing while the hand-edited output is written again (a timeout under load) is a
    failed pass that backs off, not an error out of sync_once."""
    remote.commit({**BASE, **overlay("n1")})
    sync = engine(tmp_path, remote.bare, clock, path="nodes/n1")
    assert sync.sync_once().outcome == "applied"
    output = tmp_path / "etc" / "manifests" / layout.GIT_RENDERED_FILE
    original = output.read_bytes()
    output.write_text("# edited by hand\n")
    sync.render_timeout_s = 1e-6   # the next rendering cannot finish in time
    clock.tick(30)
    result = sync.sync_once()
    assert result.outcome == "failed" and result.delay_s == 1.0, result.message
    assert "kustomize took longer than" in result.message
    sync.render_timeout_s = kustomize.RENDER_TIMEOUT_S
    clock.tick(1)
    result = sync.sync_once()
    assert result.outcome == "drift" and output.read_bytes() == original


EMPTY_POD = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\nspec:\n  containers: []\n"


def test_another_path_on_the_same_commit_is_validated_not_restored_as_drift(tmp_path, remote, clock):
    """The output of one path is never taken for another's (a SIGHUP with a new sync.path, or kubelite
    sync restarted with another --path): the new path's output is validated and applied afresh."""
    sha = remote.commit({**BASE, **overlay("n1"),
                         "broken/kustomization.yaml": "resources:\n- bad.yaml\n", "broken/bad.yaml": EMPTY_POD,
                         "empty/kustomization.yaml": "resources: []\n"})
    link = tmp_path / "etc" / "manifests"
    assert engine(tmp_path, remote.bare, clock, path="nodes/n1").sync_once().outcome == "applied"
    before = rendered(link)

    broken = engine(tmp_path, remote.bare, clock, path="broken")
    assert broken.live_commit() is None, "n1's output is not broken/'s"
    result = broken.sync_once()
    assert result.outcome == "rejected", result.message
    assert "broken (kustomize output): document 1 (Pod/bad)" in result.message
    assert rendered(link) == before
    clock.tick(30)
    assert broken.sync_once().outcome == "rejected"   # the same commit is not rendered again every pass

    empty = engine(tmp_path, remote.bare, clock, path="empty")
    result = empty.sync_once()
    assert result.outcome == "rejected" and "--allow-empty" in result.message
    assert rendered(link) == before

    base = engine(tmp_path, remote.bare, clock, path="base")
    result = base.sync_once()
    assert result.outcome == "applied" and result.commit == sha and not result.drift, result.message
    assert sorted(rendered(link)) == ["ConfigMap/settings", "Pod/common"]
    assert base.live_commit() == sha
    assert engine(tmp_path, remote.bare, clock, path="nodes/n1").live_commit() is None
    clock.tick(30)
    assert base.sync_once().outcome == "unchanged"


def test_after_a_restart_output_unlike_a_fresh_rendering_is_applied_afresh(tmp_path, remote, clock):
    """Without the digest of what it wrote (a restart), an output that differs from a fresh rendering
    is validated and applied as a commit is, not written over as drift."""
    remote.commit({**BASE, **overlay("n1")})
    assert engine(tmp_path, remote.bare, clock, path="nodes/n1").sync_once().outcome == "applied"
    output = tmp_path / "etc" / "manifests" / layout.GIT_RENDERED_FILE
    original = output.read_bytes()
    output.write_bytes(original.replace(b"hello", b"tampered"))
    again = engine(tmp_path, remote.bare, clock, path="nodes/n1")
    clock.tick(30)
    result = again.sync_once()
    assert result.outcome == "applied" and not result.drift, result.message
    assert "rendered again" in result.message
    assert output.read_bytes() == original
    clock.tick(30)
    assert again.sync_once().outcome == "unchanged"


@pytest.mark.parametrize("field", ["generators", "transformers", "validators", "resources"])
def test_a_kustomization_under_any_field_kustomize_builds_is_checked_too(tmp_path, field):
    """kustomize builds a directory named under generators, transformers or validators as a
    kustomization: its references are walked as those of resources are."""
    tree = tmp_path / "tree"
    (tree / "top").mkdir(parents=True)
    (tree / "sub").mkdir()
    (tree / "top" / "kustomization.yaml").write_text(f"{field}:\n- ../sub\n")
    (tree / "sub" / "kustomization.yaml").write_text("resources:\n- https://example.com/pod.yaml\n")
    with pytest.raises(kustomize.KustomizeError, match=r"sub/kustomization.yaml: resources\[0\]: remote base "
                                                       "'https://example.com/pod.yaml' refused"):
        kustomize.check_references(tree, tree / "top")
    (tree / "sub" / "kustomization.yaml").write_text("resources:\n- ../../outside\n")
    (tmp_path / "outside").mkdir()
    with pytest.raises(kustomize.KustomizeError, match="leads outside the repository"):
        kustomize.check_references(tree, tree / "top")
    (tree / "sub" / "kustomization.yaml").write_text("resources: []\n")
    kustomize.check_references(tree, tree / "top")


def test_the_output_bound_is_the_manifest_files_bound(tmp_path):
    """The output becomes one manifest file, which the daemon reads only up to MAX_MANIFEST_BYTES:
    a rendering past that is refused by kustomize's own bound, with a message that says why."""
    from kubelite.sources.manifests import MAX_MANIFEST_BYTES

    assert kustomize.MAX_OUTPUT_BYTES == MAX_MANIFEST_BYTES
    app = tmp_path / "app"
    app.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    big = tmp_path / "big-kubectl"
    big.write_text(f"#!/bin/sh\nyes '# padding' | head -c {MAX_MANIFEST_BYTES + 1}\n")
    big.chmod(0o755)
    with pytest.raises(kustomize.KustomizeError, match=r"kustomize printed more than 10 MiB \(the largest manifest "
                                                       r"file kubelite reads\); refused"):
        kustomize.render(app, workdir=work, kubectl=str(big))
    exact = tmp_path / "exact-kubectl"
    exact.write_text(f"#!/bin/sh\nyes '# padding' | head -c {MAX_MANIFEST_BYTES}\n")
    exact.chmod(0o755)
    assert len(kustomize.render(app, workdir=work, kubectl=str(exact))) == MAX_MANIFEST_BYTES


def test_validate_outside_a_repository_checks_references_against_the_directory(tmp_path, monkeypatch, capsys):
    """With no `.git` above, the kustomization's own directory is the tree: a remote base is refused
    before kustomize runs, as the sync would."""
    from kubelite.cli.main import main

    assert not any((p / ".git").exists() for p in (tmp_path, *tmp_path.parents)), "the test needs no repository"
    app = tmp_path / "app"
    app.mkdir()
    (app / "kustomization.yaml").write_text("resources:\n- https://example.com/fleet/web.yaml\n")
    ran = []
    monkeypatch.setattr(kustomize, "render", lambda *a, **k: ran.append(a) or b"")
    assert main(["validate", str(app)]) == 1
    assert "app: kustomization.yaml: resources[0]: remote base 'https://example.com/fleet/web.yaml' refused" \
        in capsys.readouterr().err
    assert ran == []
    (app / "kustomization.yaml").write_text("resources:\n- ../elsewhere.yaml\n")
    (tmp_path / "elsewhere.yaml").write_text(yaml.safe_dump(pod_doc("web")))
    assert main(["validate", str(app)]) == 1
    err = capsys.readouterr().err
    assert "leads outside the repository" in err and "no git repository above it" in err and ran == []
