"""Safe state on disk: atomic owner-only writes that never follow a symlink, owner-only directories,
refused state roots another user could change, tightened older installations, and `apply`'s modes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import kubelite.statefiles as statefiles
from kubelite.errors import StoreError, UsageError


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_write_atomic_gives_the_mode_and_replaces_a_planted_symlink(tmp_path: Path):
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    (tmp_path / "token").symlink_to(victim)
    old = os.umask(0)
    try:
        statefiles.write_atomic(tmp_path / "token", "secret\n")
    finally:
        os.umask(old)
    assert victim.read_text() == "untouched"
    assert not (tmp_path / "token").is_symlink() and (tmp_path / "token").read_text() == "secret\n"
    assert mode(tmp_path / "token") == 0o600
    statefiles.write_atomic(tmp_path / "hosts", b"x", 0o644)
    assert mode(tmp_path / "hosts") == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hosts", "token", "victim"]   # no temporary left


def test_replace_symlink_points_the_link_elsewhere_in_one_rename(tmp_path: Path):
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    link = tmp_path / "current"
    statefiles.replace_symlink(link, "old", temporary=".current.tmp", fsync=True)
    assert os.readlink(link) == "old"
    (tmp_path / ".current.tmp").write_text("left over by a crash")
    statefiles.replace_symlink(link, "new", temporary=".current.tmp", group=os.getgid())
    assert os.readlink(link) == "new" and os.lstat(link).st_gid == os.getgid()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current", "new", "old"]


def test_make_dirs_gives_every_created_directory_the_mode_and_refuses_a_symlink_below_base(tmp_path: Path):
    statefiles.make_dirs(tmp_path / "root" / "pods" / "uid" / "volumes", base=tmp_path / "root")
    for path in ("root", "root/pods", "root/pods/uid", "root/pods/uid/volumes"):
        assert mode(tmp_path / path) == 0o700, path
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "root" / "pods" / "planted").symlink_to(elsewhere)
    with pytest.raises(OSError):
        statefiles.make_dirs(tmp_path / "root" / "pods" / "planted" / "volumes", base=tmp_path / "root")
    assert list(elsewhere.iterdir()) == []


def test_tighten_never_loosens_and_keeps_setuid(tmp_path: Path):
    f = tmp_path / "f"
    f.write_text("")
    os.chmod(f, 0o4755)
    assert statefiles.tighten(f, 0o700) and mode(f) == 0o4700
    os.chmod(f, 0o400)
    assert not statefiles.tighten(f, 0o600) and mode(f) == 0o400


def test_an_older_layout_is_tightened(tmp_path: Path):
    root, run = tmp_path / "root", tmp_path / "run"
    for d in (root / "api", root / "logs" / "ns_p_u" / "c", root / "pods" / "uid" / "volumes", run / "sandboxes" / "x"):
        d.mkdir(parents=True)
    for d in (root, run, root / "api", root / "logs", root / "logs" / "ns_p_u", root / "logs" / "ns_p_u" / "c",
              root / "pods", root / "pods" / "uid", root / "pods" / "uid" / "volumes", run / "sandboxes",
              run / "sandboxes" / "x"):
        os.chmod(d, 0o755)
    for f in (root / "api" / "token", root / "logs" / "ns_p_u" / "c" / "0.log", root / "kubelite.db",
              run / "sandboxes" / "x.json"):
        f.write_text("x")
        os.chmod(f, 0o644)
    changed = statefiles.tighten_layout(root, run)
    assert str(root / "api" / "token") in changed
    for d in (root, run, root / "api", root / "logs" / "ns_p_u" / "c", root / "pods", root / "pods" / "uid",
              run / "sandboxes", run / "sandboxes" / "x"):
        assert mode(d) == 0o700, d
    for f in (root / "api" / "token", root / "logs" / "ns_p_u" / "c" / "0.log", root / "kubelite.db",
              run / "sandboxes" / "x.json"):
        assert mode(f) == 0o600, f
    assert mode(root / "pods" / "uid" / "volumes") == 0o755   # below a pod's directory: the pod's own modes
    assert statefiles.tighten_layout(root, run) == []


def test_runc_state_below_the_run_directory_keeps_runc_modes(tmp_path: Path):
    """runc makes each container's state directory 0711: tightening it at every start would report an
    'older installation' each time; the runc root itself is ours and tightened."""
    root, run = tmp_path / "root", tmp_path / "run"
    (run / "runc" / "abc").mkdir(parents=True)
    root.mkdir()
    os.chmod(run / "runc", 0o755)
    os.chmod(run / "runc" / "abc", 0o711)
    assert str(run / "runc") in statefiles.tighten_layout(root, run)
    assert mode(run / "runc") == 0o700
    assert mode(run / "runc" / "abc") == 0o711
    assert statefiles.tighten_layout(root, run) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_unsafe_state_directories_are_refused(tmp_path: Path):
    os.chmod(tmp_path, 0o755)
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(UsageError, match="symlink"):
        statefiles.check_owned(tmp_path / "link", "state root")
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    with pytest.raises(UsageError, match="writable by other users"):
        statefiles.check_owned(open_dir / "state", "state root")
    os.chmod(open_dir, 0o1777)   # like /tmp: fine while the next component is ours
    statefiles.check_owned(open_dir / "state", "state root")
    (open_dir / "theirs").mkdir()
    os.chown(open_dir / "theirs", 65534, 65534)
    with pytest.raises(UsageError, match="owned by uid 65534"):
        statefiles.check_owned(open_dir / "theirs", "run directory")
    with pytest.raises(UsageError, match="owned by uid 65534"):
        statefiles.check_owned(open_dir / "theirs" / "state", "run directory")
    loose = tmp_path / "loose"
    loose.mkdir()
    os.chmod(loose, 0o775)
    with pytest.raises(UsageError, match="writable by other users"):
        statefiles.check_owned(loose, "state root")
    assert statefiles.prepare_state_dirs(tmp_path / "root", tmp_path / "run") == []
    assert mode(tmp_path / "root") == 0o700 and mode(tmp_path / "run") == 0o700


def test_the_database_is_not_created_through_a_planted_symlink(tmp_path: Path):
    from kubelite.store.store import Store

    target = tmp_path / "elsewhere.db"
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "kubelite.db").symlink_to(target)
    with pytest.raises(StoreError, match="symlink"):
        Store(tmp_path / "root")
    assert not target.exists()


def test_the_database_is_made_owner_only(tmp_path: Path):
    from kubelite.store.store import Store

    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "kubelite.db").write_bytes(b"")
    os.chmod(tmp_path / "root" / "kubelite.db", 0o644)
    Store(tmp_path / "root").close()
    assert mode(tmp_path / "root" / "kubelite.db") == 0o600


def test_the_token_is_not_written_through_a_planted_symlink(tmp_path: Path):
    from kubelite.apiserver import auth

    victim = tmp_path / "victim"
    victim.write_text("")
    auth.api_dir(tmp_path).mkdir()
    (auth.api_dir(tmp_path) / auth.TOKEN_FILE).symlink_to(victim)
    token = auth.ensure_token(tmp_path)
    assert victim.read_text() == "" and auth.read_token(tmp_path) == token
    assert mode(auth.api_dir(tmp_path) / auth.TOKEN_FILE) == 0o600 and mode(auth.api_dir(tmp_path)) == 0o700


SECRET = "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData: {password: x}\n"
CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\ndata: {a: b}\n"


@pytest.mark.parametrize("text, source_mode, written", [
    (SECRET, 0o644, 0o600), (SECRET, 0o600, 0o600), (CONFIGMAP, 0o640, 0o640), (CONFIGMAP, 0o644, 0o644),
    (CONFIGMAP, 0o600, 0o600)])
def test_apply_writes_no_looser_than_the_source_and_secrets_0600(tmp_path: Path, capsys, text, source_mode, written):
    from kubelite.cli.manage import apply

    manifests = tmp_path / "manifests"
    manifests.mkdir()
    source = tmp_path / "objects.yaml"
    source.write_text(text)
    os.chmod(source, source_mode)
    assert apply(source, manifests) == 0
    assert mode(manifests / "objects.yaml") == written
    os.chmod(manifests / "objects.yaml", 0o666)   # loosened by hand: applying the same file tightens it
    assert apply(source, manifests) == 0
    assert mode(manifests / "objects.yaml") == written


# ------------------------------------------------------------------ the review's findings


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_a_symlink_another_user_owns_on_the_way_to_the_root_is_refused(tmp_path: Path):
    """`/tmp/x -> somewhere` planted by another user in a sticky directory: it points at a root-owned
    directory today, and its owner can point it anywhere tomorrow. Refused, and nothing is made."""
    os.chmod(tmp_path, 0o755)
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    target = tmp_path / "target"
    target.mkdir()
    (sticky / "x").symlink_to(target)
    os.lchown(sticky / "x", 65534, 65534)
    with pytest.raises(UsageError, match=rf"{sticky / 'x'} is a symlink owned by uid 65534, not root: refused"):
        statefiles.check_owned(sticky / "x" / "state", "state root")
    with pytest.raises(UsageError, match="symlink owned by uid 65534"):
        statefiles.prepare_state_dirs(sticky / "x" / "state", tmp_path / "run")
    assert list(target.iterdir()) == []

    os.lchown(sticky / "x", 0, 0)   # root's link: followed, and its target checked in turn
    statefiles.check_owned(sticky / "x" / "state", "state root")
    os.chown(target, 65534, 65534)
    with pytest.raises(UsageError, match=rf"parent {target} is owned by uid 65534"):
        statefiles.check_owned(sticky / "x" / "state", "state root")
    os.chown(target, 0, 0)
    (sticky / "rel").symlink_to("../target/../open")   # relative, with '..': resolved as the kernel does
    (tmp_path / "open").mkdir()
    os.chmod(tmp_path / "open", 0o777)
    with pytest.raises(UsageError, match=rf"parent {tmp_path / 'open'} is writable by other users"):
        statefiles.check_owned(sticky / "rel" / "state", "state root")
    (sticky / "loop").symlink_to("loop")
    with pytest.raises(UsageError, match="too many levels of symlinks"):
        statefiles.check_owned(sticky / "loop" / "state", "state root")


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_a_directory_another_user_made_first_is_not_used_as_the_root(tmp_path: Path):
    """Between the check and the mkdir, another user makes the missing root in a sticky directory."""
    os.chmod(tmp_path, 0o755)
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    (sticky / "theirs").mkdir()
    os.chown(sticky / "theirs", 65534, 65534)
    with pytest.raises(OSError, match="owned by uid 65534"):
        statefiles.make_top(sticky / "theirs" / "state")
    assert list((sticky / "theirs").iterdir()) == []


def test_every_component_below_the_base_is_entered_without_following_a_symlink(tmp_path: Path):
    root = tmp_path / "root"
    elsewhere = tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    (root / "logs").symlink_to(elsewhere)   # an intermediate component, not the last one
    with pytest.raises(OSError, match="a symlink is never followed"):
        statefiles.make_dirs(root / "logs" / "ns_pod_uid" / "app", base=root)
    (root / "file").write_text("")
    with pytest.raises(OSError, match="not a directory"):
        statefiles.make_dirs(root / "file" / "x", base=root)
    with pytest.raises(OSError, match="is not below"):
        statefiles.make_dirs(tmp_path / "elsewhere" / "x", base=root)
    assert list(elsewhere.iterdir()) == []
    os.mkdir(root / "loose", 0o755)
    os.chmod(root / "loose", 0o755)
    statefiles.make_dirs(root / "loose" / "a" / "b", base=root)
    assert mode(root / "loose") == 0o755   # entered, not re-moded: only `path` itself is tightened
    assert mode(root / "loose" / "a") == 0o700 and mode(root / "loose" / "a" / "b") == 0o700
    os.chmod(root / "loose" / "a" / "b", 0o755)
    statefiles.make_dirs(root / "loose" / "a" / "b", base=root)
    assert mode(root / "loose" / "a" / "b") == 0o700


def test_git_state_is_not_made_through_a_symlink_planted_in_the_root(tmp_path: Path):
    """A caller that used to make its directory without a base (git/worktrees): the planted `git`
    link is not followed."""
    from kubelite.sources.gitsync import GitSync

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "git").symlink_to(elsewhere)
    sync = GitSync(str(tmp_path / "no-such-repo.git"), root=tmp_path / "state", link=tmp_path / "manifests")
    result = sync.sync_once()
    assert result.outcome == "failed" and "symlink is never followed" in result.message
    assert list(elsewhere.iterdir()) == []


def test_tighten_keeps_the_owners_bits_of_a_file(tmp_path: Path):
    """An executable stays executable for its owner (git would see a mode change otherwise)."""
    f = tmp_path / "run.sh"
    f.write_text("")
    os.chmod(f, 0o755)
    assert statefiles.tighten(f, 0o600) and mode(f) == 0o700
    assert str(f) not in statefiles.tighten_tree(tmp_path) and mode(f) == 0o700
    d = tmp_path / "d"
    d.mkdir()
    os.chmod(d, 0o755)
    assert statefiles.tighten(d, 0o700) and mode(d) == 0o700


def test_only_kubelites_own_entries_of_a_shared_run_directory_are_re_moded(tmp_path: Path):
    """`--run-dir /run`: the system's files there, and /run itself, keep their modes."""
    root, run = tmp_path / "root", tmp_path / "run"
    for d in (root / "pods", root / "lost+found" / "x", run / "sandboxes" / "abc", run / "dbus", run / "user" / "0"):
        d.mkdir(parents=True)
    for f in (run / "utmp", run / "sandboxes" / "abc.json", root / "notes.txt"):
        f.write_text("x")
    for p in (root, run, root / "pods", root / "lost+found", root / "lost+found" / "x", run / "sandboxes",
              run / "sandboxes" / "abc", run / "dbus", run / "user", run / "user" / "0"):
        os.chmod(p, 0o755)
    for f in (run / "utmp", run / "sandboxes" / "abc.json", root / "notes.txt"):
        os.chmod(f, 0o644)
    changed = statefiles.tighten_layout(root, run)
    assert sorted(changed) == sorted(str(p) for p in (root / "pods", run / "sandboxes", run / "sandboxes" / "abc",
                                                      run / "sandboxes" / "abc.json"))
    for p in (root, run, root / "lost+found", root / "lost+found" / "x", run / "dbus", run / "user",
              run / "user" / "0"):
        assert mode(p) == 0o755, p
    for f in (run / "utmp", root / "notes.txt"):
        assert mode(f) == 0o644, f
    (root / "notes.txt").unlink()   # a root that holds only kubelite's own entries is made 0700 itself
    for p in ((root / "lost+found" / "x"), root / "lost+found"):
        p.rmdir()
    assert statefiles.tighten_layout(root, run) == [str(root)] and mode(root) == 0o700 and mode(run) == 0o755


