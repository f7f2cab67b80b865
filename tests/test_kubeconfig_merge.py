"""`kubelite kubeconfig --merge`: this node's cluster, user and context go into an existing
kubeconfig (the file kubectl reads) without losing anything else in it, written atomically."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kubelite.apiserver import auth
from kubelite.cli import kubeconfig
from kubelite.errors import UsageError
from tests.apinode import KUBECTL, REPO, ApiNode, require_kubectl

CA = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def theirs() -> dict:
    """A kubeconfig with a cluster of its own, as kind or kubeadm would have written it."""
    return {"apiVersion": "v1", "kind": "Config", "preferences": {"colors": True},
            "clusters": [{"name": "work", "cluster": {"server": "https://10.0.0.1:6443"}}],
            "users": [{"name": "work-admin", "user": {"token": "w"}}],
            "contexts": [{"name": "work", "context": {"cluster": "work", "user": "work-admin"}}],
            "current-context": "work", "extensions": [{"name": "x", "extension": {"a": 1}}]}


def ours(token: str = "t1", *, admin: bool = False) -> str:
    return auth.kubeconfig(server="https://127.0.0.1:10280", token=token, node="edge1", ca_pem=CA, admin=admin)


def test_merging_adds_the_nodes_entries_keeps_the_others_and_switches_the_context():
    result = kubeconfig.merged(theirs(), yaml.safe_load(ours()))
    assert [c["name"] for c in result["clusters"]] == ["work", "edge1"]
    assert [u["name"] for u in result["users"]] == ["work-admin", "edge1"]
    assert [c["name"] for c in result["contexts"]] == ["work", "edge1"]
    assert result["current-context"] == "edge1"
    assert result["preferences"] == {"colors": True} and result["extensions"] == theirs()["extensions"]


def test_merging_again_replaces_the_entries_of_the_same_name_and_the_admin_adds_its_own():
    once = kubeconfig.merged(theirs(), yaml.safe_load(ours("t1")))
    again = kubeconfig.merged(once, yaml.safe_load(ours("t2")))
    assert [u["user"]["token"] for u in again["users"] if u["name"] == "edge1"] == ["t2"]
    assert len(again["clusters"]) == 2
    both = kubeconfig.merged(again, yaml.safe_load(ours("a1", admin=True)))
    assert [c["name"] for c in both["contexts"]] == ["work", "edge1", "edge1-admin"]
    assert [c["name"] for c in both["clusters"]] == ["work", "edge1"]   # one cluster, two credentials
    assert both["current-context"] == "edge1-admin"


def test_an_empty_kubeconfig_gets_the_nodes_entries_and_its_header():
    result = kubeconfig.merged({}, yaml.safe_load(ours()))
    assert result["apiVersion"] == "v1" and result["kind"] == "Config" and result["current-context"] == "edge1"


@pytest.mark.parametrize("environ, expected", [
    ({"KUBECONFIG": "/a/one:/a/two", "HOME": "/home/u"}, "/a/one"),
    ({"KUBECONFIG": ":/a/two", "HOME": "/home/u"}, "/a/two"),
    ({"KUBECONFIG": "", "HOME": "/home/u"}, "/home/u/.kube/config"),
    ({"HOME": "/home/u"}, "/home/u/.kube/config"),
])
def test_the_file_is_the_one_kubectl_reads(environ, expected):
    assert kubeconfig.default_path(environ) == Path(expected)


def test_under_sudo_the_file_is_the_invoking_users_and_a_new_one_is_theirs(tmp_path: Path):
    import pwd

    nobody = pwd.getpwnam("nobody")
    environ = {"SUDO_USER": "nobody", "SUDO_UID": str(nobody.pw_uid), "SUDO_GID": str(nobody.pw_gid),
               "HOME": "/root"}
    assert kubeconfig.default_path(environ, root=True) == Path(nobody.pw_dir) / ".kube" / "config"
    assert kubeconfig.default_path(environ, root=False) == Path("/root/.kube/config")
    assert kubeconfig.sudo_owner(environ) == (nobody.pw_uid, nobody.pw_gid)
    assert kubeconfig.sudo_owner({"HOME": "/root"}) is None
    if os.geteuid() != 0:
        return
    path = tmp_path / "home" / ".kube" / "config"
    path.parent.parent.mkdir()
    kubeconfig.merge_into(path, ours(), owner=(nobody.pw_uid, nobody.pw_gid))
    for made in (path, path.parent):
        assert (made.stat().st_uid, made.stat().st_gid) == (nobody.pw_uid, nobody.pw_gid)
    kubeconfig.merge_into(path, ours("t2"))              # an existing file keeps its owner
    assert path.stat().st_uid == nobody.pw_uid


def test_the_file_is_rewritten_whole_mode_0600_and_a_symlink_keeps_pointing_at_it(tmp_path: Path):
    real = tmp_path / "dotfiles" / "kubeconfig"
    real.parent.mkdir()
    real.write_text(yaml.safe_dump(theirs()))
    real.chmod(0o644)
    link = tmp_path / ".kube" / "config"
    link.parent.mkdir()
    link.symlink_to(real)
    assert kubeconfig.merge_into(link, ours()) == "work"
    assert link.is_symlink() and os.readlink(link) == str(real)
    written = yaml.safe_load(real.read_text())
    assert written["current-context"] == "edge1" and len(written["contexts"]) == 2
    assert stat.S_IMODE(real.stat().st_mode) == 0o600
    assert sorted(p.name for p in real.parent.iterdir()) == ["kubeconfig"]   # no temporary or lock file left


def test_a_missing_file_and_directory_are_made(tmp_path: Path):
    path = tmp_path / "home" / ".kube" / "config"
    assert kubeconfig.merge_into(path, ours()) is None
    assert yaml.safe_load(path.read_text())["current-context"] == "edge1"
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


@pytest.mark.parametrize("content", ["- just\n- a list\n", "clusters: [[\n", "clusters: [1, 2]\n",
                                     "users: 5\n"])
def test_a_file_that_is_not_a_kubeconfig_is_left_as_it_is(tmp_path: Path, content: str):
    path = tmp_path / "config"
    path.write_text(content)
    with pytest.raises(UsageError, match="not a kubeconfig kubelite can merge into"):
        kubeconfig.merge_into(path, ours())
    assert path.read_text() == content and not (tmp_path / "config.lock").exists()


def test_a_writer_holding_kubectls_lock_file_is_not_overwritten(tmp_path: Path):
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(theirs()))
    (tmp_path / "config.lock").write_text("")
    with pytest.raises(UsageError, match="config.lock exists"):
        kubeconfig.merge_into(path, ours())
    assert yaml.safe_load(path.read_text()) == theirs()


def test_kubectl_reads_the_node_and_keeps_its_other_contexts_after_a_merge(tmp_path: Path):
    require_kubectl()
    node = ApiNode(tmp_path).start()
    try:
        home = tmp_path / "home"
        (home / ".kube").mkdir(parents=True)
        (home / ".kube" / "config").write_text(yaml.safe_dump(theirs()))
        env = {k: v for k, v in node.env().items() if k != "KUBECONFIG"}
        env["HOME"] = str(home)
        for extra in ((), ("--admin",)):
            out = _kubelite(env, "kubeconfig", "--merge", *extra)
            assert out.returncode == 0 and out.stdout == "", out.stderr
        assert "merged the context 'node1-admin'" in out.stderr and "was 'node1'" in out.stderr
        contexts = _kubectl(env, "config", "get-contexts", "-o", "name").stdout.split()
        assert contexts == ["node1", "node1-admin", "work"]
        assert _kubectl(env, "config", "current-context").stdout.strip() == "node1-admin"
        nodes = _kubectl(env, "--context", "node1", "get", "nodes", "-o", "name")
        assert nodes.returncode == 0 and nodes.stdout.strip() == "node/node1", nodes.stderr
        kept = yaml.safe_load((home / ".kube" / "config").read_text())
        assert kept["preferences"] == {"colors": True} and kept["extensions"] == theirs()["extensions"]
    finally:
        node.close()


def _kubelite(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kubelite.cli.main", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=30)


def _kubectl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([KUBECTL, *args], env=env, capture_output=True, text=True, timeout=30)
