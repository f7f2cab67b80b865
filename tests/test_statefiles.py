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
