"""Pod volumes on the host without mounts: hostPath type checks, the atomic writer, safe subPaths.

`VolumeHost(host_changes=False)` mounts nothing, so these run anywhere; the mounting paths (tmpfs,
subPath binds, teardown after kill -9) are proven on real containers in test_volumes_real.py.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from kubelite.api.decode import decode_document
from kubelite.runtime.volumes import SubPathError, VolumeError, VolumeHost, check_host_path


@pytest.mark.parametrize("kind, type_, ok, message", [
    ("dir", "", True, None),
    ("missing", "", True, None),
    ("dir", "Directory", True, None),
    ("file", "Directory", False, "hostPath type check failed: {path} is not a directory"),
    ("missing", "Directory", False, "hostPath type check failed: {path} is not a directory"),
    ("file", "File", True, None),
    ("dir", "File", False, "hostPath type check failed: {path} is not a file"),
    ("file", "DirectoryOrCreate", False, "hostPath type check failed: {path} is not a directory"),
    ("dir", "FileOrCreate", False, "hostPath type check failed: {path} is not a file"),
    ("socket", "Socket", True, None),
    ("file", "Socket", False, "hostPath type check failed: {path} is not a socket file"),
    ("chardev", "CharDevice", True, None),
    ("file", "CharDevice", False, "hostPath type check failed: {path} is not a character device"),
    ("chardev", "BlockDevice", False, "hostPath type check failed: {path} is not a block device"),
])
def test_host_path_types_are_checked_with_the_kubelets_messages(tmp_path, kind, type_, ok, message):
    path = {"dir": tmp_path / "d", "file": tmp_path / "f", "missing": tmp_path / "nope",
            "socket": tmp_path / "s", "chardev": Path("/dev/null")}[kind]
    if kind == "dir":
        path.mkdir()
    elif kind == "file":
        path.write_text("x")
    server = None
    if kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
    try:
        if ok:
            assert check_host_path(str(path), type_, create=False, volume="v") == str(path)
        else:
            with pytest.raises(VolumeError) as exc:
                check_host_path(str(path), type_, create=False, volume="v")
            assert str(exc.value) == 'MountVolume.SetUp failed for volume "v" : ' + message.format(path=path)
    finally:
        if server is not None:
            server.close()


def test_or_create_types_create_what_is_missing_and_only_when_allowed(tmp_path):
    check_host_path(str(tmp_path / "a" / "b"), "DirectoryOrCreate", create=True, volume="v")
    check_host_path(str(tmp_path / "f"), "FileOrCreate", create=True, volume="v")
    assert (tmp_path / "a" / "b").is_dir() and (tmp_path / "f").is_file()
    assert oct((tmp_path / "f").stat().st_mode & 0o777) == oct(0o644 & ~_umask())
    check_host_path(str(tmp_path / "dry"), "DirectoryOrCreate", create=False, volume="v")
    assert not (tmp_path / "dry").exists()
    with pytest.raises(VolumeError, match="open .*: No such file or directory"):
        check_host_path(str(tmp_path / "no-parent" / "f"), "FileOrCreate", create=True, volume="v")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_the_atomic_writer_swaps_a_data_link_and_keeps_one_link_per_name(tmp_path):
    host = VolumeHost(tmp_path, host_changes=False)
    target = tmp_path / "vol"
    target.mkdir()
    assert host.write_projection(target, {"a": (b"1", 0o644), "conf/b": (b"2", 0o600)})
    first = os.readlink(target / "..data")
    assert first.startswith("..") and (target / "a").read_text() == "1"
    assert os.readlink(target / "conf") == "..data/conf" and (target / "conf" / "b").read_text() == "2"
    assert (target / first / "conf" / "b").stat().st_mode & 0o777 == 0o600
    assert not host.write_projection(target, {"a": (b"1", 0o644), "conf/b": (b"2", 0o600)}), "unchanged"
    again = VolumeHost(tmp_path, host_changes=False)   # a restarted kubelite compares the files
    assert not again.write_projection(target, {"a": (b"1", 0o644), "conf/b": (b"2", 0o600)})
    assert again.write_projection(target, {"a": (b"3", 0o644)})
    second = os.readlink(target / "..data")
    assert second != first and not (target / first).exists()
    assert (target / "a").read_text() == "3" and not os.path.lexists(target / "conf")
    assert sorted(os.listdir(target)) == sorted(["..data", second, "a"])


def pod_with_mount(sub_path: str):
    doc = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "uid": "u1"}, "spec": {
        "containers": [{"name": "app", "image": "busybox", "volumeMounts": [
            {"name": "data", "mountPath": "/data", "subPath": sub_path}]}],
        "volumes": [{"name": "data", "emptyDir": {}}]}}
    decoded = decode_document(doc, source="/m/web.yaml")
    assert decoded.desired is not None, decoded.errors
    return decoded.desired.pod


def set_up(host: VolumeHost, sub_path: str):
    pod = pod_with_mount(sub_path)
    paths = host.set_up("u1", pod, {})
    return pod, paths, Path(paths["data"])


def test_a_sub_path_is_resolved_inside_the_volume_following_links_that_stay_inside(tmp_path):
    host = VolumeHost(tmp_path, host_changes=False)
    pod, paths, volume = set_up(host, "good")
    (volume / "inside").mkdir()
    os.symlink("inside", volume / "good")
    [mount] = host.container_mounts("u1", pod, pod.spec.containers[0], paths)
    assert mount.host_path == str(volume / "inside") and mount.container_path == "/data"


def test_a_missing_sub_path_is_created_as_a_directory(tmp_path):
    host = VolumeHost(tmp_path, host_changes=False)
    pod, paths, volume = set_up(host, "a/b")
    [mount] = host.container_mounts("u1", pod, pod.spec.containers[0], paths)
    assert mount.host_path == str(volume / "a" / "b") and (volume / "a" / "b").is_dir()


@pytest.mark.parametrize("link", ["/etc", "../../..", "../../../../etc/passwd"])
def test_a_sub_path_whose_symlink_leads_out_of_the_volume_is_refused(tmp_path, link):
    host = VolumeHost(tmp_path, host_changes=False)
    pod, paths, volume = set_up(host, "escape")
    os.symlink(link, volume / "escape")
    with pytest.raises(SubPathError) as exc:
        host.container_mounts("u1", pod, pod.spec.containers[0], paths)
    assert str(exc.value) == ('failed to prepare subPath for volumeMount "data" of container "app": '
                              'subPath "escape" resolves outside the volume')
    assert not (Path(link).is_absolute() and (tmp_path / "etc").exists())


def test_tear_down_removes_the_volumes_and_orphans_go_at_start(tmp_path):
    host = VolumeHost(tmp_path, host_changes=False)
    pod, paths, volume = set_up(host, "x")
    (volume / "file").write_text("data")
    host.remove_orphans({"u1"})
    assert volume.exists()
    host.remove_orphans(set())
    assert not (tmp_path / "pods" / "u1" / "volumes").exists()


def test_a_missing_sub_path_is_created_without_following_a_symlink_swapped_in_meanwhile(tmp_path, monkeypatch):
    host = VolumeHost(tmp_path / "state", host_changes=False)
    pod, paths, volume = set_up(host, "a/b/c")
    (volume / "a").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    lexists = os.path.lexists

    def swap(path):   # the container replaces a/ with a link out of the volume, after resolution
        if str(path) == str(volume / "a" / "b" / "c"):
            os.rename(volume / "a", volume / "a.old")
            os.symlink(str(outside), volume / "a")
        return lexists(path)

    monkeypatch.setattr(os.path, "lexists", swap)
    with pytest.raises(SubPathError, match='failed to prepare subPath for volumeMount "data" of container "app"'):
        host.container_mounts("u1", pod, pod.spec.containers[0], paths)
    assert list(outside.iterdir()) == []


def test_a_subpath_directory_is_made_one_component_at_a_time_refusing_a_symlink(tmp_path):
    """The subPath's mkdir is statefiles.make_dirs (the one safe `mkdir -p`): every missing component,
    the volume's modes (0755, not tightened), never through a symlink, never outside the volume."""
    import kubelite.statefiles as statefiles

    (tmp_path / "vol").mkdir()
    statefiles.make_dirs(tmp_path / "vol" / "x/y/z", 0o755, base=tmp_path / "vol", tighten_last=False)
    assert (tmp_path / "vol" / "x" / "y" / "z").is_dir()
    os.symlink(str(tmp_path), tmp_path / "vol" / "link")
    with pytest.raises(OSError):
        statefiles.make_dirs(tmp_path / "vol" / "link" / "escaped", 0o755, base=tmp_path / "vol", tighten_last=False)
    assert not (tmp_path / "escaped").exists()
    with pytest.raises(OSError, match="is not below"):
        statefiles.make_dirs(f"{tmp_path}/vol/x/../../escaped", 0o755, base=tmp_path / "vol", tighten_last=False)
    assert not (tmp_path / "escaped").exists()