@pytest.mark.skipif(os.geteuid() != 0, reason="the checks trust the running user: only root sees them refuse")
@pytest.mark.parametrize("argv", [["image", "pull", "127.0.0.1:9/app:v1"], ["image", "load", "-i", "app.tar"],
                                  ["image", "rm", "app:v1"], ["sync", "--repo", "file:///nowhere.git", "--once"],
                                  ["apply", "-f", "web.yaml"], ["delete", "-f", "web.yaml"]])
def test_commands_that_make_or_trust_state_refuse_a_root_as_serve_does(tmp_path: Path, capsys, argv):
    from kubelite.cli.main import main

    os.chmod(tmp_path, 0o755)
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)   # anyone may rename what kubelite would make here
    assert main([*argv, "--root", str(open_dir / "state")]) == 1
    err = capsys.readouterr().err
    assert err == (f"error: state root {open_dir / 'state'}: parent {open_dir} is writable by other users: "
                   f"refused; run chmod go-w {open_dir} or choose another directory\n")
    assert list(open_dir.iterdir()) == []


def test_a_pull_makes_its_downloads_owner_only(tmp_path: Path, capsys):
    """`kubelite image pull` makes the root, `images/` and `images/downloads/` owner-only, whatever the umask."""
    import gzip
    import hashlib

    from kubelite.cli.main import main
    from tests.registries import BombRegistry, layer_tar

    reg = BombRegistry()
    old = os.umask(0o022)
    try:
        tar = layer_tar({"hello": b"hello\n"})
        reg.image("app", "v1", [reg.blob("app", gzip.compress(tar, mtime=0))],
                  ["sha256:" + hashlib.sha256(tar).hexdigest()])
        root = tmp_path / "state"
        assert main(["image", "pull", "--root", str(root), "--authfile", str(tmp_path / "none.json"),
                     f"{reg.host}/app:v1"]) == 0, capsys.readouterr().err
    finally:
        os.umask(old)
        reg.close()
    for path in (root, root / "images", root / "images" / "downloads", root / "images" / "layers"):
        assert mode(path) == 0o700, path
    assert os.listdir(root / "images" / "downloads") == []


def test_a_root_holding_claim_volumes_and_seccomp_profiles_is_still_tightened(tmp_path: Path):
    root, run = tmp_path / "root", tmp_path / "run"
    for d in (root / "volumes" / "pvc-1", root / "seccomp", run):
        d.mkdir(parents=True)
    os.chmod(root, 0o755)
    os.chmod(root / "volumes", 0o755)
    os.chmod(root / "volumes" / "pvc-1", 0o777)
    (root / "seccomp" / "deny-mkdir.json").write_text("{}")
    statefiles.tighten_layout(root, run)
    assert mode(root) == 0o700 and mode(root / "volumes") == 0o700 and mode(root / "seccomp") == 0o700
    assert mode(root / "volumes" / "pvc-1") == 0o777   # a claim's own directory: written by the pod's user
